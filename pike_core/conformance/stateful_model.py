"""What the stateful test (``test_stateful.py``) drives and watches: connections whose
two ends keep account of every byte, datagram endpoints, callbacks given to the poller
that keep account of their runs, and the exceptions the test raises on purpose.

Each piece reports a broken promise by appending a sentence to the machine's list of
violations (through :class:`World`): a callback cannot fail the test itself, since the
poller would take its exception for the program's own.
"""

from __future__ import annotations

import math
import os
import socket
import sys
from array import array
from typing import Dict, List, NamedTuple, Optional, Protocol, Tuple, Type

from pike_core import Poller, TimerHandle, Transport, WriteBufferFullError

# Stream contents depend on the position in the stream, so a byte lost, repeated or
# moved shows as a mismatch, while making a chunk costs one slice.
_PERIOD = 65521
_BLOCK = os.urandom(_PERIOD + (1 << 20))


def stream(position: int, size: int) -> bytes:
    """``size`` bytes of the one stream every side sends, from ``position`` on."""
    start = position % _PERIOD
    return _BLOCK[start : start + size]


# --- exceptions raised on purpose -------------------------------------------------------


class PlannedInterrupt(KeyboardInterrupt):
    """Raised by a callback on purpose: it leaves ``loop()``, as Ctrl-C does."""


class PlannedExit(SystemExit):
    """Raised by a callback on purpose: it leaves ``loop()``, as ``sys.exit()`` does."""


class PlannedBug(Exception):
    """Raised by a callback on purpose: the poller hands it to ``handle_callback_error``,
    which raises :class:`PlannedEscape` out of the loop when ``escape`` is set."""

    def __init__(self, escape: bool) -> None:
        super().__init__("a bug planted by the stateful test")
        self.escape = escape


class PlannedEscape(Exception):
    """Raised by ``handle_callback_error`` on purpose: it leaves ``loop()``."""


class Hang(KeyboardInterrupt):
    """Raised through ``call_soon_threadsafe`` by a watchdog thread into a ``loop()``
    that did not return when it should have: the machine turns it into a failure."""


#: What may leave ``loop()``: everything else escaping it breaks the contract.
PLANNED: Tuple[Type[BaseException], ...] = (PlannedInterrupt, PlannedExit, PlannedEscape)


# --- what a callback does --------------------------------------------------------------


class Action(NamedTuple):
    """What a callback does when it runs (see :meth:`World.perform`): ``kind`` is one of
    :data:`LOOP_ACTIONS` or :data:`TRANSPORT_ACTIONS`, or of what the machine sets up
    itself ("cut_self", "resume_held"); ``target`` the side that ``send`` and ``cut`` act
    on, ``size`` the bytes ``send`` gives."""

    kind: str
    target: Optional[Side] = None
    size: int = 0


#: What a timer or a queued callback may do ("mark" only counts that it ran).
LOOP_ACTIONS = (
    *("mark",) * 4,
    *("send",) * 3,
    "cut",
    *("close_poller",) * 2,
    "nested_poll",
    "nested_loop",
    "pause_others",
    "stop",
    "cancel_others",
    "interrupt",
    "exit",
    "bug",
    "bug_escape",
)
#: What a transport callback may do at the end of its own work.  An exception from it
#: would go to the transport's own ``handle_error``, so the bugs are left out.
TRANSPORT_ACTIONS = (
    *("send",) * 2,
    "cut",
    *("close_poller",) * 2,
    "nested_poll",
    "nested_loop",
    "pause_others",
    *("pause_others_briefly",) * 2,
    "stop",
    "cancel_others",
    "interrupt",
    "exit",
    "reconnect",
)
#: The callbacks of a :class:`Peer` an action can be armed on.
SITES = ("read", "read", "write", "close")


class World(Protocol):
    """What the pieces need of the machine that drives them."""

    poller: Poller
    #: Client socket address -> the pair it belongs to, until the listener accepts it.
    connecting: Dict[object, Pair]

    def violation(self, message: str) -> None:
        """Record a broken promise (the test fails at the end of the step)."""

    def perform(self, action: Action, origin: Optional[Peer]) -> None:
        """Do ``action``, from a callback of ``origin`` (None: a timer or queued callback)."""


class Call:
    """A callback given to the poller (``call_later``, ``call_soon`` or
    ``call_soon_threadsafe``).  It must run exactly once unless cancelled before it ran,
    and never after the poller was closed; one whose delay is beyond the end of the
    example must not run at all."""

    def __init__(self, world: World, site: str, action: Action, delay: float = 0.0) -> None:
        self.world = world
        self.site = site
        self.action = action
        self.delay = delay
        self.runs = 0
        #: Set when ``cancel()`` came before the call ran: then it must never run.
        self.cancelled = False
        self.handle: Optional[TimerHandle] = None
        #: When it is due on the poller's clock (infinity: not watched for that).
        self.due = math.inf

    def __call__(self) -> None:
        self.runs += 1
        if self.world.poller.closed:
            self.world.violation(f"no callback after close: {self!r} ran after poller.close()")
        elif self.cancelled:
            self.world.violation(f"{self!r} ran after it was cancelled")
        elif self.runs > 1:
            self.world.violation(f"{self!r} ran {self.runs} times")
        else:
            self.world.perform(self.action, None)

    def __repr__(self) -> str:
        delay = f" in {self.delay!r} s" if self.site == "timer" else ""
        return f"<{self.site}{delay} {self.action.kind} #{id(self) % 10007}>"


# --- connections ------------------------------------------------------------------------


class Side:
    """One end of one connection: what it sent and received, and how it ended.  A
    transport that reconnects starts a new side (of a new pair)."""

    def __init__(self, peer: Peer, pair: Pair, keep_open: bool) -> None:
        self.peer = peer
        self.pair = pair
        self.sent = bytearray()
        self.received = bytearray()
        self.connects = 0
        self.closes = 0
        #: ``handle_close`` keeps the transport open (in END_OF_STREAM) to reply later.
        self.keep_open = keep_open
        #: ``shutdown(SHUT_WR)`` was called: it sends no more, and still reads.
        self.half_closed = False
        #: ``close_when_done()`` was called: it sends and reads no more.
        self.finishing = False
        #: It was closed by the test (not because its peer ended the connection).
        self.closed_by_us = False
        self.errors: List[BaseException] = []

    @property
    def closed(self) -> bool:
        return self.peer.side is not self or self.peer.closed

    def can_send(self) -> bool:
        return not (self.closed or self.half_closed or self.finishing)

    def __repr__(self) -> str:
        role = "client" if self.pair.client is self else "server"
        return f"<{role} of connection {self.pair.number}: {self.peer!r}>"


class Pair:
    """A connection: the client's side, and the server's once the listener accepted it."""

    def __init__(self, number: int, server_keeps_open: bool) -> None:
        self.number = number
        self.server_keeps_open = server_keeps_open
        #: What the server side is armed with once accepted (see :attr:`Peer.armed`).
        self.server_armed: Dict[str, List[Action]] = {}
        self.client: Optional[Side] = None
        self.server: Optional[Side] = None
        # Set once a side was cut short (closed at once, or reset): bytes in flight may
        # be lost, but never reordered, repeated or corrupted.
        self.lossy = False

    def sides(self) -> List[Side]:
        return [s for s in (self.client, self.server) if s is not None]

    def other(self, side: Side) -> Optional[Side]:
        return self.server if side is self.client else self.client


def payload(data: bytes, how: str) -> Tuple[object, int]:
    """``data``, or as many of its first bytes as whole items take, as the bytes-like
    object ``how`` names; and how many bytes that is."""
    if how == "bytearray":
        return bytearray(data), len(data)
    if how == "array":
        # Items of 4 bytes: a partial send must cut the rest by bytes, not by items.
        size = len(data) - len(data) % 4
        items = array("i")
        items.frombytes(data[:size])
        return items, size
    if how == "memoryview":
        size = len(data) - len(data) % 8
        return memoryview(data[:size]).cast("Q"), size
    if how == "2d":
        size = len(data) - len(data) % 16
        if not size:
            return b"", 0
        return memoryview(data[:size]).cast("B", shape=[size // 16, 16]), size
    return data, len(data)


class Peer(Transport):
    """One end of a connection; ``side`` keeps the account of its current connection."""

    write_limit = 2 << 20

    def __init__(
        self, world: World, pair: Pair, keep_open: bool, sock: Optional[socket.socket] = None
    ) -> None:
        self.world = world
        self.read_size = 65536
        #: ``pause_reading()`` was called (and not undone): no ``handle_read`` may come.
        self.read_paused = False
        #: ``poller.pause()`` holds it: no callback may come from the poller.
        self.held = False
        #: Inside a call the test made (write, send, shutdown): callbacks that call makes
        #: come from the test's own call, not from the poller.
        self.acting = 0
        #: handle_error came for a failed connect: handle_close follows, closed or not.
        self.connect_failed = False
        #: Actions to do at the end of the next callback of each site, once...
        self.armed: Dict[str, List[Action]] = {}
        #: ...and at the end of every one.
        self.every: Dict[str, List[Action]] = {}
        self.side = Side(self, pair, keep_open)
        super().__init__(alternate_poller=world.poller, sock=sock)

    def new_side(self, pair: Pair, keep_open: bool) -> Side:
        """Start the account of a new connection (after a reconnect): a new socket
        is registered afresh, neither paused nor held."""
        self.side = Side(self, pair, keep_open)
        self.read_paused = self.held = False
        self.armed.clear()
        self.every.clear()
        return self.side

    def _callback(self, name: str) -> None:
        if self.closed:
            if name == "close" and self.connect_failed:
                # A failed connect ends with handle_close after handle_error, whatever
                # handle_error did (it closed the transport).
                self.connect_failed = False
                return
            self.world.violation(f"no callback after close: handle_{name} reached closed {self!r}")
        elif self.held and not self.acting:
            self.world.violation(f"handle_{name} reached {self!r} while poller.pause() holds it")
        elif name == "read" and self.read_paused:
            self.world.violation(f"handle_read reached {self!r} after pause_reading()")

    def _fire(self, site: str) -> None:
        for action in [*self.armed.pop(site, ()), *self.every.get(site, ())]:
            self.world.perform(action, self)

    def handle_connect(self) -> None:
        self._callback("connect")
        self.side.connects += 1

    def handle_read(self) -> None:
        self._callback("read")
        side = self.side
        side.received += self.recv(self.read_size)
        self._fire("read")

    def handle_write(self) -> None:
        self._callback("write")
        self._fire("write")

    def handle_close(self) -> None:
        self._callback("close")
        side = self.side
        side.closes += 1
        if not side.keep_open:
            side.finishing = True
            self.close_when_done()
        self._fire("close")

    def handle_error(self) -> None:
        # Not checked as a callback: a callback that closed its transport and then
        # raised is still reported, and that is this call.
        exc = sys.exc_info()[1]
        if exc is None:
            self.world.violation(f"handle_error reached {self!r} with no exception being handled")
            return
        side = self.side
        side.errors.append(exc)
        self.connect_failed = self.connecting
        if not isinstance(exc, (OSError, PlannedBug, PlannedEscape)):
            self.world.violation(f"{self!r} got {exc!r} in handle_error: a bug in the core")
        side.pair.lossy = True
        side.closed_by_us = True
        self.close()

    def give(self, size: int, how: str) -> None:
        """Send ``size`` more bytes of this side's stream: through ``send``, or through
        ``write`` as the bytes-like object ``how`` names."""
        side = self.side
        if not side.can_send() or (how == "send" and self.write_buffer_size):
            return
        data = stream(len(side.sent), size)
        self.acting += 1
        try:
            if how == "send":
                side.sent += data[: self.send(data)]
                return
            obj, taken = payload(data, how)
            if not taken:
                return
            try:
                self.write(obj)  # type: ignore[arg-type]
            except WriteBufferFullError:
                return
            side.sent += data[:taken]
        finally:
            self.acting -= 1

    def half_close(self) -> None:
        """``shutdown(SHUT_WR)``: what ``write`` keeps goes out first, then the FIN."""
        self.side.half_closed = True
        self.acting += 1
        try:
            self.shutdown(socket.SHUT_WR)
        finally:
            self.acting -= 1

    def cut(self) -> None:
        """Close at once: what is in flight may be lost, and the pair knows it."""
        self.side.pair.lossy = True
        self.side.closed_by_us = True
        self.close()


class Accepter(Transport):
    """The listener: each connection it accepts becomes the server side of its pair."""

    def __init__(self, world: World) -> None:
        self.world = world
        super().__init__(alternate_poller=world.poller)
        self.create_socket()
        self.bind(("127.0.0.1", 0))
        self.listen(64)

    def handle_accepted(self, sock: socket.socket, addr: object) -> None:
        pair = self.world.connecting.pop(addr, None)
        if pair is None:
            # A connection whose client we do not track cannot happen on loopback.
            self.world.violation(f"accepted an unknown connection from {addr!r}")
            sock.close()
            return
        peer = Peer(self.world, pair, pair.server_keeps_open, sock)
        peer.armed.update(pair.server_armed)
        pair.server = peer.side


# --- datagrams --------------------------------------------------------------------------

#: Datagrams one endpoint may have on the way: few enough that loopback never drops one.
DATAGRAMS_IN_FLIGHT = 32


class Datagrams(Transport):
    """A UDP endpoint on loopback that records each datagram it sends and receives."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.sent: List[bytes] = []
        self.received: List[bytes] = []
        super().__init__(alternate_poller=world.poller)
        self.create_socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.bind(("127.0.0.1", 0))

    def handle_read(self) -> None:
        if self.closed:
            self.world.violation(f"no callback after close: handle_read reached closed {self!r}")
        data, address = self.recvfrom(2048)
        if address is not None:
            # An empty datagram is data too, never the end of anything.
            self.received.append(data)

    def handle_error(self) -> None:
        self.world.violation(f"{self!r} got {sys.exc_info()[1]!r} in handle_error")
        self.close()

    def give(self, other: Datagrams, size: int) -> None:
        if len(self.sent) - len(other.received) >= DATAGRAMS_IN_FLIGHT:
            return
        data = stream(len(self.sent) * 1021, size)
        sent = self.sendto(data, other.addr)
        # An empty datagram is sent whole, with nothing to count.
        if sent == len(data):
            self.sent.append(data)
        elif data:
            self.world.violation(f"{self!r}: sendto of {len(data)} bytes on loopback sent {sent}")
