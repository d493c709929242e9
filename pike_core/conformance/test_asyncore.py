"""What the asyncore drop-in (:mod:`pike_core.compat.asyncore`) owes to the backend under
it: out-of-band data, regular files, and a hang-up with data still unread, in both of
asyncore's dispatch flavours, as the stdlib's asyncore does on ``select()`` and ``poll()``.

Each socket map's poller is chosen by ``PIKE_POLLER``, which the fixture sets to the
backend under test.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

from pike_core import Backend, BackendStatus, events
from pike_core.compat import asyncore

from .support import DEADLINE

Map = Dict[int, Any]
FLAVOUR = pytest.mark.parametrize("use_poll", [False, True], ids=["select-flavour", "poll-flavour"])
FAMILY = pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="asyncore's file_dispatcher exists on POSIX only")


@pytest.fixture
def amap(pike_backend: BackendStatus, monkeypatch: pytest.MonkeyPatch) -> Iterator[Map]:
    """A socket map whose poller runs on the backend under test, closed afterwards."""
    monkeypatch.setenv("PIKE_POLLER", pike_backend.name)
    socket_map: Map = {}
    yield socket_map
    asyncore.close_all(socket_map, ignore_all=True)


@pytest.fixture
def backend(pike_backend: BackendStatus) -> Iterator[Backend]:
    """A bare backend object of the one under test, closed afterwards."""
    assert pike_backend.backend_class is not None
    instance = pike_backend.backend_class()
    try:
        yield instance
    finally:
        instance.close()


def passes_until(condition: Callable[[], object], socket_map: Map, use_poll: bool, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {DEADLINE} s waiting for {what}")
        (asyncore.poll2 if use_poll else asyncore.poll)(0.05, socket_map)


def tcp_pair(family: int = socket.AF_INET) -> Tuple[socket.socket, socket.socket]:
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    try:
        listener = socket.socket(family)
    except OSError as exc:
        pytest.skip(f"no {socket.AddressFamily(family).name} sockets here: {exc}")
    with listener:
        try:
            listener.bind((host, 0))
        except OSError as exc:
            pytest.skip(f"cannot bind {host}: {exc}")
        listener.listen(1)
        client = socket.create_connection(listener.getsockname()[:2])
        server, _ = listener.accept()
    return client, server


def wait_for(backend: Backend, fd: int, bits: int) -> int:
    """The mask the backend reports for ``fd`` once it holds all of ``bits``."""
    deadline = time.monotonic() + DEADLINE
    seen = 0
    while time.monotonic() < deadline:
        for ready, mask in backend.wait(0.1):
            if ready == fd:
                seen = mask
                if mask & bits == bits:
                    return mask
    raise AssertionError(f"{backend!r} reported {seen:#x} for descriptor {fd}, never all of {bits:#x}")


class Recorder(asyncore.dispatcher):
    """Reads ``chunk`` bytes per read event, records every callback; never writable."""

    chunk = 65536

    def __init__(self, sock: Any, socket_map: Map) -> None:
        asyncore.dispatcher.__init__(self, sock, socket_map)
        self.calls: List[str] = []
        self.data = bytearray()
        self.urgent = bytearray()

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        self.calls.append("read")
        self.data += self.recv(self.chunk)

    def handle_expt(self) -> None:
        self.calls.append("expt")
        self.urgent += self.socket.recv(1, socket.MSG_OOB)

    def handle_close(self) -> None:
        self.calls.append("close")
        self.close()


# --- out-of-band data -------------------------------------------------------------------


def _needs_priority(pike_backend: BackendStatus) -> None:
    assert pike_backend.backend_class is not None
    if not pike_backend.backend_class.supported & events.PRIORITY:
        pytest.skip(f"{pike_backend.name} does not declare PRIORITY in Backend.supported")


@FAMILY
def test_out_of_band_data_is_reported_as_priority(
    backend: Backend, pike_backend: BackendStatus, family: int
) -> None:
    _needs_priority(pike_backend)
    a, b = tcp_pair(family)
    with a, b:
        a.setblocking(False)
        backend.register(a.fileno(), events.READ | events.PRIORITY)
        b.send(b"!", socket.MSG_OOB)
        wait_for(backend, a.fileno(), events.PRIORITY)
        assert a.recv(1, socket.MSG_OOB) == b"!"
        backend.unregister(a.fileno())


@FAMILY
@FLAVOUR
def test_out_of_band_data_reaches_handle_expt(
    amap: Map, pike_backend: BackendStatus, family: int, use_poll: bool
) -> None:
    """asyncore's ``test_handle_expt``, for both address families and flavours."""
    _needs_priority(pike_backend)
    a, b = tcp_pair(family)
    d = Recorder(a, amap)
    b.send(b"!", socket.MSG_OOB)
    passes_until(lambda: d.urgent, amap, use_poll, "handle_expt")
    assert bytes(d.urgent) == b"!"
    assert "close" not in d.calls
    b.close()


# --- regular files ----------------------------------------------------------------------


@POSIX_ONLY
@FLAVOUR
def test_a_regular_file_is_read_to_its_end_through_a_file_dispatcher(
    amap: Map, tmp_path: Path, use_poll: bool
) -> None:
    """stdin redirected from a file: ``select()`` and ``poll()`` call a regular file always
    readable, epoll refuses to watch one; every backend must read it all."""
    payload = os.urandom(1 << 20)
    path = tmp_path / "payload"
    path.write_bytes(payload)

    class FileReader(asyncore.file_dispatcher):
        def __init__(self, fd: int, socket_map: Map) -> None:
            asyncore.file_dispatcher.__init__(self, fd, socket_map)
            self.data = bytearray()
            self.calls: List[str] = []

        def writable(self) -> bool:
            return False

        def handle_read(self) -> None:
            self.data += self.recv(65536)

        def handle_close(self) -> None:
            self.calls.append("close")
            self.close()

        def handle_error(self) -> None:
            self.calls.append("error")
            asyncore.file_dispatcher.handle_error(self)

    with path.open("rb") as f:
        d = FileReader(f.fileno(), amap)
    passes_until(lambda: d.calls, amap, use_poll, "the end of the file")
    assert d.calls == ["close"]
    assert len(d.data) == len(payload)
    assert bytes(d.data) == payload


@POSIX_ONLY
@FLAVOUR
def test_a_regular_file_is_always_writable(amap: Map, tmp_path: Path, use_poll: bool) -> None:
    chunks = [os.urandom(1000) for _ in range(5)]

    class FileWriter(asyncore.file_dispatcher):
        def readable(self) -> bool:
            return False

        def handle_write(self) -> None:
            self.send(chunks.pop(0))
            if not chunks:
                self.close()

    path = tmp_path / "written"
    with path.open("wb") as f:
        FileWriter(f.fileno(), amap)
    passes_until(lambda: not chunks, amap, use_poll, "five write events")
    assert not amap
    assert len(path.read_bytes()) == 5000


# --- a hang-up with data still unread ---------------------------------------------------


def _needs_hangup(pike_backend: BackendStatus) -> None:
    if "hangup" not in pike_backend.capabilities:
        pytest.skip(f"{pike_backend.name} does not declare the 'hangup' capability")


def _hung_up_pair(how: str) -> Tuple[socket.socket, socket.socket]:
    """A socket with 100 unread bytes whose connection is shut in both directions."""
    if how == "unix":
        if not hasattr(socket, "AF_UNIX"):
            pytest.skip("no AF_UNIX here")
        a, b = socket.socketpair(socket.AF_UNIX)
    else:
        a, b = tcp_pair()
    b.sendall(b"x" * 100)
    if how == "tcp":
        # TCP hangs up once both directions are shut: the peer's FIN and ours.
        a.shutdown(socket.SHUT_WR)
    b.close()
    return a, b


HOW = pytest.mark.parametrize("how", ["unix", "tcp"])


@HOW
def test_a_hang_up_with_unread_data_is_reported_with_read(
    backend: Backend, pike_backend: BackendStatus, how: str
) -> None:
    _needs_hangup(pike_backend)
    a, _ = _hung_up_pair(how)
    with a:
        a.setblocking(False)
        backend.register(a.fileno(), events.READ)
        wait_for(backend, a.fileno(), events.READ | events.HANGUP)
        backend.unregister(a.fileno())


class Chunked(Recorder):
    chunk = 10


@HOW
def test_poll_flavour_closes_a_hung_up_dispatcher_after_its_first_read(
    amap: Map, pike_backend: BackendStatus, how: str
) -> None:
    """``readwrite`` reads, then closes on ``POLLHUP``: the stdlib's asyncore on
    ``poll()`` drops the 90 bytes left unread, and so must the drop-in."""
    _needs_hangup(pike_backend)
    a, _ = _hung_up_pair(how)
    d = Chunked(a, amap)
    passes_until(lambda: "close" in d.calls, amap, True, "handle_close")
    assert d.calls == ["read", "close"]
    assert bytes(d.data) == b"x" * 10


@HOW
def test_select_flavour_reads_a_hung_up_dispatcher_to_its_end(amap: Map, how: str) -> None:
    """``select()`` has no hang-up: the stdlib's select flavour reads until ``recv``
    returns ``b""``, on every backend."""
    a, _ = _hung_up_pair(how)
    d = Chunked(a, amap)
    passes_until(lambda: "close" in d.calls, amap, False, "handle_close")
    # Ten reads of data, and the eleventh, whose recv() meets the end and closes.
    assert d.calls == ["read"] * 11 + ["close"]
    assert bytes(d.data) == b"x" * 100
