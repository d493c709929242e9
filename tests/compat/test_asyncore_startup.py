"""pike-asyncore-shim's ``.pth`` runs at every interpreter start: where ``asyncore`` is
never imported it must cost under a millisecond (``-X importtime``), and before 3.12,
where the stdlib keeps its own asyncore, it imports nothing at all."""

from __future__ import annotations

import importlib.util
import py_compile
import subprocess
import sys
from typing import Dict, List, Tuple

import pytest

SHIM = "pike_asyncore_shim"
#: The budget for what the shim imports at start-up, in microseconds.
BUDGET_US = 1000
RUNS = 7

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(SHIM) is None, reason="pike-asyncore-shim is not installed here"
)


def import_times() -> List[Tuple[str, int, int]]:
    """``(indented name, self µs, cumulative µs)`` of each import of an empty interpreter."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True, check=True
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line[len("import time:") :].split("|")
        rows.append((name.rstrip(), int(own), int(cumulative)))
    return rows


def under(rows: List[Tuple[str, int, int]], module: str) -> Dict[str, int]:
    """The modules imported because ``module`` was (importtime lists them just before it,
    indented deeper), with their own µs, and ``module`` itself."""
    for index, (name, _, _) in enumerate(rows):
        if name.strip() == module:
            depth = len(name) - len(name.lstrip())
            found = {module: rows[index][1]}
            for child, own, _ in reversed(rows[:index]):
                if len(child) - len(child.lstrip()) <= depth:
                    break
                found[child.strip()] = own
            return found
    return {}


@pytest.mark.skipif(sys.version_info < (3, 12), reason="the shim imports its module on 3.12+ only")
def test_the_shim_costs_under_a_millisecond_at_start_up() -> None:
    # As after any pip install (which compiles), even where PYTHONDONTWRITEBYTECODE is set.
    spec = importlib.util.find_spec(SHIM)
    assert spec is not None
    assert spec.origin is not None
    py_compile.compile(spec.origin, cfile=importlib.util.cache_from_source(spec.origin), doraise=True)
    costs = []
    for _ in range(RUNS):
        imported = under(import_times(), SHIM)
        assert imported, f"{SHIM} was not imported at start-up: is its .pth installed?"
        assert "typing" not in imported, f"{SHIM} imports typing at every start-up"
        costs.append(sum(imported.values()))
    # The least of several runs: a busy machine only ever adds time.
    assert min(costs) < BUDGET_US, f"{SHIM} costs {sorted(costs)} µs at start-up, more than {BUDGET_US}"
    assert "asyncore" not in {name.strip() for name, _, _ in import_times()}


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.11 and older keep the stdlib's asyncore")
def test_before_3_12_the_shim_imports_nothing() -> None:
    names = {name.strip() for name, _, _ in import_times()}
    assert SHIM not in names
    assert "pike_core" not in names
