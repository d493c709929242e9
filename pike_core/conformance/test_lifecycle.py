"""States around a connection's life: before connect, after the peer is gone."""

from __future__ import annotations

import select
import socket
import struct
import time
from typing import Any, List

from pike_core import Poller, Transport

from .support import Listener, Recorder, connected_pair, run_until


def test_socket_not_yet_connected_is_left_alone_and_does_not_spin(pike_poller: Poller) -> None:
    server = Listener(pike_poller, Recorder)
    client = Recorder(pike_poller)
    client.create_socket()
    cpu_start, wall_start = time.process_time(), time.monotonic()
    for _ in range(5):
        pike_poller.poll(0.05)
    cpu, wall = time.process_time() - cpu_start, time.monotonic() - wall_start
    # Linux reports a fresh TCP socket as hung up: it must not be taken for a closed peer,
    # nor make every wait return at once.
    assert client.calls == []
    assert not client.closed
    assert wall >= 0.2
    assert cpu < wall / 2
    client.connect(server.addr)
    run_until(pike_poller, lambda: client.connected and server.accepted, what="the late connect")
    assert client.calls == ["connect"]


def _reset(peer: socket.socket) -> None:
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()


class KeepOpen(Recorder):
    """Records handle_close without closing, like a protocol that still has work to do."""

    def handle_close(self) -> None:
        self.calls.append("close")


def test_write_after_reset_returns_false_and_buffers_nothing(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = KeepOpen(pike_poller, a)
    _reset(b)
    run_until(pike_poller, lambda: t.count("close") == 1, what="the reset")
    for _ in range(3):
        assert t.write(b"x" * 100_000) is False
    assert t.write_buffer_size == 0
    assert t.count("close") == 1
    t.close()


def test_shutdown_after_reset_reports_close_not_an_error(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = KeepOpen(pike_poller, a)
    _reset(b)
    run_until(pike_poller, lambda: t.count("close") == 1, what="the reset")
    t.shutdown(socket.SHUT_WR)
    assert t.count("close") == 1
    assert "error" not in t.calls
    t.close()


def test_default_handle_read_still_sees_end_of_stream(pike_poller: Poller) -> None:
    closed = []

    class NoReader(Transport):
        def handle_close(self) -> None:
            closed.append(True)
            self.close()

    a, b = connected_pair()
    t = NoReader(alternate_poller=pike_poller, sock=a)
    b.sendall(b"unexpected")
    b.close()
    run_until(pike_poller, lambda: t.closed, what="EOF through the default handle_read")
    assert closed == [True]


class Holder(Listener):
    """Keeps accepted sockets unadopted, so a test can act on them before wrapping."""

    def __init__(self, poller: Poller) -> None:
        self.held: List[socket.socket] = []
        super().__init__(poller, Recorder)

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        self.held.append(sock)


def test_accepted_transport_is_connected_and_knows_its_peer(pike_poller: Poller) -> None:
    server = Listener(pike_poller, Recorder)
    with socket.create_connection(server.addr) as client:
        run_until(pike_poller, lambda: server.accepted, what="the accept")
        t = server.accepted[0]
        assert t.connected
        assert t.addr == client.getsockname()
        t.close()
        assert t.addr == client.getsockname()


def test_connection_reset_before_it_is_adopted_reaches_handle_close(pike_poller: Poller) -> None:
    server = Holder(pike_poller)
    client = socket.create_connection(server.addr)
    run_until(pike_poller, lambda: server.held, what="the accept")
    _reset(client)
    # The reset has arrived once the unadopted socket reads as ready.
    assert select.select([server.held[0]], [], [], 5)[0], "the reset never arrived"
    t = Recorder(pike_poller, server.held[0])
    # Not taken for a socket that is not connected yet (which would be left unwatched,
    # holding its descriptor for ever): the reset is the peer going away.
    run_until(pike_poller, lambda: "close" in t.calls, what="the reset of the adopted socket")
    assert t.count("close") == 1
    assert t.errors == []
    assert t.closed
