"""CPython's own ``test_selectors`` run against :class:`PikeSelector`, one class per backend.

The test cases are imported from the interpreter's ``test`` package at run time and
subclassed, not copied: ``BaseSelectorTestCase`` on every backend, and
``ScalableSelectorMixIn`` (more descriptors than ``FD_SETSIZE``) on every backend that
declares the ``many_fds`` capability.  A backend that cannot run here is skipped with its
reason.  Where the interpreter ships no ``test`` package (python.org's embeddable Windows
build), ``tools/windows_conformance.py`` puts the same CPython release's package on the path.
"""

from __future__ import annotations

import importlib
import unittest
import unittest.mock
from typing import Any, ClassVar, Dict

import pytest
from pike_asyncio import PikeSelector

from pike_core import BackendStatus, available_backends

try:
    cpython: Any = importlib.import_module("test.test_selectors")
except ImportError as exc:  # pragma: no cover - depends on how the interpreter was packaged
    pytest.skip(
        f"this interpreter has no CPython test package (test.test_selectors: {exc})",
        allow_module_level=True,
    )


def _statuses() -> Dict[str, BackendStatus]:
    return {status.name: status for status in available_backends()}


class _PikeSelectorTests(cpython.BaseSelectorTestCase):  # type: ignore[misc]
    """CPython's selector tests, with ``self.SELECTOR()`` making a PikeSelector."""

    BACKEND: ClassVar[str]

    @classmethod
    def setUpClass(cls) -> None:
        status = _statuses().get(cls.BACKEND)
        if status is None:
            raise unittest.SkipTest(f"backend {cls.BACKEND!r} is not installed")
        if not status.usable:
            raise unittest.SkipTest(f"backend {cls.BACKEND!r} cannot run here: {status.problem}")

    def SELECTOR(self) -> PikeSelector:
        return PikeSelector(self.BACKEND)

    def test_modify_unregister(self) -> None:
        # CPython's version patches the stdlib selector class it knows by name and skips
        # for any other; this is its promise (bpo-30014) on the backend PikeSelector holds:
        # a modify the OS refuses unregisters the key.
        s = self.SELECTOR()
        self.addCleanup(s.close)
        rd, _ = self.make_socketpair()
        s.register(rd, cpython.selectors.EVENT_READ)
        assert len(s.get_map()) == 1
        refusing = unittest.mock.patch.object(s.backend, "modify", side_effect=ZeroDivisionError)
        with refusing, pytest.raises(ZeroDivisionError):
            s.modify(rd, cpython.selectors.EVENT_WRITE)
        assert len(s.get_map()) == 0


class TestEpoll(_PikeSelectorTests, cpython.ScalableSelectorMixIn, unittest.TestCase):  # type: ignore[misc]
    BACKEND = "epoll"


class TestPoll(_PikeSelectorTests, cpython.ScalableSelectorMixIn, unittest.TestCase):  # type: ignore[misc]
    BACKEND = "poll"


class TestKqueue(_PikeSelectorTests, cpython.ScalableSelectorMixIn, unittest.TestCase):  # type: ignore[misc]
    BACKEND = "kqueue"


class TestIocp(_PikeSelectorTests, cpython.ScalableSelectorMixIn, unittest.TestCase):  # type: ignore[misc]
    BACKEND = "iocp"

    if cpython.resource is None:

        def test_above_fd_setsize(self) -> None:
            """CPython's version raises the descriptor limit with the resource module,
            which Windows has not (nor needs): the same check with 1,000 socket pairs,
            four times the 512 sockets select can watch there."""
            s = self.SELECTOR()
            self.addCleanup(s.close)
            pairs = 1000
            for _ in range(pairs):
                rd, wr = self.make_socketpair()
                s.register(rd, cpython.selectors.EVENT_READ)
                s.register(wr, cpython.selectors.EVENT_WRITE)
            assert len(s.select()) == pairs


class TestSelect(_PikeSelectorTests, unittest.TestCase):
    """No scalability test: select() is bounded by ``FD_SETSIZE`` by design; what
    PikeSelector does at that bound is tested in ``test_selector.py``."""

    BACKEND = "select"


def test_the_scalable_classes_are_the_many_fds_backends() -> None:
    """Every installed backend declaring ``many_fds`` gets the scalability test, and
    only those: a new backend cannot be left out by this file."""
    scalable = {
        cls.BACKEND
        for cls in _PikeSelectorTests.__subclasses__()
        if issubclass(cls, cpython.ScalableSelectorMixIn)
    }
    covered = {cls.BACKEND for cls in _PikeSelectorTests.__subclasses__()}
    installed = _statuses()
    assert set(installed) <= covered, f"backends without a test class here: {set(installed) - covered}"
    declared = {name for name, status in installed.items() if "many_fds" in status.capabilities}
    assert declared == scalable & set(installed)
