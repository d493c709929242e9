"""The demo: an echo server and ping-pong clients over loopback on one poller.

Written the way a user writes pike-core code, so it doubles as an example.
"""

from __future__ import annotations

import dataclasses
import socket
import sys
import time
from typing import List, Optional

from .poller import Poller
from .transport import Transport


class EchoHandler(Transport):
    """Server side of one connection: sends back whatever arrives."""

    def __init__(self, poller: Poller, sock: socket.socket) -> None:
        self.backlog = bytearray()
        super().__init__(alternate_poller=poller, sock=sock)

    def handle_read(self) -> None:
        data = self.recv(65536)
        if data:
            self.backlog += data
            self.handle_write()

    def handle_write(self) -> None:
        # A send that would block returns 0 and arms exactly one handle_write.
        while self.backlog:
            sent = self.send(self.backlog)
            if not sent:
                return
            del self.backlog[:sent]


class EchoServer(Transport):
    """Listens on ``address`` and gives each connection an :class:`EchoHandler`."""

    def __init__(self, poller: Poller, address: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        super().__init__(alternate_poller=poller)
        self.handlers: List[EchoHandler] = []
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind(address)
        self.listen(1024)

    def handle_accepted(self, sock: socket.socket, addr: object) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.handlers.append(EchoHandler(self.poller, sock))


class PingClient(Transport):
    """Sends ``size``-byte messages one at a time, each after the previous came back."""

    def __init__(self, poller: Poller, address: object, size: int, count: int) -> None:
        super().__init__(alternate_poller=poller)
        self.message = bytes(i % 251 for i in range(size))
        self.remaining = count
        self.got = bytearray()
        self.failure: Optional[str] = None
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
        self.connect(address)

    def handle_connect(self) -> None:
        self.send(self.message)

    def handle_read(self) -> None:
        self.got += self.recv(65536)
        if len(self.got) < len(self.message):
            return
        if self.got != self.message:
            self.failure = "echo did not match what was sent"
            self.close()
            return
        self.got.clear()
        self.remaining -= 1
        if self.remaining:
            self.send(self.message)
        else:
            self.close()

    def handle_close(self) -> None:
        if self.remaining:
            self.failure = "server closed the connection early"
        self.close()

    def handle_error(self) -> None:
        self.failure = f"{type(sys.exc_info()[1]).__name__}: {sys.exc_info()[1]}"
        self.close()


@dataclasses.dataclass
class DemoResult:
    backend: str
    clients: int
    messages: int
    size: int
    seconds: float
    failures: List[str]

    @property
    def round_trips_per_second(self) -> float:
        return self.clients * self.messages / self.seconds if self.seconds else 0.0

    @property
    def megabytes_per_second(self) -> float:
        return 2 * self.round_trips_per_second * self.size / 1e6


def run_demo(
    poller: Poller, clients: int = 16, messages: int = 2000, size: int = 1024, timeout: float = 120
) -> DemoResult:
    """Run the echo demo on ``poller``; the clients check every byte they get back."""
    server = EchoServer(poller)
    start = time.perf_counter()
    pingers = [PingClient(poller, server.addr, size, messages) for _ in range(clients)]
    deadline = time.monotonic() + timeout
    while any(not p.closed for p in pingers) and time.monotonic() < deadline:
        poller.poll(1.0)
    seconds = time.perf_counter() - start
    failures = [f"client {i}: {p.failure}" for i, p in enumerate(pingers) if p.failure]
    failures += [f"client {i}: unfinished after {timeout} s" for i, p in enumerate(pingers) if not p.closed]
    server.close()
    for handler in server.handlers:
        handler.close()
    return DemoResult(poller.name, clients, messages, size, seconds, failures)
