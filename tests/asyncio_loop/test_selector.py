"""What PikeSelector adds to the backend contract: the event translation, keys without
events, early returns of a wait, capacity errors, the choice of backend, closing."""

from __future__ import annotations

import selectors
import socket
import sys
import time
from typing import Collection, Iterator, List, Optional, Tuple

import pytest
from pike_asyncio import PikeSelector

from pike_core import Backend, BackendStatus, CapacityError, UnknownBackendError, available_backends, events


class ScriptedBackend(Backend):
    """A backend whose waits return what the test queued (then nothing), recording calls."""

    name = "scripted"

    def __init__(self) -> None:
        self.calls: List[Tuple[str, int, int]] = []
        self.batches: List[List[Tuple[int, int]]] = []
        self.waits = 0

    def register(self, fd: int, mask: int) -> None:
        self.calls.append(("register", fd, mask))

    def modify(self, fd: int, mask: int) -> None:
        self.calls.append(("modify", fd, mask))

    def unregister(self, fd: int) -> None:
        self.calls.append(("unregister", fd, 0))

    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        self.waits += 1
        if self.batches:
            return self.batches.pop(0)
        # Returns early with nothing, as a backend may.
        time.sleep(min(timeout or 0.0, 0.01))
        return []

    def close(self) -> None:
        self.calls.append(("close", -1, 0))


@pytest.fixture
def scripted() -> Iterator[Tuple[PikeSelector, ScriptedBackend]]:
    backend = ScriptedBackend()
    with PikeSelector(backend) as selector:
        yield selector, backend


@pytest.mark.parametrize(
    ("wanted", "reported", "expected"),
    [
        (selectors.EVENT_READ, events.READ, selectors.EVENT_READ),
        (selectors.EVENT_WRITE, events.WRITE, selectors.EVENT_WRITE),
        # Unasked conditions wake both sides, limited to what the key asked for.
        (
            selectors.EVENT_READ | selectors.EVENT_WRITE,
            events.HANGUP,
            selectors.EVENT_READ | selectors.EVENT_WRITE,
        ),
        (selectors.EVENT_WRITE, events.ERROR, selectors.EVENT_WRITE),
        (selectors.EVENT_READ, events.INVALID, selectors.EVENT_READ),
        (selectors.EVENT_READ, events.PRIORITY, selectors.EVENT_READ),
        # Bits the key did not ask for are not reported.
        (selectors.EVENT_READ, events.WRITE, 0),
        (selectors.EVENT_WRITE, events.READ, 0),
    ],
)
def test_backend_events_become_selector_events(
    scripted: Tuple[PikeSelector, ScriptedBackend], wanted: int, reported: int, expected: int
) -> None:
    selector, backend = scripted
    key = selector.register(7, wanted, "data")
    backend.batches.append([(7, reported)])
    assert selector.select(0) == ([(key, expected)] if expected else [])


def test_backend_masks_are_translated(scripted: Tuple[PikeSelector, ScriptedBackend]) -> None:
    selector, backend = scripted
    selector.register(3, selectors.EVENT_READ)
    selector.register(4, selectors.EVENT_WRITE)
    selector.modify(3, selectors.EVENT_READ | selectors.EVENT_WRITE)
    assert backend.calls == [
        ("register", 3, events.READ),
        ("register", 4, events.WRITE),
        ("modify", 3, events.READ | events.WRITE),
    ]


def test_a_key_without_events_stays_registered_and_leaves_the_backend(
    scripted: Tuple[PikeSelector, ScriptedBackend],
) -> None:
    selector, backend = scripted
    selector.register(5, selectors.EVENT_READ, "a")
    key = selector.modify(5, 0, "b")
    assert (key.events, key.data) == (0, "b")
    assert selector.get_key(5) == key
    assert backend.calls[-1] == ("unregister", 5, 0)
    # Nothing is reported for it, even if a late event of the backend names it.
    backend.batches.append([(5, events.READ)])
    assert selector.select(0) == []
    selector.modify(5, selectors.EVENT_WRITE)
    assert backend.calls[-1] == ("register", 5, events.WRITE)
    selector.modify(5, 0)
    calls = len(backend.calls)
    # Unregistering a key without events has nothing to tell the backend.
    selector.unregister(5)
    assert len(backend.calls) == calls


def test_register_refuses_no_events_and_unknown_bits(scripted: Tuple[PikeSelector, ScriptedBackend]) -> None:
    selector, backend = scripted
    for bad in (0, 4, -1):
        with pytest.raises(ValueError, match="invalid events"):
            selector.register(9, bad)
    with pytest.raises(ValueError, match="invalid events"):
        selector.modify(9, 8)
    assert backend.calls == []


def test_events_for_descriptors_without_a_key_are_dropped(
    scripted: Tuple[PikeSelector, ScriptedBackend],
) -> None:
    selector, backend = scripted
    key = selector.register(3, selectors.EVENT_READ)
    backend.batches.append([(99, events.READ), (3, events.READ)])
    assert selector.select(0) == [(key, selectors.EVENT_READ)]


def test_select_waits_out_its_timeout_when_the_backend_returns_early(
    scripted: Tuple[PikeSelector, ScriptedBackend],
) -> None:
    selector, backend = scripted
    selector.register(3, selectors.EVENT_READ)
    start = time.monotonic()
    assert selector.select(0.2) == []
    assert time.monotonic() - start >= 0.19
    assert backend.waits > 1
    # An event after some empty returns ends the wait.
    key = selector.get_key(3)
    backend.batches += [[], [], [(3, events.READ)]]
    assert selector.select(5) == [(key, selectors.EVENT_READ)]


def test_select_with_zero_or_negative_timeout_waits_once(
    scripted: Tuple[PikeSelector, ScriptedBackend],
) -> None:
    selector, backend = scripted
    for timeout in (0, -1):
        before = backend.waits
        assert selector.select(timeout) == []
        assert backend.waits == before + 1


def test_closed_selector_refuses_use_and_closes_its_backend_once(
    scripted: Tuple[PikeSelector, ScriptedBackend],
) -> None:
    selector, backend = scripted
    selector.register(3, selectors.EVENT_READ)
    selector.close()
    selector.close()
    assert [call for call in backend.calls if call[0] == "close"] == [("close", -1, 0)]
    for use in (
        lambda: selector.register(4, selectors.EVENT_READ),
        lambda: selector.modify(3, selectors.EVENT_WRITE),
        lambda: selector.unregister(3),
        lambda: selector.select(0),
        lambda: selector.get_key(3),
    ):
        with pytest.raises(RuntimeError, match="closed"):
            use()
    assert "closed" in repr(selector)


def _usable() -> List[BackendStatus]:
    return [status for status in available_backends() if status.usable]


def test_a_modify_the_os_refuses_drops_the_key() -> None:
    # epoll refuses to modify a descriptor closed behind the selector's back (select and
    # poll keep no kernel state per descriptor, so theirs cannot fail).
    if "epoll" not in {status.name for status in _usable()}:
        pytest.skip("needs the epoll backend, whose modify fails for a closed descriptor")
    a, b = socket.socketpair()
    b.close()
    with PikeSelector("epoll") as selector:
        selector.register(a, selectors.EVENT_READ)
        a.close()
        with pytest.raises(OSError, match="Bad file descriptor"):
            selector.modify(a, selectors.EVENT_WRITE)
        assert len(selector.get_map()) == 0


def test_select_backend_refuses_what_it_cannot_watch_at_register() -> None:
    """Beyond FD_SETSIZE (descriptor 1,024 on POSIX, the 513th socket on Windows) the
    select backend refuses at register, naming the backend to use; the rest go on."""
    if "select" not in {status.name for status in _usable()}:
        pytest.skip("the select backend is not usable here")
    left, right = socket.socketpair()
    sockets = [left, right]
    advice = "PIKE_POLLER=" + ("iocp" if sys.platform == "win32" else "epoll or poll")

    def register_until_refused(selector: PikeSelector) -> None:
        while True:
            sockets.append(socket.socket())
            if sys.platform == "win32" or sockets[-1].fileno() >= 1024:
                selector.register(sockets[-1], selectors.EVENT_READ)

    with PikeSelector("select") as selector:
        try:
            key = selector.register(left, selectors.EVENT_READ)
            with pytest.raises(CapacityError, match=r"FD_SETSIZE|at most 512 sockets") as caught:
                register_until_refused(selector)
            assert isinstance(caught.value, ValueError)
            assert advice in str(caught.value)
            assert caught.value.transport is sockets[-1]
            assert sockets[-1] not in selector.get_map()
            if sys.platform == "win32":
                assert len(selector.get_map()) == 512
            right.send(b"x")
            assert (key, selectors.EVENT_READ) in selector.select(5)
        finally:
            for each in sockets:
                each.close()


def test_backend_by_name_environment_or_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    usable = _usable()
    lowest = min(usable, key=lambda status: status.priority or 0)
    with PikeSelector(lowest.name) as selector:
        assert selector.backend.name == lowest.name
    monkeypatch.setenv("PIKE_POLLER", lowest.name)
    with PikeSelector() as selector:
        assert selector.backend.name == lowest.name
    monkeypatch.delenv("PIKE_POLLER")
    best = max(usable, key=lambda status: (status.priority or 0, status.name))
    with PikeSelector() as selector:
        assert selector.backend.name == best.name
        assert repr(selector) == f"<PikeSelector on {best.name!r}, 0 registered>"


def test_bad_backend_arguments_say_what_is_wrong() -> None:
    with pytest.raises(UnknownBackendError, match="no poller backend named 'nosuch'"):
        PikeSelector("nosuch")
    with pytest.raises(TypeError, match=r"needs a pike_core\.Backend, a backend name or None"):
        PikeSelector(42)  # type: ignore[arg-type]
