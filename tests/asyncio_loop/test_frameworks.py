"""Third-party asyncio code on the pike loop, on every backend usable here: tornado's HTTP
server and client, aiohttp's server and client, and pyzmq's ``zmq.asyncio`` REQ/REP.

They are the libraries that need ``add_reader``: on Windows's default proactor loop
pyzmq and tornado start a selector thread (with a warning); on the pike loop they must
run in the loop's own thread.  ``tools/windows_conformance.py`` runs this module under
Windows CPython, where that is the point.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading
import warnings
from typing import Any, Iterator, List, Set, Tuple

import pike_asyncio
import pytest

from pike_core import available_backends

USABLE = [status.name for status in available_backends() if status.usable]
BACKENDS = pytest.mark.parametrize("backend", USABLE)


def _under_wine() -> bool:
    if sys.platform != "win32":
        return False
    import ctypes

    return hasattr(ctypes.WinDLL("ntdll"), "wine_get_version")


def _library(name: str) -> Any:
    if _under_wine():
        # aiohttp calls platform.system(), whose WMI query reaches a function Wine 8 lacks
        # and aborts the process; without WMI, platform asks sys.getwindowsversion().
        import platform

        def no_wmi(*_: object) -> Any:
            raise OSError("no WMI under Wine")

        platform._wmi_query = no_wmi  # type: ignore[attr-defined]
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        pytest.skip(f"{name} is not installed here ({exc}); requirements/test.txt installs it")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The test runs in this thread alone, and nothing warns about the loop."""
    before = threading.active_count()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    loop_warnings = [str(w.message) for w in caught if "loop" in str(w.message).lower()]
    assert loop_warnings == []
    assert threading.active_count() == before


def _threads() -> List[str]:
    return [thread.name for thread in threading.enumerate()]


def _assert_no_new_threads(before: List[str]) -> None:
    """Only asyncio's default executor (where getaddrinfo runs, named ``asyncio_N``) may
    have started threads: a selector thread would be any other."""
    new = set(_threads()) - set(before)
    assert {name for name in new if not name.startswith("asyncio_")} == set()


@BACKENDS
def test_tornado_http_server_and_client(backend: str, one_thread: None) -> None:
    _library("tornado")
    from tornado.httpclient import AsyncHTTPClient
    from tornado.httpserver import HTTPServer
    from tornado.ioloop import IOLoop
    from tornado.netutil import bind_sockets
    from tornado.web import Application, RequestHandler

    class Hello(RequestHandler):
        def get(self, name: str) -> None:
            self.write(f"hello {name} from {IOLoop.current().asyncio_loop.backend.name}")  # type: ignore[attr-defined]

        def post(self, name: str) -> None:
            self.write(self.request.body[::-1])

    async def main() -> List[str]:
        threads = _threads()
        sockets = bind_sockets(0, "127.0.0.1")
        port = sockets[0].getsockname()[1]
        server = HTTPServer(Application([(r"/(\w+)", Hello)]))
        server.add_sockets(sockets)
        client = AsyncHTTPClient()
        try:
            got = await client.fetch(f"http://127.0.0.1:{port}/pike")
            posted = await client.fetch(
                f"http://127.0.0.1:{port}/x", method="POST", body=b"0123456789" * 1000
            )
            assert posted.body == (b"0123456789" * 1000)[::-1]
            _assert_no_new_threads(threads)
            return [got.body.decode()]
        finally:
            client.close()
            server.stop()
            await server.close_all_connections()

    assert pike_asyncio.run(main(), backend=backend) == [f"hello pike from {backend}"]


@BACKENDS
def test_aiohttp_server_and_client(backend: str, one_thread: None) -> None:
    aiohttp = _library("aiohttp")
    from aiohttp import web

    async def hello(request: Any) -> Any:
        loop = asyncio.get_running_loop()
        return web.Response(text=f"hello {request.match_info['name']} from {loop.backend.name}")  # type: ignore[attr-defined]

    async def echo(request: Any) -> Any:
        return web.Response(body=(await request.read())[::-1])

    async def main() -> str:
        threads = _threads()
        app = web.Application()
        app.add_routes([web.get("/{name}", hello), web.post("/echo", echo)])
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/pike") as response:
                    text: str = await response.text()
                async with session.post(f"http://127.0.0.1:{port}/echo", data=b"abc" * 10000) as response:
                    assert await response.read() == (b"abc" * 10000)[::-1]
            _assert_no_new_threads(threads)
            return text
        finally:
            await runner.cleanup()

    assert pike_asyncio.run(main(), backend=backend) == f"hello pike from {backend}"


async def _zmq_round_trips(count: int) -> Tuple[List[bytes], Set[str]]:
    """``count`` REQ/REP round trips with ``zmq.asyncio`` on the running loop.

    :returns: the replies, and the names of the threads started meanwhile that are not
        asyncio's executor (pyzmq's own I/O threads are native, not Python threads: a
        new Python thread is a selector thread).
    """
    zmq = _library("zmq")
    zmq_asyncio = _library("zmq.asyncio")
    before = _threads()
    context = zmq_asyncio.Context()
    rep = context.socket(zmq.REP)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    req = context.socket(zmq.REQ)
    req.connect(f"tcp://127.0.0.1:{port}")

    async def serve() -> None:
        for _ in range(count):
            message = await rep.recv()
            await rep.send(message.upper())

    replies = []
    try:
        server = asyncio.ensure_future(serve())
        for i in range(count):
            await req.send(f"request {i}".encode())
            replies.append(await asyncio.wait_for(req.recv(), 30))
        await asyncio.wait_for(server, 30)
        started = {name for name in set(_threads()) - set(before) if not name.startswith("asyncio_")}
    finally:
        req.close(linger=0)
        rep.close(linger=0)
        context.term()
    return replies, started


@BACKENDS
def test_zmq_asyncio_req_rep_without_a_selector_thread(backend: str, one_thread: None) -> None:
    replies, started = pike_asyncio.run(_zmq_round_trips(100), backend=backend)
    assert replies == [f"REQUEST {i}".encode() for i in range(100)]
    assert started == set()


@pytest.mark.skipif(sys.platform != "win32", reason="the proactor loop is Windows's")
def test_control_zmq_on_the_proactor_loop_warns_and_starts_a_selector_thread() -> None:
    """What the test above rules out, seen on asyncio's default Windows loop: the checks
    of the warning and of the threads can fail."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        replies, started = asyncio.run(_zmq_round_trips(5))
    assert len(replies) == 5
    assert any("Proactor event loop does not implement add_reader" in str(w.message) for w in caught)
    assert started != set()
