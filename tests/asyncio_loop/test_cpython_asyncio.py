"""CPython's own test_asyncio selection (see ``cpython_asyncio.py``) on the pike loop, on
every backend usable here, against the stock selector loop in the same run.

Every test must end the same way on both loops (passed, failed, skipped...), or be listed
with its explanation under "Differences from the stock loop" in ``docs/asyncio.md``.
The counts are printed (``pytest -rP``).
"""

from __future__ import annotations

import collections
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Set, Tuple

import pytest

from pike_core import available_backends

RUNNER = Path(__file__).with_name("cpython_asyncio.py")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "asyncio.md"
USABLE = [status.name for status in available_backends() if status.usable]

pytestmark = [
    pytest.mark.skipif(
        sys.platform != "linux", reason="the selection names the epoll loop classes of test_asyncio (Linux)"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("test.test_asyncio") is None,
        reason="this interpreter has no CPython test package (test.test_asyncio)",
    ),
]


def _run(loop: str, tests: Sequence[str] = ()) -> Tuple[Dict[str, str], int]:
    """(test id -> outcome, PikeSelectors made) of one run of the runner."""
    command = [sys.executable, str(RUNNER), loop, *(["--tests", *tests] if tests else [])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr[-4000:]}"
    result = json.loads(done.stdout)
    return result["outcomes"], result["pike_selectors"]


def _kind(outcome: str) -> str:
    return outcome.split(":", maxsplit=1)[0]


def _counts(outcomes: Dict[str, str]) -> Dict[str, int]:
    return dict(sorted(collections.Counter(_kind(o) for o in outcomes.values()).items()))


def _documented() -> Set[Tuple[str, str]]:
    """(test id, backend or "all") pairs explained in the docs."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("### Differences from the stock loop", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^- `(test\.test_asyncio\.[\w.]+)` on (\w+):", section, re.MULTILINE))


@pytest.fixture(scope="module")
def stock() -> Dict[str, str]:
    outcomes, made = _run("stock")
    assert made == 0
    return outcomes


@pytest.mark.parametrize("backend", USABLE)
def test_cpython_asyncio_on_the_pike_loop_ends_as_on_the_stock_loop(
    backend: str, stock: Dict[str, str]
) -> None:
    pike, made = _run(backend)
    # Every loop those tests made waited on a PikeSelector (dozens of loops).
    assert made > 50
    assert set(pike) == set(stock)
    print(f"CPython test_asyncio, {len(stock)} tests: stock {_counts(stock)}; {backend} {_counts(pike)}")
    differ: List[str] = [t for t in stock if _kind(stock[t]) != _kind(pike[t])]
    if differ:
        # Timing-sensitive tests may flake on a loaded machine: both sides once more.
        stock_again, _ = _run("stock", differ)
        pike_again, _ = _run(backend, differ)
        differ = [t for t in differ if _kind(stock_again[t]) != _kind(pike_again[t])]
    documented = _documented()
    unexplained = [
        f"{t}: stock {stock[t]}, {backend} {pike[t]}"
        for t in differ
        if (t, backend) not in documented and (t, "all") not in documented
    ]
    assert unexplained == [], "fix these, or explain them in docs/asyncio.md"
    assert _counts(stock).get("pass", 0) > 150, "the selection did not run"
