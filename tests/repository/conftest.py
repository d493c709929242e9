"""Tests of the repository as a whole: its distributions, dev.py, the site's sources.

They need the clone (the core sdist leaves this folder out).  test_distributions.py
checks built files: dev.py's distributions step builds every sdist and wheel and runs it
with ``PIKE_DIST_DIR`` naming their folder; without, it is not collected, and the header
says so.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    # tools.release lists the distributions; tests import nothing else from the clone.
    sys.path.insert(0, str(ROOT))

collect_ignore: List[str] = [] if os.environ.get("PIKE_DIST_DIR") else ["test_distributions.py"]


def pytest_report_header(config: pytest.Config) -> List[str]:
    if collect_ignore:
        return [
            "not collected: tests/repository/test_distributions.py: needs built distributions "
            "(PIKE_DIST_DIR; `python3 dev.py test distributions` builds them and runs it)"
        ]
    return [f"distributions under test: {os.environ['PIKE_DIST_DIR']}"]
