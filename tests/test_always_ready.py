"""The core's rule for a descriptor the backend refuses to watch because it is always ready
(epoll's ``EPERM`` for a regular file): it is reported ready for what it wants at every
wait, never blocks one, and costs no backend call after the first refusal.

A minimal channel stands for whatever registers such a descriptor (the asyncore layer's
``file_dispatcher``; a Transport holds sockets only).  The conformance suite reads a file
through asyncore on every backend; here the poller's bookkeeping is checked on epoll, the
backend that refuses.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Collection, Iterator, List, Optional, Tuple

import pytest

from pike_core import Poller, events
from pike_core.interest import Interest

#: The longest wait a test allows itself: a broken rule fails it, never hangs it.
LIMIT = 5.0

pike_epoll = pytest.importorskip("pike_epoll.backend", reason="the epoll backend runs on Linux only")


class FileChannel:
    """What a poller dispatches to, on a regular file's descriptor."""

    def __init__(self, fd: int, want: int) -> None:
        self._fileno = fd
        self._rec: Optional[Interest] = None
        self.want = want
        self.events: List[int] = []

    def _wanted(self) -> int:
        return self.want

    def _handle_events(self, mask: int) -> None:
        self.events.append(mask)

    def close(self) -> None:
        pass


class Counting(pike_epoll.EpollBackend):  # type: ignore[misc,name-defined]
    def __init__(self) -> None:
        super().__init__()
        self.registered: List[int] = []
        self.timeouts: List[Optional[float]] = []

    def register(self, fd: int, mask: int) -> None:
        self.registered.append(fd)
        super().register(fd, mask)

    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        self.timeouts.append(timeout)
        return super().wait(timeout)  # type: ignore[no-any-return]


@pytest.fixture
def poller() -> Iterator[Poller]:
    with Poller(Counting()) as p:
        yield p


@pytest.fixture
def file_fd(tmp_path: Path) -> Iterator[int]:
    path = tmp_path / "regular"
    path.write_bytes(b"data")
    fd = os.open(path, os.O_RDWR)
    yield fd
    os.close(fd)


def test_a_refused_regular_file_is_ready_at_every_wait_without_blocking(poller: Poller, file_fd: int) -> None:
    channel = FileChannel(file_fd, events.READ | events.PRIORITY)
    poller.register(channel)
    started = time.monotonic()
    for _ in range(3):
        poller.poll(LIMIT)
    assert time.monotonic() - started < 1.0
    # What poll(2) says of a regular file: readable (and writable), never urgent.
    assert channel.events == [events.READ] * 3
    assert poller.backend.timeouts == [0.0] * 3  # type: ignore[attr-defined]


def test_interest_changes_cost_no_backend_call_after_the_refusal(poller: Poller, file_fd: int) -> None:
    channel = FileChannel(file_fd, events.READ)
    poller.register(channel)
    registered = poller.backend.registered  # type: ignore[attr-defined]
    assert registered.count(file_fd) == 1
    rec = channel._rec
    assert rec is not None
    for want in (0, events.WRITE, events.READ | events.WRITE):
        rec.want = channel.want = want
        poller._changed(rec)
        channel.events.clear()
        poller.poll(LIMIT if want else 0)
        assert channel.events == ([want] if want else [])
    assert registered.count(file_fd) == 1


def test_nothing_wanted_or_paused_lets_the_wait_block(poller: Poller, file_fd: int) -> None:
    channel = FileChannel(file_fd, events.READ)
    poller.register(channel)
    poller.pause(channel)
    poller.poll(0.05)
    assert channel.events == []
    assert poller.backend.timeouts == [0.05]  # type: ignore[attr-defined]
    poller.resume(channel)
    poller.poll(LIMIT)
    assert channel.events == [events.READ]


def test_unregistered_it_is_no_longer_reported(poller: Poller, file_fd: int) -> None:
    channel = FileChannel(file_fd, events.READ)
    poller.register(channel)
    poller.unregister(channel)
    assert poller.poll(0) == 0
    assert channel.events == []
    assert poller.backend.timeouts == [0]  # type: ignore[attr-defined]
