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
* ``pike-asyncio``: the same ``asyncio.Protocol`` server on pike-asyncio's loop (asyncio's
  selector loop on a ``PikeSelector``) over the named backend.

Every server echoes with its framework's buffered write (``Transport.write``,
``asyncio.Transport.write``), sets TCP_NODELAY on accepted connections (asyncio does so
by itself) and listens with the same backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import sys
from typing import Optional, Sequence, Tuple, cast

from pike_core.discovery import registry
from pike_core.poller import Poller
from pike_core.transport import Transport

BACKLOG = 4096
HOST = "127.0.0.1"


class EchoHandler(Transport):
    """One connection: whatever arrives goes back through the buffered ``write``."""

    #: ``write`` said the peer is not keeping up; wait for ``handle_drain``.
    full = False

    def handle_read(self) -> None:
        # Back-pressure: while the peer does not take its echo, the data stays in the
        # kernel and TCP slows the sender.  (pike-core cannot pause read events, so a
        # level-triggered backend reports them again meanwhile.)
        if self.full:
            return
        data = self.recv(65536)
        if data and not self.write(data):
            self.full = True

    def handle_drain(self) -> None:
        self.full = False


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

    It calls the same backend primitive and the same ``Transport._handle_events`` as
    :meth:`Poller.poll`, and applies interest changes the same way, but has no timers, no
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


def announce(sock: socket.socket) -> None:
    print("PORT", sock.getsockname()[1], flush=True)


def raise_fd_limit() -> None:
    # 5,000 idle connections need more descriptors than a common soft limit of 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pike_bench.servers", description=__doc__)
    parser.add_argument("kind", choices=["pike", "pike-own-loop", "pike-asyncio", "asyncio", "uvloop"])
    parser.add_argument("--backend", help="pike backend name (pike kinds only)")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    raise_fd_limit()
    if args.kind == "asyncio":
        asyncio.run(serve_asyncio(args.port))
    elif args.kind == "uvloop":
        import uvloop  # noqa: PLC0415 - optional: only this server needs it

        uvloop.run(serve_asyncio(args.port))
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
