"""Timers: a heap of handles ordered by due time, then by the order they were made."""

from __future__ import annotations

import heapq
import math
import time
from typing import Any, Callable, Final, List, Tuple, final

clock: Final = time.monotonic
#: Timers due within one tick of the clock count as due: with a coarse clock (Windows
#: before Python 3.13 ticks in milliseconds) an OS wait bounded by a timer can end a hair
#: before the clock says the timer is due, and the loop would wake once more for nothing.
CLOCK_RESOLUTION: Final = time.get_clock_info("monotonic").resolution


@final
class TimerHandle:
    """What :meth:`Poller.call_later` returns; :meth:`cancel` stops the call."""

    __slots__ = ("_args", "_callback", "_queue", "_seq", "cancelled", "when")

    def __init__(
        self,
        when: float,
        seq: int,
        callback: Callable[..., object],
        args: Tuple[Any, ...],
        queue: TimerQueue,
    ) -> None:
        self.when = when
        self._seq = seq
        self._callback = callback
        self._args = args
        self.cancelled = False
        self._queue: TimerQueue | None = queue

    def cancel(self) -> None:
        """Stop the call if it has not run yet.  Harmless when repeated or too late."""
        if not self.cancelled:
            self.cancelled = True
            queue, self._queue = self._queue, None
            if queue is not None:
                queue.cancelled_one()

    def run(self) -> None:
        """Call the callback unless it was cancelled after it fell due."""
        if not self.cancelled:
            self._callback(*self._args)

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else f"due at {self.when:.6f}"
        return f"<TimerHandle {self._callback!r} {state}>"


class TimerQueue:
    """The timers of one poller; not thread-safe (it belongs to the loop's thread)."""

    __slots__ = ("_cancelled", "_seq", "heap")

    def __init__(self) -> None:
        #: The pending entries, cancelled ones included until they are due: a poller
        #: tests this list itself, since ``len()`` would cost a Python call per poll.
        self.heap: List[Tuple[float, int, TimerHandle]] = []
        self._seq = 0
        self._cancelled = 0

    def __len__(self) -> int:
        return len(self.heap) - self._cancelled

    def add(self, delay: float, callback: Callable[..., object], args: Tuple[Any, ...]) -> TimerHandle:
        """Schedule ``callback(*args)`` after ``delay`` seconds.

        :raises TypeError: ``callback`` is not callable or ``delay`` is not a number.
        :raises ValueError: ``delay`` is NaN, infinite, or too large for a float.
        """
        if not callable(callback):
            raise TypeError(f"call_later needs a callable, got {callback!r}")
        if isinstance(delay, bool) or not isinstance(delay, (int, float)):
            raise TypeError(f"delay must be a number of seconds, got {delay!r}")
        try:
            seconds = float(delay)
        except OverflowError:
            seconds = math.inf
        if not math.isfinite(seconds):
            raise ValueError(f"delay must be a finite number of seconds, got {delay!r}")
        # The sequence number keeps timers due at the same instant in the order they were
        # made, and keeps heapq from ever comparing two handles.
        self._seq += 1
        handle = TimerHandle(clock() + max(seconds, 0.0), self._seq, callback, args, self)
        heapq.heappush(self.heap, (handle.when, self._seq, handle))
        return handle

    def put_back(self, handles: List[TimerHandle]) -> None:
        """Return handles taken by :meth:`pop_due` but not run (a callback before them
        raised out of the loop): they run at the next pass, in their order."""
        for handle in handles:
            if not handle.cancelled:
                handle._queue = self
                heapq.heappush(self.heap, (handle.when, handle._seq, handle))

    def cancelled_one(self) -> None:
        self._cancelled += 1
        # Cancelled handles stay in the heap until due; rebuild once they are the
        # majority so a program that re-arms a long timeout forever stays bounded.
        if self._cancelled > 64 and self._cancelled * 2 > len(self.heap):
            # In place: pollers hold a reference to this list.
            self.heap[:] = [entry for entry in self.heap if not entry[2].cancelled]
            heapq.heapify(self.heap)
            self._cancelled = 0

    def next_delay(self, now: float) -> float | None:
        """Seconds until the earliest live timer (0 when overdue), or None without one."""
        heap = self.heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
            self._cancelled -= 1
        if not heap:
            return None
        return max(heap[0][0] - now, 0.0)

    def pop_due(self, now: float) -> List[TimerHandle]:
        """Remove and return the live timers due at ``now``, earliest first."""
        heap = self.heap
        due: List[TimerHandle] = []
        while heap and heap[0][0] <= now:
            handle = heapq.heappop(heap)[2]
            if handle.cancelled:
                self._cancelled -= 1
            else:
                # Out of the heap now: a later cancel() must not count it as in there.
                handle._queue = None
                due.append(handle)
        return due

    def clear(self) -> None:
        for entry in self.heap:
            entry[2].cancelled = True
        self.heap.clear()
        self._cancelled = 0
