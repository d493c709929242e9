"""The bounded write buffer: a peer that never reads cannot make the process grow."""

from __future__ import annotations

import hashlib
import os

import pytest

from pike_core import Poller, WriteBufferFullError

from .support import Recorder, connected_pair, read_to_end, read_until


class Writer(Recorder):
    write_high_water = 64 * 1024
    write_low_water = 16 * 1024
    write_limit = 512 * 1024

    def handle_drain(self) -> None:
        self.calls.append("drain")


def test_write_is_bounded_and_loses_nothing(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = Writer(pike_poller, a)
    chunk = os.urandom(32 * 1024)
    accepted = hashlib.sha256()
    accepted_bytes = 0
    answers = []

    def write_until_refused() -> None:
        nonlocal accepted_bytes
        for _ in range(10_000):
            answers.append(t.write(chunk))
            accepted.update(chunk)
            accepted_bytes += len(chunk)
            assert t.write_buffer_size <= t.write_limit

    with pytest.raises(WriteBufferFullError, match="not reading") as info:
        write_until_refused()
    assert info.value.transport is t
    assert answers[0] is True
    assert answers[-1] is False
    assert t.write_buffer_size <= t.write_limit
    got = read_until(pike_poller, b, accepted_bytes, "every accepted byte to arrive", timeout=30)
    assert len(got) == accepted_bytes
    assert hashlib.sha256(got).digest() == accepted.digest()
    assert t.count("drain") == 1
    assert t.write_buffer_size == 0
    t.close()
    b.close()


def test_close_when_done_sends_everything_first(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = Writer(pike_poller, a)
    t.write_limit = 32 << 20
    # More than loopback's socket buffers take, so part of it has to wait in ours.
    payload = os.urandom(24 << 20)
    t.write(payload)
    assert t.write_buffer_size > 0
    t.close_when_done()
    assert not t.closed
    assert read_to_end(pike_poller, b, "the buffered bytes, then EOF", timeout=30) == payload
    assert t.closed
    b.close()
