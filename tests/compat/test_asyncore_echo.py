"""asyncore code that knows nothing of pike-core (asyncore_echo.py, asynchat_echo.py) runs
on pike_core.compat.asyncore: imported explicitly on any Python, and through the
pike-asyncore-shim as plain ``import asyncore`` on Python 3.12+.

Each run is a child process, so the child's ``sys.modules`` proves which asyncore it got,
and a hang fails on the timeout instead of stalling the suite.  Under Python 3.13::

    .venv-3.13/bin/pip install ./compat/asyncore-shim pyasynchat
    .venv-3.13/bin/python -m pytest tests/compat/test_asyncore_echo.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, Dict, List

import pytest

import pike_core.compat.asyncore as ours
from pike_core import choose_backend

HERE = Path(__file__).resolve().parent
ECHO = HERE / "asyncore_echo.py"
CHAT = HERE / "asynchat_echo.py"
OURS = "pike_core.compat.asyncore"
SHIM_MISSING = "pike-asyncore-shim is not installed here (pip install ./compat/asyncore-shim)"
HAS_SHIM = importlib.util.find_spec("pike_asyncore_shim") is not None

# Binds `asyncore` to ours before the script's own `import asyncore` runs.
EXPLICIT = """
import runpy, sys
import pike_core.compat.asyncore
sys.modules["asyncore"] = pike_core.compat.asyncore
{extra}
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""
# PyPI pyasynchat by its installed file: on Python <= 3.11 `import asynchat` would find
# the stdlib's instead.
PYPI_ASYNCHAT = """
from importlib import metadata, util
path = metadata.distribution("pyasynchat").locate_file("asynchat/__init__.py")
spec = util.spec_from_file_location("asynchat", path)
module = util.module_from_spec(spec)
sys.modules["asynchat"] = module
spec.loader.exec_module(module)
"""
USE_POLL = pytest.mark.parametrize("use_poll", [False, True], ids=["select-flavour", "poll-flavour"])


def run_child(args: List[str], use_poll: bool, prelude: str = "") -> Dict[str, Any]:
    """Run a script (through ``prelude`` if given) and return the JSON line it printed."""
    command = [sys.executable, "-W", "ignore::DeprecationWarning"]
    command += ["-c", prelude, *args] if prelude else args
    if use_poll:
        command.append("--use-poll")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=HERE, check=False)
    assert proc.returncode == 0, f"{command} failed:\n{proc.stdout}\n{proc.stderr}"
    result: Dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["use_poll"] == use_poll
    return result


def assert_echo_served(result: Dict[str, Any]) -> None:
    assert result["accepted"] == result["connected"] == 9
    assert result["echoed"] == result["expected"] > 0
    assert result["mismatches"] == 0
    assert result["left_in_map"] == 0


def pyasynchat_missing() -> bool:
    from importlib import metadata

    try:
        metadata.distribution("pyasynchat")
    except metadata.PackageNotFoundError:
        return True
    return False


@USE_POLL
def test_echo_on_our_module_imported_explicitly(use_poll: bool) -> None:
    result = run_child([str(ECHO)], use_poll, EXPLICIT.format(extra=""))
    assert result["asyncore"] == OURS
    assert Path(result["file"]) == Path(ours.__file__)
    assert_echo_served(result)


@pytest.mark.skipif(not HAS_SHIM, reason=SHIM_MISSING)
@USE_POLL
def test_plain_import_asyncore_through_the_shim(use_poll: bool) -> None:
    result = run_child([str(ECHO)], use_poll)
    if sys.version_info >= (3, 12):
        assert result["asyncore"] == OURS
        assert Path(result["file"]) == Path(ours.__file__)
    else:
        # Where the stdlib still has asyncore, the shim must not shadow it.
        assert result["asyncore"] == "asyncore"
        assert Path(result["file"]).parent == Path(sysconfig.get_paths()["stdlib"])
    assert_echo_served(result)


@pytest.mark.skipif(pyasynchat_missing(), reason="PyPI pyasynchat is not installed (pip install pyasynchat)")
@pytest.mark.parametrize("route", ["explicit", "shim"])
@USE_POLL
def test_pyasynchat_runs_on_our_module(route: str, use_poll: bool) -> None:
    if route == "shim":
        if not HAS_SHIM:
            pytest.skip(SHIM_MISSING)
        if sys.version_info < (3, 12):
            pytest.skip("the shim stands in for asyncore only on Python 3.12+; here the stdlib's is used")
        result = run_child([str(CHAT)], use_poll)
    else:
        result = run_child([str(CHAT)], use_poll, EXPLICIT.format(extra=PYPI_ASYNCHAT))
    assert result["asyncore"] == result["asynchat_uses"] == OURS
    assert "site-packages" in Path(result["asynchat"]).parts
    assert result["echoed_ok"] is True
    assert result["left_in_map"] == 0


# Takes descriptor numbers up to past select()'s FD_SETSIZE before the echo starts.
HIGH_DESCRIPTORS = """
import os, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < 2048:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
fillers = []
while not fillers or fillers[-1] < 1100:
    fillers.append(os.open(os.devnull, os.O_RDONLY))
"""


@pytest.mark.skipif(os.name != "posix", reason="descriptor numbers past FD_SETSIZE are a POSIX limit")
def test_select_flavour_serves_beyond_fd_setsize() -> None:
    """pyasyncore's use_poll=False dies at descriptor 1,024; here the backend is pike-core's
    choice, so the select flavour goes on serving."""
    if choose_backend().backend.name == "select":
        pytest.skip("the chosen backend is select itself (PIKE_POLLER=select or nothing better installed)")
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"needs 2048 descriptors; the hard limit is {hard}")
    result = run_child([str(ECHO)], False, EXPLICIT.format(extra=HIGH_DESCRIPTORS))
    assert result["asyncore"] == OURS
    assert_echo_served(result)
