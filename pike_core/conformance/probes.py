"""The primitive probes: the OS contract of a :class:`~pike_core.Backend`, checked on the
backend object itself before any scenario runs it through the core.

A scenario test on a backend that, say, never reports ``WRITE`` times out waiting for
``handle_connect`` and says nothing about why; a probe says which rule is broken, in
words, in well under a second.  The conformance plugin runs the probes once per backend
and process, and fails every scenario test of a backend that broke one, with that rule,
instead of letting each one time out (see :mod:`pike_core.conformance.plugin`).

Each probe runs in a thread of its own, with a fresh backend, real sockets on loopback,
and one idle socket always registered (as the core's waker is, so a backend is never
asked to wait on nothing).  A call that does not return within :data:`GUARD` seconds
fails the probe and cannot hang the session: the thread is left behind, blocked in the
backend, and the probes after it are not run, since a backend stuck once proves nothing
more.  The classic case is a backend that reads the timeout as milliseconds: its
``wait(0.05)`` blocks for 50 s.
"""

from __future__ import annotations

import dataclasses
import errno
import select
import socket
import threading
import time
from typing import Callable, Collection, Dict, Final, List, Optional, Tuple, Type

from pike_core import Backend
from pike_core.events import ERROR, HANGUP, INVALID, PRIORITY, READ, READ_LIKE, WRITE

from .support import connected_pair, free_port

#: Seconds a probe may take before it counts as hung; a working backend needs < 0.3 s,
#: the rest is room for a loaded machine.
GUARD: Final = 5.0
#: Seconds a probe waits for an event that should come at once.
PROMPT: Final = 0.5
#: Seconds a probe waits to be sure an event does *not* come.
QUIET: Final = 0.1
#: The timeout of the timeout-unit probe, and the range its wait must end in.
TIMEOUT_PROBE: Final = 0.05
TIMEOUT_RANGE: Final = (0.04, 0.5)
ANY: Final = READ | PRIORITY | WRITE | ERROR | HANGUP | INVALID

_BIT_NAMES: Final = (
    (READ, "READ"),
    (PRIORITY, "PRIORITY"),
    (WRITE, "WRITE"),
    (ERROR, "ERROR"),
    (HANGUP, "HANGUP"),
    (INVALID, "INVALID"),
)


def bits(mask: int) -> str:
    """``READ|WRITE`` for 5; ``nothing`` for 0."""
    return "|".join(name for bit, name in _BIT_NAMES if mask & bit) or "nothing"


class RuleBroken(AssertionError):
    """A probe's finding: which rule the backend broke and what it did, in words."""


class NotApplicable(Exception):
    """The OS did not produce the condition a probe needs, so the rule cannot be checked
    here (for example an OS that drops the ICMP error the error probe relies on)."""


class Bench:
    """One probe's backend and sockets, every call to the backend named while it runs
    (so a call that hangs can be named), everything released by :meth:`close`."""

    def __init__(self, backend_class: Type[Backend]) -> None:
        self.backend_class = backend_class
        self.calling = ""
        self.sockets: List[socket.socket] = []

    def open(self) -> None:
        """Construct the backend and register the idle socket."""
        backend = self._call(f"{self.backend_class.__name__}()", self.backend_class)
        assert isinstance(backend, Backend)
        self.backend = backend
        keeper, _ = self.pair()
        self.register(keeper, READ)

    def pair(self) -> Tuple[socket.socket, socket.socket]:
        """A connected TCP pair on loopback, released at the end."""
        a, b = connected_pair()
        self.sockets += [a, b]
        return a, b

    def _call(self, text: str, method: Callable[..., object], *args: object) -> object:
        self.calling = text
        result = method(*args)
        self.calling = ""
        return result

    def register(self, sock: socket.socket, mask: int) -> None:
        self._call(f"register({sock.fileno()}, {bits(mask)})", self.backend.register, sock.fileno(), mask)

    def modify(self, sock: socket.socket, mask: int) -> None:
        self._call(f"modify({sock.fileno()}, {bits(mask)})", self.backend.modify, sock.fileno(), mask)

    def unregister(self, fd: int) -> None:
        self._call(f"unregister({fd})", self.backend.unregister, fd)

    def wait_raw(self, timeout: float) -> List[Tuple[int, int]]:
        """One ``wait(timeout)``, as the backend answered it."""
        answer = self._call(f"wait({timeout:g})", self.backend.wait, timeout)
        pairs = list(answer) if isinstance(answer, Collection) else None
        if pairs is None or not all(
            isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(n, int) for n in pair)
            for pair in pairs
        ):
            raise RuleBroken(
                f"wait({timeout:g}) returned {answer!r}: it must return a sized collection "
                "(list, tuple, dict.items()) of (fd, mask) pairs of ints"
            )
        return pairs

    def wait(self, timeout: float) -> Dict[int, int]:
        """One ``wait(timeout)``, the events of each descriptor OR-ed together."""
        merged: Dict[int, int] = {}
        for fd, mask in self.wait_raw(timeout):
            merged[fd] = merged.get(fd, 0) | mask
        return merged

    def seen(self, sock: socket.socket, wanted: int, within: float = PROMPT) -> int:
        """Wait up to ``within`` seconds for ``sock`` to be reported with a bit of
        ``wanted``; every bit reported for it meanwhile (0 if none)."""
        fd = sock.fileno()
        end = time.monotonic() + within
        found = self.wait(0.1).get(fd, 0)
        while not found & wanted:
            left = end - time.monotonic()
            if left <= 0:
                break
            found |= self.wait(min(left, 0.1)).get(fd, 0)
        return found

    def close(self) -> None:
        try:
            if hasattr(self, "backend"):
                self._call("close()", self.backend.close)
        finally:
            for sock in self.sockets:
                sock.close()


def _reported(found: int) -> str:
    return "reported nothing for it" if not found else f"reported only {bits(found)} for it"


def _timeout_unit(bench: Bench) -> None:
    # Three tries, so that one stall of a loaded machine is not taken for a fault.
    low, high = TIMEOUT_RANGE
    took: List[float] = []
    for _ in range(3):
        start = time.monotonic()
        bench.wait(TIMEOUT_PROBE)
        took.append(time.monotonic() - start)
        if low <= took[-1] <= high:
            return
    listed = ", ".join(f"{t:.3f}" for t in took)
    if max(took) > high:
        raise RuleBroken(
            f"wait({TIMEOUT_PROBE}) with nothing ready returned after {listed} s: the timeout "
            f"is in seconds (a float), so it must return within {low}-{high} s; is it read "
            "as milliseconds?"
        )
    raise RuleBroken(
        f"wait({TIMEOUT_PROBE}) with nothing ready returned after {listed} s: it must block "
        f"until its timeout (in seconds) has passed, within {low}-{high} s; returning at once "
        "makes an idle loop spin"
    )


def _write_readiness(bench: Bench) -> None:
    a, _ = bench.pair()
    bench.register(a, WRITE)
    found = bench.seen(a, WRITE)
    if not found & WRITE:
        raise RuleBroken(
            "wait() never reported WRITE for a connected socket with free buffer space "
            f"(registered for WRITE; in {PROMPT} s it {_reported(found)})"
        )


def _read_readiness(bench: Bench) -> None:
    a, b = bench.pair()
    bench.register(a, READ)
    b.send(b"probe")
    found = bench.seen(a, READ)
    if not found & READ:
        raise RuleBroken(
            "wait() never reported READ for a socket with unread data "
            f"(registered for READ; in {PROMPT} s it {_reported(found)})"
        )


def _modify(bench: Bench) -> None:
    a, _ = bench.pair()
    bench.register(a, READ)
    bench.modify(a, WRITE)
    found = bench.seen(a, WRITE)
    if not found & WRITE:
        raise RuleBroken(
            "after modify(fd, WRITE) of a socket registered for READ, wait() never reported "
            f"WRITE although it can be written (in {PROMPT} s it {_reported(found)}): modify() "
            "must replace the interest"
        )
    bench.modify(a, READ)
    found = bench.seen(a, WRITE, QUIET)
    if found & WRITE:
        raise RuleBroken(
            "after modify(fd, READ) of a socket registered for WRITE, wait() still reported "
            "WRITE: modify() must replace the interest, not add to it"
        )


def _end_of_stream(bench: Bench) -> None:
    a, b = bench.pair()
    bench.register(a, READ)
    b.close()
    found = bench.seen(a, READ | HANGUP)
    if not found & (READ | HANGUP):
        raise RuleBroken(
            "wait() reported neither READ nor HANGUP for a socket whose peer closed the "
            f"connection (registered for READ; in {PROMPT} s it {_reported(found)}): end of "
            "stream must be reported, as READ (a read then returns b'') or HANGUP, or the "
            "transport never learns that its peer is gone"
        )


def _error_unasked(bench: Bench) -> None:
    # A connected UDP socket that sends to a closed port gets the ICMP error as a pending
    # SO_ERROR: poll(2) and epoll report ERROR alone (nothing can be read), so a backend
    # that drops the bits it was not asked for reports nothing at all.
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bench.sockets.append(udp)
    udp.setblocking(False)
    udp.bind(("127.0.0.1", 0))
    udp.connect(("127.0.0.1", free_port()))
    bench.register(udp, READ)
    udp.send(b"to nobody")
    found = bench.seen(udp, READ_LIKE)
    if found & READ_LIKE:
        return
    # Asked before SO_ERROR, which reading clears.  Some systems (Wine) keep the error
    # for the next call but signal it to no readiness mechanism: nothing to report.
    readable, _, failed = select.select([udp], [], [udp], 0)
    pending = udp.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if not pending or not (readable or failed):
        raise NotApplicable(
            "this OS does not signal the error pending on a UDP socket that sent to a "
            "closed port (select() does not see it either), so the rule cannot be checked here"
        )
    raise RuleBroken(
        "wait() did not report a socket registered for READ alone that has a pending error "
        f"(SO_ERROR {errno.errorcode.get(pending, pending)}; in {PROMPT} s it {_reported(found)}): "
        "ERROR, HANGUP and INVALID must be reported whether asked for or not (report ERROR, "
        "or READ so that a read meets the error)"
    )


def _once_per_wait(bench: Bench) -> None:
    a, b = bench.pair()
    c, d = bench.pair()
    for sock in (a, c):
        bench.register(sock, READ | WRITE)
    b.send(b"probe")
    d.send(b"probe")
    wanted = {a.fileno(), c.fileno()}
    end = time.monotonic() + PROMPT
    while wanted and time.monotonic() < end:
        answer = bench.wait_raw(0.1)
        for fd in {fd for fd, _ in answer}:
            entries = [entry for entry in answer if entry[0] == fd]
            if len(entries) > 1:
                listed = ", ".join(f"({fd}, {bits(mask)})" for fd, mask in entries)
                raise RuleBroken(
                    f"wait() reported fd {fd} {len(entries)} times in one call ({listed}): "
                    "it must report each descriptor at most once per wait, its events OR-ed "
                    "into one mask"
                )
            wanted.discard(fd)
    if wanted:
        raise NotApplicable(
            f"wait() never reported fds {sorted(wanted)}, readable and writable, so the rule "
            "cannot be checked (the readiness probes say why)"
        )


def _unregister(bench: Bench) -> None:
    a, b = bench.pair()
    bench.register(a, READ | WRITE)
    b.send(b"probe")
    if not bench.seen(a, READ | WRITE):
        raise NotApplicable("wait() never reported a ready socket, so unregister() cannot be checked")
    bench.unregister(a.fileno())
    found = bench.seen(a, ANY, QUIET)
    if found:
        raise RuleBroken(
            f"wait() reported fd {a.fileno()} ({bits(found)}) after unregister({a.fileno()}): "
            "a descriptor must never be reported once it was unregistered"
        )
    gone, _ = bench.pair()
    bench.register(gone, READ)
    fd = gone.fileno()
    gone.close()
    try:
        bench.unregister(fd)
        bench.unregister(free_fd())
    except Exception as exc:
        raise RuleBroken(
            f"{bench.calling} raised {type(exc).__name__}: {exc}, for a descriptor closed "
            "without being unregistered or never registered: unregister() must treat both "
            "as done"
        ) from exc


def free_fd() -> int:
    """A descriptor number that is open nowhere in this process now."""
    with socket.socket() as sock:
        fd: int = sock.fileno()
    return fd


@dataclasses.dataclass(frozen=True)
class Probe:
    """One rule of the Backend contract and the check that proves it."""

    name: str
    rule: str
    check: Callable[[Bench], None]


#: In the order they run: the timeout first, since a backend that blocks in ``wait()``
#: leaves every later probe unchecked.
PROBES: Final = (
    Probe("timeout_unit", "wait(timeout) takes seconds, as a float", _timeout_unit),
    Probe("write_readiness", "WRITE is reported for a socket that can be written", _write_readiness),
    Probe("read_readiness", "READ is reported for a socket with unread data", _read_readiness),
    Probe("modify", "modify() replaces the interest of a registered descriptor", _modify),
    Probe("end_of_stream", "the peer's close is reported as READ or HANGUP", _end_of_stream),
    Probe("error_unasked", "ERROR, HANGUP, INVALID are reported whether asked or not", _error_unasked),
    Probe("once_per_wait", "one wait reports each descriptor at most once", _once_per_wait),
    Probe("unregister", "an unregistered descriptor is never reported again", _unregister),
)

KEPT: Final = "kept"
BROKEN: Final = "broken"
NOT_APPLICABLE: Final = "not applicable"
NOT_CHECKED: Final = "not checked"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What one probe found: ``outcome`` is :data:`KEPT`, :data:`BROKEN`,
    :data:`NOT_APPLICABLE` or :data:`NOT_CHECKED`; ``detail`` says what happened."""

    probe: Probe
    outcome: str
    detail: str = ""
    seconds: float = 0.0
    hung: bool = False


def _raised(bench: Bench, exc: Exception) -> str:
    return f"{bench.calling or 'the probe'} raised {type(exc).__name__}: {exc}"


def _run(probe: Probe, backend_class: Type[Backend], guard: float) -> Verdict:
    outcome: List[Tuple[str, str]] = []
    bench = Bench(backend_class)

    def body() -> None:
        result = (KEPT, "")
        try:
            bench.open()
            probe.check(bench)
        except RuleBroken as exc:
            result = (BROKEN, str(exc))
        except NotApplicable as exc:
            result = (NOT_APPLICABLE, str(exc))
        except Exception as exc:
            result = (BROKEN, _raised(bench, exc))
        try:
            bench.close()
        except Exception as exc:
            if result[0] != BROKEN:
                result = (BROKEN, _raised(bench, exc))
        outcome.append(result)

    thread = threading.Thread(target=body, name=f"pike-core probe {probe.name}", daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(guard)
    seconds = time.monotonic() - start
    if outcome:
        return Verdict(probe, *outcome[0], seconds=seconds)
    detail = f"{bench.calling} had not returned after {guard:g} s"
    if bench.calling.startswith("wait("):
        detail += (
            ": wait() must return once its timeout has passed, and the timeout is in seconds "
            "(a backend that reads it as milliseconds waits 1000 times too long)"
        )
    return Verdict(probe, BROKEN, detail, seconds, hung=True)


def check(backend_class: Type[Backend], guard: float = GUARD) -> List[Verdict]:
    """Run every probe against ``backend_class``, in order; one verdict per probe.

    :param guard: seconds after which a probe counts as hung.
    """
    verdicts: List[Verdict] = []
    for probe in PROBES:
        stuck = next((v for v in verdicts if v.hung), None)
        if stuck is not None:
            detail = f"not checked: the backend was left blocked by the {stuck.probe.name} probe"
            verdicts.append(Verdict(probe, NOT_CHECKED, detail))
        else:
            verdicts.append(_run(probe, backend_class, guard))
    return verdicts


def first_broken(verdicts: Collection[Verdict]) -> Optional[Verdict]:
    """The first verdict that found a rule broken, if any."""
    return next((v for v in verdicts if v.outcome == BROKEN), None)
