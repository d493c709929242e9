"""pike_core.compat.asyncore keeps asyncore's documented behaviour, in both dispatch
flavours, on every backend usable here (each socket map's poller is chosen by
``PIKE_POLLER``); and a pass asks only the dispatchers whose answers may have changed."""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import types
import warnings
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

import pike_core.compat.asyncore as ours
from pike_core import available_backends, events

Map = Dict[int, Any]
FLAVOUR = pytest.mark.parametrize("use_poll", [False, True], ids=["select-flavour", "poll-flavour"])
USABLE = {status.name: status for status in available_backends() if status.usable}


@pytest.fixture(params=sorted(USABLE))
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each usable backend in turn, as the one new socket maps' pollers run on."""
    name: str = request.param
    monkeypatch.setenv("PIKE_POLLER", name)
    return name


@pytest.fixture
def amap(backend: str) -> Iterator[Map]:
    """A private socket map on ``backend``, closed (and its poller released) afterwards."""
    socket_map: Map = {}
    yield socket_map
    ours.close_all(socket_map, ignore_all=True)


def one_pass(socket_map: Map, use_poll: bool, timeout: float = 0.01) -> None:
    (ours.poll2 if use_poll else ours.poll)(timeout, socket_map)


def passes_until(condition: Callable[[], bool], socket_map: Map, use_poll: bool, what: str) -> None:
    deadline = time.monotonic() + 5.0
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        one_pass(socket_map, use_poll, 0.05)


def tcp_pair() -> Tuple[socket.socket, socket.socket]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


class Recorder(ours.dispatcher):
    """Records its callbacks; reads whatever arrives; never writable."""

    def __init__(self, sock: Any = None, map: Any = None) -> None:  # noqa: A002
        ours.dispatcher.__init__(self, sock, map)
        self.calls: List[str] = []
        self.data = bytearray()

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        self.calls.append("read")
        self.data += self.recv(65536)

    def handle_close(self) -> None:
        self.calls.append("close")
        self.close()

    def handle_expt(self) -> None:
        self.calls.append("expt")
        self.socket.recv(1, socket.MSG_OOB)

    def handle_connect(self) -> None:
        self.calls.append("connect")


@FLAVOUR
def test_handle_write_on_every_pass_while_writable(amap: Map, use_poll: bool) -> None:
    class FiveWrites(ours.dispatcher):
        writes = 0

        def writable(self) -> bool:
            return self.writes < 5

        def handle_write(self) -> None:
            self.writes += 1

    a, b = socket.socketpair()
    d = FiveWrites(a, amap)
    for _ in range(8):
        one_pass(amap, use_poll)
    assert d.writes == 5
    b.close()


@FLAVOUR
def test_base_dispatcher_is_writable_on_every_pass(amap: Map, use_poll: bool) -> None:
    class CountWrites(ours.dispatcher):
        writes = 0

        def handle_write(self) -> None:
            self.writes += 1

    a, b = socket.socketpair()
    d = CountWrites(a, amap)
    for _ in range(4):
        one_pass(amap, use_poll)
    assert d.writes == 4
    b.close()


@FLAVOUR
def test_dispatcher_with_send_write_interest_follows_its_buffer(amap: Map, use_poll: bool) -> None:
    class Sender(ours.dispatcher_with_send):
        writes = 0

        def handle_write(self) -> None:
            self.writes += 1
            ours.dispatcher_with_send.handle_write(self)

    a, peer = socket.socketpair()
    peer.setblocking(False)
    d = Sender(a, amap)
    payload = os.urandom(4 << 20)
    d.send(payload)
    assert d.out_buffer, "the socket took 4 MiB at once; the test needs a send that blocks"
    received = bytearray()

    def drained() -> bool:
        with contextlib.suppress(BlockingIOError):
            received.extend(peer.recv(1 << 20))
        return len(received) == len(payload)

    passes_until(drained, amap, use_poll, "the buffered bytes to arrive")
    assert bytes(received) == payload
    assert d.writes > 0
    writes = d.writes
    for _ in range(4):
        one_pass(amap, use_poll)
    assert d.writes == writes, "an empty out_buffer must end write interest"
    peer.close()


@FLAVOUR
def test_end_of_stream_reaches_handle_close_through_recv(amap: Map, use_poll: bool) -> None:
    a, b = socket.socketpair()
    d = Recorder(a, amap)
    b.sendall(b"last words")
    b.close()
    passes_until(lambda: "close" in d.calls, amap, use_poll, "handle_close")
    assert bytes(d.data) == b"last words"
    assert d.calls.count("close") == 1
    assert d not in amap.values()


@FLAVOUR
def test_urgent_data_reaches_handle_expt(amap: Map, backend: str, use_poll: bool) -> None:
    backend_class = USABLE[backend].backend_class
    assert backend_class is not None
    if not backend_class.supported & events.PRIORITY:
        pytest.skip(f"{backend} does not declare PRIORITY: out-of-band data is not reported")
    a, b = tcp_pair()
    d = Recorder(a, amap)
    b.send(b"!", socket.MSG_OOB)
    passes_until(lambda: "expt" in d.calls, amap, use_poll, "handle_expt")
    b.close()


@FLAVOUR
def test_connect_completes_through_handle_connect_event(amap: Map, use_poll: bool) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        d = Recorder(map=amap)
        d.create_socket()
        d.connect(listener.getsockname())
        assert d.connecting
        # Only a read event would reveal the connect to a non-writable dispatcher:
        # the peer's greeting is it.
        conn, _ = listener.accept()
        conn.sendall(b"hello")
        passes_until(lambda: bool(d.data), amap, use_poll, "the greeting")
        assert d.calls[:2] == ["connect", "read"]
        assert d.connected
        assert not d.connecting
        conn.close()


@FLAVOUR
def test_refused_connect_goes_through_handle_error(
    amap: Map, use_poll: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()

    class Connector(ours.dispatcher):
        def handle_connect(self) -> None:
            pytest.fail("a refused connect was reported as connected")

    d = Connector(map=amap)
    d.create_socket()
    d.connect(address)
    passes_until(lambda: d.socket.fileno() == -1, amap, use_poll, "the refused dispatcher to close")
    out = capsys.readouterr().out
    assert "error: uncaptured python exception, closing channel" in out
    assert "ConnectionRefusedError" in out
    assert "|handle_connect_event|" in out
    assert not d.connected
    assert not amap


@FLAVOUR
def test_handler_exception_is_logged_with_compact_traceback_and_the_loop_goes_on(
    amap: Map, use_poll: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    class Broken(Recorder):
        def handle_read(self) -> None:
            raise ValueError("boom")

    a, b = socket.socketpair()
    c, e = socket.socketpair()
    broken = Broken(a, amap)
    healthy = Recorder(c, amap)
    b.sendall(b"x")
    passes_until(lambda: broken.socket.fileno() == -1, amap, use_poll, "the broken dispatcher to close")
    out = capsys.readouterr().out
    assert "error: uncaptured python exception, closing channel <" in out
    assert "ValueError'>:boom [" in out
    assert f"[{__file__}|handle_read|" in out
    e.sendall(b"still here")
    passes_until(lambda: bytes(healthy.data) == b"still here", amap, use_poll, "the healthy one")
    b.close()
    e.close()


@FLAVOUR
def test_exit_now_leaves_the_loop(amap: Map, use_poll: bool) -> None:
    class Quitter(Recorder):
        def handle_read(self) -> None:
            raise ours.ExitNow

    a, b = socket.socketpair()
    Quitter(a, amap)
    b.sendall(b"x")
    with pytest.raises(ours.ExitNow):
        ours.loop(timeout=5.0, use_poll=use_poll, map=amap)
    b.close()


@FLAVOUR
def test_map_changed_directly_is_noticed(amap: Map, use_poll: bool) -> None:
    a, b = socket.socketpair()
    c, e = socket.socketpair()
    Recorder(c, amap)  # keeps the map non-empty once the other leaves it
    elsewhere: Map = {}
    d = Recorder(a, elsewhere)
    one_pass(amap, use_poll)
    amap[a.fileno()] = d
    b.sendall(b"one")
    passes_until(lambda: bytes(d.data) == b"one", amap, use_poll, "the directly added dispatcher")
    del amap[a.fileno()]
    b.sendall(b"two")
    for _ in range(3):
        one_pass(amap, use_poll)
    assert bytes(d.data) == b"one"
    for s in (a, b, e):
        s.close()


@FLAVOUR
def test_a_dispatcher_taken_out_of_the_map_mid_pass_gets_no_event(amap: Map, use_poll: bool) -> None:
    """Two dispatchers ready in one pass; the first dispatched deletes the other's map entry
    directly: as in the stdlib (which looks each descriptor up in the map), the other's
    pending event is not dispatched."""

    class Remover(Recorder):
        other: Recorder

        def handle_read(self) -> None:
            Recorder.handle_read(self)
            amap.pop(self.other._fileno, None)

    a, b = socket.socketpair()
    c, e = socket.socketpair()
    first, second = Remover(a, amap), Remover(c, amap)
    first.other, second.other = second, first
    one_pass(amap, use_poll)  # watch both before they become ready together
    b.sendall(b"1")
    e.sendall(b"2")
    one_pass(amap, use_poll, timeout=1.0)
    assert sorted([first.calls, second.calls]) == [[], ["read"]]
    for s in (a, b, c, e):
        s.close()


@FLAVOUR
def test_readable_false_is_not_read(amap: Map, use_poll: bool) -> None:
    class Gated(Recorder):
        open_gate = False

        def readable(self) -> bool:
            return self.open_gate

    a, b = socket.socketpair()
    d = Gated(a, amap)
    b.sendall(b"waiting")
    for _ in range(3):
        one_pass(amap, use_poll)
    assert d.calls == []
    d.open_gate = True
    passes_until(lambda: bytes(d.data) == b"waiting", amap, use_poll, "the read once readable")
    b.close()


@FLAVOUR
def test_events_of_a_closed_descriptor_never_reach_its_successor(amap: Map, use_poll: bool) -> None:
    """Two dispatchers ready in one pass; the first dispatched closes the other and opens a
    new one, which takes the freed descriptor number: the closed one's pending event must
    reach neither (asyncore's select flavour gave it to the newcomer)."""
    newcomers: List[Recorder] = []
    keep: List[socket.socket] = []

    class Closer(Recorder):
        other: Recorder

        def handle_read(self) -> None:
            Recorder.handle_read(self)
            if self.other.socket.fileno() != -1:
                freed = self.other.socket.fileno()
                self.other.close()
                x, y = socket.socketpair()
                keep.append(y)
                newcomers.append(Recorder(x, amap))
                assert x.fileno() == freed, "the OS did not reuse the lowest free descriptor"

    a, b = socket.socketpair()
    c, e = socket.socketpair()
    first, second = Closer(a, amap), Closer(c, amap)
    first.other, second.other = second, first
    one_pass(amap, use_poll)  # watch both before they become ready together
    b.sendall(b"1")
    e.sendall(b"2")
    one_pass(amap, use_poll, timeout=1.0)
    assert len(newcomers) == 1
    assert [r for r in (first, second) if r.calls] != [first, second]
    assert newcomers[0].calls == []
    for s in (b, e, *keep):
        s.close()


@pytest.mark.skipif(os.name != "posix", reason="file_dispatcher exists on POSIX only")
@FLAVOUR
def test_file_dispatcher_reads_a_pipe(amap: Map, use_poll: bool) -> None:
    class PipeReader(ours.file_dispatcher):
        def __init__(self, fd: int, map: Map) -> None:  # noqa: A002
            ours.file_dispatcher.__init__(self, fd, map)
            self.data = bytearray()
            self.closed = False

        def writable(self) -> bool:
            return False

        def handle_read(self) -> None:
            self.data += self.recv(1024)

        def handle_close(self) -> None:
            self.closed = True
            self.close()

    r, w = os.pipe()
    d = PipeReader(r, amap)
    os.close(r)  # file_wrapper reads from its own dup
    os.write(w, b"through a pipe")
    os.close(w)
    passes_until(lambda: d.closed, amap, use_poll, "end of the pipe")
    assert bytes(d.data) == b"through a pipe"


@pytest.mark.skipif(sys.platform != "linux", reason="names the backends Linux has")
def test_the_linux_backends_report_out_of_band_data_and_hang_ups() -> None:
    """What asyncore's tests expect of select() and poll(): the backends declare it."""
    for name in ("select", "poll", "epoll"):
        status = USABLE[name]
        assert status.backend_class is not None
        assert status.backend_class.supported & events.PRIORITY, name
        assert "hangup" in status.capabilities, name


#: What Python 3.11's dispatcher answers to, beside its own attributes: none of these.
SOCKET_ATTRIBUTES = ("family", "type", "getsockname", "getpeername", "setblocking", "fileno", "recv_into")


def test_attributes_are_not_forwarded_to_the_socket(amap: Map) -> None:
    """3.11's asyncore has no ``dispatcher.__getattr__``: what is not the dispatcher's
    fails, as ``hasattr`` says, however the socket would answer."""
    a, b = socket.socketpair()
    d = ours.dispatcher(a, amap)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in SOCKET_ATTRIBUTES:
            assert hasattr(a, name)
            assert not hasattr(d, name), name
        with pytest.raises(AttributeError, match="'dispatcher' object has no attribute 'getsockname'"):
            d.getsockname()  # type: ignore[attr-defined]
    if sys.version_info < (3, 12):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import asyncore as stdlib
        c, e = socket.socketpair()
        theirs = stdlib.dispatcher(c, {})
        assert [hasattr(theirs, n) for n in SOCKET_ATTRIBUTES] == [hasattr(d, n) for n in SOCKET_ATTRIBUTES]
        theirs.close()
        e.close()
    b.close()


def test_loop_counts_passes_and_releases_the_map_poller(amap: Map) -> None:
    class CountWrites(ours.dispatcher):
        writes = 0

        def handle_write(self) -> None:
            self.writes += 1

    a, b = socket.socketpair()
    d = CountWrites(a, amap)
    ours.loop(timeout=1.0, map=amap, count=3)
    assert d.writes == 3
    assert id(amap) in ours._watches
    ours.close_all(amap)
    assert not amap
    assert id(amap) not in ours._watches
    assert a.fileno() == -1
    b.close()


def test_a_pass_asks_only_what_may_have_changed(amap: Map, monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle dispatchers of the base classes cost nothing per pass: with 150 of them and one
    busy one, a pass works out the interest of the busy one only (a pass asks the
    dispatchers with predicates of their own, and those marked since the last pass)."""

    class Echo(ours.dispatcher_with_send):
        def handle_read(self) -> None:
            self.send(self.recv(4096))

    peers = []
    for _ in range(150):
        x, y = socket.socketpair()
        Echo(x, amap)
        peers.append(y)
    busy_local, busy_peer = socket.socketpair()
    Echo(busy_local, amap)
    one_pass(amap, False)  # the first pass asks every new dispatcher once
    asked: List[Any] = []
    real_run = ours._MapWatch.run

    def recording_run(watch: Any, timeout: Any, by_kind: bool) -> Any:
        asked.extend(channel.obj for channel in (*watch.asked.values(), *watch.pending))
        return real_run(watch, timeout, by_kind)

    monkeypatch.setattr(ours._MapWatch, "run", recording_run)
    for round_trip in range(10):
        busy_peer.sendall(b"ping %d" % round_trip)
        passes_until(lambda: bool(asked), amap, False, "the echo")
        assert busy_peer.recv(100) == b"ping %d" % round_trip
        assert {id(obj) for obj in asked} == {id(amap[busy_local.fileno()])}
        asked.clear()
    for s in (*peers, busy_peer):
        s.close()


PUBLIC_311 = {
    "ExitNow", "close_all", "compact_traceback", "dispatcher", "dispatcher_with_send", "loop", "poll",
    "poll2", "poll3", "read", "readwrite", "socket_map", "write", "_exception",
}  # fmt: skip


def test_public_api_of_python_311() -> None:
    assert set(dir(ours)) >= PUBLIC_311
    if os.name == "posix":
        assert {"file_dispatcher", "file_wrapper"} <= set(dir(ours))
    if sys.version_info >= (3, 12):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import asyncore as stdlib
    assert stdlib is not ours
    names = {
        n for n in dir(stdlib) if not (n.startswith("__") or isinstance(getattr(stdlib, n), types.ModuleType))
    }
    # The import-time deprecation message (3.10 and 3.11) is the one name left out.
    assert names - set(dir(ours)) - {"_DEPRECATION_MSG"} == set()
    for cls in ("dispatcher", "dispatcher_with_send"):
        assert set(dir(getattr(stdlib, cls))) <= set(dir(getattr(ours, cls)))


def test_compact_traceback_format() -> None:
    def fail() -> None:
        raise KeyError("k")

    try:
        fail()
    except KeyError:
        (file, function, line), t, v, info = ours.compact_traceback()
    assert (file, function) == (__file__, "fail")
    assert t is KeyError
    assert isinstance(v, KeyError)
    assert info.endswith(f"[{__file__}|fail|{line}]")
    with pytest.raises(AssertionError, match="traceback does not exist"):
        ours.compact_traceback()


def test_send_to_a_gone_peer_calls_handle_close(amap: Map) -> None:
    a, b = socket.socketpair()
    d = Recorder(a, amap)
    b.close()
    assert d.send(b"x" * 100_000) == 0
    assert d.calls == ["close"]
    assert errno.EPIPE in ours._DISCONNECTED


def test_a_send_from_another_thread_wakes_the_wait(amap: Map, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stdlib left such data waiting until the poll timeout ran out."""
    a, b = socket.socketpair()
    d = ours.dispatcher_with_send(a, amap)
    one_pass(amap, False)  # settled: watched for reading only
    waiting = threading.Event()
    poller = ours._watches[id(amap)].poller
    real_poll = poller.poll

    def poll(timeout: Any) -> Any:
        waiting.set()
        return real_poll(timeout)

    def send_later() -> None:
        # Only once the pass has asked its dispatchers: without a wake-up, the new write
        # interest would wait for the next pass.
        waiting.wait(5.0)
        d.send(b"x" * (4 << 20))

    monkeypatch.setattr(poller, "poll", poll)
    sender = threading.Thread(target=send_later)
    sender.start()
    started = time.monotonic()
    one_pass(amap, False, timeout=30.0)
    elapsed = time.monotonic() - started
    sender.join()
    assert elapsed < 10.0
    b.close()


# What a program that does `import asyncore` sees of the module's names: printed by a child
# process, on the drop-in (through the shim's finder, which 3.11 does not install by
# itself) or on the stdlib's asyncore.
NAMES_CHILD = """
import contextlib, io, json, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)
if sys.argv[1] == "drop-in":
    import pike_asyncore_shim
    if not pike_asyncore_shim.install():
        sys.meta_path.insert(0, pike_asyncore_shim.AsyncoreFinder())
import asyncore
d = asyncore.dispatcher()
logged = io.StringIO()
with contextlib.redirect_stdout(logged):
    try:
        raise ValueError("boom")
    except ValueError:
        d.handle_error()
print(json.dumps({
    "module": asyncore.__spec__.name,
    "repr": repr(d).replace(hex(id(d)), "ID"),
    "logged": logged.getvalue().split(" (")[0].replace(hex(id(d)), "ID"),
    "classes": [c.__module__ + "." + c.__qualname__ for c in
                (asyncore.dispatcher, asyncore.dispatcher_with_send, asyncore.ExitNow)],
}))
"""


def names_seen(which: str) -> Dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", NAMES_CHILD, which], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    seen: Dict[str, Any] = json.loads(proc.stdout)
    return seen


@pytest.mark.skipif(importlib.util.find_spec("pike_asyncore_shim") is None, reason="needs pike-asyncore-shim")
def test_imported_as_asyncore_its_names_say_asyncore() -> None:
    seen = names_seen("drop-in")
    assert seen["module"] == "pike_core.compat.asyncore"
    assert seen == {
        "module": "pike_core.compat.asyncore",
        "repr": "<asyncore.dispatcher at ID>",
        "logged": "error: uncaptured python exception, closing channel <asyncore.dispatcher at ID>",
        "classes": ["asyncore.dispatcher", "asyncore.dispatcher_with_send", "asyncore.ExitNow"],
    }
    if sys.version_info < (3, 12):
        assert {**names_seen("stdlib"), "module": seen["module"]} == seen


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="lists /proc/self/fd")
def test_a_maps_poller_is_released_at_exit(backend: str) -> None:
    """A program that exits with dispatchers in its map: their sockets are the program's,
    the map poller's descriptors (its wake-up socket pair) are the drop-in's to close."""
    # The check is registered first, so it runs last of the exit handlers.
    code = """
import atexit, os, socket
def still_open():
    # Less the descriptor listdir() itself had open.
    return {fd for fd in os.listdir("/proc/self/fd") if os.path.exists("/proc/self/fd/" + fd)}
before = still_open()
mine = set()
atexit.register(lambda: print(sorted(still_open() - before - mine, key=int)))
import pike_core.compat.asyncore as asyncore
a, b = socket.socketpair()
mine |= {str(a.fileno()), str(b.fileno())}
asyncore.dispatcher(a)
asyncore.loop(timeout=0, count=1)
print(len(asyncore.socket_map), len(asyncore._watches))
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PIKE_POLLER": backend},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1", "[]"]
