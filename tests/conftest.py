"""Test modules that need a POSIX or Debian machine are not collected elsewhere; the
report header says which and why, so they are never silently absent."""

from __future__ import annotations

import sys
from typing import Dict, List

import pytest

LEFT_OUT: Dict[str, str] = {}
if sys.platform == "win32":
    LEFT_OUT.update(
        {
            "test_select_limits.py": "POSIX descriptor numbers and RLIMIT_NOFILE (resource module)",
            "load": "sized for Linux descriptor limits (resource module)",
            "reliability": "RLIMIT_NOFILE, fork and /proc (resource module)",
            "compat/test_asyncore_idle.py": "RLIMIT_NOFILE and the C load generator (POSIX)",
            "test_poll_tiers.py": "poll(2) and RLIMIT_NOFILE (the poll backend, resource module)",
        }
    )
if sys.platform != "linux":
    LEFT_OUT["compat/test_pike_samba.py"] = (
        "a Samba server from Debian's packages, and pike-smb2 (Linux only)"
    )

collect_ignore: List[str] = list(LEFT_OUT)


def pytest_report_header(config: pytest.Config) -> List[str]:
    return [f"not collected on {sys.platform}: tests/{name}: needs {why}" for name, why in LEFT_OUT.items()]
