"""The CPU time Python spends per read event, measured without the kernel, and per
connection.

``python tools/dispatch_cost.py [--events N]`` runs the benchmark's echo servers (pike-core's,
``pike_bench.servers.EchoHandler``, and the hand-written ``selectors`` loop) on sockets and a
wait that cost no system call: the wait returns the same batch of N read events each time,
and every socket's ``recv`` returns 1 KiB at once and ``send`` takes it all.  What is left is
the framework's own work per event (the loop, the dispatch, ``recv`` and ``write``), in
nanoseconds of this thread's CPU time, the best of several rounds.  CPU time, unlike the
echo benchmark's rates, hardly moves when other processes share the machine, so it shows a
change to the hot path of a few percent that ``pike-core bench`` cannot resolve there.

It then times a connection's life in pike-core's server on real sockets whose peer has
already finished: an accepted socket adopted by the echo handler, its first read finding
end of stream, ``handle_close`` and ``close()`` (system calls included: the same for
every version of the core, so a difference is the core's own).
"""

from __future__ import annotations

import argparse
import selectors
import socket
import sys
import time
from typing import Callable, Collection, List, Optional, Sequence, Tuple

from pike_bench.servers import EchoHandler, SelectorsEcho

from pike_core import Backend, Poller, new_poller
from pike_core.transport import AcceptedSocket

MESSAGE = b"x" * 1024


class FakeSocket:
    """A connected socket whose every read finds a message and whose sends all fit."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def recv(self, size: int) -> bytes:
        return MESSAGE

    def send(self, data: bytes) -> int:
        return len(data)

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        pass


class RepeatingBackend(Backend):
    """A backend whose every wait returns ``batch``."""

    name = "repeating"
    has_wake = True

    def __init__(self) -> None:
        self.batch: List[Tuple[int, int]] = []

    def register(self, fd: int, mask: int) -> None:
        pass

    def modify(self, fd: int, mask: int) -> None:
        pass

    def unregister(self, fd: int) -> None:
        pass

    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        return self.batch

    def wake(self) -> None:
        pass

    def close(self) -> None:
        pass


class RepeatingEpoll:
    """What ``selectors.EpollSelector`` calls on its epoll object, returning ``batch``."""

    def __init__(self) -> None:
        self.batch: List[Tuple[int, int]] = []

    def poll(self, timeout: float, maxevents: int) -> List[Tuple[int, int]]:
        return self.batch

    def register(self, fd: int, mask: int) -> None:
        pass


def pike_passes(events: int, keep: List[socket.socket]) -> Callable[[int], None]:
    """``Poller.loop`` of the README's echo server over ``events`` connections, for a
    number of passes."""
    backend = RepeatingBackend()
    poller = Poller(backend)
    for _ in range(events):
        a, b = socket.socketpair()
        keep += (a, b)
        handler = EchoHandler(poller, a)
        handler.socket = FakeSocket(a.fileno())  # type: ignore[assignment]
        backend.batch.append((a.fileno(), 1))

    def run(passes: int) -> None:
        poller.loop(count=passes)

    return run


def selectors_passes(events: int, keep: List[socket.socket]) -> Callable[[int], None]:
    """The hand-written selectors loop over ``events`` connections, for a number of
    passes."""
    server = SelectorsEcho(0)
    keep.append(server.listener)
    fake = RepeatingEpoll()
    for _ in range(events):
        a, b = socket.socketpair()
        keep += (a, b)
        server.sel.register(FakeSocket(a.fileno()), selectors.EVENT_READ)
        fake.batch.append((a.fileno(), 1))
    server.sel._selector = fake  # type: ignore[attr-defined]
    select, listener, echo = server.sel.select, server.listener, server.echo

    def run(passes: int) -> None:
        # SelectorsEcho.run, counting its passes.
        for _ in range(passes):
            for key, _ in select():
                if key.fileobj is listener:
                    server.accept()
                else:
                    echo(key.fileobj)  # type: ignore[arg-type]

    return run


def cost(run: Callable[[int], None], events: int, rounds: int = 7) -> float:
    """Nanoseconds of CPU per event: the best of ``rounds`` timings."""
    passes = max(200_000 // events, 1000)
    run(passes // 10)
    best = float("inf")
    for _ in range(rounds):
        start = time.thread_time()
        run(passes)
        best = min(best, (time.thread_time() - start) / passes / events)
    return best * 1e9


def lifecycle_cost(connections: int = 1000, rounds: int = 15) -> float:
    """Microseconds of CPU per connection adopted, ended by its peer and closed: the best
    of ``rounds`` batches."""
    poller = new_poller("epoll" if sys.platform.startswith("linux") else None)
    best = float("inf")
    try:
        for _ in range(rounds):
            accepted = []
            for _ in range(connections):
                a, b = socket.socketpair()
                accepted.append(AcceptedSocket(a.family, a.type, a.proto, a.detach()))
                b.close()
            start = time.thread_time()
            handlers = [EchoHandler(poller, sock) for sock in accepted]
            for handler in handlers:
                handler.handle_read()
            best = min(best, (time.thread_time() - start) / connections)
    finally:
        poller.close()
    return best * 1e6


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", default="1,64", help="comma-separated batch sizes (default 1,64)")
    args = parser.parse_args(argv)
    # First, while this is the only poller (each one more is asked about every new
    # descriptor, as one socket may not be registered with two).
    lifecycle = lifecycle_cost()
    keep: List[socket.socket] = []
    for events in (int(n) for n in args.events.split(",")):
        pike = cost(pike_passes(events, keep), events)
        by_hand = cost(selectors_passes(events, keep), events)
        print(
            f"{events:4} events per wait: pike-core {pike:6.0f} ns, selectors loop {by_hand:6.0f} ns "
            f"per read event (CPU time, Python only)"
        )
    for sock in keep:
        sock.close()
    print(f"a connection adopted, ended and closed: {lifecycle:.2f} us (CPU time, system calls included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
