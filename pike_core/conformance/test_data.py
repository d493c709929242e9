"""Moving bytes: would-block reads and writes, end of stream, half-close, families."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import struct
from typing import List

import pytest

from pike_core import Poller, Transport

from .support import Listener, Recorder, connected_pair, run_until


def test_recv_would_block_returns_empty_bytes(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = Recorder(pike_poller, a)
    try:
        assert t.recv(1024) == b""
        assert t.calls == []
        assert not t.closed
    finally:
        t.close()
        b.close()


def test_peer_close_reaches_handle_close(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = Recorder(pike_poller, a)
    b.sendall(b"last words")
    b.close()
    run_until(pike_poller, lambda: t.closed, what="EOF to reach handle_close")
    assert bytes(t.received) == b"last words"
    assert t.count("close") == 1
    assert "error" not in t.calls


@pytest.mark.parametrize("read_size", [1, 65536, 65537, 262144, 1 << 20, 1 << 40])
def test_every_read_size_gets_the_bytes_exactly_then_end_of_stream(
    pike_poller: Poller, read_size: int
) -> None:
    # Sizes above 64 KiB take another path inside recv() (a reused buffer, copied out).
    a, b = connected_pair()
    t = Recorder(pike_poller, a)
    t.read_size = read_size
    payload = os.urandom(300_000 if read_size > 1 else 3_000)
    unsent = memoryview(payload)

    def feed_until_closed() -> bool:
        nonlocal unsent
        if unsent:
            with contextlib.suppress(BlockingIOError):
                unsent = unsent[b.send(unsent) :]
            if not unsent:
                b.close()
        return t.closed

    run_until(pike_poller, feed_until_closed, what=f"{len(payload)} bytes and EOF through recv({read_size})")
    assert bytes(t.received) == payload
    assert t.count("close") == 1
    assert "error" not in t.calls


def test_peer_reset_reaches_handle_close(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = Recorder(pike_poller, a)
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    b.close()
    run_until(pike_poller, lambda: t.closed, what="a reset to reach handle_close")
    assert t.count("close") == 1
    assert "error" not in t.calls


def _fill(t: Transport) -> int:
    chunk = b"x" * 65536
    total = 0
    while True:
        sent = t.send(chunk)
        if sent == 0:
            return total
        total += sent


def test_send_would_block_returns_zero_then_one_handle_write(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = Recorder(pike_poller, a)
    try:
        total = _fill(t)
        assert total > 0
        assert t.calls == []
        drained = 0
        while drained < total:
            try:
                drained += len(b.recv(1 << 20))
            except BlockingIOError:
                pike_poller.poll(0.01)
        run_until(pike_poller, lambda: t.count("write") >= 1, what="handle_write after would-block")
        for _ in range(10):
            pike_poller.poll(0.01)
        assert t.calls == ["write"]
    finally:
        t.close()
        b.close()


def test_defer_write_gives_exactly_one_handle_write(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = Recorder(pike_poller, a)
    try:
        pike_poller.defer_write(t)
        pike_poller.defer_write(t)
        run_until(pike_poller, lambda: t.count("write") >= 1, what="the deferred write")
        for _ in range(10):
            pike_poller.poll(0.01)
        assert t.calls == ["write"]
        pike_poller.defer_write(t)
        run_until(pike_poller, lambda: t.count("write") >= 2, what="a second deferred write")
        assert t.calls == ["write", "write"]
    finally:
        t.close()
        b.close()


class HalfCloser(Recorder):
    """Echo server side: on end of stream, reply with a digest of all it got, then close."""

    def handle_close(self) -> None:
        self.calls.append("close")
        reply = hashlib.sha256(self.received).digest()
        self.socket.setblocking(True)  # type: ignore[union-attr]
        self.socket.sendall(reply)  # type: ignore[union-attr]
        self.close()


def test_half_close_still_receives_after_shutdown(pike_poller: Poller) -> None:
    server = Listener(pike_poller, HalfCloser)
    client = Recorder(pike_poller)
    client.create_socket()
    client.connect(server.addr)
    run_until(pike_poller, lambda: client.connected, what="connect")
    payload = os.urandom(5000)
    assert client.send(payload) == len(payload)
    client.shutdown(socket.SHUT_WR)
    run_until(pike_poller, lambda: client.closed, what="the reply and EOF after half-close")
    assert bytes(client.received) == hashlib.sha256(payload).digest()
    assert client.count("close") == 1


class Echo(Transport):
    """Echoes with its own buffer, using handle_write only when a send would block."""

    def __init__(self, poller: Poller, sock: socket.socket) -> None:
        self.pending = bytearray()
        super().__init__(alternate_poller=poller, sock=sock)

    def handle_read(self) -> None:
        data = self.recv(262144)
        if data:
            self.pending += data
            self.handle_write()

    def handle_write(self) -> None:
        while self.pending:
            sent = self.send(self.pending)
            if not sent:
                return
            del self.pending[:sent]


class Pump(Transport):
    """Sends ``payload`` and collects what comes back."""

    def __init__(self, poller: Poller, payload: bytes) -> None:
        super().__init__(alternate_poller=poller)
        self.payload = memoryview(payload)
        self.offset = 0
        self.received = bytearray()

    def handle_connect(self) -> None:
        self.handle_write()

    def handle_write(self) -> None:
        while self.offset < len(self.payload):
            sent = self.send(self.payload[self.offset : self.offset + 262144])
            if not sent:
                return
            self.offset += sent

    def handle_read(self) -> None:
        self.received += self.recv(262144)


def _echo_through(poller: Poller, family: int, address: object, size: int) -> None:
    server = Listener(poller, Echo, family, address)
    payload = os.urandom(size)
    client = Pump(poller, payload)
    client.create_socket(family)
    client.connect(server.addr)
    run_until(poller, lambda: len(client.received) >= size, timeout=60, what=f"{size} bytes echoed")
    assert hashlib.sha256(client.received).digest() == hashlib.sha256(payload).digest()
    assert bytes(client.received) == payload


def test_8_mib_both_directions_byte_exact(pike_poller: Poller) -> None:
    _echo_through(pike_poller, socket.AF_INET, ("127.0.0.1", 0), 8 << 20)


def test_ipv6(pike_poller: Poller) -> None:
    if not socket.has_ipv6:
        pytest.skip("this Python was built without IPv6")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback on this machine: {exc}")
    _echo_through(pike_poller, socket.AF_INET6, ("::1", 0), 256 << 10)


def test_af_unix(pike_poller: Poller, tmp_path: object) -> None:
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("AF_UNIX sockets do not exist on this platform")
    _echo_through(pike_poller, socket.AF_UNIX, f"{tmp_path}/echo.sock", 256 << 10)


def test_listen_and_accept_100_clients(pike_poller: Poller) -> None:
    server = Listener(pike_poller, Echo)
    clients: List[Pump] = []
    for i in range(100):
        client = Pump(pike_poller, f"client {i:03d}".encode())
        client.create_socket()
        client.connect(server.addr)
        clients.append(client)
    run_until(
        pike_poller,
        lambda: all(bytes(c.received) == bytes(c.payload) for c in clients),
        what="100 clients accepted and echoed",
    )
    assert len(server.accepted) == 100
