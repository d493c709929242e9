"""The conformance suite's pytest plugin, run as its users run it, in a pytest of its own:
named backends are required, broken ones fail rather than skip, the watchdog stops a
test that hangs, and a session that does not use the suite sees nothing of it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from pike_core import available_backends
from pike_core.conformance.watchdog import INTERRUPTS

#: Seconds a nested pytest may take before the test gives up on it.
NESTED_LIMIT = 120
#: pytest in a Python where hypothesis cannot be imported.
WITHOUT_HYPOTHESIS = """
import sys, pytest

class NoHypothesis:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "hypothesis":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoHypothesis())
sys.exit(pytest.main(sys.argv[1:]))
"""


def pytest_run(
    folder: Path, *args: str, env: Optional[Dict[str, str]] = None, python: Optional[List[str]] = None
) -> subprocess.CompletedProcess[str]:
    """pytest in ``folder`` (outside the clone: no repository conftest or settings)."""
    environment = dict(os.environ, COLUMNS="300", **(env or {}))
    environment.pop("PIKE_POLLER", None)
    command = [*(python or [sys.executable, "-m", "pytest"]), "-p", "no:cacheprovider", *args]
    return subprocess.run(
        command,
        cwd=folder,
        capture_output=True,
        text=True,
        env=environment,
        timeout=NESTED_LIMIT,
        check=False,
    )


def install_typo_backend(site: Path) -> None:
    """A distribution in ``site`` whose backend module has a typo in an import."""
    package = site / "pike_typo_backend"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(
        "from pike_core import BackendSpec, hookimpl\n\n@hookimpl\ndef pike_poller_backend():\n"
        "    return BackendSpec(name='zz_typo', backend='pike_typo_backend.backend:Impl', priority=1)\n"
    )
    (package / "backend.py").write_text("from pike_select.backend import SelectBackand as Impl\n")
    dist_info = site / "pike_typo_backend-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: pike-typo-backend\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[pike.pollers]\nzz_typo = pike_typo_backend.plugin\n")


def write_tests(folder: Path, source: str) -> None:
    (folder / "test_it.py").write_text(textwrap.dedent(source))


def usable_names() -> List[str]:
    return sorted(s.name for s in available_backends() if s.usable)


def test_unknown_name_is_one_error_for_the_whole_suite(tmp_path: Path) -> None:
    result = pytest_run(tmp_path, "--pyargs", "pike_core.conformance", "--pike-poller", "nosuch", "-n", "2")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    output = result.stdout + result.stderr
    assert output.count("no backend named 'nosuch' is installed") == 1, output
    assert f"(installed: {', '.join(sorted(s.name for s in available_backends()))})" in output


def test_a_named_backend_that_cannot_run_here_stops_the_session(tmp_path: Path) -> None:
    unusable = [s for s in available_backends() if not s.usable and not s.broken]
    if not unusable:
        pytest.skip("every installed backend can run here")
    status = unusable[0]
    result = pytest_run(
        tmp_path, "--pyargs", "pike_core.conformance", "--pike-poller", f"select,{status.name}"
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert f"backend {status.name!r} cannot run here: {status.problem}" in result.stderr
    assert "must load and run here" in result.stderr


def test_an_unnamed_broken_backend_fails_and_one_that_cannot_run_is_skipped(tmp_path: Path) -> None:
    install_typo_backend(tmp_path / "site")
    write_tests(tmp_path, "def test_backend(pike_backend):\n    assert pike_backend.usable\n")
    result = pytest_run(tmp_path, "-rfEs", "-v", env={"PYTHONPATH": str(tmp_path / "site")})
    assert result.returncode == pytest.ExitCode.TESTS_FAILED
    lines = result.stdout.splitlines()
    [broken] = [line for line in lines if "test_backend[zz_typo]" in line and line.startswith("ERROR")]
    assert "backend 'zz_typo' is broken: broken plugin: loading" in broken
    assert "cannot import name 'SelectBackand'" in broken
    for name in usable_names():
        assert f"test_it.py::test_backend[{name}] PASSED" in result.stdout or name not in result.stdout
    declared = [s for s in available_backends() if not s.usable and not s.broken]
    for status in declared:
        assert f"backend {status.name!r} cannot run here: {status.problem}" in result.stdout


def test_a_named_run_without_hypothesis_stops_with_an_instruction(tmp_path: Path) -> None:
    # A Python in which "import hypothesis" fails, as where it is not installed.
    python = [sys.executable, "-c", WITHOUT_HYPOTHESIS]
    args = ["-p", "no:hypothesispytest", "--pyargs", "pike_core.conformance"]
    named = pytest_run(tmp_path, *args, "--pike-poller", "select", python=python)
    assert named.returncode == pytest.ExitCode.USAGE_ERROR
    assert "the conformance suite needs hypothesis, which is not installed here" in named.stderr
    assert "pip install 'pike-core[test]'" in named.stderr
    # Not named, the stateful test alone is skipped, saying why.
    unnamed = pytest_run(tmp_path, *args, "-k", "stateful or contract", "-rs", python=python)
    assert unnamed.returncode == 0, unnamed.stdout + unnamed.stderr
    assert "the stateful tests need hypothesis" in unnamed.stdout


def test_the_watchdog_stops_a_blocked_test_and_the_session_goes_on(tmp_path: Path) -> None:
    write_tests(
        tmp_path,
        """
        def test_blocks(pike_poller):
            pike_poller.poll(None)  # nothing registered: blocks for ever in the backend

        def test_after(pike_poller):
            pike_poller.poll(0)
        """,
    )
    start = time.monotonic()
    result = pytest_run(tmp_path, "--pike-poller", "select", "--pike-timeout", "1", "-rf")
    took = time.monotonic() - start
    assert took < 20
    if not INTERRUPTS:
        # Nothing interrupts a blocked call here: the watchdog ends the process instead.
        assert result.returncode == pytest.ExitCode.INTERNAL_ERROR
        assert "test_it.py::test_blocks[select] ran past its 1 s limit and did not stop" in result.stderr
        return
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    assert "test_it.py::test_blocks[select] ran past its 1 s limit and was stopped" in result.stdout
    assert "--pike-timeout SECONDS sets the limit, 0 removes it" in result.stdout
    assert "1 failed, 1 passed" in result.stdout


def test_a_test_deaf_to_the_interrupt_ends_the_process_with_a_report(tmp_path: Path) -> None:
    write_tests(
        tmp_path,
        """
        import signal, time

        def test_deaf(pike_backend_name):
            if hasattr(signal, "pthread_sigmask"):
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(120)
        """,
    )
    start = time.monotonic()
    result = pytest_run(tmp_path, "--pike-poller", "select", "--pike-timeout", "1")
    took = time.monotonic() - start
    assert result.returncode == pytest.ExitCode.INTERNAL_ERROR
    assert (
        "pike-core conformance suite: test_it.py::test_deaf[select] ran past its 1 s limit and did "
        "not stop when interrupted" in result.stderr
    )
    assert "in test_deaf" in result.stderr  # the traceback of the hung test
    assert took < 20


def test_a_session_that_does_not_use_the_suite_sees_only_prefixed_fixtures_and_options(
    tmp_path: Path,
) -> None:
    write_tests(
        tmp_path,
        """
        import signal, sys, threading

        def test_untouched():
            from pike_core.discovery import registry

            assert registry._pm is None, "discovery ran"
            if hasattr(signal, "SIGALRM"):
                assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL
            assert not [t for t in threading.enumerate() if t.name.startswith("pike-core")]
        """,
    )
    result = pytest_run(tmp_path, "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    listing = pytest_run(tmp_path, "--fixtures", "-v")
    plugin = re.compile(r"pike_core[/\\]conformance[/\\]plugin\.py")
    ours = [line for line in listing.stdout.splitlines() if plugin.search(line)]
    names = sorted(line.split()[0] for line in ours)
    assert names == ["pike_backend", "pike_backend_name", "pike_contract", "pike_poller"]
