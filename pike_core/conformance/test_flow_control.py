"""Flow control and what the OS is asked to watch: pause_reading() / resume_reading(),
Poller.pause() / resume(), and one interest change per write event at most."""

from __future__ import annotations

import os
import select
import socket

import pytest

from pike_core import Poller, State

from .support import (
    Recorder,
    assert_quiet_while_writes_wait,
    connected_pair,
    counted,
    idle_cost,
    read_until,
    run_until,
)


def _small_send_buffer(sock: socket.socket) -> None:
    """So that a large write takes many write events (the peer's receive buffer stays
    as it is: a small window would wait on delayed acknowledgements)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)


def test_a_paused_transport_costs_nothing_while_data_waits_and_its_writes_drain(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = Recorder(pike_poller, a)
    t.write_limit = 16 << 20
    t.pause_reading()
    assert not t.is_reading()
    b.sendall(b"unread " * 1000)
    payload = os.urandom(4 << 20)
    t.write(payload)
    # Watched for writing only: the unread data must not wake the loop.
    assert_quiet_while_writes_wait(pike_poller, t, "with unread data")
    got = read_until(pike_poller, b, len(payload), "our writes to drain while reading is paused")
    assert got == payload
    assert t.calls == [], "a paused transport got callbacks"
    # Not watched at all now.
    waits, cpu = idle_cost(pike_poller)
    assert waits <= 2, f"{waits} waits in 0.5 s with unread data on a paused transport"
    assert cpu < 0.1, f"{cpu:.2f} s of CPU in 0.5 s with unread data on a paused transport"
    assert t.calls == []
    t.resume_reading()
    assert t.is_reading()
    run_until(pike_poller, lambda: len(t.received) == 7000, what="the data that waited")
    t.close()
    b.close()


def test_pause_reading_of_a_listener_stops_accepting_until_resumed(pike_poller: Poller) -> None:
    from .support import Listener

    server = Listener(pike_poller, Recorder)
    server.pause_reading()
    client = socket.create_connection(server.addr)
    for _ in range(10):
        pike_poller.poll(0.01)
    assert server.accepted == []
    server.resume_reading()
    run_until(pike_poller, lambda: server.accepted, what="the accept after resume_reading")
    client.close()


class PausesInRead(Recorder):
    """Pauses itself (the way ``how`` names) from handle_read, once."""

    how = "pause_reading"

    def handle_read(self) -> None:
        super().handle_read()
        if self.count("read") == 1:
            if self.how == "pause_reading":
                self.pause_reading()
            else:
                self.poller.pause(self)


@pytest.mark.parametrize("how", ["pause_reading", "poller.pause"])
def test_pausing_inside_handle_read_while_a_write_is_pending(pike_poller: Poller, how: str) -> None:
    a, b = connected_pair()
    t = PausesInRead(pike_poller, a)
    t.how = how
    t.read_size = 4
    pike_poller.defer_write(t)
    b.sendall(b"12345678")
    # One event carrying READ and WRITE: the pause comes between the two callbacks.
    run_until(pike_poller, lambda: t.calls, what="the first callback")
    for _ in range(10):
        pike_poller.poll(0.01)
    assert t.errors == []
    assert t.count("read") == 1
    if how == "pause_reading":
        # Writes are not paused: the write asked for still comes, once.
        assert t.calls == ["read", "write"]
        t.resume_reading()
    else:
        # The poller's pause holds everything, the promised write included.
        assert t.calls == ["read"]
        pike_poller.resume(t)
    run_until(pike_poller, lambda: bytes(t.received) == b"12345678", what="the rest after resuming")
    assert t.count("write") == 1
    pike_poller.defer_write(t)
    run_until(pike_poller, lambda: t.count("write") == 2, what="a write asked for after resuming")
    assert t.errors == []
    t.close()
    b.close()


class PausesTheOther(Recorder):
    """Reads, then pauses its partner (the way ``how`` names): the partner's read event of
    the same batch, reported before the pause, must not reach it."""

    partner: PausesTheOther
    how = "pause_reading"

    def handle_read(self) -> None:
        super().handle_read()
        if self.how == "pause_reading":
            self.partner.pause_reading()
        else:
            self.poller.pause(self.partner)


@pytest.mark.parametrize("how", ["pause_reading", "poller.pause"])
def test_a_transport_that_stops_reading_gets_no_read_event_left_in_the_batch(
    pike_poller: Poller, how: str
) -> None:
    # Both have data before the wait, so one wait reports both: whichever is dispatched
    # first stops the other one reading, and the other's event is then dropped.
    a1, b1 = connected_pair()
    a2, b2 = connected_pair()
    t1, t2 = PausesTheOther(pike_poller, a1), PausesTheOther(pike_poller, a2)
    t1.partner, t2.partner = t2, t1
    t1.how = t2.how = how
    b1.sendall(b"one")
    b2.sendall(b"two")
    for a in (a1, a2):
        assert select.select([a], [], [], 10.0)[0], "the data did not arrive in 10 s"
    pike_poller.poll(1.0)
    assert t1.count("read") + t2.count("read") == 1, (t1.calls, t2.calls)
    for t in (t1, t2):
        t.close()
    b1.close()
    b2.close()


class PollsInClose(Recorder):
    """Stays open after end of stream (half-closed) and polls from inside handle_close,
    where its socket is still readable (at end of stream) and still watched."""

    def handle_close(self) -> None:
        self.calls.append("close")
        self.poller.poll(0)


def test_a_transport_at_end_of_stream_gets_no_read_event_from_a_nested_poll(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = PollsInClose(pike_poller, a)
    b.shutdown(socket.SHUT_WR)
    run_until(pike_poller, lambda: t.calls, what="the end of stream")
    for _ in range(3):
        pike_poller.poll(0.01)
    assert t.calls == ["read", "close"]
    assert t.state is State.END_OF_STREAM
    t.close()
    b.close()


def test_one_interest_change_per_write_event_at_most(pike_poller: Poller) -> None:
    counting, counts = counted(pike_poller)
    try:
        a, b = connected_pair()
        _small_send_buffer(a)
        t = Recorder(counting, a)
        t.write_limit = 4 << 20
        payload = os.urandom(2 << 20)
        t.write(payload)
        got = read_until(counting, b, len(payload), "2 MiB through small buffers", timeout=60)
        assert got == payload
        assert t.write_buffer_size == 0
        fd = t.fileno()
        write_events = counts.write_events[fd]
        changes = counts.calls["modify", fd] + counts.calls["unregister", fd]
        assert write_events > 10, f"only {write_events} write events: the buffers were not small"
        assert changes <= write_events, f"{changes} interest changes for {write_events} write events"
        t.close()
        b.close()
    finally:
        counting.close()


@pytest.mark.parametrize(
    "make",
    [
        lambda: __import__("array").array("i", range(300_000)),
        lambda: memoryview(bytearray(os.urandom(1 << 20))).cast("Q"),
        lambda: memoryview(bytearray(os.urandom(600 * 1000))).cast("B", [600, 1000]),
        lambda: bytearray(os.urandom(1 << 20)),
    ],
    ids=["array-i", "memoryview-Q", "memoryview-2d", "bytearray"],
)
def test_write_takes_any_contiguous_bytes_like_object_byte_for_byte(
    pike_poller: Poller, make: object
) -> None:
    data = make()  # type: ignore[operator]
    expected = bytes(memoryview(data).cast("B"))
    a, b = connected_pair()
    _small_send_buffer(a)
    t = Recorder(pike_poller, a)
    t.write_limit = 4 << 20
    t.write(data)
    assert t.write_buffer_size > 0, "all sent at once: the partial-send path was not taken"
    got = read_until(pike_poller, b, len(expected), f"{len(expected)} bytes", timeout=60)
    assert len(got) == len(expected)
    assert got == expected
    t.close()
    b.close()


def test_write_of_a_non_contiguous_object_is_a_clear_error(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = Recorder(pike_poller, a)
    strided = memoryview(bytearray(100))[::2]
    with pytest.raises(TypeError, match="C-contiguous"):
        t.write(strided)
    assert t.write_buffer_size == 0
    t.close()
    b.close()


def test_write_larger_than_the_limit_says_the_limit(pike_poller: Poller) -> None:
    from pike_core import WriteBufferFullError

    a, b = connected_pair()
    t = Recorder(pike_poller, a)
    t.write_limit = 1000
    with pytest.raises(WriteBufferFullError, match=r"more than write_limit \(1000 bytes\)"):
        t.write(b"x" * 1001)
    t.close()
    b.close()
