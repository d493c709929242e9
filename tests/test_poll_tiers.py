"""The poll backend's hot/cold tiers (pike_poll.backend): a busy loop wakes on the recently
active descriptors only, cold ones are found by amortised full scans, and an idle loop
blocks on everything.  Real loopback sockets; the backend's state is inspected, never
replaced.

The second half re-runs most of the conformance suite with tiering forced on for the few
descriptors those tests use (``TIER_MIN = 0``), so the tiered path is held to the same
rules as the plain one.  The tests that build pollers from the backend's class (the
stateful and two-poller tests; the 500-connection one tiers at the default threshold
anyway) run tiered, with the whole suite, by::

    .venv/bin/python -c "import sys, pytest; from pike_poll.backend import PollBackend; \\
        PollBackend.TIER_MIN = 0; sys.exit(pytest.main(['--pyargs', 'pike_core.conformance', \\
        '--pike-poller', 'poll', '-q', '-p', 'no:cacheprovider']))"
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import resource
import socket
import threading
import time
from typing import Collection, Iterator, List, Optional, Set, Tuple

import pytest
from pike_poll.backend import PollBackend

from pike_core import Poller, Transport, events
from pike_core.conformance.support import Recorder, run_until
from pike_core.timers import clock

#: Idle transports: well above TIER_MIN, so the default settings tier.
IDLE = 400
BUSY_PAIRS = 4


class Probe(PollBackend):
    """Counts wake-ups (OS waits) and full scans."""

    def __init__(self) -> None:
        self.waits = 0
        self.scans = 0
        super().__init__()

    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        self.waits += 1
        return super().wait(timeout)

    def _full_scan(self, deadline: Optional[float]) -> List[Tuple[int, int]]:
        self.scans += 1
        return super()._full_scan(deadline)


class Lazy(Probe):
    """Scans only when a test makes one due (scan_now), so what the hot set alone
    delivers can be told apart from what a scan found."""

    RATIO = 1e12
    MAX_SCAN_INTERVAL = 3600.0


class Tiered(PollBackend):
    """Tiers whatever the number of descriptors."""

    TIER_MIN = 0


def tiers(poller: Poller) -> Probe:
    """The probing backend of a poller made by the fixtures below."""
    backend = poller.backend
    assert isinstance(backend, Probe)
    return backend


def scan_now(poller: Poller) -> None:
    before = tiers(poller).scans
    tiers(poller)._next_scan = -math.inf
    poller.poll(0)
    assert tiers(poller).scans == before + 1


def settle_cold(poller: Poller) -> None:
    """Two scans: the first still counts the registrations as activity."""
    scan_now(poller)
    scan_now(poller)


class Bounce(Transport):
    """Sends back whatever it reads: two of them keep a message going for ever."""

    def handle_read(self) -> None:
        data = self.recv(65536)
        if data:
            self.send(data)

    def handle_close(self) -> None:
        self.close()


@pytest.fixture(autouse=True)
def enough_descriptors() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * IDLE + 256
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"needs {need} descriptors; RLIMIT_NOFILE's hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def _close_all(poller: Poller, peers: List[socket.socket]) -> None:
    poller.close()
    for s in peers:
        s.close()


@pytest.fixture
def probe() -> Iterator[Tuple[Poller, List[socket.socket]]]:
    poller = Poller(Probe())
    peers: List[socket.socket] = []
    yield poller, peers
    _close_all(poller, peers)


@pytest.fixture
def lazy() -> Iterator[Tuple[Poller, List[socket.socket]]]:
    poller = Poller(Lazy())
    peers: List[socket.socket] = []
    yield poller, peers
    _close_all(poller, peers)


def fill(sock: socket.socket) -> None:
    try:
        while True:
            sock.send(b"y" * 65536)
    except BlockingIOError:
        pass


def drain(sock: socket.socket) -> None:
    try:
        while sock.recv(1 << 20):
            pass
    except BlockingIOError:
        pass


def pair(poller: Poller, peers: List[socket.socket]) -> Tuple[Recorder, socket.socket]:
    """A Recorder on one end of a new socket pair; the other end stays raw (in peers)."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    peers.append(b)
    return Recorder(poller, a), b


def idle(poller: Poller, peers: List[socket.socket], n: int = IDLE) -> List[Tuple[Recorder, socket.socket]]:
    return [pair(poller, peers) for _ in range(n)]


def busy(poller: Poller, n: int = BUSY_PAIRS) -> Set[int]:
    """Pairs of Bounce transports with a message going round; their descriptors."""
    fds: Set[int] = set()
    for _ in range(n):
        a, b = socket.socketpair()
        ta, tb = Bounce(alternate_poller=poller, sock=a), Bounce(alternate_poller=poller, sock=b)
        ta.send(b"x" * 64)
        fds |= {ta._fileno, tb._fileno}
    return fds


# --- (1) and (6): a busy loop ------------------------------------------------------------


def test_cold_socket_is_served_while_the_hot_ones_keep_the_loop_busy(
    probe: Tuple[Poller, List[socket.socket]],
) -> None:
    poller, peers = probe
    cold = idle(poller, peers)
    busy(poller)
    run_until(poller, lambda: tiers(poller).scans >= 3, what="three full scans")
    target, peer = cold[IDLE // 2]
    assert target._fileno not in tiers(poller)._hot_fds
    # The event can wait for the next scan (RATIO x scan cost, rounded up to whole
    # milliseconds); ten times that plus 50 ms for a shared machine.  Without the
    # scans a busy loop would never look at the cold socket: the 5 s cap.
    bound = 10 * (tiers(poller)._interval + 0.001) + 0.05
    waits, scans = tiers(poller).waits, tiers(poller).scans
    start = clock()
    peer.send(b"cold news")
    while not target.received and clock() - start < 5:
        poller.poll(1.0)
    latency = clock() - start
    assert bytes(target.received) == b"cold news"
    assert latency < bound, f"{latency * 1000:.1f} ms, bound {bound * 1000:.1f} ms"
    assert tiers(poller).waits - waits > tiers(poller).scans - scans, "the loop was not busy on the hot set"
    assert target._fileno in tiers(poller)._hot_fds


def test_hot_set_shrinks_to_the_active_and_scans_are_rare(probe: Tuple[Poller, List[socket.socket]]) -> None:
    poller, peers = probe
    idle(poller, peers)
    bouncing = busy(poller)
    assert len(tiers(poller)._hot_fds) > IDLE  # every registration counts as activity at first
    run_until(poller, lambda: tiers(poller).scans >= 2, what="two full scans")
    waits, scans = tiers(poller).waits, tiers(poller).scans
    end = clock() + 0.3
    while clock() < end:
        poller.poll(1.0)
    waits, scans = tiers(poller).waits - waits, tiers(poller).scans - scans
    assert tiers(poller)._hot_fds <= bouncing | {tiers(poller)._waker.fileno()}
    assert tiers(poller)._waker.fileno() in tiers(poller)._hot_fds
    assert tiers(poller)._wait_on is tiers(poller)._hot
    # Scanning on every wake-up would make these equal.
    assert scans >= 1
    assert waits >= 4 * scans, f"{scans} full scans in {waits} wake-ups"


# --- (2): an idle loop --------------------------------------------------------------


def test_idle_loop_blocks_and_serves_a_cold_socket_at_once(probe: Tuple[Poller, List[socket.socket]]) -> None:
    poller, peers = probe
    cold = idle(poller, peers)
    settle_cold(poller)
    assert len(tiers(poller)._hot_fds) == 1  # the waker alone
    waits = tiers(poller).waits
    cpu = time.process_time()
    poller.loop(timeout=0.5)
    cpu = time.process_time() - cpu
    # One wait on the hot set until a scan is due, the scan, then one block on everything.
    assert tiers(poller).waits - waits <= 5, f"{tiers(poller).waits - waits} wake-ups in 0.5 s of idling"
    assert cpu < 0.1, f"{cpu:.3f} s of CPU in 0.5 s of idling"

    target, peer = cold[7]
    sent: List[float] = []

    def later() -> None:
        time.sleep(0.1)
        sent.append(clock())
        peer.send(b"wake up")

    thread = threading.Thread(target=later)
    # Should the data never be seen, a wake-up after 5 s ends the wait without it.
    watchdog = threading.Timer(5.0, poller.wake)
    thread.start()
    watchdog.start()
    waits = tiers(poller).waits
    try:
        while not target.received and tiers(poller).waits - waits < 100:
            poller.poll(None)  # no timeout: only the data can end this wait
    finally:
        watchdog.cancel()
        thread.join()
    latency = clock() - sent[0]
    assert latency < 0.1, f"a cold socket waited {latency * 1000:.1f} ms in an idle loop"
    assert tiers(poller).waits - waits <= 3, f"{tiers(poller).waits - waits} wake-ups for one event"
    assert bytes(target.received) == b"wake up"


# --- (3): write interest on a cold descriptor --------------------------------------------


def test_write_interest_on_a_cold_descriptor_is_delivered(lazy: Tuple[Poller, List[socket.socket]]) -> None:
    poller, peers = lazy
    idle(poller, peers)
    t, peer = pair(poller, peers)
    settle_cold(poller)
    assert t._fileno not in tiers(poller)._hot_fds
    sock = t.socket
    assert sock is not None
    fill(sock)
    poller.defer_write(t)
    for _ in range(3):
        poller.poll(0.01)
    # The change of interest reached the backend before the first of those waits.
    assert t._fileno in tiers(poller)._hot_fds
    assert t.calls == []  # still full
    drain(peer)
    scans = tiers(poller).scans
    run_until(poller, lambda: t.calls, timeout=2, what="the write callback")
    assert t.calls == ["write"]
    assert tiers(poller).scans == scans, "delivered by a full scan, not by the hot set"


# --- (4): a descriptor number reused across tiers ----------------------------------------


def reuse_number(fd: int) -> Tuple[socket.socket, socket.socket]:
    """A new connected pair whose first socket has descriptor number ``fd`` (free)."""
    a, b = socket.socketpair()
    if b.fileno() == fd:
        a, b = b, a
    if a.fileno() != fd:
        os.dup2(a.fileno(), fd)
        a.close()
        a = socket.socket(fileno=fd)
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def test_reused_descriptor_number_gets_no_stale_events(lazy: Tuple[Poller, List[socket.socket]]) -> None:
    poller, peers = lazy
    idle(poller, peers)
    old_cold, cold_peer = pair(poller, peers)
    old_hot, _ = pair(poller, peers)
    settle_cold(poller)
    # A cold one with unread data, a hot one waiting to write into a full buffer.
    cold_peer.send(b"stale")
    sock = old_hot.socket
    assert sock is not None
    fill(sock)
    poller.defer_write(old_hot)
    poller.poll(0)  # takes the write interest to the backend; the socket stays full
    assert old_cold._fileno not in tiers(poller)._hot_fds
    assert old_hot._fileno in tiers(poller)._hot_fds

    for old in (old_cold, old_hot):
        fd = old._fileno
        old.close()
        assert fd not in tiers(poller)._hot_fds
        assert fd not in tiers(poller)._active
        new_sock, new_peer = reuse_number(fd)
        peers.append(new_peer)
        new = Recorder(poller, new_sock)
        assert new._fileno == fd
        # Writable, but write interest was not asked for: a leftover mask would show.
        assert tiers(poller)._masks[fd] == events.READ
        assert [e for e in tiers(poller)._hot.poll(0) if e[0] == fd] == []
        for _ in range(3):
            poller.poll(0.01)
        scan_now(poller)
        assert new.calls == []
        new_peer.send(b"fresh")
        run_until(poller, lambda n=new: n.received, timeout=2, what="the new socket's data")  # type: ignore[misc]
        assert new.calls == ["read"]
        assert bytes(new.received) == b"fresh"
    assert old_cold.calls == []
    assert old_hot.calls == []


# --- (5): a wake-up from another thread ---------------------------------------------------


def test_call_soon_threadsafe_wakes_a_loop_blocked_on_the_hot_set(
    lazy: Tuple[Poller, List[socket.socket]],
) -> None:
    poller, peers = lazy
    idle(poller, peers)
    settle_cold(poller)
    assert tiers(poller)._hot_fds == {tiers(poller)._waker.fileno()}
    assert tiers(poller)._wait_on is tiers(poller)._hot
    called: List[float] = []

    def callback() -> None:
        called.append(clock())
        poller.stop()

    thread = threading.Timer(0.1, poller.call_soon_threadsafe, (callback,))
    scans = tiers(poller).scans
    thread.start()
    try:
        poller.loop(timeout=5)
        returned = clock()
    finally:
        thread.join()
    assert called, "the loop ran out its 5 s: the wake-up was not seen"
    assert returned - called[0] < 0.1
    assert tiers(poller).scans == scans  # it was waiting on the hot set, not on everything


# --- the conformance suite, tiered -------------------------------------------------------


@pytest.fixture
def pike_poller() -> Iterator[Poller]:
    """Overrides the conformance plugin's fixture for the tests re-exported below."""
    instance = Poller(Tiered())
    try:
        yield instance
    finally:
        instance.close()


_SUITE = (
    "bad_input",
    "connect",
    "data",
    "dispatch",
    "faults",
    "flow_control",
    "lifecycle",
    "loop",
    "loop_contract",
    "states",
    "write_buffer",
)
_modules = {name: importlib.import_module(f"pike_core.conformance.test_{name}") for name in _SUITE}
# The suite modules' own fixtures, for the tests re-exported below.
world = _modules["bad_input"].world
held = _modules["states"].held
server = _modules["states"].server

for _suite_name, _module in _modules.items():
    for _name, _test in list(vars(_module).items()):
        # Those taking pike_backend make their pollers from the backend's class: see the
        # module docstring for running them tiered.
        if (
            _name.startswith("test_")
            and inspect.isfunction(_test)
            and "pike_backend" not in inspect.signature(_test).parameters
        ):
            globals()[f"test_tiered_{_suite_name}__{_name[5:]}"] = _test
