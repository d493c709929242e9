"""What only the IOCP backend can get wrong: the AFD events a poll in flight asks for,
connects that must not go through ConnectEx, completions that come back after their
socket was closed, and operations still in flight when the poller closes.

Windows only; ``tools/windows_conformance.py`` runs it under Wine on Linux machines.
"""

from __future__ import annotations

import importlib
import os
import select
import socket
import sys
from typing import Any, List

import pytest

from pike_core import Poller, State, events
from pike_core.conformance.support import DEADLINE, Recorder, connected_pair, run_until

if sys.platform != "win32":
    pytest.skip(
        "the IOCP backend runs on Windows only (tools/windows_conformance.py runs it under Wine)",
        allow_module_level=True,
    )

# By name: the backend module raises CannotRunHere where it cannot run.
iocp = importlib.import_module("pike_iocp.backend")

#: Composed here from the single AFD bits, not taken from the module's own sets, so a change
#: to those shows.
ALWAYS = iocp._AFD_POLL_ABORT | iocp._AFD_POLL_CONNECT_FAIL | iocp._AFD_POLL_LOCAL_CLOSE
RECEIVING = iocp._AFD_POLL_RECEIVE | iocp._AFD_POLL_ACCEPT | iocp._AFD_POLL_DISCONNECT
SENDING = iocp._AFD_POLL_SEND
URGENT = iocp._AFD_POLL_RECEIVE_EXPEDITED


def asked(backend: Any, fd: int) -> int:
    """The AFD events the poll in flight for ``fd`` asks for; 0 when none is in flight."""
    watched = backend._watched.get(fd)
    poll = None if watched is None else watched.poll
    return 0 if poll is None else int(poll.afd_events)


def fill_send_buffer(sock: socket.socket) -> None:
    """Send until ``sock`` would block: the peer reads nothing, so it stays unwritable."""
    chunk = b"x" * 65536
    try:
        while True:
            sock.send(chunk)
    except BlockingIOError:
        pass


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        (events.READ, RECEIVING | ALWAYS),
        (events.WRITE, SENDING | ALWAYS),
        (events.READ | events.WRITE, RECEIVING | SENDING | ALWAYS),
        (events.READ | events.PRIORITY, RECEIVING | URGENT | ALWAYS),
        (events.PRIORITY, URGENT | ALWAYS),
    ],
    ids=["READ", "WRITE", "READ|WRITE", "READ|PRIORITY", "PRIORITY"],
)
def test_the_poll_in_flight_asks_for_what_the_mask_calls_for(mask: int, expected: int) -> None:
    backend = iocp.IocpBackend()
    a, b = connected_pair()
    try:
        # Neither readable nor writable, so the poll stays in flight to be looked at.
        fill_send_buffer(a)
        backend.register(a.fileno(), mask)
        assert list(backend.wait(0)) == []
        assert asked(backend, a.fileno()) == expected
    finally:
        backend.unregister(a.fileno())
        backend.close()
        a.close()
        b.close()


class KeepOpen(Recorder):
    def handle_close(self) -> None:
        self.calls.append("close")


@pytest.mark.parametrize("how", ["reading paused", "end of stream"])
def test_a_transport_not_reading_has_no_receive_poll_in_flight(how: str) -> None:
    """Unread data, or the peer's end of stream, must not complete the poll of a transport
    that only waits for its writes to drain: the completion would be dropped and the poll
    issued again, a spin the core never sees."""
    backend = iocp.IocpBackend()
    with Poller(backend) as poller:
        a, b = connected_pair()
        t = KeepOpen(poller, a)
        t.write_limit = 64 << 20
        if how == "reading paused":
            t.pause_reading()
            b.sendall(b"unread")
        else:
            b.shutdown(socket.SHUT_WR)
            run_until(poller, lambda: t.count("close"), what="the end of stream")
            assert t.state is State.END_OF_STREAM
        t.write(os.urandom(16 << 20))
        for _ in range(3):
            poller.poll(0.01)
        assert t.write_buffer_size > 0, "the peer reads nothing, so some bytes must wait"
        assert asked(backend, t.fileno()) == SENDING | ALWAYS
        t.close()
        b.close()


def test_a_datagram_connect_does_not_go_through_connectex() -> None:
    """Windows supports ConnectEx on connection-oriented sockets only; Wine accepts it on
    UDP as well, so only the route taken can show it here (the conformance suite checks
    what a user sees of a connected datagram transport)."""
    backend = iocp.IocpBackend()
    with Poller(backend) as poller:
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        t = Recorder(poller)
        t.create_socket(socket.AF_INET, socket.SOCK_DGRAM)
        t.connect(peer.getsockname())
        assert backend._watched[t.fileno()].connecting is None
        run_until(poller, lambda: t.calls, what="handle_connect of the datagram socket")
        assert t.calls == ["connect"]
        t.close()
        peer.close()


def test_late_completion_never_reaches_the_next_owner_of_the_handle() -> None:
    with Poller(iocp.IocpBackend()) as poller:
        a, b = connected_pair()
        old = Recorder(poller, a)
        poller.poll(0)  # the AFD poll of `old` is now in flight
        b.send(b"for the old owner only")
        # Readable means the in-flight poll has completed: its packet waits in the port.
        assert select.select([a], [], [], DEADLINE)[0]
        number = old.fileno()
        old.close()
        spares: List[socket.socket] = []
        fresh = socket.socket()
        while fresh.fileno() != number and len(spares) < 256:
            spares.append(fresh)
            fresh = socket.socket()
        for spare in spares:
            spare.close()
        if fresh.fileno() != number:
            fresh.close()
            pytest.skip(f"Windows did not hand out socket handle {number} again within 256 sockets")
        newcomer = Recorder(poller, fresh)
        for _ in range(5):
            poller.poll(0.01)
        assert newcomer.calls == []
        assert old.calls == []
        # Only the newcomer's own poll is still in flight: nothing of the old one is kept.
        backend = poller.backend
        assert len(backend._ops) <= len(backend._watched)
        newcomer.close()
        b.close()


def test_closing_the_poller_takes_back_every_operation() -> None:
    poller = Poller(iocp.IocpBackend())
    pairs = [connected_pair() for _ in range(20)]
    for a, _ in pairs:
        Recorder(poller, a)
    poller.poll(0)
    backend = poller.backend
    assert len(backend._ops) >= 20
    poller.close()
    assert backend._ops == {}
    assert iocp._abandoned == []
    for _, b in pairs:
        b.close()


def test_cross_thread_wakeups_are_coalesced_into_one_packet() -> None:
    backend = iocp.IocpBackend()
    with Poller(backend) as poller:
        # has_wake: the core makes no socket-pair waker of its own.
        assert poller._waker is None
        called: List[int] = []
        for i in range(100):
            poller.call_soon_threadsafe(called.append, i)
        taken = backend._dequeue(0)
        assert len(taken) == 1, f"{len(taken)} packets in the port for 100 wake-ups"
        (address, error), ready = taken[0], {}
        assert backend._complete(address, error, ready), "not the wake-up packet"
        assert ready == {}
        run_until(poller, lambda: len(called) == 100, what="100 queued callbacks")
        assert called == list(range(100))
        assert not backend._wake_posted
