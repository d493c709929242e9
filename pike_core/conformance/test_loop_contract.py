"""The loop's contract at its corners: long timers, exceptions that leave the loop,
closing from inside, nested polling, other threads, fork, and an idle loop that blocks."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import textwrap
import threading
from types import FrameType
from typing import Any, Callable, List, Optional

import pytest

from pike_core import MAX_WAIT, BackendStatus, Poller, Transport, new_poller

from .support import DEADLINE, Recorder, WaitLog, connected_pair, waits_while_idle

DAY = 86400.0


# --- 1: any finite delay --------------------------------------------------------------


@pytest.mark.parametrize("delay", [30 * DAY, 3650 * DAY, 1e300, 2**70], ids=["30d", "10y", "1e300", "2**70"])
def test_a_timer_any_finite_delay_away_never_breaks_the_loop(pike_poller: Poller, delay: float) -> None:
    far = pike_poller.call_later(delay, pytest.fail, "a far timer ran")
    fired: List[bool] = []
    pike_poller.call_later(0.05, fired.append, True)
    with WaitLog(pike_poller) as log:
        pike_poller.loop(timeout=0.2)
        # No limit but the far timer: it alone bounds this wait, which a wake-up ends.
        threading.Timer(0.05, pike_poller.wake).start()
        pike_poller.poll(None)
    assert fired == [True]
    assert log.timeouts, "the loop never waited"
    assert all(t is None or 0 <= t <= MAX_WAIT for t in log.timeouts), log.timeouts
    far.cancel()


@pytest.mark.parametrize("timeout", [1e10, 1e300, float("inf")], ids=["1e10", "1e300", "inf"])
def test_loop_and_poll_take_any_finite_timeout_and_infinity(pike_poller: Poller, timeout: float) -> None:
    pike_poller.call_later(0.05, pike_poller.stop)
    with WaitLog(pike_poller) as log:
        pike_poller.loop(timeout=timeout)
        threading.Timer(0.05, pike_poller.wake).start()
        pike_poller.poll(timeout)
    assert all(t is None or 0 <= t <= MAX_WAIT for t in log.timeouts), log.timeouts


def test_delays_that_are_not_finite_numbers_are_value_errors(pike_poller: Poller) -> None:
    for delay in (10**400, float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="finite number of seconds"):
            pike_poller.call_later(delay, print)


# --- 2: no timer or callback is lost ----------------------------------------------------


@pytest.mark.parametrize("leaving", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("queue", ["call_later", "call_soon"])
def test_callbacks_due_with_one_that_leaves_the_loop_run_at_the_next_loop(
    pike_poller: Poller, leaving: type, queue: str
) -> None:
    ran: List[str] = []

    def leave() -> None:
        ran.append("leave")
        raise leaving

    schedule: Callable[..., Any] = (
        (lambda f, *a: pike_poller.call_later(0, f, *a)) if queue == "call_later" else pike_poller.call_soon
    )
    schedule(ran.append, "first")
    schedule(leave)
    schedule(ran.append, "third")
    schedule(ran.append, "fourth")
    with pytest.raises(leaving):
        pike_poller.loop(timeout=1)
    assert ran == ["first", "leave"]
    pike_poller.loop(timeout=0.05)
    assert ran == ["first", "leave", "third", "fourth"]


@pytest.mark.parametrize("queue", ["call_later", "call_soon"])
def test_callbacks_due_when_handle_callback_error_raises_run_at_the_next_loop(
    pike_poller: Poller, queue: str
) -> None:
    ran: List[str] = []

    def broken() -> None:
        raise ValueError("a bug in a callback")

    def error_handler_fails(callback: object) -> None:
        raise RuntimeError("a bug in handle_callback_error")

    pike_poller.handle_callback_error = error_handler_fails  # type: ignore[method-assign]
    schedule: Callable[..., Any] = (
        (lambda f, *a: pike_poller.call_later(0, f, *a)) if queue == "call_later" else pike_poller.call_soon
    )
    schedule(broken)
    schedule(ran.append, "second")
    with pytest.raises(RuntimeError, match="handle_callback_error"):
        pike_poller.loop(timeout=1)
    assert ran == []
    pike_poller.loop(timeout=0.05)
    assert ran == ["second"]


# --- 3: closing from inside ------------------------------------------------------------


@pytest.mark.parametrize("where", ["call_soon", "timer"])
def test_close_from_a_callback_returns_from_loop_and_runs_nothing_more(
    pike_poller: Poller, where: str
) -> None:
    order: List[str] = []

    def close() -> None:
        order.append("close")
        pike_poller.close()

    if where == "call_soon":
        pike_poller.call_soon(close)
    else:
        pike_poller.call_later(0, close)
    for n in range(3):
        pike_poller.call_soon(order.append, f"queued {n}")
        pike_poller.call_later(0, order.append, f"timer {n}")
    pike_poller.loop(timeout=5)
    assert pike_poller.closed
    assert order[-1] == "close", order
    pike_poller.close()


class PollerCloser(Recorder):
    """Closes its poller from handle_read."""

    def handle_read(self) -> None:
        super().handle_read()
        self.poller.close()


def test_close_from_a_transport_callback_ends_the_batch(pike_poller: Poller) -> None:
    pairs = [connected_pair() for _ in range(4)]
    transports = [PollerCloser(pike_poller, a) for a, _ in pairs]
    for _, b in pairs:
        b.send(b"x")
    # Wait until all four are readable, so that one wait reports them together.
    ours = [a for a, _ in pairs]
    while len(select.select(ours, [], [], DEADLINE)[0]) < len(ours):
        pass
    after: List[str] = []
    pike_poller.call_soon(after.append, "queued before the batch")
    pike_poller.call_later(0, after.append, "timer due with the batch")
    pike_poller.loop(timeout=5)
    assert pike_poller.closed
    assert sum(t.count("read") for t in transports) == 1, [t.calls for t in transports]
    assert after == []
    for _, b in pairs:
        b.close()


# --- 4: nested polling ------------------------------------------------------------------


def test_nested_poll_and_loop_from_callbacks(pike_poller: Poller) -> None:
    ran: List[str] = []

    def nested() -> None:
        ran.append("outer")
        pike_poller.poll(0)
        pike_poller.loop(count=2)

    pike_poller.call_soon(nested)
    for name in ("a", "b", "c"):
        pike_poller.call_soon(ran.append, name)
    pike_poller.call_later(0, ran.append, "timer")
    pike_poller.loop(timeout=0.1)
    assert sorted(ran) == ["a", "b", "c", "outer", "timer"]


# A reused number under a nested poll: test_dispatch.py, test_descriptor_reused_in_one_batch.


# --- 5: other threads ---------------------------------------------------------------


class PauseInWake:
    """A trace hook that stops a thread as it enters the OS-level wake-up (the waker's or
    the backend's ``wake``, past the poller's own checks), until :meth:`release`."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.go = threading.Event()

    def trace(self, frame: FrameType, event: str, arg: object) -> Optional[Callable[..., Any]]:
        if event == "call" and frame.f_code.co_name == "wake" and frame.f_globals.get("__name__") != __name__:
            module = frame.f_globals.get("__name__", "")
            if module != "pike_core.poller":
                self.inside.set()
                self.go.wait(DEADLINE)
        return None

    def release(self) -> None:
        self.go.set()


@pytest.mark.parametrize("call", ["wake", "stop", "call_soon_threadsafe"])
def test_a_thread_waking_the_poller_while_another_closes_it_never_fails(
    pike_poller: Poller, call: str
) -> None:
    errors: List[BaseException] = []
    pause = PauseInWake()

    def waker() -> None:
        sys.settrace(pause.trace)
        try:
            if call == "call_soon_threadsafe":
                pike_poller.call_soon_threadsafe(print)
            else:
                getattr(pike_poller, call)()
        except BaseException as exc:
            errors.append(exc)
        finally:
            sys.settrace(None)

    def closer() -> None:
        try:
            pike_poller.close()
        except BaseException as exc:
            errors.append(exc)

    waking = threading.Thread(target=waker)
    waking.start()
    assert pause.inside.wait(DEADLINE), "the waking thread never reached the OS wake-up"
    # The waking thread is stopped inside the wake-up; close the poller meanwhile.
    closing = threading.Thread(target=closer)
    closing.start()
    closing.join(0.2)
    pause.release()
    waking.join(DEADLINE)
    closing.join(DEADLINE)
    assert not waking.is_alive()
    assert not closing.is_alive()
    assert errors == []
    assert pike_poller.closed
    # After the close: every thread-safe call is a no-op, never an error.
    pike_poller.stop()
    pike_poller.wake()
    pike_poller.call_soon_threadsafe(print)


# --- 6: fork ----------------------------------------------------------------------------

PREFORK_SERVER = textwrap.dedent(
    """
    import os, socket, sys
    from pike_core import Transport, default_poller

    class Echo(Transport):
        def handle_read(self):
            data = self.recv(65536)
            if data:
                self.send(data)

    class Server(Transport):
        def __init__(self):
            super().__init__()  # the default poller
            self.create_socket()
            self.set_reuse_addr()
            self.bind(("127.0.0.1", 0))
            self.listen(64)
            self.served = 0

        def handle_accepted(self, sock, addr):
            self.served += 1
            Echo(sock=sock)

    server = Server()
    children = []
    for _ in range(2):
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(reader)
            assert default_poller() is server.poller, "the child has another default poller"
            default_poller().call_later(3.0, default_poller().stop)
            default_poller().loop()
            os.write(writer, str(server.served).encode())
            os._exit(0)
        os.close(writer)
        children.append((pid, reader))
    for n in range(20):
        with socket.create_connection(server.addr, timeout=10) as client:
            message = b"client %d" % n
            client.sendall(message)
            assert client.recv(64) == message, n
    served = []
    for pid, reader in children:
        _, status = os.waitpid(pid, 0)
        assert status == 0, status
        served.append(int(os.read(reader, 64) or b"0"))
    print("served", served)
    assert sum(served) == 20, served
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() does not exist on this platform")
def test_a_pre_fork_server_on_the_default_poller_serves_from_its_children(
    pike_backend: BackendStatus,
) -> None:
    env = dict(os.environ, PIKE_POLLER=pike_backend.name)
    result = subprocess.run(
        [sys.executable, "-c", PREFORK_SERVER],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "served" in result.stdout


# --- 7: clear errors --------------------------------------------------------------------


def test_backend_names_are_taken_as_pike_poller_takes_them(pike_backend: BackendStatus) -> None:
    with new_poller(f"  {pike_backend.name} ") as spaced:
        assert spaced.name == pike_backend.name
    with new_poller(f"no-such-backend, {pike_backend.name}") as listed:
        assert listed.name == pike_backend.name
    with pytest.raises(TypeError, match="comma-separated"):
        new_poller([pike_backend.name])  # type: ignore[arg-type]


# --- 8: an idle loop blocks -----------------------------------------------------------------


def test_an_idle_loop_blocks_whatever_is_registered(pike_poller: Poller) -> None:
    class Quiet(Transport):
        pass

    fresh = Quiet(alternate_poller=pike_poller)
    fresh.create_socket()  # neither connected nor listening: Linux reports it hung up
    a, b = connected_pair()
    connected = Recorder(pike_poller, a)
    datagram = Quiet(alternate_poller=pike_poller)
    datagram.create_socket(socket.AF_INET, socket.SOCK_DGRAM)
    pike_poller.call_later(3600, print)
    waits = waits_while_idle(pike_poller)
    assert waits <= 2, f"{waits} waits in 0.5 s of an idle loop"
    for t in (fresh, connected, datagram):
        t.close()
    b.close()
