"""Stateful property test: random interleavings of what a program does with a poller and
its transports, over several connections, a datagram pair, timers and other threads.

Operations: connects, accepts, sends of random sizes through ``send`` and through
``write`` (bytes, bytearray, ``array('i')``, memoryviews of 8-byte items or of two
dimensions), from one side or from all at once; reads of random sizes, ``defer_write``,
``shutdown(SHUT_WR)`` with bytes still buffered (or while connecting), a half-closed peer
kept open by ``handle_close`` that replies later, closes (at once, when done, from
callbacks), a client reconnecting inside ``handle_close`` after a reset,
``pause_reading`` / ``resume_reading``, ``poller.pause`` / ``resume`` (also of every
other transport from inside a ``handle_read``), datagrams (empty ones too); timers with
zero, short and huge delays (30 days, 10 years, 1e10 s, 1e300 s), ``cancel``,
``call_soon``, ``call_soon_threadsafe`` from another thread, ``loop()`` with timeouts
that never end it (None, infinity, days, 1e300), with or without a huge timer that bounds
its wait instead, stopped by another thread through ``stop``, ``call_soon_threadsafe`` or
``wake`` then ``stop``; and, from timers, queued callbacks and transport callbacks:
closing the poller (also while another thread calls ``stop``, ``wake`` or
``call_soon_threadsafe``), nested ``poll``/``loop``, ``stop``, cancelling the other
timers, and exceptions that leave the loop (``KeyboardInterrupt``, ``SystemExit``, a
``handle_callback_error`` that raises) while other callbacks are due.

Invariants, checked after every step and at the end of each example:

* no exception escapes ``loop()``/``poll()`` but those raised on purpose, and the backend
  is never asked to wait outside ``0..MAX_WAIT`` seconds;
* no callback is lost: once a ``poll()``/``loop()`` returned, every timer and queued
  callback due when it began has run, exactly once (unless cancelled before); by the
  end of an example all have, but those due beyond it; none runs after the poller was
  closed;
* no callback reaches a closed transport, nor one that ``poller.pause`` holds, and no
  ``handle_read`` one whose reading is paused; ``handle_connect`` and ``handle_close`` at
  most once per connection, and ``handle_close`` exactly once for each transport that saw
  end of stream or a reset;
* every byte a side's ``write``/``send`` took arrives at the other side once and in
  order (what has arrived is always a prefix of what was sent; on a connection nobody
  cut short, all of it arrives); so does every datagram, the empty ones included;
* no spin: once nothing moves any more (paused transports with unread data, transports
  kept open after end of stream, held ones, far timers), a loop makes at most 20 OS
  waits in 0.2 s (a spinning one makes over a thousand, even under Wine);
* once everything is closed (or the poller was), the process holds no more descriptors
  than before.

Not watched here: a descriptor number that changes hands within one batch.  The new
owners the machine makes (connecting clients, accepted connections, datagram endpoints)
ask the socket itself on any event, so a stale one is a spurious wake-up to them that
tells nothing false; ``test_dispatch`` pins that rule with a newcomer that must get no
callback at all.

Closing the poller ends the example's work, so it happens in the second half of an
example only; the steps left check what a closed poller promises (the thread-safe calls
and ``close`` do nothing, the others raise ``PollerClosedError``), and the next example
has a new poller.

The CI budget (50 examples of 30 steps per backend) takes about 15 s a backend, half the
limit the suite's watchdog gives a test; ``PIKE_SOAK=1`` runs a long soak
(``PIKE_SOAK_EXAMPLES`` sets the number of examples per backend, 1000 by default, of 60
steps), which needs ``--pike-timeout 0``.  Outside a soak a failing example is reported
as found, not shrunk: shrinking one over real sockets takes minutes, past the suite's
watchdog, which would lose the report.
"""

from __future__ import annotations

import functools
import gc
import math
import os
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple, Type, TypeVar, cast

import pytest

from pike_core import MAX_WAIT, Backend, BackendStatus, Poller, PollerClosedError, State

from .stateful_model import (
    LOOP_ACTIONS,
    PLANNED,
    SITES,
    TRANSPORT_ACTIONS,
    Accepter,
    Action,
    Call,
    Datagrams,
    Hang,
    Pair,
    Peer,
    PlannedBug,
    PlannedEscape,
    PlannedExit,
    PlannedInterrupt,
    Side,
)
from .support import DEADLINE, WaitLog, open_descriptor_count

hypothesis = pytest.importorskip(
    "hypothesis", reason="the stateful tests need hypothesis: pip install hypothesis"
)
from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (  # noqa: E402
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

SOAK = os.environ.get("PIKE_SOAK", "") not in ("", "0")
EXAMPLES = int(os.environ.get("PIKE_SOAK_EXAMPLES", "1000")) if SOAK else 50
STEPS = 60 if SOAK else 30
MAX_PAIRS = 5
#: Connections an example may open in all, reconnects included.
MAX_CONNECTIONS = 3 * MAX_PAIRS
#: Seconds an example may take to settle at its end; loopback needs far less.
SETTLE = DEADLINE
#: Seconds the timers of an example get to run at its end: each is due within 0.01 s.
TIMERS_SETTLE = SETTLE / 2
#: The idle loop watched for spinning, and the most OS waits it may make meanwhile.  A
#: spinning loop makes 58,000 or more here, 1,300 under Wine (measured); a stray late
#: event on a loaded or emulated machine is not a spin, and the tests of each scenario
#: (``waits_while_idle``) pin the exact count.  One watch per example is most of an
#: example's time, which the suite's watchdog (30 s a test) bounds.
IDLE = 0.2
IDLE_WAITS = 20
DAY = 86400.0
#: Delays no timer reaches before its example ends: such a timer must never run.
FAR = [30 * DAY, 3650 * DAY, 1e10, 1e300]
#: The timeouts of a loop only another thread ends (None and infinity: no limit).
LONG_TIMEOUTS = [None, math.inf, 30 * DAY, 1e10, 1e300]
#: What a new client is set up to do (see ``connect``).
PLANS = [None, "reconnect", "pause_others_briefly", "pause_reading", "end_of_stream"]

#: Examples run per backend, by name: the figures the issue asks for.
examples_run: Dict[str, int] = {}

_index = st.integers(0, MAX_PAIRS)
_size = st.one_of(st.integers(1, 64), st.integers(1, 300_000))


def _is_open(machine: TransportMachine) -> bool:
    return not machine.poller.closed


def _has_sides(machine: TransportMachine) -> bool:
    return not machine.poller.closed and bool(machine._open_sides())


RuleBody = TypeVar("RuleBody", bound=Callable[..., None])


def applies(when: Callable[[TransportMachine], bool]) -> Callable[[RuleBody], RuleBody]:
    """Make a rule do nothing unless ``when(machine)`` holds.

    Not Hypothesis's ``precondition``: Hypothesis needs the set of enabled rules to follow
    from the choices drawn so far, and here it follows from real sockets and clocks too (a
    short timer ran or not yet, a reset closed a side or not yet).  With preconditions the
    same choices then met different rule sets in two examples, and Hypothesis stopped
    with ``FlakyStrategyDefinition`` ("Inconsistent data generation") instead of testing.
    Every rule stays enabled; one that cannot apply now is a step that does nothing."""

    def decorate(body: RuleBody) -> RuleBody:
        @functools.wraps(body)
        def step(machine: TransportMachine, *args: object, **kwargs: object) -> None:
            if when(machine):
                body(machine, *args, **kwargs)

        return cast(RuleBody, step)

    return decorate


class MachinePoller(Poller):
    """A poller whose ``handle_callback_error`` raises when a planted bug asks for it,
    and reports any other exception of a callback as a violation."""

    violations: List[str]

    def handle_callback_error(self, callback: object) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, PlannedBug):
            if exc.escape:
                raise PlannedEscape("handle_callback_error raised, on purpose") from exc
            return
        if isinstance(exc, PlannedEscape):
            # It left a nested loop inside this callback: let it leave this one too.
            raise exc
        self.violations.append(f"{callback!r} raised {exc!r}: a bug in the core or in the test")


class TransportMachine(RuleBasedStateMachine):
    backend_class: Type[Backend]

    def __init__(self) -> None:
        super().__init__()
        gc.collect()
        self.descriptors_before = open_descriptor_count()
        self.violations: List[str] = []
        poller = MachinePoller(self.backend_class())
        poller.violations = self.violations
        self.poller: Poller = poller
        # Every timeout the core hands the backend, for the whole example.
        self.log = WaitLog(self.poller)
        self.timeouts_checked = 0
        self.pairs: List[Pair] = []
        self.connecting: Dict[object, Pair] = {}
        self.calls: List[Call] = []
        self.datagrams: Optional[Tuple[Datagrams, Datagrams]] = None
        #: Steps run so far (the invariant runs once after each).
        self.steps = 0
        #: Depth of the poll()/loop() calls the test made (0: a rule's own code runs).
        self.looping = 0
        #: Nested loops that returned: one may have spent a stop() meant for the outer.
        self.nested_loops = 0
        #: Why a watchdog thread had to interrupt a loop that did not return.
        self.hung = ""
        self.listener = Accepter(self)

    # --- what the pieces ask of the machine (stateful_model.World) -----------------------

    def violation(self, message: str) -> None:
        self.violations.append(message)

    def perform(self, action: Action, origin: Optional[Peer]) -> None:
        """Do ``action`` inside a callback (of ``origin``, or of a timer or queued call)."""
        kind = action.kind
        poller = self.poller
        if poller.closed:
            # Closed by an earlier action of the same callback: nothing is left to do.
            return
        target = action.target
        if kind == "send" and target is not None and not target.closed:
            target.peer.give(action.size, "bytes")
        elif kind == "cut" and target is not None and not target.closed:
            target.peer.cut()
        elif kind == "cut_self" and origin is not None and not origin.closed:
            origin.cut()
        elif kind == "close_poller":
            self._close_late(None)
        elif kind in ("pause_others", "pause_others_briefly"):
            for side in self._open_sides():
                if side.peer is not origin:
                    self._hold(side.peer)
            if kind == "pause_others_briefly":
                # Held for the rest of this pass only: what the wait reported for them
                # must not reach them, and they are served again from the next wait.
                resume = Call(self, "call_soon", Action("resume_held"))
                self.calls.append(resume)
                poller.call_soon(resume)
                resume.due = time.monotonic()
        elif kind == "resume_held":
            for side in self._open_sides():
                if side.peer.held:
                    side.peer.held = False
                    poller.resume(side.peer)
        elif kind == "stop":
            poller.stop()
        elif kind == "cancel_others":
            for call in self.calls:
                if call.site == "timer" and not call.runs and not call.cancelled:
                    self._cancel(call)
        elif kind == "reconnect" and origin is not None and origin.side.pair.client is origin.side:
            # Closed at once, by the test, with whatever was in flight.
            origin.side.pair.lossy = origin.side.closed_by_us = True
            origin.close()
            if len(self.pairs) < MAX_CONNECTIONS:
                self._connect(origin, origin.side.keep_open, origin.side.pair.server_keeps_open)
        elif not self.looping:
            # What follows only makes sense inside the loop (a transport callback can
            # also come from the test's own call: a write that meets a reset).
            return
        elif kind == "nested_poll":
            poller.poll(0)
        elif kind == "nested_loop":
            try:
                poller.loop(timeout=0.005, count=2)
            finally:
                self.nested_loops += 1
        elif kind == "interrupt":
            raise PlannedInterrupt
        elif kind == "exit":
            raise PlannedExit
        elif kind in ("bug", "bug_escape"):
            raise PlannedBug(escape=kind == "bug_escape")

    # --- choosing ------------------------------------------------------------------------

    def _side(self, index: int, server: bool) -> Optional[Side]:
        """The side ``index`` names, if its transport is still on that connection and open."""
        if not self.pairs:
            return None
        pair = self.pairs[index % len(self.pairs)]
        side = pair.server if server else pair.client
        return side if side is not None and not side.closed else None

    def _open_sides(self) -> List[Side]:
        return [side for pair in self.pairs for side in pair.sides() if not side.closed]

    def _action(self, kind: str, index: int, server: bool, size: int) -> Action:
        return Action(kind, self._side(index, server), size)

    def _hold(self, peer: Peer) -> None:
        if not peer.held:
            peer.held = True
            self.poller.pause(peer)

    def _cancel(self, call: Call) -> None:
        assert call.handle is not None
        call.handle.cancel()
        call.cancelled = not call.runs

    # --- running the loop ----------------------------------------------------------------

    def _run(self, what: str, run: Callable[[], object]) -> object:
        """Run the loop through ``run``: the exceptions raised on purpose may leave it,
        nothing else may; and once it returned, every callback that was due when it
        began has run (unless the poller was closed meanwhile)."""
        outermost = not self.looping
        began = time.monotonic()
        self.looping += 1
        try:
            result = run()
        except PLANNED:
            return None
        except Hang:
            raise AssertionError(self.hung) from None
        except Exception as exc:
            raise AssertionError(f"no exception escapes loop(): {what} raised {exc!r}") from exc
        finally:
            self.looping -= 1
        if outermost and not self.poller.closed:
            lost = [c for c in self.calls if c.due <= began and not c.runs and not c.cancelled]
            if lost:
                self.violation(f"no lost timer: {what} returned, and {lost} due before it began never ran")
        return result

    def _poll(self, timeout: Optional[float]) -> int:
        count = self._run(f"poll({timeout!r})", lambda: self.poller.poll(timeout))
        return count if isinstance(count, int) else 0

    def _poll_until(self, condition: Callable[[], object], timeout: float, what: Callable[[], str]) -> None:
        end = time.monotonic() + timeout
        while not condition():
            assert not self.violations, self.violations
            if self.poller.closed:
                return
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout} s: {what()}")
            self._poll(min(left, 0.05))

    def _close_late(self, racing: Optional[str]) -> None:
        """Close the poller, while another thread keeps calling ``racing`` (if not None):
        that thread never gets an error.  Closing ends the example's work, so it is done
        in the second half of an example only."""
        if self.steps < STEPS // 2:
            return
        if racing is None:
            self.poller.close()
            return
        started = threading.Event()
        errors: List[BaseException] = []

        def other() -> None:
            after_close = 0
            while after_close < 3:
                closed = self.poller.closed
                try:
                    if racing == "call_soon_threadsafe":
                        queued = Call(self, "call_soon_threadsafe", Action("mark"))
                        self.calls.append(queued)
                        self.poller.call_soon_threadsafe(queued)
                    else:
                        getattr(self.poller, racing)()
                except BaseException as exc:
                    errors.append(exc)
                    return
                started.set()
                after_close += closed

        thread = threading.Thread(target=other)
        thread.start()
        started.wait(DEADLINE)
        self.poller.close()
        thread.join()
        if errors:
            self.violation(f"{racing}() from another thread racing close() raised {errors[0]!r}")

    # --- rules: connections --------------------------------------------------------------

    def _connect(self, peer: Optional[Peer], client_keeps_open: bool, server_keeps_open: bool) -> None:
        pair = Pair(len(self.pairs), server_keeps_open)
        self.pairs.append(pair)
        if peer is None:
            peer = Peer(self, pair, client_keeps_open)
            pair.client = peer.side
        else:
            pair.client = peer.new_side(pair, client_keeps_open)
        peer.create_socket()
        peer.connect(self.listener.addr)
        assert peer.socket is not None
        self.connecting[peer.socket.getsockname()] = pair

    @initialize(
        plans=st.lists(st.sampled_from(PLANS), min_size=1, max_size=3),
        client_keeps_open=st.booleans(),
        server_keeps_open=st.booleans(),
    )
    def first_connections(
        self, plans: List[Optional[str]], client_keeps_open: bool, server_keeps_open: bool
    ) -> None:
        for plan in plans:
            self.connect(client_keeps_open, server_keeps_open, plan)

    @rule(client_keeps_open=st.booleans(), server_keeps_open=st.booleans(), plan=st.sampled_from(PLANS))
    @applies(lambda self: _is_open(self) and len(self.pairs) < MAX_PAIRS)
    def connect(self, client_keeps_open: bool, server_keeps_open: bool, plan: Optional[str]) -> None:
        """A new connection.  Each side's ``handle_close`` may keep it open (to reply
        later); the client may connect again from its ``handle_close``, hold every other
        transport (``poller.pause``) from each ``handle_read``, not read yet, or end its
        sending side at once, its server kept open after end of stream."""
        if plan == "end_of_stream":
            # Set up whole, not left to a chance sequence of steps: a server in
            # END_OF_STREAM is where a loop that still watches for reading spins.
            server_keeps_open = True
        self._connect(None, client_keeps_open, server_keeps_open)
        client = self.pairs[-1].client
        assert client is not None
        if plan == "reconnect":
            # The server resets the connection when the first bytes come, the client
            # connects again from its handle_close.
            client.peer.armed["close"] = [Action("reconnect")]
            self.pairs[-1].server_armed["read"] = [Action("cut_self")]
        elif plan == "pause_others_briefly":
            client.peer.every["read"] = [Action("pause_others_briefly")]
        elif plan == "pause_reading":
            client.peer.read_paused = True
            client.peer.pause_reading()
        elif plan == "end_of_stream":
            # Still connecting: the FIN follows the handshake.
            client.peer.half_close()

    @rule(
        index=_index,
        server=st.booleans(),
        size=_size,
        how=st.sampled_from(["send", "bytes", "bytes", "bytearray", "array", "memoryview", "2d"]),
        everyone=st.booleans(),
    )
    @applies(_has_sides)
    def send(self, index: int, server: bool, size: int, how: str, everyone: bool) -> None:
        """Bytes through ``send``, or through ``write`` as bytes-like objects of all kinds;
        from one side, or from every side (one wait then has many events)."""
        sides = self._open_sides() if everyone else [self._side(index, server)]
        for side in sides:
            if side is not None and not side.closed:
                side.peer.give(size, how)

    @rule(
        index=_index,
        server=st.booleans(),
        op=st.sampled_from(
            [
                "read_512",
                "read_65536",
                "defer_write",
                "half_close",
                "close_at_once",
                "close_when_done",
                "pause_reading",
                "resume_reading",
                "poller_pause",
                "poller_resume",
            ]
        ),
    )
    @applies(_has_sides)
    def side_op(self, index: int, server: bool, op: str) -> None:
        """What a program does to one transport of a connection."""
        side = self._side(index, server)
        if side is None:
            return
        peer = side.peer
        if op.startswith("read_"):
            peer.read_size = int(op[5:])
        elif op == "defer_write":
            self.poller.defer_write(peer)
        elif op == "half_close":
            if side.can_send():
                # With bytes still buffered too: they go out before the FIN.
                peer.half_close()
        elif op == "close_at_once":
            peer.cut()
        elif op == "close_when_done":
            # It stops reading: what the other side sends meanwhile may be reset away.
            side.pair.lossy = True
            side.finishing = side.closed_by_us = True
            peer.close_when_done()
        elif op == "pause_reading":
            peer.read_paused = True
            peer.pause_reading()
        elif op == "resume_reading":
            peer.read_paused = False
            peer.resume_reading()
        elif op == "poller_pause":
            self._hold(peer)
        else:
            peer.held = False
            self.poller.resume(peer)

    @rule(
        index=_index,
        server=st.booleans(),
        site=st.sampled_from(SITES),
        kind=st.sampled_from(TRANSPORT_ACTIONS),
        aim=_index,
        aim_server=st.booleans(),
        size=_size,
    )
    @applies(_has_sides)
    def arm(
        self, *, index: int, server: bool, site: str, kind: str, aim: int, aim_server: bool, size: int
    ) -> None:
        """At the end of the side's next ``handle_<site>``, do ``kind``."""
        side = self._side(index, server)
        if side is not None:
            side.peer.armed.setdefault(site, []).append(self._action(kind, aim, aim_server, size))

    @rule(size=st.one_of(st.just(0), st.integers(1, 1200)), forward=st.booleans())
    @applies(_is_open)
    def datagram(self, size: int, forward: bool) -> None:
        """A datagram (empty ones too) from one UDP endpoint to the other."""
        if self.datagrams is None:
            self.datagrams = (Datagrams(self), Datagrams(self))
        a, b = self.datagrams if forward else self.datagrams[::-1]
        a.give(b, size)

    # --- rules: timers, queued callbacks, threads -----------------------------------------

    @rule(
        site=st.sampled_from(["timer", "timer", "call_soon", "call_soon_threadsafe"]),
        delay=st.sampled_from([*(0.0,) * 4, 0.001, 0.01, *FAR]),
        kinds=st.lists(st.sampled_from(LOOP_ACTIONS), min_size=1, max_size=3),
        aim=_index,
        aim_server=st.booleans(),
        size=_size,
    )
    @applies(_is_open)
    def schedule(
        self,
        *,
        site: str,
        delay: float,
        kinds: List[str],
        aim: int,
        aim_server: bool,
        size: int,
    ) -> None:
        """Callbacks due together, through ``call_later`` (zero, short or huge delays),
        ``call_soon``, or ``call_soon_threadsafe`` from another thread."""
        self._schedule(site, delay, [self._action(kind, aim, aim_server, size) for kind in kinds])

    @rule(
        site=st.sampled_from(["timer", "call_soon"]),
        how=st.sampled_from(["interrupt", "exit", "bug_escape", "close_poller"]),
        others=st.integers(1, 3),
    )
    @applies(_is_open)
    def leave_loop(self, site: str, how: str, others: int) -> None:
        """A callback leaves the loop (``KeyboardInterrupt``, ``SystemExit``, a
        ``handle_callback_error`` that raises) or closes the poller while others are due
        with it: those run at the next pass (none, after a close)."""
        self._schedule(site, 0.0, [Action(how), *(Action("mark"),) * others])

    def _schedule(self, site: str, delay: float, actions: List[Action]) -> None:
        calls = [Call(self, site, action, delay if site == "timer" else 0.0) for action in actions]
        self.calls.extend(calls)
        for call in calls:
            if site == "timer":
                call.handle = self.poller.call_later(delay, call)
                call.due = call.handle.when
            elif site == "call_soon":
                self.poller.call_soon(call)
                call.due = time.monotonic()
            else:
                other = threading.Thread(target=self.poller.call_soon_threadsafe, args=(call,))
                other.start()
                other.join()
                call.due = time.monotonic()

    @rule(index=st.integers(0, 1000))
    @applies(lambda self: _is_open(self) and any(c.handle is not None for c in self.calls))
    def cancel(self, index: int) -> None:
        timers = [call for call in self.calls if call.handle is not None]
        self._cancel(timers[index % len(timers)])

    # --- rules: running the loop ----------------------------------------------------------

    @rule(
        how=st.sampled_from([*("poll",) * 8, *("loop",) * 4, *("loop_count",) * 4, "close"]),
        n=st.integers(1, 8),
        wait=st.sampled_from([0.0, 0.0, 0.005, 0.02]),
        racing=st.sampled_from([None, "stop", "wake", "call_soon_threadsafe"]),
    )
    @applies(_is_open)
    def run(self, how: str, n: int, wait: float, racing: Optional[str]) -> None:
        """``poll(wait)`` n times, ``loop(timeout=wait)``, ``loop(timeout=wait, count=n)``;
        or, rarely (it ends the example's work), close the poller, maybe while another
        thread keeps calling ``racing``."""
        if how == "close":
            self._close_late(racing)
        elif how == "poll":
            for _ in range(n):
                if not self.poller.closed:
                    self._poll(wait)
        else:
            count = n if how == "loop_count" else None
            self._run(
                f"loop(timeout={wait!r}, count={count!r})",
                lambda: self.poller.loop(timeout=wait, count=count),
            )

    @rule(
        timeout=st.sampled_from(LONG_TIMEOUTS),
        how=st.sampled_from(["stop", "call_soon_threadsafe", "wake"]),
        far=st.sampled_from([None, *FAR]),
    )
    @applies(_is_open)
    def loop_stopped_by_another_thread(
        self, timeout: Optional[float], how: str, far: Optional[float]
    ) -> None:
        """``loop()`` with a timeout that never ends it, stopped by another thread once
        it waits: by ``stop()``, by a ``stop()`` sent through ``call_soon_threadsafe``,
        or by ``stop()`` after a ``wake()`` that only ended one wait.  A callback may also
        close the poller or leave the loop first.  With a timer ``far`` seconds away, the
        timer bounds the wait, not the loop's timeout: the core clamps that one too."""
        if far is not None:
            self._schedule("timer", far, [Action("mark")])
        returned = threading.Event()
        end = time.monotonic() + DEADLINE
        errors: List[BaseException] = []

        def waits_after(count: int) -> int:
            """Wait (in the other thread) until the loop begins a wait after its first
            ``count``, or returned."""
            while len(self.log.timeouts) == count and not returned.is_set() and time.monotonic() < end:
                time.sleep(0.001)
            return len(self.log.timeouts)

        def stop() -> None:
            if how == "call_soon_threadsafe":
                call = Call(self, "call_soon_threadsafe", Action("stop"))
                self.calls.append(call)
                self.poller.call_soon_threadsafe(call)
            else:
                self.poller.stop()

        def other() -> None:
            try:
                seen = waits_after(len(self.log.timeouts))
                if how == "wake":
                    # It ends the wait, not the loop: the loop waits again.
                    self.poller.wake()
                    waits_after(seen)
                nested = self.nested_loops
                stop()
                while not returned.wait(0.05):
                    if self.nested_loops != nested:
                        # A nested loop returned since: for this stop(), maybe; ask again.
                        nested = self.nested_loops
                        stop()
                    elif time.monotonic() > end:
                        self.hung = (
                            f"loop(timeout={timeout!r}) did not return {DEADLINE} s after "
                            f"{how} from another thread"
                        )
                        self.poller.call_soon_threadsafe(_hang)
                        return
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        try:
            self._run(f"loop(timeout={timeout!r})", lambda: self.poller.loop(timeout=timeout))
        finally:
            returned.set()
            thread.join()
        if errors:
            self.violation(f"{how} from another thread raised {errors[0]!r}")

    @rule(
        call=st.sampled_from(["stop", "wake", "call_soon_threadsafe", "close", "poll", "loop", "call_later"]),
        thread=st.booleans(),
    )
    @applies(lambda self: self.poller.closed)
    def after_close(self, call: str, thread: bool) -> None:
        """What a closed poller promises: the thread-safe calls and close() do nothing
        (from any thread), the others raise PollerClosedError."""
        poller = self.poller
        if call in ("poll", "loop", "call_later"):
            attempt: Callable[[], object] = {
                "poll": lambda: poller.poll(0),
                "loop": lambda: poller.loop(timeout=0),
                "call_later": lambda: poller.call_later(0, Call(self, "timer", Action("mark"))),
            }[call]
            with pytest.raises(PollerClosedError):
                attempt()
            return
        if call == "call_soon_threadsafe":
            queued = Call(self, "call_soon_threadsafe", Action("mark"))
            self.calls.append(queued)
            attempt = lambda: poller.call_soon_threadsafe(queued)  # noqa: E731
        else:
            attempt = getattr(poller, call)
        errors: List[BaseException] = []

        def guarded() -> None:
            try:
                attempt()
            except BaseException as exc:
                errors.append(exc)

        if thread:
            other = threading.Thread(target=guarded)
            other.start()
            other.join()
        else:
            guarded()
        assert not errors, f"{call}() on a closed poller raised {errors[0]!r}"

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def nothing_broken(self) -> None:
        self.steps += 1
        timeouts = self.log.timeouts
        for timeout in timeouts[self.timeouts_checked :]:
            if timeout is not None and not 0 <= timeout <= MAX_WAIT:
                self.violation(
                    f"the backend was asked to wait {timeout!r} s: the core must clamp every "
                    f"wait to 0..MAX_WAIT ({MAX_WAIT} s)"
                )
        self.timeouts_checked = len(timeouts)
        assert not self.violations, self.violations
        for pair in self.pairs:
            for side in pair.sides():
                other = pair.other(side)
                if other is not None:
                    assert other.sent.startswith(side.received), (
                        f"bytes in = bytes out: {side!r} received bytes that {other!r} did not send "
                        "in that order"
                    )
                assert side.connects <= 1, f"{side!r}: handle_connect {side.connects} times"
                assert side.closes <= 1, f"{side!r}: handle_close {side.closes} times"
        if self.datagrams is not None:
            a, b = self.datagrams
            for sender, receiver in ((a, b), (b, a)):
                assert receiver.received == sender.sent[: len(receiver.received)], (
                    f"{receiver!r} received datagrams that {sender!r} did not send in that order"
                )

    # --- the end of an example ------------------------------------------------------------

    def teardown(self) -> None:
        try:
            if not self.poller.closed:
                self._settle()
            self._check_end()
        finally:
            self._release()
        gc.collect()
        now = open_descriptor_count()
        assert now <= self.descriptors_before, (
            f"no descriptor leak: {now} open after the example, {self.descriptors_before} before"
        )

    def _settle(self) -> None:
        """Run what is due, watch the idle loop, then let every connection finish: intact
        ones deliver everything, then all close.  A callback may close the poller on the
        way: then nothing is left to settle."""
        self._poll_until(
            lambda: all(p.client is None or p.client.closed or p.server is not None for p in self.pairs),
            SETTLE,
            lambda: "every open client to be accepted",
        )
        self._poll_until(
            lambda: not self._lost_calls(),
            TIMERS_SETTLE,
            lambda: f"no lost timer or callback: never ran: {self._lost_calls()}",
        )
        # From here on the transports only do their own work.
        for side in self._open_sides():
            side.peer.armed.clear()
            side.peer.every.clear()
        if self.poller.closed:
            return
        self._check_idle()
        for side in self._open_sides():
            if side.peer.read_paused:
                side.peer.read_paused = False
                side.peer.resume_reading()
            if side.peer.held:
                side.peer.held = False
                self.poller.resume(side.peer)
        for pair in self.pairs:
            if not pair.lossy and pair.server is not None:
                self._wait_delivered(pair)
        if self.datagrams is not None:
            a, b = self.datagrams
            self._poll_until(
                lambda: len(a.received) == len(b.sent) and len(b.received) == len(a.sent),
                SETTLE,
                lambda: (
                    f"every datagram: {len(b.received)} of {len(a.sent)}, {len(a.received)} of {len(b.sent)}"
                ),
            )
        # Those kept open after end of stream finish now; every client still open ends
        # its side, and its peer follows on end of stream.
        for side in self._open_sides():
            if side.closes:
                side.peer.close_when_done()
            side.keep_open = False
        for pair in self.pairs:
            client = pair.client
            if client is not None and not client.closed and not client.finishing:
                client.finishing = client.closed_by_us = True
                client.peer.close_when_done()
        self._poll_until(
            lambda: not self._open_sides(),
            SETTLE,
            lambda: f"every transport to close once its peer closed: open: {self._open_sides()}",
        )

    def _lost_calls(self) -> List[Call]:
        return [c for c in self.calls if not c.runs and not c.cancelled and c.delay not in FAR]

    def _progress(self) -> Tuple[int, ...]:
        sides = [side for pair in self.pairs for side in pair.sides()]
        moved = sum(len(s.received) for s in sides)
        waiting = sum(s.peer.write_buffer_size for s in sides if not s.closed)
        calls = sum(c.runs for c in self.calls)
        datagrams = sum(len(d.received) for d in self.datagrams or ())
        return (moved, waiting, calls, datagrams, len(self._open_sides()))

    def _check_idle(self) -> None:
        """No spin: once nothing moves any more, a loop blocks in its OS wait."""
        still = 0
        end = time.monotonic() + SETTLE
        while not self.poller.closed and time.monotonic() < end:
            before = self._progress()
            events = self._poll(0.05)
            # A connect's verdict may come later than 0.05 s (under Wine it does): a
            # connecting transport is not idle yet.
            connecting = any(s.peer.state is State.CONNECTING for s in self._open_sides())
            if not events and self._progress() == before and not connecting:
                break
            still = still + 1 if self._progress() == before else 0
            if still > 20:
                break  # events that change nothing: the loop spins (counted below)
        if self.poller.closed:
            return
        # A stop() asked for earlier makes the next loop poll once without waiting.
        self._run("loop(timeout=0)", lambda: self.poller.loop(timeout=0))
        waits = len(self.log.timeouts)
        self._run(f"loop(timeout={IDLE})", lambda: self.poller.loop(timeout=IDLE))
        waits = len(self.log.timeouts) - waits
        if waits > IDLE_WAITS:
            states = sorted(
                {f"{s.peer.state.value}{' paused' if s.peer.read_paused else ''}" for s in self._open_sides()}
            )
            self.violation(
                f"no spin: {waits} OS waits in {IDLE} s of an idle loop (open transports: {states})"
            )
        assert not self.violations, self.violations

    def _wait_delivered(self, pair: Pair) -> None:
        client, server = pair.client, pair.server
        assert client is not None
        assert server is not None

        def delivered() -> bool:
            return pair.lossy or (
                bytes(server.received) == bytes(client.sent) and bytes(client.received) == bytes(server.sent)
            )

        self._poll_until(
            delivered,
            SETTLE,
            lambda: (
                f"bytes in = bytes out between {client!r} and {server!r}: "
                f"{len(server.received)}/{len(client.sent)} and {len(client.received)}/{len(server.sent)}"
            ),
        )

    def _check_end(self) -> None:
        self.nothing_broken()
        closed = self.poller.closed
        for call in self.calls:
            if call.cancelled or call.delay in FAR:
                assert not call.runs, f"{call!r} ran"
            elif not closed:
                assert call.runs == 1, f"no lost timer: {call!r} ran {call.runs} times"
        if closed:
            # Everything was dropped with the poller: nothing more to deliver or report.
            assert not self._open_sides(), f"poller.close() left {self._open_sides()} open"
            return
        for pair in self.pairs:
            client, server = pair.client, pair.server
            assert client is not None
            if not pair.lossy and server is not None:
                assert server.received == client.sent, f"bytes in = bytes out: {server!r}"
                assert client.received == server.sent, f"bytes in = bytes out: {client!r}"
            for side in pair.sides():
                if not side.closed_by_us:
                    # It closed because its peer did: that must have been reported.
                    assert side.closes == 1, f"{side!r}: handle_close {side.closes} times ({side.errors})"
            if server is not None and not client.closed_by_us:
                assert client.connects == 1, f"{client!r}: handle_connect {client.connects} times"
        if self.datagrams is not None:
            a, b = self.datagrams
            assert b.received == a.sent, "every datagram arrives once, in order"
            assert a.received == b.sent, "every datagram arrives once, in order"

    def _release(self) -> None:
        self.listener.close()
        for endpoint in self.datagrams or ():
            endpoint.close()
        self.poller.close()
        self.log.remove()
        self.pairs.clear()
        self.connecting.clear()
        self.calls.clear()


def _hang() -> None:
    raise Hang


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
