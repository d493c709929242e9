"""The dispatch rules: closed and reused descriptors in one batch, errors in callbacks."""

from __future__ import annotations

import os
import socket
from typing import Callable, List, Optional, Tuple

import pytest

from pike_core import Poller, RegistrationError, Transport

from .support import Recorder, connected_pair, run_until


class Closer(Recorder):
    """On its first read, closes ``victim`` (if that has not run yet)."""

    victim: Optional[Recorder] = None

    def handle_read(self) -> None:
        super().handle_read()
        if self.victim is not None and not self.victim.calls:
            self.victim.close()


def test_close_inside_callback_stops_callbacks_in_that_batch(pike_poller: Poller) -> None:
    a1, b1 = connected_pair()
    a2, b2 = connected_pair()
    first, second = Closer(pike_poller, a1), Closer(pike_poller, a2)
    first.victim, second.victim = second, first
    b1.send(b"1")
    b2.send(b"2")
    run_until(pike_poller, lambda: first.calls or second.calls, what="one read")
    # Both were readable in one batch; whichever ran first closed the other.
    reads = first.count("read") + second.count("read")
    assert reads == 1, (first.calls, second.calls)
    assert first.closed != second.closed
    for _ in range(5):
        pike_poller.poll(0.01)
    assert first.count("read") + second.count("read") == 1
    for t in (first, second):
        t.close()
    b1.close()
    b2.close()


class SelfCloser(Recorder):
    def handle_read(self) -> None:
        super().handle_read()
        self.close()


def test_close_in_read_prevents_write_of_same_event(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = SelfCloser(pike_poller, a)
    pike_poller.defer_write(t)
    b.send(b"x")
    run_until(pike_poller, lambda: t.closed, what="the read that closes")
    assert t.calls == ["read"]
    b.close()


class Reuser(Recorder):
    """Closes ``victim`` and puts a fresh transport on the very same descriptor number;
    with ``nested``, then polls from inside the callback (as pike-smb2's Future.wait()
    does), which must not make the outer batch forget that the number changed hands."""

    victim: Optional[Recorder] = None
    newcomers: List[Recorder]
    nested = False

    def handle_read(self) -> None:
        super().handle_read()
        victim = self.victim
        if victim is None or victim.calls:
            return
        number = victim.fileno()
        victim.close()
        fresh, self.peer = socket.socketpair()
        if self.peer.fileno() == number:
            fresh, self.peer = self.peer, fresh
        if fresh.fileno() != number:
            os.dup2(fresh.fileno(), number)
            fresh.close()
            fresh = socket.socket(fileno=number)
        self.newcomers.append(Recorder(self.poller, fresh))
        if self.nested:
            self.poller.poll(0)


@pytest.mark.parametrize("nested", [False, True], ids=["", "nested-poll"])
def test_descriptor_reused_in_one_batch_is_not_confused(pike_poller: Poller, nested: bool) -> None:
    a1, b1 = connected_pair()
    a2, b2 = connected_pair()
    first, second = Reuser(pike_poller, a1), Reuser(pike_poller, a2)
    newcomers: List[Recorder] = []
    first.newcomers = second.newcomers = newcomers
    first.nested = second.nested = nested
    first.victim, second.victim = second, first
    b1.send(b"1")
    b2.send(b"2")
    run_until(pike_poller, lambda: newcomers, what="the descriptor to be reused")
    newcomer = newcomers[0]
    # The old owner's readiness must not reach the new owner, which has nothing to read.
    assert newcomer.calls == []
    for _ in range(5):
        pike_poller.poll(0.01)
    assert newcomer.calls == []
    assert first.count("read") + second.count("read") == 1
    for t in (first, second, newcomer):
        t.close()
    for s in (b1, b2):
        s.close()


class Raiser(Recorder):
    def handle_read(self) -> None:
        super().handle_read()
        raise ZeroDivisionError("bug in a callback")


def test_callback_exception_goes_to_handle_error_and_loop_goes_on(pike_poller: Poller) -> None:
    a1, b1 = connected_pair()
    a2, b2 = connected_pair()
    bad, good = Raiser(pike_poller, a1), Recorder(pike_poller, a2)
    b1.send(b"boom")
    run_until(pike_poller, lambda: bad.errors, what="handle_error")
    assert isinstance(bad.errors[0], ZeroDivisionError)
    assert bad.calls == ["read", "error"]
    b2.send(b"still served")
    run_until(pike_poller, lambda: bytes(good.received) == b"still served", what="the other transport")
    good.close()
    b1.close()
    b2.close()


def test_default_handle_error_logs_and_closes(pike_poller: Poller, caplog: pytest.LogCaptureFixture) -> None:
    from pike_core import Transport

    class Buggy(Transport):
        def handle_read(self) -> None:
            raise ValueError("callback bug")

    a, b = connected_pair()
    t = Buggy(alternate_poller=pike_poller, sock=a)
    b.send(b"x")
    with caplog.at_level("ERROR", logger="pike_core"):
        run_until(pike_poller, lambda: t.closed, what="the default handle_error to close")
    assert "callback bug" in caplog.text
    assert pike_poller.transports() == []
    b.close()


class Interrupter(Recorder):
    def handle_read(self) -> None:
        raise KeyboardInterrupt


def test_keyboard_interrupt_propagates(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = Interrupter(pike_poller, a)
    b.send(b"^C")
    with pytest.raises(KeyboardInterrupt):
        pike_poller.loop(timeout=5)
    assert not t.errors
    t.close()
    b.close()


def test_system_exit_from_timer_propagates(pike_poller: Poller) -> None:
    def leave() -> None:
        raise SystemExit(3)

    pike_poller.call_later(0, leave)
    with pytest.raises(SystemExit):
        pike_poller.loop(timeout=5)


def test_double_close_is_harmless(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = Recorder(pike_poller, a)
    t.close()
    t.close()
    assert t.closed
    assert t.fileno() == -1
    assert not pike_poller.is_registered(t)
    assert pike_poller.transports() == []
    b.close()


def test_closed_transport_gets_clear_errors(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = Recorder(pike_poller, a)
    t.close()
    # Each call names itself: the closed socket is recognised from the OS's refusal.
    cases: List[Tuple[Callable[[], object], str]] = [
        (lambda: t.recv(10), r"recv\(\) on .*no open socket"),
        (lambda: t.recv(1 << 20), r"recv\(\) on .*no open socket"),
        (lambda: t.send(b"x"), r"send\(\) on .*no open socket"),
        (lambda: t.write(b"x"), r"write\(\) on .*no open socket"),
        (lambda: t.write(bytearray(b"x")), r"write\(\) on .*no open socket"),
        (lambda: Transport(pike_poller).recv(10), r"recv\(\) on .*no open socket"),
    ]
    for call, what in cases:
        with pytest.raises(OSError, match=what):
            call()
    with pytest.raises(RegistrationError, match="not registered"):
        pike_poller.defer_write(t)
    with pytest.raises(RegistrationError, match="not registered"):
        pike_poller.unregister(t)
    b.close()


def test_registering_a_taken_descriptor_is_refused(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = Recorder(pike_poller, a)
    other = Recorder(pike_poller)
    with pytest.raises(RegistrationError, match="already registered"):
        other.set_socket(a)
    assert pike_poller.transports() == [t]
    t.close()
    b.close()
