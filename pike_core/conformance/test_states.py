"""A transport's states decide what an event means: connecting, connected, end of stream,
listening, datagram.  Each test is a program a user would write, over real sockets."""

from __future__ import annotations

import os
import re
import select
import socket
import struct
import sys
import time
from typing import Callable, Iterator, List, Optional, Tuple

import pytest

from pike_core import Poller, RegistrationError, State, Transport

from .support import (
    DEADLINE,
    Listener,
    Recorder,
    assert_quiet_while_writes_wait,
    connected_pair,
    read_to_end,
    read_until,
    run_until,
    waits_while_idle,
)

needs_af_unix = pytest.mark.skipif(
    not hasattr(socket, "AF_UNIX"), reason="AF_UNIX sockets do not exist on this platform"
)


def _reset(sock: socket.socket) -> None:
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _read_all(sock: socket.socket, until: float = 10.0) -> bytes:
    """Everything ``sock`` receives until the peer's end of stream (blocking)."""
    sock.setblocking(True)
    sock.settimeout(until)
    chunks: List[bytes] = []
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


# --- connecting ----------------------------------------------------------------------


class HeldListener:
    """A TCP listener whose accept queue is full (``listen(0)`` and one connection that
    is not accepted): the kernel drops the SYN of a new connect, which stays in progress
    until :meth:`release` makes room and the SYN's retransmission (about a second
    later) gets through.  That is how a test holds a connect in progress on loopback,
    where a connect otherwise completes before the next line runs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.address: Tuple[str, int] = self.sock.getsockname()
        self.filler = socket.create_connection(self.address)
        probe = socket.socket()
        probe.setblocking(False)
        probe.connect_ex(self.address)
        # Windows reports a refused connect in the exceptional set, not the writable one.
        _, connected, refused = select.select([], [probe], [probe], 0.2)
        probe.close()
        if connected or refused:
            self.close()
            pytest.skip("this OS answers a connect to a full accept queue instead of holding it")

    def release(self) -> None:
        """Accept (and close) the filler: the held connect gets through at its next try."""
        self.sock.settimeout(10)
        conn, _ = self.sock.accept()
        conn.close()
        self.filler.close()

    def accept(self) -> socket.socket:
        """The next connection, blocking (a test's peer)."""
        self.sock.settimeout(30)
        conn, _ = self.sock.accept()
        conn.setblocking(True)
        return conn

    def close(self) -> None:
        self.filler.close()
        self.sock.close()


@pytest.fixture
def held() -> Iterator[HeldListener]:
    listener = HeldListener()
    yield listener
    listener.close()


@pytest.fixture
def server() -> Iterator[socket.socket]:
    """A plain loopback listener, whose ``accept()`` gives up after DEADLINE seconds."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(DEADLINE)
        yield listener


def _accept(server: socket.socket) -> socket.socket:
    """The next connection to ``server``, non-blocking (for ``read_to_end``)."""
    peer, _ = server.accept()
    peer.setblocking(False)
    return peer


def test_io_before_connect_says_so_and_takes_nothing(pike_poller: Poller, server: socket.socket) -> None:
    client = Recorder(pike_poller)
    client.create_socket()
    assert client.state is State.IDLE
    attempts: List[Tuple[str, Callable[[], object]]] = [
        ("write()", lambda: client.write(b"lost?")),
        ("send()", lambda: client.send(b"lost?")),
        ("recv()", lambda: client.recv(10)),
    ]
    for what, attempt in attempts:
        with pytest.raises(OSError, match=rf"{re.escape(what)} on .*: it is not connected; connect\(\)"):
            attempt()
    assert client.write_buffer_size == 0
    client.connect(server.getsockname())
    client.write(b"after connect")
    client.close_when_done()
    with _accept(server) as peer:
        assert read_to_end(pike_poller, peer, "the bytes written once connected") == b"after connect"
    assert client.calls == ["connect"]


@pytest.mark.parametrize("call", ["write", "write_bytearray", "send"])
def test_bytes_given_while_connecting_wait_for_handle_connect_where_the_os_connected_at_once(
    pike_poller: Poller, server: socket.socket, call: str
) -> None:
    """On loopback the kernel connects before ``connect()`` returns; the transport still
    sends nothing before ``handle_connect``, and ``close_when_done`` waits for it."""
    peer_had: List[bytes] = []

    class Client(Recorder):
        def handle_connect(self) -> None:
            super().handle_connect()
            try:
                peer_had.append(peer.recv(100))
            except BlockingIOError:
                peer_had.append(b"")

        def handle_write(self) -> None:
            super().handle_write()
            assert self.send(b"request") == len(b"request")
            self.close()

    client = Client(pike_poller)
    client.create_socket()
    client.connect(server.getsockname())
    peer = _accept(server)
    if call == "send":
        assert client.send(b"request") == 0
    else:
        # bytes take write()'s short path, other bytes-like objects its general one.
        assert client.write(b"request" if call == "write" else bytearray(b"request")) is True
        client.close_when_done()
    assert read_to_end(pike_poller, peer, "the request, then the end of stream") == b"request"
    assert peer_had == [b""], "bytes reached the peer before handle_connect"
    assert client.calls == (["connect", "write"] if call == "send" else ["connect"])
    peer.close()


def test_a_send_after_shutdown_while_connecting_is_refused(
    pike_poller: Poller, server: socket.socket
) -> None:
    client = Recorder(pike_poller)
    client.create_socket()
    client.connect(server.getsockname())
    assert client.write(b"sent, then the FIN") is True
    client.shutdown()
    for call in (client.send, client.write):
        with pytest.raises(BrokenPipeError, match="after shutdown"):
            call(b"too late")
    with _accept(server) as peer:
        assert read_to_end(pike_poller, peer, "the bytes, then the FIN") == b"sent, then the FIN"
    assert client.calls == ["connect"]
    client.close()


def test_write_while_connecting_goes_out_once_connected(pike_poller: Poller, held: HeldListener) -> None:
    client = Recorder(pike_poller)
    client.create_socket()
    client.connect(held.address)
    assert client.state is State.CONNECTING
    payload = os.urandom(300_000)
    client.write(payload)
    client.close_when_done()
    for _ in range(3):
        pike_poller.poll(0.01)
    assert client.calls == []
    assert client.write_buffer_size == len(payload)
    held.release()
    run_until(pike_poller, lambda: client.calls, timeout=15, what="the connect")
    peer = held.accept()
    run_until(pike_poller, lambda: client.closed, what="close_when_done after the flush")
    assert _read_all(peer) == payload
    assert client.calls == ["connect"]
    peer.close()


@pytest.mark.parametrize("how", ["send", "defer_write"])
def test_write_asked_for_while_connecting_comes_once_after_the_connect(
    pike_poller: Poller, held: HeldListener, how: str
) -> None:
    client = Recorder(pike_poller)
    client.create_socket()
    client.connect(held.address)
    if how == "send":
        assert client.send(b"not yet") == 0
    else:
        pike_poller.defer_write(client)
        pike_poller.defer_write(client)
    for _ in range(3):
        pike_poller.poll(0.01)
    assert client.calls == []
    held.release()
    run_until(pike_poller, lambda: client.count("write"), timeout=15, what="the promised handle_write")
    for _ in range(5):
        pike_poller.poll(0.01)
    assert client.calls == ["connect", "write"]
    assert client.send(b"now") == 3
    peer = held.accept()
    assert peer.recv(3) == b"now"
    peer.close()
    client.close()


class Reconnector(Recorder):
    """On its first handle_close, closes and connects again to ``again`` on the same
    transport (a new socket, most likely with the same descriptor number)."""

    again: Optional[Tuple[str, int]] = None

    def handle_close(self) -> None:
        self.calls.append("close")
        self.close()
        if self.again is not None:
            address, self.again = self.again, None
            self.create_socket()
            self.connect(address)


def test_reconnect_inside_handle_close_after_a_reset_with_writes_pending(pike_poller: Poller) -> None:
    first = Listener(pike_poller, Recorder)
    second = Listener(pike_poller, Recorder)
    client = Reconnector(pike_poller)
    client.create_socket()
    client.connect(first.addr)
    run_until(pike_poller, lambda: first.accepted and client.connected, what="the first connect")
    # Writes pending: the peer does not read, so they wait in our buffer.
    client.write_limit = 64 << 20
    client.write(os.urandom(8 << 20))
    assert client.write_buffer_size > 0
    client.again = second.addr
    peer = first.accepted[0]
    assert peer.socket is not None
    peer.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # a reset
    run_until(pike_poller, lambda: client.count("connect") == 2, what="the second connect's verdict")
    # The reset reaches handle_close through handle_read's recv.
    assert [c for c in client.calls if c != "read"] == ["connect", "close", "connect"], client.calls
    assert client.errors == []
    run_until(pike_poller, lambda: second.accepted, what="the second accept")
    assert client.send(b"fresh") == 5
    fresh = second.accepted[0]
    assert isinstance(fresh, Recorder)
    run_until(pike_poller, lambda: bytes(fresh.received) == b"fresh", what="data on the new connection")
    # The new socket's life starts afresh: its end of stream is reported as well.
    fresh.close()
    run_until(pike_poller, lambda: client.count("close") == 2, what="the second connection's end of stream")
    assert client.closed


# --- connected, then the peer's end of stream ------------------------------------------


class KeepOpen(Recorder):
    """Records handle_close without closing: it still has a reply to send."""

    def handle_close(self) -> None:
        self.calls.append("close")


def test_after_end_of_stream_a_transport_kept_open_costs_nothing_and_can_still_write(
    pike_poller: Poller,
) -> None:
    a, b = connected_pair()
    t = KeepOpen(pike_poller, a)
    b.sendall(b"question")
    b.shutdown(socket.SHUT_WR)
    run_until(pike_poller, lambda: t.count("close"), what="the end of stream")
    assert t.state is State.END_OF_STREAM
    reads = t.count("read")
    waits = waits_while_idle(pike_poller)
    assert waits <= 2, f"{waits} waits in 0.5 s after end of stream: the loop spins"
    assert t.count("read") == reads, "handle_read called again after end of stream"
    assert t.write(b"answer") is True
    b.setblocking(True)
    assert b.recv(64) == b"answer"
    # A long reply the peer does not read yet: watched for writing only, the end of
    # stream (which still holds) must not wake the loop either.
    t.write_limit = 64 << 20
    reply = os.urandom(4 << 20)
    t.write(reply)
    assert_quiet_while_writes_wait(pike_poller, t, "after end of stream")
    b.setblocking(False)
    assert read_until(pike_poller, b, len(reply), "the long reply after end of stream") == reply
    assert t.count("read") == reads
    assert bytes(t.received) == b"question"
    assert t.count("close") == 1
    t.close()
    b.close()


def test_shutdown_with_writes_buffered_sends_them_first_and_the_peer_can_reply(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = KeepOpen(pike_poller, a)
    t.write_limit = 64 << 20
    payload = os.urandom(4 << 20)
    t.write(payload)
    assert t.write_buffer_size > 0, "the peer reads nothing yet, so some bytes must wait"
    t.shutdown(socket.SHUT_WR)
    with pytest.raises(BrokenPipeError, match="after shutdown"):
        t.write(b"too late")
    b.setblocking(False)
    assert read_to_end(pike_poller, b, "every buffered byte, then the FIN") == payload
    b.sendall(b"reply")
    run_until(pike_poller, lambda: bytes(t.received) == b"reply", what="the reply after our shutdown")
    assert t.calls.count("close") == 0, "handle_close for a peer that is alive"
    assert t.errors == []
    b.close()
    run_until(pike_poller, lambda: t.count("close") == 1, what="the peer's end of stream")
    t.close()


# --- adopting a socket -------------------------------------------------------------


def test_adopting_a_listening_socket_accepts(pike_poller: Poller) -> None:
    raw = socket.socket()
    raw.bind(("127.0.0.1", 0))
    raw.listen(8)
    accepted: List[socket.socket] = []

    class Adopted(Transport):
        def handle_accepted(self, sock: socket.socket, addr: object) -> None:
            accepted.append(sock)

    t = Adopted(alternate_poller=pike_poller, sock=raw)
    assert t.state is State.LISTENING
    assert t.accepting
    with socket.create_connection(raw.getsockname()):
        run_until(pike_poller, lambda: accepted, what="the adopted listener to accept")
    accepted[0].close()
    t.close()


@pytest.mark.parametrize("connected", [False, True], ids=["bound", "connected"])
def test_adopting_a_datagram_socket_reads_datagrams(pike_poller: Poller, connected: bool) -> None:
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind(("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    if connected:
        raw.connect(sender.getsockname())
    t = Recorder(pike_poller, raw)
    assert t.state is State.DATAGRAM
    sender.sendto(b"datagram", raw.getsockname())
    run_until(pike_poller, lambda: bytes(t.received) == b"datagram", what="the datagram")
    t.close()
    sender.close()


# --- datagrams ----------------------------------------------------------------------


class Datagrams(Transport):
    """Records every datagram with its sender, through recvfrom()."""

    def __init__(self, poller: Poller) -> None:
        super().__init__(alternate_poller=poller)
        self.got: List[Tuple[bytes, object]] = []
        self.closes = 0
        self.create_socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.bind(("127.0.0.1", 0))

    def handle_read(self) -> None:
        data, address = self.recvfrom(65536)
        if address is not None:
            self.got.append((data, address))

    def handle_close(self) -> None:
        self.closes += 1
        self.close()


def test_an_empty_datagram_is_data_and_the_transport_stays_open(pike_poller: Poller) -> None:
    t = Datagrams(pike_poller)
    assert t.recvfrom(100) == (b"", None), "nothing there yet: (b'', None)"
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    sender.sendto(b"", t.addr)
    run_until(pike_poller, lambda: t.got, what="the empty datagram")
    assert t.got == [(b"", sender.getsockname())]
    assert not t.closed
    assert t.closes == 0
    sender.sendto(b"later", t.addr)
    run_until(pike_poller, lambda: len(t.got) == 2, what="a later datagram")
    assert t.got[1] == (b"later", sender.getsockname())
    assert t.sendto(b"back", sender.getsockname()) == 4
    assert sender.recv(16) == b"back"
    assert t.closes == 0
    t.close()
    sender.close()


def test_a_connected_datagram_transport_exchanges_datagrams(pike_poller: Poller) -> None:
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(10)
    t = Recorder(pike_poller)
    t.create_socket(socket.AF_INET, socket.SOCK_DGRAM)
    t.connect(peer.getsockname())
    run_until(pike_poller, lambda: t.calls, what="handle_connect of a datagram socket")
    assert t.calls == ["connect"]
    assert t.state is State.DATAGRAM
    pike_poller.defer_write(t)
    run_until(pike_poller, lambda: t.count("write"), what="the handle_write asked for")
    for _ in range(3):
        pike_poller.poll(0.01)
    assert t.calls == ["connect", "write"]
    sock = t.socket
    assert sock is not None
    assert t.send(b"ping") == 4
    data, address = peer.recvfrom(16)
    assert (data, address) == (b"ping", sock.getsockname())
    peer.sendto(b"pong", address)
    run_until(pike_poller, lambda: bytes(t.received) == b"pong", what="the reply datagram")
    assert t.calls == ["connect", "write", "read"]
    t.close()
    peer.close()


def test_datagrams_sent_right_after_connect_go_out_at_once(pike_poller: Poller) -> None:
    """A datagram socket's connect only names the peer: unlike a stream's bytes, its
    datagrams do not wait for ``handle_connect`` (datagram code does not retry a send
    of 0)."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(DEADLINE)
    t = Recorder(pike_poller)
    t.create_socket(socket.AF_INET, socket.SOCK_DGRAM)
    t.connect(peer.getsockname())
    assert t.state is State.CONNECTING
    assert t.send(b"one") == 3
    assert t.sendto(b"two", peer.getsockname()) == 3
    assert t.write(bytearray(b"three")) is True
    assert [peer.recv(16) for _ in range(3)] == [b"one", b"two", b"three"]
    run_until(pike_poller, lambda: t.calls, what="handle_connect of a datagram socket")
    assert t.calls == ["connect"]
    t.close()
    peer.close()


@pytest.mark.skipif(
    sys.platform == "win32", reason="Windows keeps no refusal pending on a datagram socket to report"
)
def test_a_datagram_refused_right_after_connect_is_raised_not_an_end_of_stream(pike_poller: Poller) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
        gone.bind(("127.0.0.1", 0))
        address = gone.getsockname()
    t = Recorder(pike_poller)
    t.create_socket(socket.AF_INET, socket.SOCK_DGRAM)
    t.connect(address)
    assert t.send(b"to nobody") == len(b"to nobody")
    assert t.socket is not None
    # The refusal (an ICMP message) makes the socket readable once it is pending.
    select.select([t.socket], [], [], DEADLINE)
    with pytest.raises(ConnectionRefusedError):
        t.send(b"again")
    assert t.calls == []
    assert t.state is State.CONNECTING
    t.close()


# --- connecting over AF_UNIX ---------------------------------------------------------


@needs_af_unix
def test_unix_connect_made_at_once_reports_through_the_poller(pike_poller: Poller, tmp_path: object) -> None:
    path = f"{tmp_path}/now.sock"
    server = Listener(pike_poller, Recorder, socket.AF_UNIX, path)

    class Raising(Recorder):
        def handle_connect(self) -> None:
            super().handle_connect()
            raise ValueError("bug in handle_connect")

    client = Raising(pike_poller)
    client.create_socket(socket.AF_UNIX)
    client.connect(path)  # connected at once by the OS; the callback must not run here
    assert client.calls == []
    run_until(pike_poller, lambda: client.errors, what="the error of handle_connect")
    assert client.calls[:2] == ["connect", "error"]
    assert isinstance(client.errors[0], ValueError)
    run_until(pike_poller, lambda: server.accepted, what="the server's side of it")


class FullBacklog:
    """An AF_UNIX listener at ``path`` whose backlog is full (Linux then answers a
    non-blocking connect with EAGAIN), and a client transport connecting to it."""

    def __init__(self, poller: Poller, path: str) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(path)
        self.listener.listen(1)
        self.fillers: List[socket.socket] = []
        while True:
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            try:
                s.connect(path)
            except BlockingIOError:
                s.close()
                break
            self.fillers.append(s)
            if len(self.fillers) > 1000:
                self.close()
                pytest.skip("this OS never refuses an AF_UNIX connect for a full backlog")
        self.client = Recorder(poller)
        self.client.create_socket(socket.AF_UNIX)
        self.client.connect(path)

    def close(self) -> None:
        for s in self.fillers:
            s.close()
        self.listener.close()


needs_full_backlog = pytest.mark.skipif(
    sys.platform != "linux", reason="Linux answers a full AF_UNIX backlog with EAGAIN"
)


@needs_af_unix
@needs_full_backlog
def test_unix_connect_to_a_full_backlog_waits_without_spinning_then_connects(
    pike_poller: Poller, tmp_path: object
) -> None:
    full = FullBacklog(pike_poller, f"{tmp_path}/full.sock")
    client = full.client
    assert client.state is State.CONNECTING
    cpu = time.process_time()
    waits = waits_while_idle(pike_poller)
    cpu = time.process_time() - cpu
    # The retry backs off to 0.1 s: a handful of waits, never a spin.
    assert waits <= 20, f"{waits} waits in 0.5 s while the backlog is full"
    assert cpu < 0.25, f"{cpu:.2f} s of CPU in 0.5 s while the backlog is full"
    assert client.calls == []
    for _ in full.fillers:
        conn, _ = full.listener.accept()
        conn.close()
    run_until(pike_poller, lambda: client.connected, what="the connect once the backlog has room")
    assert client.calls == ["connect"]
    client.close()
    full.close()


@needs_af_unix
@needs_full_backlog
def test_unix_connect_to_a_full_backlog_fails_cleanly_when_the_listener_goes(
    pike_poller: Poller, tmp_path: object
) -> None:
    full = FullBacklog(pike_poller, f"{tmp_path}/gone.sock")
    full.listener.close()
    os.unlink(full.path)
    run_until(pike_poller, lambda: full.client.closed, what="the connect to fail")
    assert full.client.calls == ["error", "close"]
    assert isinstance(full.client.errors[0], OSError)
    full.close()


# --- a failed connect ----------------------------------------------------------------


class FailedConnect(Recorder):
    """Its handle_error does what ``behaviour`` says, then the test checks the order."""

    behaviour = "record"

    def handle_error(self) -> None:
        self.calls.append("error")
        self.errors.append(sys.exc_info()[1])  # type: ignore[arg-type]
        if self.behaviour == "close":
            self.close()
        elif self.behaviour == "raise":
            raise RuntimeError("handle_error itself fails")

    def handle_close(self) -> None:
        self.calls.append("close")
        self.close()


@pytest.mark.parametrize("behaviour", ["record", "close", "raise"])
def test_a_failed_connect_ends_with_handle_close_after_handle_error(
    pike_poller: Poller, behaviour: str
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        address = unused.getsockname()  # bound, not listening: connects are refused
        client = FailedConnect(pike_poller)
        client.behaviour = behaviour
        client.create_socket()
        try:
            client.connect(address)
        except ConnectionRefusedError:
            pytest.skip("the OS refused the connect at once (the verdict never reaches the poller)")
        run_until(pike_poller, lambda: client.calls.count("close"), what="handle_close after the refusal")
        for _ in range(3):
            pike_poller.poll(0.01)
    assert client.calls == ["error", "close"]
    assert client.closed
    assert not pike_poller.is_registered(client)


@pytest.mark.parametrize("verdict", ["refused", "reset"])
@pytest.mark.parametrize("call", ["write", "send", "nothing"])
def test_a_failed_connects_verdict_read_late_is_reported_as_such(
    pike_poller: Poller, verdict: str, call: str
) -> None:
    """A connect refused, or accepted and at once reset, before the poller looked: the
    failed connect is reported as such, never raised to the caller, left connecting nor
    left to spin (Windows reports the reset one as neither connected nor failed until
    the socket is read).  ``write()``/``send()`` meanwhile send nothing (a send would
    take the error the verdict holds): the bytes wait as for any connect."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        if verdict == "reset":
            server.listen(1)
        client = FailedConnect(pike_poller)
        client.create_socket()
        try:
            client.connect(server.getsockname())
        except ConnectionRefusedError:
            pytest.skip("the OS refused the connect at once (no verdict left to meet)")
        if verdict == "reset":
            _reset(server.accept()[0])
        assert client.socket is not None
        # The verdict is there, and the poller has not read it yet.
        select.select([client.socket], [], [], 10.0)
        assert client.calls == []
        if call == "write":
            assert client.write(b"too early") is True
            assert client.write_buffer_size == len(b"too early")
        elif call == "send":
            assert client.send(b"too early") == 0
        run_until(pike_poller, lambda: client.closed, what="the failed connect to be reported")
        for _ in range(3):
            pike_poller.poll(0.01)
    assert client.calls == ["error", "close"]
    expected = ConnectionRefusedError if verdict == "refused" else ConnectionResetError
    assert isinstance(client.errors[0], expected), client.errors
    assert not pike_poller.is_registered(client)


# --- the registered socket itself -------------------------------------------------------


def test_a_socket_closed_behind_the_pollers_back_fails_its_transport_only(pike_poller: Poller) -> None:
    a1, b1 = connected_pair()
    a2, b2 = connected_pair()
    victim, witness = Recorder(pike_poller, a1), Recorder(pike_poller, a2)
    number = victim.fileno()
    a1.close()  # not victim.close(): the poller was not told
    b2.send(b"still served")
    run_until(pike_poller, lambda: bytes(witness.received) == b"still served", what="the other transport")
    # Where the OS tells (select's EBADF, poll's POLLNVAL) the victim hears at once;
    # epoll and kqueue forget a closed descriptor silently, so the victim hears when
    # the number is registered again.
    fresh_a, fresh_b = connected_pair()
    if fresh_a.fileno() != number:
        os.dup2(fresh_a.fileno(), number)
        fresh_a.close()
        fresh_a = socket.socket(fileno=number)
    newcomer = Recorder(pike_poller, fresh_a)
    run_until(pike_poller, lambda: victim.closed, what="the victim to be dropped")
    assert victim.calls == ["error", "close"]
    assert isinstance(victim.errors[0], OSError)
    fresh_b.send(b"new")
    run_until(
        pike_poller, lambda: bytes(newcomer.received) == b"new", what="the newcomer on the reused number"
    )
    b2.send(b"again")
    run_until(pike_poller, lambda: bytes(witness.received) == b"still servedagain", what="the witness")
    for t in (witness, newcomer):
        t.close()
    for s in (b1, b2, fresh_b):
        s.close()


def _pair_numbered(number: int) -> Tuple[socket.socket, socket.socket]:
    """A connected pair whose first socket has the descriptor ``number``, just freed."""
    if sys.platform != "win32":
        a, b = connected_pair()
        if a.fileno() != number:
            os.dup2(a.fileno(), number)
            a.close()
            a = socket.socket(fileno=number)
        return a, b
    # dup2() cannot place a Windows socket handle: new pairs are made until Windows
    # gives the number again (it mostly does at once), holding the others meanwhile.
    held: List[socket.socket] = []
    try:
        for _ in range(32):
            a, b = connected_pair()
            if a.fileno() == number:
                return a, b
            held += (a, b)
    finally:
        for sock in held:
            sock.close()
    pytest.skip(f"Windows did not give handle {number} again in 32 new sockets")


def test_a_number_reused_with_another_poller_drops_the_stale_registration(pike_poller: Poller) -> None:
    a1, b1 = connected_pair()
    victim = Recorder(pike_poller, a1)
    number = victim.fileno()
    a1.close()  # not victim.close(): the poller was not told
    fresh_a, fresh_b = _pair_numbered(number)
    other = type(pike_poller)(type(pike_poller.backend)())
    try:
        # The first poller's registration of the number is of a socket that is gone: it
        # must not refuse the newcomer, nor keep watching the number for the victim.
        newcomer = Recorder(other, fresh_a)
        fresh_b.send(b"new")
        run_until(other, lambda: bytes(newcomer.received) == b"new", what="the newcomer, on the other poller")
        run_until(pike_poller, lambda: victim.closed, what="the victim to be dropped")
        assert victim.calls == ["error", "close"]
        assert victim.received == b""
        assert pike_poller.transports() == []
        newcomer.close()
    finally:
        other.close()
    for s in (b1, fresh_b):
        s.close()


def test_adopting_a_closed_or_taken_socket_is_refused_with_the_cause(pike_poller: Poller) -> None:
    a, b = connected_pair()
    a.close()
    with pytest.raises(RegistrationError, match="the socket is closed"):
        Recorder(pike_poller, a)
    c, d = connected_pair()
    first = Recorder(pike_poller, c)
    with pytest.raises(RegistrationError, match="already registered"):
        Recorder(pike_poller, c)
    other = type(pike_poller)(type(pike_poller.backend)())
    try:
        with pytest.raises(RegistrationError, match="another poller"):
            Recorder(other, c)
    finally:
        other.close()
    assert pike_poller.transports() == [first]
    first.close()
    for s in (b, d):
        s.close()
