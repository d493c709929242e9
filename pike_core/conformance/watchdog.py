"""The conformance suite's watchdog: no test runs past its time limit, and the session
never hangs.

One thread watches the test in progress.  When the test's time is up:

1. it interrupts the thread that runs the test: ``SIGALRM``, sent to that thread alone
   (``pthread_kill``), whose handler raises :class:`DeadlineExceeded`.  A system call
   blocked in the backend (``epoll_wait``, ``select``...) returns with ``EINTR``, Python
   runs the handler, and the test fails with a message naming the limit and how to
   change it; the session goes on with the next test;
2. if the test has still not ended :data:`GRACE` seconds later (no ``SIGALRM`` on
   Windows, the signal blocked, a C call that does not give way, a test that catches
   the exception and goes on), it calls ``stuck``,
   which reports every thread's traceback and ends the process: under pytest-xdist the
   controller then reports the worker's crash in that test and goes on with a new
   worker; without xdist the session ends, with the report.

Teardown runs even when setup or the test used up the time: a test interrupted at its
limit gets :data:`GRACE` more seconds to release what it holds.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from types import FrameType
from typing import Callable, Final, Iterator, Optional

#: Seconds between interrupting a test and giving up on it.
GRACE: Final = 5.0
#: Whether a test's thread can be interrupted in a blocking call (POSIX).
INTERRUPTS: Final = hasattr(signal, "pthread_kill") and hasattr(signal, "SIGALRM")


class DeadlineExceeded(SystemExit):
    """A conformance test ran past its time limit.

    A :class:`SystemExit`, since that is what the core lets through a callback (any
    other exception goes to the transport's ``handle_error``) and what hypothesis does
    not take for a failing example to shrink; pytest reports it as the test's failure.
    """


class Watchdog:
    """Watches one test at a time, between :meth:`begin` and :meth:`end`.

    :param limit: seconds a test may take (setup and call; teardown gets :data:`GRACE`
        more once they used it up).
    :param advice: how to change the limit, for the message.
    :param stuck: called, from the watchdog's thread, with the test's name when it did
        not stop :data:`GRACE` seconds after it was interrupted; it must not return.
    """

    def __init__(self, limit: float, advice: str, stuck: Callable[[str], None]) -> None:
        self.limit = limit
        self.advice = advice
        self.stuck = stuck
        self._state = threading.Condition()
        self._test: Optional[str] = None
        self._deadline = 0.0
        self._serial = 0
        # The test's thread while it runs a phase with the alarm handler in place;
        # only that thread sets it.
        self._interruptible: Optional[int] = None
        self._interrupted = False
        self._thread: Optional[threading.Thread] = None

    def message(self, test: str) -> str:
        return f"{test} ran past its {self.limit:g} s limit and was stopped ({self.advice})"

    def begin(self, test: str) -> None:
        """``test`` starts now."""
        with self._state:
            self._test = test
            self._deadline = time.monotonic() + self.limit
            self._serial += 1
            self._interrupted = False
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="pike-core watchdog", daemon=True)
                self._thread.start()
            self._state.notify_all()

    def end(self) -> None:
        """The test started by :meth:`begin` is over."""
        with self._state:
            self._test = None
            self._serial += 1
            self._state.notify_all()

    @contextlib.contextmanager
    def phase(self, teardown: bool = False) -> Iterator[None]:
        """Around one phase (setup, call, teardown) of the test, in the test's thread:
        there it can be interrupted.

        :raises DeadlineExceeded: entering setup or call after the time is up.
        """
        with self._state:
            test = self._test
            if test is not None and time.monotonic() >= self._deadline:
                if not teardown:
                    raise DeadlineExceeded(self.message(test))
                self._deadline = time.monotonic() + GRACE
                self._serial += 1
                self._interrupted = False
                self._state.notify_all()
        self._interruptible = threading.get_ident() if self._install_handler() else None
        try:
            yield
        finally:
            self._interruptible = None

    def _install_handler(self) -> bool:
        """Put the alarm handler in place, once, where it takes no one else's."""
        if not INTERRUPTS or threading.current_thread() is not threading.main_thread():
            return False
        current = signal.getsignal(signal.SIGALRM)
        if current == self._on_alarm:
            return True
        if current != signal.SIG_DFL:
            return False
        signal.signal(signal.SIGALRM, self._on_alarm)
        return True

    def close(self) -> None:
        """Stop watching, and put back the default alarm handler (from the main thread,
        at the end of the session, which may come without a test's end)."""
        self.end()
        if INTERRUPTS and signal.getsignal(signal.SIGALRM) == self._on_alarm:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)

    def _on_alarm(self, signum: int, frame: Optional[FrameType]) -> None:
        # Only the alarm this watchdog sent to the test's thread, once per test: a late
        # one (the phase ended meanwhile) is dropped.
        __tracebackhide__ = True  # the test's traceback ends where it was blocked
        if self._interrupted and self._interruptible == threading.get_ident() and self._test:
            self._interrupted = False
            raise DeadlineExceeded(self.message(self._test))

    def _watch(self) -> None:
        with self._state:
            while True:
                serial = self._serial
                if self._test is None:
                    self._state.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._state.wait(left)
                    continue
                test = self._test
                target = self._interruptible
                if target is not None:
                    self._interrupted = True
                    signal.pthread_kill(target, signal.SIGALRM)
                # Between two phases the next one stops the test as it begins.  Woken
                # early when the test ends, or teardown moves the deadline.
                self._state.wait(GRACE)
                if self._serial == serial:
                    self.stuck(test)
                    return
