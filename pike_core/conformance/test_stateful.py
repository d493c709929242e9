"""Stateful property test: random interleavings of connects, accepts, sends of random
sizes, reads, ``defer_write``, half-closes and closes (from either side, from inside
callbacks, from timers and from other threads) over several connections.

Invariants, checked after every step and at the end of each example:

* every byte a side's ``write``/``send`` took arrives at the other side once and in
  order (what has arrived is always a prefix of what was sent; on a connection nobody
  cut short, all of it arrives);
* no callback reaches a closed transport; ``handle_connect`` at most once;
  ``handle_close`` at most once, and exactly once for each transport that saw end of
  stream or a reset;
* once everything is closed, the process holds no more descriptors than before.

The CI budget is small; ``PIKE_SOAK=1`` runs a long soak (``PIKE_SOAK_EXAMPLES`` sets
the number of examples per backend), which needs ``--pike-timeout 0``.  Outside a soak a
failing example is reported as found, not shrunk: shrinking one over real sockets takes
minutes, past the suite's watchdog, which would lose the report.
"""

from __future__ import annotations

import errno
import gc
import os
import socket
import sys
import threading
from typing import Callable, Dict, List, Optional, Type

import pytest

from pike_core import Backend, BackendStatus, Poller, Transport, WriteBufferFullError

from .support import DEADLINE, open_descriptor_count, run_until

hypothesis = pytest.importorskip(
    "hypothesis", reason="the stateful tests need hypothesis: pip install hypothesis"
)
from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (  # noqa: E402
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

_PEER_GONE = (errno.ENOTCONN, errno.ECONNRESET, errno.EPIPE)
SOAK = os.environ.get("PIKE_SOAK", "") not in ("", "0")
EXAMPLES = int(os.environ.get("PIKE_SOAK_EXAMPLES", "1000")) if SOAK else 50
STEPS = 60 if SOAK else 30
MAX_PAIRS = 5
#: Seconds an example may take to settle at its end; loopback needs far less.
SETTLE = DEADLINE

# Stream contents depend on the position in the stream, so a byte lost, repeated or
# moved shows as a mismatch, while making a chunk costs one slice.
_PERIOD = 65521
_BLOCK = os.urandom(_PERIOD + (1 << 20))

#: Examples run per backend, by name: the figures the issue asks for.
examples_run: Dict[str, int] = {}


def _stream(position: int, size: int) -> bytes:
    start = position % _PERIOD
    return _BLOCK[start : start + size]


class Pair:
    """A client transport and the server transport that accepted it."""

    def __init__(self, client: Peer) -> None:
        self.client = client
        self.server: Optional[Peer] = None
        # Set once a side was cut short (closed at once, or reset): bytes in flight may
        # be lost, but never reordered, repeated or corrupted.
        self.lossy = False

    def sides(self) -> List[Peer]:
        return [p for p in (self.client, self.server) if p is not None]

    def other(self, peer: Peer) -> Optional[Peer]:
        return self.server if peer is self.client else self.client


class Peer(Transport):
    write_limit = 2 << 20

    def __init__(
        self, machine: TransportMachine, pair: Optional[Pair], sock: Optional[socket.socket]
    ) -> None:
        self.machine = machine
        self.pair = pair
        self.sent = bytearray()
        self.received = bytearray()
        self.read_size = 65536
        self.connects = 0
        self.closes = 0
        self.close_in_read = False
        self.half_closed = False
        self.finishing = False
        self.closed_by_us = False
        self.errors: List[BaseException] = []
        super().__init__(alternate_poller=machine.poller, sock=sock)

    def _callback(self, name: str) -> None:
        if self.closed:
            self.machine.violations.append(f"handle_{name} reached closed {self!r}")

    def handle_connect(self) -> None:
        self._callback("connect")
        self.connects += 1

    def handle_read(self) -> None:
        self._callback("read")
        self.received += self.recv(self.read_size)
        if self.close_in_read and not self.closed:
            self.cut()

    def handle_write(self) -> None:
        self._callback("write")

    def handle_close(self) -> None:
        self._callback("close")
        self.closes += 1
        self.finishing = True
        self.close_when_done()

    def handle_error(self) -> None:
        self._callback("error")
        self.errors.append(sys.exc_info()[1])  # type: ignore[arg-type]
        if self.pair is not None:
            self.pair.lossy = True
        self.closed_by_us = True
        self.close()

    def can_send(self) -> bool:
        return not (self.closed or self.half_closed or self.finishing or self.connecting)

    def give(self, size: int, direct: bool) -> None:
        """Send ``size`` more bytes of this side's stream, through ``write`` or ``send``."""
        if not self.can_send() or (direct and self.write_buffer_size):
            return
        data = _stream(len(self.sent), size)
        if direct:
            self.sent += data[: self.send(data)]
            return
        try:
            self.write(data)
        except WriteBufferFullError:
            return
        self.sent += data

    def cut(self) -> None:
        """Close at once: what is in flight may be lost, and the pair knows it."""
        if self.pair is not None:
            self.pair.lossy = True
        self.closed_by_us = True
        self.close()


class Accepter(Transport):
    def __init__(self, machine: TransportMachine) -> None:
        self.machine = machine
        super().__init__(alternate_poller=machine.poller)
        self.create_socket()
        self.bind(("127.0.0.1", 0))
        self.listen(64)

    def handle_accepted(self, sock: socket.socket, addr: object) -> None:
        pair = self.machine.connecting.pop(addr, None)
        peer = Peer(self.machine, pair, sock)
        if pair is None:
            # A connection whose client we do not track cannot happen on loopback.
            self.machine.violations.append(f"accepted an unknown connection from {addr!r}")
            peer.close()
            return
        pair.server = peer


class TransportMachine(RuleBasedStateMachine):
    backend_class: Type[Backend]

    def __init__(self) -> None:
        super().__init__()
        gc.collect()
        self.descriptors_before = open_descriptor_count()
        self.poller = Poller(self.backend_class())
        self.violations: List[str] = []
        self.pairs: List[Pair] = []
        self.connecting: Dict[object, Pair] = {}
        self.listener = Accepter(self)

    # --- choosing a side ----------------------------------------------------------

    def _side(self, index: int, server: bool) -> Optional[Peer]:
        if not self.pairs:
            return None
        pair = self.pairs[index % len(self.pairs)]
        return pair.server if server else pair.client

    def _open_side(self, index: int, server: bool) -> Optional[Peer]:
        peer = self._side(index, server)
        return peer if peer is not None and not peer.closed else None

    # --- rules --------------------------------------------------------------------

    @precondition(lambda self: len(self.pairs) < MAX_PAIRS)
    @rule()
    def connect(self) -> None:
        client = Peer(self, None, None)
        client.create_socket()
        pair = Pair(client)
        client.pair = pair
        self.pairs.append(pair)
        client.connect(self.listener.addr)
        assert client.socket is not None
        self.connecting[client.socket.getsockname()] = pair

    @rule(n=st.integers(1, 8), wait=st.sampled_from([0.0, 0.0, 0.005]))
    def poll(self, n: int, wait: float) -> None:
        for _ in range(n):
            self.poller.poll(wait)

    @rule(
        index=st.integers(0, MAX_PAIRS),
        server=st.booleans(),
        size=st.one_of(st.integers(1, 64), st.integers(1, 300_000)),
        direct=st.booleans(),
    )
    def send(self, index: int, server: bool, size: int, direct: bool) -> None:
        peer = self._open_side(index, server)
        if peer is not None:
            peer.give(size, direct)

    @rule(index=st.integers(0, MAX_PAIRS), server=st.booleans(), size=st.sampled_from([512, 4096, 65536]))
    def read_size(self, index: int, server: bool, size: int) -> None:
        peer = self._side(index, server)
        if peer is not None:
            peer.read_size = size

    @rule(index=st.integers(0, MAX_PAIRS), server=st.booleans())
    def defer_write(self, index: int, server: bool) -> None:
        peer = self._open_side(index, server)
        if peer is not None and not peer.connecting:
            self.poller.defer_write(peer)

    @rule(index=st.integers(0, MAX_PAIRS), server=st.booleans())
    def half_close(self, index: int, server: bool) -> None:
        peer = self._open_side(index, server)
        # Only with nothing buffered: shutdown() would cut off bytes write() still holds.
        if peer is not None and peer.can_send() and not peer.write_buffer_size:
            peer.half_closed = True
            try:
                peer.shutdown(socket.SHUT_WR)
            except OSError as exc:
                # The other side was cut short and its reset is here before its callback.
                if exc.errno not in _PEER_GONE or peer.pair is None or not peer.pair.lossy:
                    raise

    @rule(index=st.integers(0, MAX_PAIRS), server=st.booleans())
    def close_at_once(self, index: int, server: bool) -> None:
        peer = self._open_side(index, server)
        if peer is not None:
            peer.cut()

    @rule(index=st.integers(0, MAX_PAIRS), server=st.booleans())
    def close_when_done(self, index: int, server: bool) -> None:
        peer = self._open_side(index, server)
        if peer is not None and peer.pair is not None:
            # It stops reading: what the other side sends meanwhile may be reset away.
            peer.pair.lossy = True
            peer.finishing = peer.closed_by_us = True
            peer.close_when_done()

    @rule(index=st.integers(0, MAX_PAIRS), server=st.booleans())
    def close_inside_next_read(self, index: int, server: bool) -> None:
        peer = self._open_side(index, server)
        if peer is not None and peer.pair is not None:
            peer.pair.lossy = True
            peer.close_in_read = True

    def _later(self, peer: Peer, action: str, size: int) -> Callable[[], None]:
        if action == "close":
            if peer.pair is not None:
                peer.pair.lossy = True
            return lambda: None if peer.closed else peer.cut()
        return lambda: None if peer.closed else peer.give(size, direct=False)

    @rule(
        index=st.integers(0, MAX_PAIRS),
        server=st.booleans(),
        action=st.sampled_from(["write", "write", "close"]),
        size=st.integers(1, 100_000),
        delay=st.sampled_from([0.0, 0.001, 0.01]),
    )
    def timer(self, index: int, server: bool, action: str, size: int, delay: float) -> None:
        peer = self._open_side(index, server)
        if peer is not None:
            self.poller.call_later(delay, self._later(peer, action, size))

    @rule(
        index=st.integers(0, MAX_PAIRS),
        server=st.booleans(),
        action=st.sampled_from(["write", "write", "close"]),
        size=st.integers(1, 100_000),
    )
    def from_another_thread(self, index: int, server: bool, action: str, size: int) -> None:
        peer = self._open_side(index, server)
        if peer is None:
            return
        callback = self._later(peer, action, size)
        thread = threading.Thread(target=self.poller.call_soon_threadsafe, args=(callback,))
        thread.start()
        thread.join()

    # --- invariants ---------------------------------------------------------------

    @invariant()
    def nothing_lost_reordered_or_repeated(self) -> None:
        assert not self.violations, self.violations
        for pair in self.pairs:
            for peer in pair.sides():
                other = pair.other(peer)
                if other is not None:
                    assert other.sent.startswith(peer.received), (
                        f"{peer!r} received bytes that {other!r} did not send in that order"
                    )
                assert peer.connects <= 1
                assert peer.closes <= 1

    def teardown(self) -> None:
        try:
            self._settle()
            self._check_end()
        finally:
            self.listener.close()
            self.poller.close()
            self.pairs.clear()
            self.connecting.clear()
        gc.collect()
        assert open_descriptor_count() <= self.descriptors_before, "descriptors leaked"

    def _settle(self) -> None:
        """Let every connection finish: intact ones deliver everything, then all close."""
        run_until(
            self.poller,
            lambda: all(p.client.closed or (p.client.connected and p.server is not None) for p in self.pairs),
            timeout=SETTLE,
            what="every open client to be connected and accepted",
        )
        for pair in self.pairs:
            if not pair.lossy:
                self._wait_delivered(pair)
        # Then every client still open ends its side; its peer follows on end of stream.
        for pair in self.pairs:
            if not pair.client.closed and not pair.client.finishing:
                pair.client.finishing = pair.client.closed_by_us = True
                pair.client.close_when_done()
        run_until(
            self.poller,
            lambda: all(peer.closed for pair in self.pairs for peer in pair.sides()),
            timeout=SETTLE,
            what="every transport to close once its peer closed",
        )

    def _wait_delivered(self, pair: Pair) -> None:
        server = pair.server
        if server is None:
            return

        def delivered() -> bool:
            return pair.lossy or (
                bytes(server.received) == bytes(pair.client.sent)
                and bytes(pair.client.received) == bytes(server.sent)
            )

        run_until(
            self.poller, delivered, timeout=SETTLE, what=f"every byte between {pair.client!r} and {server!r}"
        )

    def _check_end(self) -> None:
        self.nothing_lost_reordered_or_repeated()
        for pair in self.pairs:
            if not pair.lossy and pair.server is not None:
                assert pair.server.received == pair.client.sent
                assert pair.client.received == pair.server.sent
            for peer in pair.sides():
                if not peer.closed_by_us:
                    # It closed because its peer did: that must have been reported.
                    assert peer.closes == 1, (peer, peer.closes, peer.errors)
            if pair.server is not None and not pair.client.closed_by_us:
                assert pair.client.connects == 1


def test_random_interleavings_lose_nothing(pike_backend: BackendStatus) -> None:
    assert pike_backend.backend_class is not None
    backend_class: Type[Backend] = pike_backend.backend_class

    class Machine(TransportMachine):
        def __init__(self) -> None:
            self.backend_class = backend_class
            super().__init__()
            examples_run[pike_backend.name] = examples_run.get(pike_backend.name, 0) + 1

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=not SOAK,
            database=None,
            phases=list(Phase) if SOAK else [p for p in Phase if p is not Phase.shrink],
        ),
    )
    print(f"stateful[{pike_backend.name}]: {examples_run[pike_backend.name]} examples, 0 violations")
