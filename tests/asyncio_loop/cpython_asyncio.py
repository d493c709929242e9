"""Run a selection of CPython's own ``test_asyncio`` on the stock selector loop or on the
pike loop, and print every test's outcome as JSON (``test_cpython_asyncio.py`` compares).

    python cpython_asyncio.py stock     asyncio's SelectorEventLoop on its DefaultSelector
    python cpython_asyncio.py epoll     the same tests, every selector a PikeSelector('epoll')
    python cpython_asyncio.py epoll --tests ID...   only these tests (by unittest id)

The selection is what exercises a selector event loop: the epoll-loop classes of
``test_events``, ``test_sock_lowlevel`` and ``test_sendfile`` (epoll is Linux's default
selector, so the stock run is the loop everyone uses), and ``test_server``,
``test_streams`` and ``test_ssl`` whole (they make their loops with
``asyncio.SelectorEventLoop()`` or the policy, so with ``selectors.DefaultSelector``).
For the pike run, ``selectors.DefaultSelector`` and the selector classes asyncio's tests
name are replaced by PikeSelector on the backend before any test is loaded: every loop
those tests make is then asyncio's selector loop on a PikeSelector, which is what
``pike_asyncio.PikeEventLoop`` is.
"""

from __future__ import annotations

import argparse
import importlib
import json
import selectors
import sys
import unittest
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

#: (module, test class or None for the whole module), in test.test_asyncio.
SELECTION = [
    ("test_events", "EPollEventLoopTests"),
    ("test_sock_lowlevel", "EPollEventLoopTests"),
    ("test_sendfile", "EPollEventLoopTests"),
    ("test_server", None),
    ("test_streams", None),
    ("test_ssl", None),
]
#: The selector classes asyncio's tests construct.
SELECTOR_NAMES = ["DefaultSelector", "SelectSelector", "PollSelector", "EpollSelector"]


#: How many PikeSelectors the tests made: the proof that the pike run ran on pike.
made: List[str] = []


def use_pike(backend: str) -> None:
    """Make every selector asyncio's tests construct a PikeSelector on ``backend``."""
    from pike_asyncio import PikeSelector

    class BoundPikeSelector(PikeSelector):
        def __init__(self) -> None:
            super().__init__(backend)
            made.append(self.backend.name)

    for name in SELECTOR_NAMES:
        setattr(selectors, name, BoundPikeSelector)


def _tests(suite: unittest.TestSuite) -> Iterator[unittest.TestCase]:
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            yield from _tests(test)
        else:
            yield test


def load(module: str, cls: Optional[str]) -> Optional[unittest.TestSuite]:
    """The tests of one selection entry; None when this Python lacks the module."""
    name = f"test.test_asyncio.{module}"
    try:
        loaded = importlib.import_module(name)
    except ImportError:
        return None
    loader = unittest.TestLoader()
    if cls is None:
        return loader.loadTestsFromModule(loaded)
    if not hasattr(loaded, cls):
        return None
    return loader.loadTestsFromTestCase(getattr(loaded, cls))


def suites(tests: Sequence[str]) -> Iterator[Tuple[str, Optional[unittest.TestSuite]]]:
    """(name, suite) of the selection, or of the named tests only; a None suite: this
    Python lacks that entry."""
    if tests:
        yield "chosen tests", unittest.TestLoader().loadTestsFromNames(tests)
        return
    for module, cls in SELECTION:
        yield f"{module}.{cls or '*'}", load(module, cls)


def run(tests: Sequence[str]) -> Dict[str, str]:
    """Every test id -> ``pass``, ``fail``, ``error``, ``skip: reason``, ``xfail``,
    ``xpass``; a selection entry this Python lacks -> ``absent``."""
    outcomes: Dict[str, str] = {}
    for name, suite in suites(tests):
        if suite is None:
            outcomes[name] = "absent"
            continue
        # Before the run: a suite lets go of each test once it has run.
        ids: List[str] = [test.id() for test in _tests(suite)]
        result = unittest.TestResult()
        suite.run(result)
        for test_id in ids:
            outcomes[test_id] = "pass"
        for test, _ in result.failures:
            outcomes[test.id()] = "fail"
        for test, _ in result.errors:
            outcomes[test.id()] = "error"
        for test, reason in result.skipped:
            outcomes[test.id()] = f"skip: {reason}"
        for test, _ in result.expectedFailures:
            outcomes[test.id()] = "xfail"
        for test in result.unexpectedSuccesses:
            outcomes[test.id()] = "xpass"
        for test, trace in [*result.failures, *result.errors]:
            print(f"--- {outcomes[test.id()]}: {test.id()}\n{trace}", file=sys.stderr)
    return outcomes


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("loop", help="'stock', or the name of the pike backend")
    parser.add_argument("--tests", nargs="*", default=[], metavar="ID", help="only these tests")
    args = parser.parse_args(argv)
    if args.loop != "stock":
        use_pike(args.loop)
    outcomes = run(args.tests)
    json.dump({"outcomes": outcomes, "pike_selectors": len(made)}, sys.stdout, indent=0, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
