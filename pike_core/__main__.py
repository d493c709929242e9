"""``python -m pike_core``: see :mod:`pike_core.cli`."""

import sys

from .cli import main

sys.exit(main())
