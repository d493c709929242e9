"""Faults mid-stream and in user code: nothing stops the loop and no byte is lost
silently.  Each test ends by proving another transport on the same poller is still
served."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import sys
import threading
from typing import List, Optional, Tuple

import pytest

from pike_core import Poller, Transport

from .support import Listener, Recorder, connected_pair, run_until


def _assert_still_serving(poller: Poller) -> None:
    a, b = connected_pair()
    witness = Recorder(poller, a)
    b.send(b"alive")
    run_until(poller, lambda: bytes(witness.received) == b"alive", what="a new transport to be served")
    witness.close()
    b.close()


def _drain(sock: socket.socket, into: bytearray) -> bool:
    """Read what is there; True once the peer closed (end of stream or reset)."""
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return False
        except ConnectionResetError:
            return True
        if not data:
            return True
        into.extend(data)


def _reset(sock: socket.socket) -> None:
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_peer_reset_mid_stream_keeps_a_prefix_and_reports_once(pike_poller: Poller) -> None:
    a, b = connected_pair()
    reader = Recorder(pike_poller, a)
    reader.read_size = 4096
    sent = os.urandom(1 << 20)
    b.setblocking(True)
    b.sendall(sent[: 256 << 10])
    run_until(pike_poller, lambda: reader.received, what="the stream to start")
    _reset(b)
    run_until(pike_poller, lambda: reader.closed, what="the reset to reach handle_close")
    assert reader.count("close") == 1
    assert "error" not in reader.calls
    # A reset may discard what was in flight, but what arrived is exact and in order.
    assert sent.startswith(bytes(reader.received))
    _assert_still_serving(pike_poller)


class BufferedWriter(Recorder):
    """Writes through the bounded buffer and, on end of stream, flushes then closes."""

    write_limit = 64 << 20

    def handle_close(self) -> None:
        self.calls.append("close")
        self.close_when_done()


def test_peer_reset_while_our_writes_are_buffered(pike_poller: Poller) -> None:
    a, b = connected_pair()
    writer = BufferedWriter(pike_poller, a)
    writer.write(os.urandom(16 << 20))
    assert writer.write_buffer_size > 0
    _reset(b)
    run_until(pike_poller, lambda: writer.count("close") == 1, what="the reset to reach the writer")
    run_until(pike_poller, lambda: writer.closed, what="the writer to give up its buffer")
    assert writer.count("close") == 1
    assert "error" not in writer.calls
    _assert_still_serving(pike_poller)


def test_peer_half_close_gets_every_buffered_byte(pike_poller: Poller) -> None:
    a, b = connected_pair()
    writer = BufferedWriter(pike_poller, a)
    payload = os.urandom(12 << 20)
    writer.write(payload)
    assert writer.write_buffer_size > 0
    # The peer stops sending but goes on reading: our side reads end of stream while
    # most of the payload still waits in its buffer.
    b.shutdown(socket.SHUT_WR)
    got = bytearray()
    run_until(pike_poller, lambda: _drain(b, got), timeout=60, what="every byte, then end of stream")
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    assert writer.count("close") == 1
    assert writer.closed
    b.close()
    _assert_still_serving(pike_poller)


class Faulty(Recorder):
    """Raises from the callback named ``fault`` (once), recording what follows."""

    fault = ""

    def _maybe_raise(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fault:
            self.fault = ""
            raise ZeroDivisionError(f"bug in {name}")

    def handle_connect(self) -> None:
        self._maybe_raise("connect")

    def handle_read(self) -> None:
        self.received += self.recv(65536)
        self._maybe_raise("read")

    def handle_write(self) -> None:
        self._maybe_raise("write")

    def handle_drain(self) -> None:
        self._maybe_raise("drain")

    def handle_close(self) -> None:
        self._maybe_raise("close")
        self.close()


class FaultyListener(Listener):
    def handle_accepted(self, sock: socket.socket, addr: object) -> None:
        super().handle_accepted(sock, addr)
        raise ZeroDivisionError("bug in accepted")

    def handle_error(self) -> None:
        self.errors = [*getattr(self, "errors", []), sys.exc_info()[1]]


def _trigger(poller: Poller, fault: str) -> Tuple[Faulty, Optional[socket.socket], Optional[Transport]]:
    """A transport whose ``fault`` callback is about to run, its peer socket (if any) and
    the listener it connects to (if any)."""
    if fault == "connect":
        server = Listener(poller, Recorder)
        t = Faulty(poller)
        t.fault = fault
        t.create_socket()
        t.connect(server.addr)
        return t, None, server
    a, b = connected_pair()
    t = Faulty(poller, a)
    t.fault = fault
    if fault == "read":
        b.send(b"x")
    elif fault == "write":
        poller.defer_write(t)
    elif fault == "close":
        b.close()
    elif fault == "drain":
        t.write_high_water = 1024
        t.write_low_water = 0
        t.write_limit = 64 << 20
        t.write(os.urandom(8 << 20))
    return t, b, None


@pytest.mark.parametrize("fault", ["connect", "read", "write", "drain", "close"])
def test_exception_in_callback_goes_to_handle_error(pike_poller: Poller, fault: str) -> None:
    t, peer, server = _trigger(pike_poller, fault)
    got = bytearray()

    def reported() -> bool:
        if fault == "drain":
            assert peer is not None
            _drain(peer, got)
        return bool(t.errors)

    run_until(pike_poller, reported, what=f"handle_error after handle_{fault} raised")
    assert isinstance(t.errors[0], ZeroDivisionError)
    assert str(t.errors[0]) == f"bug in {fault}"
    assert t.calls.count(fault) == 1
    for thing in (peer, server):
        if thing is not None:
            thing.close()
    _assert_still_serving(pike_poller)


def test_exception_in_handle_accepted_keeps_listener(pike_poller: Poller) -> None:
    server = FaultyListener(pike_poller, Recorder)
    clients = [socket.create_connection(server.addr) for _ in range(3)]
    run_until(
        pike_poller, lambda: len(server.accepted) == 3, what="three accepts despite the raising callback"
    )
    assert len(server.errors) >= 1
    assert not server.closed
    for c in clients:
        c.close()
    _assert_still_serving(pike_poller)


def test_exception_in_handle_error_closes_only_that_transport(
    pike_poller: Poller, caplog: pytest.LogCaptureFixture
) -> None:
    class Doubly(Recorder):
        def handle_read(self) -> None:
            raise ZeroDivisionError("first bug")

        def handle_error(self) -> None:
            raise ValueError("second bug")

    a, b = connected_pair()
    t = Doubly(pike_poller, a)
    b.send(b"x")
    with caplog.at_level("ERROR", logger="pike_core"):
        run_until(pike_poller, lambda: t.closed, what="the doubly broken transport to be closed")
    assert "second bug" in caplog.text
    b.close()
    _assert_still_serving(pike_poller)


class CallbackErrors:
    """Replaces a poller's ``handle_callback_error`` to record what raised."""

    def __init__(self, poller: Poller) -> None:
        self.seen: List[Tuple[object, Optional[BaseException]]] = []
        poller.handle_callback_error = self  # type: ignore[method-assign]

    def __call__(self, callback: object) -> None:
        self.seen.append((callback, sys.exc_info()[1]))


def _boom(label: str) -> None:
    raise ZeroDivisionError(label)


def test_exceptions_in_timers_and_threadsafe_callbacks_do_not_stop_the_loop(pike_poller: Poller) -> None:
    errors = CallbackErrors(pike_poller)
    ran: List[str] = []
    pike_poller.call_later(0, _boom, "timer")
    pike_poller.call_later(0.01, ran.append, "timer after")
    pike_poller.call_soon(_boom, "soon")

    def other_thread() -> None:
        pike_poller.call_soon_threadsafe(_boom, "threadsafe")
        pike_poller.call_soon_threadsafe(ran.append, "threadsafe after")

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    run_until(pike_poller, lambda: len(ran) == 2 and len(errors.seen) == 3, what="every callback")
    assert sorted(str(exc) for _, exc in errors.seen) == ["soon", "threadsafe", "timer"]
    assert sorted(ran) == ["threadsafe after", "timer after"]
    _assert_still_serving(pike_poller)


def test_close_from_another_thread_through_call_soon_threadsafe(pike_poller: Poller) -> None:
    a1, b1 = connected_pair()
    a2, b2 = connected_pair()
    victim, bystander = Recorder(pike_poller, a1), Recorder(pike_poller, a2)
    victim_fd = victim.fileno()
    in_loop = threading.Event()
    pike_poller.call_soon(in_loop.set)

    def other_thread() -> None:
        in_loop.wait(10)
        pike_poller.call_soon_threadsafe(victim.close)
        pike_poller.call_soon_threadsafe(pike_poller.stop)

    thread = threading.Thread(target=other_thread)
    thread.start()
    # Blocked in the OS wait with nothing due: only the waker can end this.
    pike_poller.loop(timeout=30)
    thread.join()
    assert victim.closed
    assert not pike_poller.is_registered(victim)
    assert victim_fd not in pike_poller.connections
    got = bytearray()
    run_until(pike_poller, lambda: _drain(b1, got), what="the peer of the closed transport to see it")
    b1.close()
    b2.send(b"go on")
    run_until(pike_poller, lambda: bytes(bystander.received) == b"go on", what="the bystander")
    assert victim.calls == []
    bystander.close()
    b2.close()
