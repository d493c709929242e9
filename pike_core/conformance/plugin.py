"""pytest plugin (entry point ``pytest11``) that runs the conformance suite against
poller backends.

Every test that takes the ``poller`` (or ``pike_backend``) fixture runs once per backend:
by default every backend discovered in the ``pike.pollers`` entry point group, or only
those named with ``--pike-poller``.  A backend that cannot run here is reported as
skipped with its reason, never left out.  A third party runs the suite against its own
backend with::

    pytest --pyargs pike_core.conformance --pike-poller NAME -n auto
"""

from __future__ import annotations

from typing import Iterator, List

import pytest

from pike_core import BackendStatus, Poller, available_backends


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pike", "pike-core conformance suite")
    group.addoption(
        "--pike-poller",
        action="append",
        default=[],
        metavar="NAME",
        help="run the pike-core conformance tests only against these backends "
        "(repeatable, or comma-separated); default: every installed backend",
    )


def _selected(config: pytest.Config) -> List[BackendStatus]:
    statuses = {status.name: status for status in available_backends()}
    asked = [name.strip() for value in config.getoption("--pike-poller") for name in value.split(",")]
    asked = [name for name in asked if name]
    unknown = [name for name in asked if name not in statuses]
    if unknown:
        raise pytest.UsageError(
            f"--pike-poller: no backend named {', '.join(map(repr, unknown))} is installed "
            f"(installed: {', '.join(sorted(statuses)) or 'none'})"
        )
    # Sorted, so every xdist worker collects the same ids in the same order.
    return [statuses[name] for name in sorted(asked or statuses)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pike_backend" not in metafunc.fixturenames:
        return
    statuses = _selected(metafunc.config)
    if not statuses:
        raise pytest.UsageError(
            "no pike poller backend is installed: install pike-epoll, pike-poll or pike-select"
        )
    metafunc.parametrize("pike_backend", statuses, ids=[s.name for s in statuses], indirect=True)


@pytest.fixture
def pike_backend(request: pytest.FixtureRequest) -> BackendStatus:
    """The backend under test; skips (with the reason) where it cannot run."""
    status: BackendStatus = request.param
    if not status.usable:
        pytest.skip(f"backend {status.name!r} cannot run here: {status.problem}")
    return status


@pytest.fixture
def poller(pike_backend: BackendStatus) -> Iterator[Poller]:
    """A new poller of the backend under test, closed after the test."""
    assert pike_backend.backend_class is not None
    instance = Poller(pike_backend.backend_class())
    try:
        yield instance
    finally:
        instance.close()
