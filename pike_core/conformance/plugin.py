"""pytest plugin (entry point ``pytest11``) that runs the conformance suite against
poller backends.  A backend's author runs it with one command::

    pytest --pyargs pike_core.conformance --pike-poller NAME -n auto

pytest loads this plugin in every session of an environment that has pike-core, so it
adds only two options (``--pike-poller``, ``--pike-timeout``) and fixtures whose names
begin with ``pike_``.  Everything else concerns only the tests that use them:

* **Backends.**  A test that uses ``pike_backend_name`` (directly, or through
  ``pike_backend`` or ``pike_poller``) runs once per backend: those named with
  ``--pike-poller``, else every installed one.
* **Named means required.**  A named backend that is not installed, is broken, or cannot
  run here stops the session as it starts, with discovery's reason, and so does a
  missing test dependency.  Unnamed, a backend that declares it cannot run here is
  skipped with its reason; a broken one fails every test.
* **Probes first.**  Before a backend's first test in a process, :mod:`.probes` checks
  its OS contract directly, in well under a second.  ``test_backend_contract.py``
  reports each rule; every other test of a backend that broke one fails at once, naming
  the rule, rather than timing out.
* **Watchdog.**  No test runs past ``--pike-timeout`` seconds (see :mod:`.watchdog`).
"""

from __future__ import annotations

import faulthandler
import importlib
import os
import sys
from typing import Dict, Iterator, List

import pytest

from pike_core import BackendStatus, Poller, available_backends

from . import probes
from .watchdog import Watchdog

#: Seconds a conformance test may take by default.
DEFAULT_TIMEOUT = 30.0
#: What a named run needs beside pytest, by module and distribution: the stateful test
#: would otherwise be skipped.  (pytest-xdist is only for speed: ``-n`` without it is
#: pytest's own usage error.)
TEST_DEPENDENCIES = {"hypothesis": "hypothesis"}
#: The one parameter when no backend is installed at all.
NONE_INSTALLED = "no-backend-installed"
_STATUSES = pytest.StashKey[Dict[str, BackendStatus]]()
_VERDICTS = pytest.StashKey[Dict[str, Dict[str, probes.Verdict]]]()
_WATCHDOG = pytest.StashKey[Watchdog]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pike", "pike-core conformance suite")
    group.addoption(
        "--pike-poller",
        action="append",
        default=[],
        metavar="NAME",
        help="run the pike-core conformance tests only against these backends "
        "(repeatable, or comma-separated), each of which must load and run here; "
        "default: every installed backend, those that cannot run here skipped",
    )
    group.addoption(
        "--pike-timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"stop a pike-core conformance test that runs longer (default {DEFAULT_TIMEOUT:g}; 0: no limit)",
    )


def _named(config: pytest.Config) -> List[str]:
    """The backends named with ``--pike-poller``, each once, in the order given."""
    values: List[str] = config.getoption("--pike-poller")
    names = [name.strip() for value in values for name in value.split(",")]
    return list(dict.fromkeys(name for name in names if name))


def _statuses(config: pytest.Config) -> Dict[str, BackendStatus]:
    """Every installed backend by name; discovered at first use in the session."""
    if _STATUSES not in config.stash:
        config.stash[_STATUSES] = {status.name: status for status in available_backends()}
    return config.stash[_STATUSES]


def _refusal(status: BackendStatus) -> str:
    if status.broken:
        return f"backend {status.name!r} is broken: {status.problem}"
    return f"backend {status.name!r} cannot run here: {status.problem}"


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--pike-timeout") < 0:
        raise pytest.UsageError("--pike-timeout: give the seconds a test may take, or 0 for no limit")
    named = _named(config)
    if not named:
        return
    # Named means required: checked once, here, so the session stops with one message.
    statuses = _statuses(config)
    unknown = [name for name in named if name not in statuses]
    if unknown:
        raise pytest.UsageError(
            f"--pike-poller: no backend named {', '.join(map(repr, unknown))} is installed "
            f"(installed: {', '.join(sorted(statuses)) or 'none'})"
        )
    refused = [_refusal(statuses[name]) for name in named if not statuses[name].usable]
    if refused:
        raise pytest.UsageError(
            "--pike-poller: " + "; ".join(refused) + " (a backend named with --pike-poller must "
            "load and run here; fix it, or leave it out)"
        )
    missing = [dist for module, dist in TEST_DEPENDENCIES.items() if not _importable(module)]
    if missing:
        raise pytest.UsageError(
            f"--pike-poller: the conformance suite needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed here; install the suite's "
            "dependencies: pip install 'pike-core[test]'"
        )


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pike_backend_name" not in metafunc.fixturenames:
        return
    # Sorted, so every xdist worker collects the same ids in the same order.  With no
    # backend at all, each test fails saying so: an empty parametrization would skip.
    names = sorted(_named(metafunc.config) or _statuses(metafunc.config)) or [NONE_INSTALLED]
    metafunc.parametrize("pike_backend_name", names, ids=names, indirect=True)


@pytest.fixture
def pike_backend_name(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test: each test that uses it runs once per backend."""
    name: str = request.param
    return name


@pytest.fixture
def pike_contract(request: pytest.FixtureRequest, pike_backend_name: str) -> Dict[str, probes.Verdict]:
    """What the probes found of the backend under test, by probe name (run once per
    backend and process).  Skips a backend that cannot run here; fails a broken one."""
    if pike_backend_name == NONE_INSTALLED:
        pytest.fail(
            "no poller backend is installed: install one (pike-epoll, pike-kqueue, pike-iocp, "
            "pike-poll, pike-select) or your own",
            pytrace=False,
        )
    status = _statuses(request.config)[pike_backend_name]
    if not status.usable:
        if status.broken:
            pytest.fail(f"{_refusal(status)}, so it cannot be tested", pytrace=False)
        pytest.skip(_refusal(status))
    verdicts = request.config.stash.setdefault(_VERDICTS, {})
    if pike_backend_name not in verdicts:
        assert status.backend_class is not None
        verdicts[pike_backend_name] = {v.probe.name: v for v in probes.check(status.backend_class)}
    return verdicts[pike_backend_name]


@pytest.fixture
def pike_backend(
    request: pytest.FixtureRequest, pike_contract: Dict[str, probes.Verdict], pike_backend_name: str
) -> BackendStatus:
    """The backend under test (its :class:`~pike_core.BackendStatus`).  A backend that
    broke a rule of the Backend contract fails here, naming the rule."""
    broken = probes.first_broken(pike_contract.values())
    if broken is not None:
        pytest.fail(
            f"not run: backend {pike_backend_name!r} breaks the Backend contract: "
            f"{broken.detail} (found by the {broken.probe.name} probe; see test_backend_contract.py)",
            pytrace=False,
        )
    return _statuses(request.config)[pike_backend_name]


@pytest.fixture
def pike_poller(pike_backend: BackendStatus) -> Iterator[Poller]:
    """A new poller on the backend under test, closed after the test."""
    assert pike_backend.backend_class is not None
    instance = Poller(pike_backend.backend_class())
    try:
        yield instance
    finally:
        instance.close()


# --- the watchdog ----------------------------------------------------------------------


def _watchdog(config: pytest.Config) -> Watchdog:
    if _WATCHDOG not in config.stash:
        limit: float = config.getoption("--pike-timeout")

        def stuck(test: str) -> None:
            _stop_process(config, test, limit)

        advice = "--pike-timeout SECONDS sets the limit, 0 removes it"
        config.stash[_WATCHDOG] = Watchdog(limit, advice, stuck)
    return config.stash[_WATCHDOG]


def _stop_process(config: pytest.Config, test: str, limit: float) -> None:
    """The last resort, from the watchdog's thread: say which test hung, show where
    every thread is, and end this process."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.suspend_global_capture(in_=True)
    sys.stderr.write(
        f"\n+++ pike-core conformance suite: {test} ran past its {limit:g} s limit and "
        "did not stop when interrupted; the traceback of every thread follows, then this "
        "process ends (--pike-timeout sets the limit) +++\n"
    )
    sys.stderr.flush()
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()
    os._exit(pytest.ExitCode.INTERNAL_ERROR)


def _limited(item: pytest.Item) -> bool:
    """Whether ``item`` is a conformance test (it uses the backend fixtures) with a limit."""
    uses = "pike_backend_name" in getattr(item, "fixturenames", ())
    return uses and float(item.config.getoption("--pike-timeout")) > 0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    if not _limited(item):
        yield
        return
    watchdog = _watchdog(item.config)
    watchdog.begin(item.nodeid)
    with watchdog.phase():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    if not _limited(item):
        yield
        return
    with _watchdog(item.config).phase():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    if not _limited(item):
        yield
        return
    watchdog = _watchdog(item.config)
    try:
        with watchdog.phase(teardown=True):
            yield
    finally:
        watchdog.end()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _WATCHDOG in config.stash:
        config.stash[_WATCHDOG].close()
