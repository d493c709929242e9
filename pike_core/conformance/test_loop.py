"""Timers, cross-thread wake-ups, stopping, idling and resource hygiene."""

from __future__ import annotations

import gc
import threading
import time
from typing import List

import pytest

from pike_core import Poller, PollerClosedError

from .support import Listener, Recorder, connected_pair, open_descriptor_count, run_until


def test_timers_fire_in_order_and_cancel_works(pike_poller: Poller) -> None:
    fired: List[str] = []
    pike_poller.call_later(0.05, fired.append, "c")
    pike_poller.call_later(0.01, fired.append, "a")
    pike_poller.call_later(0.01, fired.append, "b")
    cancelled = pike_poller.call_later(0.02, fired.append, "cancelled")
    cancelled.cancel()
    cancelled.cancel()
    run_until(pike_poller, lambda: len(fired) == 3, what="three timers")
    for _ in range(3):
        pike_poller.poll(0.02)
    assert fired == ["a", "b", "c"]


def test_timer_bounds_a_blocking_wait(pike_poller: Poller) -> None:
    fired: List[float] = []
    pike_poller.call_later(0.1, lambda: fired.append(time.monotonic()))
    start = time.monotonic()
    pike_poller.poll(30)
    assert fired, "poll(30) returned without running the timer that bounded it"
    assert fired[0] - start < 10


def test_call_soon_threadsafe_wakes_a_blocked_poll(pike_poller: Poller) -> None:
    called = threading.Event()
    blocked = threading.Event()

    def other_thread() -> None:
        blocked.wait()
        pike_poller.call_soon_threadsafe(called.set)

    thread = threading.Thread(target=other_thread)
    thread.start()
    start = time.monotonic()
    blocked.set()
    while not called.is_set() and time.monotonic() - start < 30:
        pike_poller.poll(30)
    thread.join()
    assert called.is_set()
    assert time.monotonic() - start < 10


def test_stop_from_another_thread_ends_loop(pike_poller: Poller) -> None:
    timer = threading.Timer(0.05, pike_poller.stop)
    timer.start()
    start = time.monotonic()
    pike_poller.loop(timeout=30)
    timer.join()
    assert time.monotonic() - start < 10


def test_loop_count_and_timeout(pike_poller: Poller) -> None:
    ticks: List[int] = []

    def tick() -> None:
        ticks.append(1)
        pike_poller.call_soon(tick)

    pike_poller.call_soon(tick)
    pike_poller.loop(count=3)
    assert len(ticks) == 3
    start = time.monotonic()
    pike_poller.loop(timeout=0)
    assert len(ticks) == 4
    pike_poller.loop(timeout=0.05)
    assert time.monotonic() - start >= 0.05


def test_idle_loop_does_not_spin(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = Recorder(pike_poller, a)
    cpu_start, wall_start = time.process_time(), time.monotonic()
    pike_poller.loop(timeout=1)
    cpu, wall = time.process_time() - cpu_start, time.monotonic() - wall_start
    assert wall >= 1
    assert cpu / wall < 0.05, f"an idle loop(timeout=1) used {cpu / wall:.1%} of a CPU"
    t.close()
    b.close()


def test_bad_arguments_are_clear_errors(pike_poller: Poller) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        pike_poller.poll(-1)
    with pytest.raises(ValueError, match=">= 0"):
        pike_poller.loop(timeout=-0.5)
    with pytest.raises(ValueError, match="count"):
        pike_poller.loop(count=-1)
    with pytest.raises(TypeError, match="callable"):
        pike_poller.call_later(1, "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        pike_poller.call_soon_threadsafe(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        pike_poller.call_later(float("nan"), print)


def test_closed_poller_refuses_use(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = Recorder(pike_poller, a)
    pike_poller.close()
    assert t.closed, "closing a poller closes its transports"
    pike_poller.close()
    with pytest.raises(PollerClosedError):
        pike_poller.poll(0)
    pike_poller.call_soon_threadsafe(print)  # from another thread, a close may come first
    with pytest.raises(PollerClosedError):
        Recorder(pike_poller, b)
    b.close()


def _connect_and_close(poller: Poller, address: object) -> None:
    client = Recorder(poller)
    client.create_socket()
    client.connect(address)
    run_until(poller, lambda: client.connected, what="connect")
    client.close()


def test_no_descriptor_leak_after_1000_connect_close_cycles(pike_poller: Poller) -> None:
    server = Listener(pike_poller, Recorder)
    # One warm-up cycle, so objects created once on first use do not count as leaks.
    _connect_and_close(pike_poller, server.addr)
    run_until(pike_poller, lambda: all(p.closed for p in server.accepted), what="the warm-up peer closed")
    # Sockets that earlier tests dropped without closing are closed by the collector;
    # collect them now so they are not counted, then allow no growth at all.
    gc.collect()
    before = open_descriptor_count()
    for _ in range(1000):
        _connect_and_close(pike_poller, server.addr)
    run_until(pike_poller, lambda: all(p.closed for p in server.accepted), what="every accepted peer closed")
    assert len(server.accepted) == 1001
    gc.collect()
    assert open_descriptor_count() <= before
    assert pike_poller.transports() == [server]


def test_two_pollers_dispatch_only_their_own(pike_poller: Poller, pike_backend: object) -> None:
    other = type(pike_poller)()
    try:
        a1, b1 = connected_pair()
        a2, b2 = connected_pair()
        mine, theirs = Recorder(pike_poller, a1), Recorder(other, a2)
        b1.send(b"mine")
        b2.send(b"theirs")
        run_until(pike_poller, lambda: mine.received, what="this poller's transport")
        for _ in range(5):
            pike_poller.poll(0.01)
        assert theirs.calls == []
        run_until(other, lambda: theirs.received, what="the other poller's transport")
        assert bytes(mine.received) == b"mine"
        assert bytes(theirs.received) == b"theirs"
        assert pike_poller.transports() == [mine]
        assert other.transports() == [theirs]
        b1.close()
        b2.close()
    finally:
        other.close()
