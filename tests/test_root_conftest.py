"""The root conftest.py: every run's header says what is under test, and
PIKE_TEST_BACKENDS fails the run at once when a backend it names cannot run here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

from pike_core import available_backends

ROOT = Path(__file__).resolve().parent.parent


def collect(env: Dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-p", "no:cacheprovider", "tests/test_readme.py"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_header_names_pike_core_and_every_backend() -> None:
    result = collect({"PIKE_TEST_BACKENDS": ""})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pike-core " in result.stdout
    for status in available_backends():
        assert f"  backend {status.name} ({status.distribution} {status.version}): " in result.stdout
    assert "  chosen here: " in result.stdout


def test_a_required_backend_that_cannot_run_here_stops_the_run() -> None:
    unusable = [s for s in available_backends() if not s.usable]
    name = unusable[0].name if unusable else "no-such-backend"
    result = collect({"PIKE_TEST_BACKENDS": f"select,{name}"})
    assert result.returncode == 4  # pytest's usage error, before any test
    assert f"PIKE_TEST_BACKENDS=select,{name}: {name!r}" in result.stderr
