#!/usr/bin/env python3
"""Set-up and checks for a fresh clone, with nothing but a Python 3.9+ on the machine.

    python3 dev.py demo    set up .venv, then list the backends and run the echo demo
    python3 dev.py test    set everything up, then run every check CI runs

The work is in tools/devtasks.py.  This file only makes sure the Python running it is one
pike-core supports, saying so in one line otherwise: it is written to run that far on any
Python, 2.7 included.
"""

import sys

# No f-strings and an "outdated" version check, on purpose: older Pythons must get this far.
if sys.version_info < (3, 9):  # noqa: UP036
    found = "%d.%d" % sys.version_info[:2]  # noqa: UP031
    sys.exit(
        "dev.py: pike-core supports Python 3.9 or newer (tested on 3.9 to 3.13); this is Python "
        + found
        + ": run it with one of those, for example: python3.13 dev.py demo"
    )

from tools.devtasks import main

if __name__ == "__main__":
    sys.exit(main())
