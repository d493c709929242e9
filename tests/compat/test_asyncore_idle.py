"""pike_core.compat.asyncore keeps serving echoes beside 5,000 idle connections, in both
dispatch flavours (pyasyncore's select flavour dies there, its poll flavour crawls: see
asyncore_idle_bench.py for the figures).  The clients are pike-core's C load generator in
a child process, the server the unchanged asyncore_echo.py in another."""

from __future__ import annotations

import importlib.util
import resource
from pathlib import Path
from types import ModuleType

import pytest

IDLE = 5000
ACTIVE = 8


def load_bench() -> ModuleType:
    # By path: tests/compat is not a package, and must not need to be one.
    path = Path(__file__).resolve().parent / "asyncore_idle_bench.py"
    spec = importlib.util.spec_from_file_location("asyncore_idle_bench", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = IDLE + ACTIVE + 64
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} descriptors per process; the hard limit is {hard} (ulimit -Hn)")
    module = load_bench()
    try:
        from pike_bench import cbuild
    except ImportError as exc:
        pytest.skip(f"pike-bench (the C load generator's sources) is not installed here: {exc}")
    try:
        module.loadgen()
    except cbuild.BuildError as exc:
        pytest.skip(f"the C load generator cannot be built here: {exc}")
    return module


@pytest.mark.parametrize("use_poll", [False, True], ids=["select-flavour", "poll-flavour"])
def test_echoes_go_on_beside_5000_idle_connections(bench: ModuleType, use_poll: bool) -> None:
    result = bench.measure("pike", use_poll, idle=IDLE, conns=ACTIVE, size=512, seconds=1.0)
    assert result["error"] is None, result
    assert result["idle_opened"] == IDLE
    # Serving, not speed: a loop that starves its active connections echoes next to nothing.
    assert result["ops"] > 100, result
