"""``pike-core demo``: an echo server and ping-pong clients over loopback on one poller.

Written the way a user writes pike-core code, so it doubles as an example.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
import sys
import time
from typing import List, Optional

from pike_core import CapacityError, Poller, Transport

#: What running out of descriptors (or socket buffers) looks like.
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS})


class DemoError(Exception):
    """The demo cannot run as asked; the message says why and what to change."""


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
        #: Why accepting stopped (out of descriptors), if it did.
        self.accept_error: Optional[OSError] = None
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind(address)
        self.listen(1024)

    def handle_accepted(self, sock: socket.socket, addr: object) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.handlers.append(EchoHandler(self.poller, sock))

    def handle_accept_error(self, exc: OSError) -> None:
        self.accept_error = exc


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


def descriptor_limit() -> Optional[int]:
    """How many descriptors this process may open (RLIMIT_NOFILE), where the OS says."""
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def descriptors_needed(clients: int) -> int:
    """Descriptors the demo opens for ``clients``: each client's socket and the server's
    end of it, the listener, and some room for what the process has open already."""
    return 2 * clients + 16


def _out_of_descriptors(clients: int, opened: int, limit: Optional[int], exc: Optional[OSError]) -> DemoError:
    needed = descriptors_needed(clients)
    if limit is None:
        where = f"the system refused more sockets ({exc.strerror if exc else 'out of descriptors'})"
        fix = "use fewer --clients"
    else:
        where = f"this process may open {limit:,} file descriptors (RLIMIT_NOFILE; `ulimit -n` shows it)"
        fix = f"use fewer --clients, or raise the limit in the shell first: ulimit -n {needed}"
    started = (
        f"after {opened:,} of {clients:,} clients" if exc else f"{clients:,} clients need about {needed:,}"
    )
    return DemoError(
        f"out of file descriptors: {started}: {where}, and each client needs two (its socket and "
        f"the server's end of it); {fix}"
    )


def run_demo(
    poller: Poller, clients: int = 16, messages: int = 2000, size: int = 1024, timeout: float = 120
) -> DemoResult:
    """Run the echo demo on ``poller``; the clients check every byte they get back.

    :raises ValueError: ``clients``, ``messages`` or ``size`` is below 1.
    :raises DemoError: the process ran out of descriptors, or the backend cannot watch
        as many sockets as asked for; nothing was left open.
    """
    for name, value in (("clients", clients), ("messages", messages), ("size", size)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    # Asked before opening anything: out of descriptors, even importing resource fails.
    limit = descriptor_limit()
    if limit is not None and descriptors_needed(clients) > limit:
        raise _out_of_descriptors(clients, 0, limit, None)
    server = EchoServer(poller)
    pingers: List[PingClient] = []
    try:
        start = time.perf_counter()
        try:
            for _ in range(clients):
                pingers.append(PingClient(poller, server.addr, size, messages))
        except CapacityError as exc:
            raise DemoError(
                f"backend {poller.name!r} cannot watch {clients:,} clients ({exc}); use fewer --clients"
            ) from exc
        except OSError as exc:
            if exc.errno not in _OUT_OF_DESCRIPTORS:
                raise
            raise _out_of_descriptors(clients, len(pingers), limit, exc) from exc
        deadline = time.monotonic() + timeout
        while any(not p.closed for p in pingers) and time.monotonic() < deadline:
            if server.accept_error is not None:
                raise _out_of_descriptors(clients, len(server.handlers), limit, server.accept_error)
            poller.poll(1.0)
        seconds = time.perf_counter() - start
    finally:
        for transport in [server, *server.handlers, *pingers]:
            transport.close()
    failures = [f"client {i}: {p.failure}" for i, p in enumerate(pingers) if p.failure]
    failures += [
        f"client {i}: unfinished after {timeout} s"
        for i, p in enumerate(pingers)
        if p.remaining and not p.failure
    ]
    return DemoResult(poller.name, clients, messages, size, seconds, failures)
