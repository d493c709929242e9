"""PikeEventLoop, the policy and ``pike_asyncio.run`` on every backend usable here:
streams with more sockets than ``FD_SETSIZE``, TLS, UDP, cross-thread wake-ups, the
choice of backend, and ``python -m pike_asyncio``; on Windows also what only Windows
needs (``tools/windows_conformance.py`` runs this module under Windows CPython).

The scenarios at the top are ordinary asyncio code, with no knowledge of pike: a server
and its clients over loopback, every byte checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import ssl
import subprocess
import sys
import threading
import time
from typing import Any, Iterator, List, Optional, Tuple, cast

import pike_asyncio
import pytest
from pike_asyncio import PikeEventLoop, PikeEventLoopPolicy, PikeSelector

from pike_core import BackendStatus, available_backends

#: No scenario may hang a test run.
DEADLINE = 60.0


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def _client(  # noqa: PLR0917 - a private helper, called once
    host: str,
    port: int,
    index: int,
    connected: asyncio.Event,
    opened: List[int],
    total: int,
    client_ssl: Optional[ssl.SSLContext],
) -> int:
    reader, writer = await asyncio.open_connection(
        host, port, ssl=client_ssl, server_hostname="localhost" if client_ssl else None
    )
    try:
        opened.append(index)
        if len(opened) == total:
            connected.set()
        # Every client is connected before any sends: they are all open at once.
        await connected.wait()
        message = f"client {index} ".encode() * 50
        writer.write(message)
        await writer.drain()
        echoed = await reader.readexactly(len(message))
        if echoed != message:
            raise AssertionError(f"client {index} got {echoed[:40]!r}... back")
        return len(echoed)
    finally:
        writer.close()
        # An unclean TLS shutdown from the server side is no failure of the echo.
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def stream_echo(
    connections: int,
    server_ssl: Optional[ssl.SSLContext] = None,
    client_ssl: Optional[ssl.SSLContext] = None,
) -> Tuple[int, int]:
    """``connections`` clients connected at once to an ``asyncio.start_server`` echo
    server, each sending a message and reading it back.

    :returns: (clients served, bytes echoed).
    """
    server = await asyncio.start_server(_echo, "127.0.0.1", 0, ssl=server_ssl, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    connected = asyncio.Event()
    opened: List[int] = []
    try:
        async with server:
            sizes = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        _client("127.0.0.1", port, i, connected, opened, connections, client_ssl)
                        for i in range(connections)
                    )
                ),
                DEADLINE,
            )
    finally:
        server.close()
    return len(sizes), sum(sizes)


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


class _UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Tuple[str, int]) -> None:
        self.received.put_nowait(data)


async def datagram_echo(count: int) -> List[bytes]:
    """``count`` datagrams through a UDP echo endpoint, one in flight at a time (so
    loopback drops none).

    :returns: the datagrams received back, in order.
    """
    loop = asyncio.get_running_loop()
    server, _ = await loop.create_datagram_endpoint(_UdpEcho, local_addr=("127.0.0.1", 0))
    address = server.get_extra_info("sockname")
    try:
        client, protocol = await loop.create_datagram_endpoint(_UdpClient, remote_addr=address)
        try:
            received = []
            for i in range(count):
                client.sendto(f"datagram {i}".encode())
                received.append(await asyncio.wait_for(protocol.received.get(), DEADLINE))
            return received
        finally:
            client.close()
    finally:
        server.close()


def _usable() -> List[BackendStatus]:
    return [status for status in available_backends() if status.usable]


USABLE = _usable()
BACKENDS = pytest.mark.parametrize("backend", [s.name for s in USABLE], ids=[s.name for s in USABLE])


def _scalable(name: str) -> bool:
    return any(s.name == name and "many_fds" in s.capabilities for s in USABLE)


@pytest.fixture(autouse=True)
def _restore_policy() -> Iterator[None]:
    previous = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(previous)


async def _running_backend() -> Tuple[str, str]:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, PikeEventLoop)
    selector = loop._selector  # type: ignore[attr-defined]
    assert isinstance(selector, PikeSelector)
    return loop.backend.name, selector.backend.name


@BACKENDS
def test_run_runs_on_the_named_backend(backend: str) -> None:
    policy = asyncio.get_event_loop_policy()
    assert pike_asyncio.run(_running_backend(), backend=backend) == (backend, backend)
    # Python 3.9 and 3.10 run through the pike policy: it is the caller's again after.
    assert asyncio.get_event_loop_policy() is policy


@BACKENDS
def test_the_policy_makes_pike_loops(backend: str) -> None:
    asyncio.set_event_loop_policy(PikeEventLoopPolicy(backend))
    assert asyncio.run(_running_backend()) == (backend, backend)
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop, PikeEventLoop)
        assert loop.backend.name == backend
    finally:
        loop.close()


def test_without_a_name_pike_poller_then_priority_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    lowest = min(USABLE, key=lambda s: s.priority or 0)
    monkeypatch.setenv("PIKE_POLLER", lowest.name)
    assert pike_asyncio.run(_running_backend())[0] == lowest.name
    monkeypatch.delenv("PIKE_POLLER")
    best = max(USABLE, key=lambda s: (s.priority or 0, s.name))
    assert pike_asyncio.run(_running_backend())[0] == best.name


def test_run_returns_the_result_raises_the_error_and_refuses_a_running_loop() -> None:
    async def fails() -> None:
        raise LookupError("from main")

    with pytest.raises(LookupError, match="from main"):
        pike_asyncio.run(fails())

    async def nested() -> str:
        inner = _running_backend()
        try:
            with pytest.raises(RuntimeError, match="running event loop"):
                pike_asyncio.run(inner)
        finally:
            inner.close()
        return "done"

    assert pike_asyncio.run(nested()) == "done"


@BACKENDS
def test_another_thread_wakes_the_loop_through_asyncios_self_pipe(backend: str) -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        # The loop's own self-pipe is registered through the selector: no waker of ours.
        assert loop._ssock.fileno() in loop._selector.get_map()  # type: ignore[attr-defined]
        future: asyncio.Future[float] = loop.create_future()
        started = time.monotonic()
        timer = threading.Timer(0.1, loop.call_soon_threadsafe, (future.set_result, 0.0))
        timer.start()
        # No timer of the loop's own: only the wake-up can end this wait early.
        await asyncio.wait_for(future, 30)
        timer.join()
        return time.monotonic() - started

    assert pike_asyncio.run(main(), backend=backend) < 5.0


@BACKENDS
def test_stream_echo_with_2000_concurrent_connections(backend: str) -> None:
    # Each connection is two sockets here: 4,000, far past select's FD_SETSIZE (1,024
    # descriptor numbers on POSIX, 512 sockets on Windows), which only bounds select.
    connections = 2000 if _scalable(backend) else 200
    served, echoed = pike_asyncio.run(stream_echo(connections), backend=backend)
    assert served == connections
    assert echoed == sum(len(f"client {i} ".encode()) * 50 for i in range(connections))


def _tls_contexts() -> Tuple[Any, Any]:
    try:
        utils = importlib.import_module("test.test_asyncio.utils")
    except ImportError as exc:
        pytest.skip(f"needs CPython's test package for its test certificate: {exc}")
    return utils.simple_server_sslcontext(), utils.simple_client_sslcontext()


@BACKENDS
def test_tls_echo_over_start_server(backend: str) -> None:
    server_ssl, client_ssl = _tls_contexts()
    served, _ = pike_asyncio.run(stream_echo(20, server_ssl, client_ssl), backend=backend)
    assert served == 20


@BACKENDS
def test_datagram_echo(backend: str) -> None:
    received = pike_asyncio.run(datagram_echo(200), backend=backend)
    assert received == [f"datagram {i}".encode() for i in range(200)]


def _module_main(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "PIKE_POLLER"}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pike_asyncio", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def test_python_m_pike_asyncio_says_which_backend_and_why() -> None:
    best = max(USABLE, key=lambda s: (s.priority or 0, s.name))
    result = _module_main()
    assert result.returncode == 0, result.stderr
    assert f"selector loop on {best.name!r}: highest priority ({best.priority})" in result.stdout
    assert "checked: a loop on it passed data over a socket pair" in result.stdout
    lowest = min(USABLE, key=lambda s: s.priority or 0)
    result = _module_main(PIKE_POLLER=lowest.name)
    assert f"loop on {lowest.name!r}: named by PIKE_POLLER={lowest.name}" in result.stdout
    result = _module_main("--poller", lowest.name)
    assert f"loop on {lowest.name!r}: named by --poller={lowest.name}" in result.stdout


def test_a_bad_backend_name_is_the_only_error() -> None:
    code = (
        "import gc, pike_asyncio\n"
        "try:\n    pike_asyncio.new_event_loop('nosuch')\n"
        "except LookupError as exc:\n    print(type(exc).__name__)\n"
        "gc.collect()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.stdout, done.stderr) == ("UnknownBackendError\n", "")


def test_python_m_pike_asyncio_explains_a_bad_name() -> None:
    result = _module_main(PIKE_POLLER="nosuch")
    assert result.returncode == 2
    assert "no poller backend named 'nosuch' is installed (installed: " in result.stderr
    assert "loop on" not in result.stdout


# --- Windows only -----------------------------------------------------------------------

WINDOWS = pytest.mark.skipif(sys.platform != "win32", reason="what only Windows lacks or does")
ON_IOCP = pytest.mark.skipif(
    "iocp" not in [s.name for s in USABLE], reason="needs the iocp backend (Windows)"
)


@WINDOWS
def test_the_stock_selector_loop_refuses_what_iocp_serves() -> None:
    """The control for the 2,000-connection test: asyncio's own Windows selector loop
    (select, 512 sockets) fails on 600 connections, where the pike loop on iocp serves
    2,000."""
    if sys.version_info < (3, 11):
        pytest.skip("asyncio.Runner(loop_factory=...) is Python 3.11+")
    # The error ends run(), then again the Runner's closing, which runs the loop once more.
    with pytest.raises(ValueError, match="too many file descriptors in select"):  # noqa: SIM117 - 3.9 syntax
        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            runner.run(stream_echo(600))


@WINDOWS
@ON_IOCP
def test_subprocesses_and_pipes_say_what_to_use_instead() -> None:
    async def main() -> None:
        for attempt in (
            asyncio.create_subprocess_exec(sys.executable, "-c", "pass"),
            asyncio.create_subprocess_shell("echo"),
        ):
            with pytest.raises(NotImplementedError, match="through the proactor loop only"):
                await attempt

    pike_asyncio.run(main(), backend="iocp")
    assert "ProactorEventLoop" in pike_asyncio.PIPES_ON_WINDOWS


@WINDOWS
@ON_IOCP
def test_ctrl_c_ends_a_long_wait() -> None:
    """No signal interrupts the completion port's wait: the C handler's write to the
    loop's self-pipe (signal.set_wakeup_fd) must end it."""
    import signal

    timer = threading.Timer(0.5, signal.raise_signal, (signal.SIGINT,))
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            pike_asyncio.run(asyncio.sleep(30), backend="iocp")
    finally:
        timer.join()
    assert time.monotonic() - started < 10
