"""The Python echo servers the benchmark compares, each run as its own process.

``python -m pike_bench.servers KIND [--backend NAME] [--port P]`` prints ``PORT <n>``
once listening and serves until killed (SIGTERM's default action ends it; no handler is
installed, so none runs inside the measured loop).  KIND is

* ``pike``: a :class:`~pike_core.Transport` echo server on the named backend, run by
  ``Poller.loop()`` -- the code a user of pike-core writes;
* ``pike-own-loop``: the same transports and backend, but driven by a minimal loop
  written for this one job, which measures what the core's generic dispatch costs;
* ``asyncio`` / ``uvloop``: an ``asyncio.Protocol`` echo server on the stdlib loop or
  on uvloop;
* ``pyasyncore`` / ``asyncore-pike``: one asyncore echo server (``dispatcher_with_send``,
  ``loop(use_poll=True)``), unchanged, on PyPI's ``pyasyncore`` or on the drop-in
  :mod:`pike_core.compat.asyncore`;
* ``selectors``: the loop a user writes without a framework, on
  ``selectors.DefaultSelector``;
* ``pike-asyncio``: the same ``asyncio.Protocol`` server on pike-asyncio's loop (asyncio's
  selector loop on a ``PikeSelector``) over the named backend.

Every server echoes with its framework's buffered write (``Transport.write``,
``asyncio.Transport.write``, ``dispatcher_with_send.send``, a buffer of its own), reads at
most 64 KiB at a time (asyncio's transports choose their own size), sets TCP_NODELAY on
accepted connections (asyncio does so by itself) and listens with the same backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import resource
import selectors
import socket
import sys
from types import ModuleType
from typing import Any, Dict, Optional, Sequence, Tuple, cast

from pike_core.discovery import registry
from pike_core.poller import Poller
from pike_core.transport import Transport

BACKLOG = 4096
HOST = "127.0.0.1"
#: The most any server reads at once.
READ_SIZE = 65536


class EchoHandler(Transport):
    """One connection, the README's echo: whatever arrives goes back through the buffered
    ``write``, and reading pauses while the peer does not take its echo."""

    def handle_read(self) -> None:
        data = self.recv(READ_SIZE)
        if data and not self.write(data):
            # Back-pressure: the data stays in the kernel and TCP slows the sender.
            self.pause_reading()

    def handle_drain(self) -> None:
        self.resume_reading()


class EchoListener(Transport):
    """Accepts connections and gives each an :class:`EchoHandler`.

    Unlike the demo's ``EchoServer`` it keeps no list of handlers: the poller holds each
    open one, and a closed one must be freed, or the churn workload would grow the
    server without bound.
    """

    def __init__(self, poller: Poller, address: Tuple[str, int]) -> None:
        super().__init__(alternate_poller=poller)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind(address)
        self.listen(BACKLOG)

    def handle_accepted(self, sock: socket.socket, addr: object) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        EchoHandler(self.poller, sock)


def run_own_loop(poller: Poller) -> None:
    """Drive ``poller``'s transports with the least a loop for this job needs.

    It calls the same backend primitive as :meth:`Poller.poll`, ``Transport._handle_events``
    for every event (the core hands a plain read event to ``handle_read`` itself), and
    applies interest changes the same way, but has no timers, no
    queued callbacks, no stop flag and no check for a descriptor number reused within a
    batch (here a stray event can only reach a just-accepted echo handler as a read that
    finds nothing, which is harmless).
    """
    wait = poller.backend.wait
    get = poller._records.get
    while True:
        if poller._dirty:
            poller._apply()
        for fd, mask in wait(None):
            rec = get(fd)
            if rec is not None:
                rec.channel._handle_events(mask)


class EchoProtocol(asyncio.Protocol):
    """The asyncio echo server: ``data_received`` writes the data back."""

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def serve_asyncio(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, HOST, port, backlog=BACKLOG)
    announce(server.sockets[0])
    await server.serve_forever()


def serve_asyncore(asyncore: Any, port: int) -> None:
    """The asyncore echo server, on whichever ``asyncore`` module is given: the same code
    for PyPI's and for the drop-in, as a user switching between them would run it."""

    class EchoHandler(asyncore.dispatcher_with_send):  # type: ignore[misc]
        def handle_read(self) -> None:
            data = self.recv(READ_SIZE)
            if data:
                self.send(data)

    class EchoServer(asyncore.dispatcher):  # type: ignore[misc]
        def __init__(self) -> None:
            asyncore.dispatcher.__init__(self)
            self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
            self.set_reuse_addr()
            self.bind((HOST, port))
            self.listen(BACKLOG)

        def handle_accepted(self, sock: socket.socket, addr: object) -> None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            EchoHandler(sock)

    announce(EchoServer().socket)
    asyncore.loop(use_poll=True)


def pyasyncore() -> ModuleType:
    """PyPI's ``pyasyncore``, loaded from its own file: ``import asyncore`` would give the
    stdlib's copy on Python 3.11 and older, and the drop-in where its shim is installed."""
    from importlib.metadata import distribution  # noqa: PLC0415 - only this server needs it

    dist = distribution("pyasyncore")
    path = next(f for f in dist.files or () if str(f) in ("asyncore/__init__.py", "asyncore.py"))
    spec = importlib.util.spec_from_file_location("asyncore", str(dist.locate_file(path)))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["asyncore"] = module
    spec.loader.exec_module(module)
    return module


class SelectorsEcho:
    """An echo server as a user writes it on ``selectors`` alone: read, send, keep what
    the socket did not take and stop reading until it is sent."""

    def __init__(self, port: int) -> None:
        self.sel = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, port))
        self.listener.listen(BACKLOG)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ)
        # What each connection still has to send.
        self.pending: Dict[socket.socket, bytes] = {}

    def run(self) -> None:
        while True:
            for key, _ in self.sel.select():
                if key.fileobj is self.listener:
                    self.accept()
                else:
                    self.echo(cast(socket.socket, key.fileobj))

    def accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sel.register(conn, selectors.EVENT_READ)

    def echo(self, sock: socket.socket) -> None:
        data = self.pending.pop(sock, None)
        waiting = data is not None
        if data is None:
            try:
                data = sock.recv(READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.close(sock)
                return
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close(sock)
            return
        if sent < len(data):
            self.pending[sock] = data[sent:]
            if not waiting:
                self.sel.modify(sock, selectors.EVENT_WRITE)
        elif waiting:
            self.sel.modify(sock, selectors.EVENT_READ)

    def close(self, sock: socket.socket) -> None:
        self.sel.unregister(sock)
        self.pending.pop(sock, None)
        sock.close()


def announce(sock: socket.socket) -> None:
    print("PORT", sock.getsockname()[1], flush=True)


def raise_fd_limit() -> None:
    # 5,000 idle connections need more descriptors than a common soft limit of 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pike_bench.servers", description=__doc__)
    parser.add_argument(
        "kind",
        choices=[
            "pike",
            "pike-own-loop",
            "pike-asyncio",
            "asyncio",
            "uvloop",
            "pyasyncore",
            "asyncore-pike",
            "selectors",
        ],
    )
    parser.add_argument("--backend", help="pike backend name (pike kinds only)")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    raise_fd_limit()
    if args.kind == "asyncio":
        asyncio.run(serve_asyncio(args.port))
    elif args.kind == "uvloop":
        import uvloop  # noqa: PLC0415 - optional: only this server needs it

        uvloop.run(serve_asyncio(args.port))
    elif args.kind == "pyasyncore":
        serve_asyncore(pyasyncore(), args.port)
    elif args.kind == "asyncore-pike":
        from pike_core.compat import asyncore  # noqa: PLC0415 - only this server needs it

        serve_asyncore(asyncore, args.port)
    elif args.kind == "selectors":
        server = SelectorsEcho(args.port)
        announce(server.listener)
        server.run()
    elif args.kind == "pike-asyncio":
        import pike_asyncio  # noqa: PLC0415 - a distribution of its own: only this server needs it

        pike_asyncio.run(serve_asyncio(args.port), backend=args.backend)
    else:
        poller = registry.new_poller(args.backend)
        listener = EchoListener(poller, (HOST, args.port))
        assert listener.socket is not None
        announce(listener.socket)
        if args.kind == "pike":
            poller.loop()
        else:
            run_own_loop(poller)
    return 0


if __name__ == "__main__":
    sys.exit(main())
