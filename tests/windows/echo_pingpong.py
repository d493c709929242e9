"""Echo ping-pong throughput of pike-core backends and of asyncio's own loop, side by side.

Each run opens a few loopback connections, client and echo server in one event loop, and
counts round trips of a small message for a fixed time.  The Windows step of CI runs it
under Wine with the iocp and select backends and asyncio's proactor loop; the figures are
information, not a target (Wine's throughput is far below Windows' and noisy)::

    python echo_pingpong.py [--seconds 2] [--connections 8] iocp select
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from typing import List, Optional, Sequence

from pike_core import Poller, Transport, new_poller

MESSAGE = b"p" * 64


class EchoPeer(Transport):
    def handle_read(self) -> None:
        data = self.recv(65536)
        if data:
            self.send(data)


class EchoListener(Transport):
    def handle_accepted(self, sock: socket.socket, addr: object) -> None:
        EchoPeer(alternate_poller=self.poller, sock=sock)


class PingClient(Transport):
    """Sends MESSAGE, waits for all of it to come back, repeats; counts round trips."""

    def __init__(self, poller: Poller) -> None:
        super().__init__(alternate_poller=poller)
        self.round_trips = 0
        self.pending = 0

    def handle_connect(self) -> None:
        self.ping()

    def ping(self) -> None:
        self.pending = len(MESSAGE)
        self.send(MESSAGE)

    def handle_read(self) -> None:
        self.pending -= len(self.recv(65536))
        if self.pending <= 0:
            self.round_trips += 1
            self.ping()


def pike_round_trips(backend: str, seconds: float, connections: int) -> float:
    with new_poller(backend) as poller:
        listener = EchoListener(alternate_poller=poller)
        listener.create_socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(connections)
        clients: List[PingClient] = []
        for _ in range(connections):
            client = PingClient(poller)
            client.create_socket()
            client.connect(listener.addr)
            clients.append(client)
        poller.loop(timeout=0.5)  # connected and warmed up
        start_count = sum(c.round_trips for c in clients)
        start = time.perf_counter()
        poller.loop(timeout=seconds)
        elapsed = time.perf_counter() - start
        return (sum(c.round_trips for c in clients) - start_count) / elapsed


class _EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class _PingProtocol(_EchoProtocol):
    round_trips = 0
    pending = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.ping()

    def ping(self) -> None:
        self.pending = len(MESSAGE)
        self.transport.write(MESSAGE)

    def data_received(self, data: bytes) -> None:
        self.pending -= len(data)
        if self.pending <= 0:
            self.round_trips += 1
            self.ping()


async def _asyncio_round_trips(seconds: float, connections: int) -> float:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_EchoProtocol, "127.0.0.1", 0)
    address = server.sockets[0].getsockname()
    pings = [
        (await loop.create_connection(_PingProtocol, address[0], address[1]))[1] for _ in range(connections)
    ]
    await asyncio.sleep(0.5)
    start_count = sum(p.round_trips for p in pings)
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - start
    result = (sum(p.round_trips for p in pings) - start_count) / elapsed
    for ping in pings:
        ping.transport.close()
    server.close()
    await server.wait_closed()
    return result


def asyncio_round_trips(seconds: float, connections: int) -> float:
    loop: asyncio.AbstractEventLoop
    if sys.platform == "win32":
        loop = asyncio.ProactorEventLoop()
    else:
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_asyncio_round_trips(seconds, connections))
    finally:
        loop.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backends", nargs="+", help="pike-core backend names")
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per loop")
    parser.add_argument("--connections", type=int, default=8, help="concurrent ping-pong connections")
    options = parser.parse_args(argv)
    asyncio_name = "asyncio proactor" if sys.platform == "win32" else "asyncio default loop"
    figures = [
        (f"pike {name}", pike_round_trips(name, options.seconds, options.connections))
        for name in options.backends
    ]
    figures.append((asyncio_name, asyncio_round_trips(options.seconds, options.connections)))
    print(
        f"echo ping-pong, {len(MESSAGE)}-byte messages, {options.connections} connections, "
        f"{options.seconds:g} s each (round trips per second):"
    )
    print("  " + "".join(f"{name:>22}" for name, _ in figures))
    print("  " + "".join(f"{value:>22,.0f}" for _, value in figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
