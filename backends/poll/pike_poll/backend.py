"""poll(2): the POSIX backend without select's descriptor-number limit.

Design notes
------------
The kernel keeps no state between calls: every ``poll()`` passes the whole array, and
the kernel asks each descriptor's driver in turn whether it is ready, on every call.
CPython's ``select.poll`` object keeps that array and rebuilds it only after a
register/modify/unregister, so there is no Python work per idle descriptor, but the
kernel's scan stays linear: on the machine this was tuned on, 1.3 us for 16 sockets,
550 us for 5,000 TCP sockets in a tight loop, 1.9 ms for the same 5,000 in a busy echo
server (the loop in between pushes them out of the CPU caches).  A server with 5,000 idle
connections and 16 busy ones would spend nearly all its time asking idle sockets whether
they have news.  poll(2) gets cheaper only by being given fewer descriptors, hence two
poll objects:

- ``_all`` watches every registered descriptor;
- ``_hot`` watches only those recently active: an event, a registration or an interest
  change (write interest is the sign of a peer about to be busy).  The backend's own
  waker (a socket pair, as the core's) is always hot, so a wake-up from another thread
  never waits for a scan: that is why this backend wakes by itself (``has_wake``)
  instead of letting the core register a waker it could not tell from a socket.

A wake-up waits on ``_hot`` and costs in proportion to it.  A cold descriptor is seen only
by a *full scan*, ``_all.poll(0)``, run once RATIO times the last scan's cost has passed
since it: scans then take at most 1/RATIO of the time (5 %), however many idle
descriptors there are.  The price is latency for a cold descriptor while hot ones keep
the loop busy: its event waits for the next scan, up to RATIO x scan cost (10-40 ms for
5,000 sockets by the figures above; rounded up to whole milliseconds, poll's unit), and
never more than MAX_SCAN_INTERVAL.  A smaller RATIO shortens that wait and spends more on
scans.  Each scan rebalances: hot becomes the waker, the descriptors active since the
previous scan and those the scan found ready; the others leave ``_hot`` (they stay in
``_all``).  A descriptor moves between tiers by a dict operation in ``select.poll``; the
next wait rebuilds the small hot array, the next scan the full one.

When a scan finds nothing at all, the loop is idle: it then blocks on ``_all`` for the
rest of the caller's timeout, so an idle loop uses no CPU and a cold descriptor is served
at once when nothing else is going on.  poll(2) checks every descriptor before it returns,
so that wait's answer is as complete as a scan and restarts the schedule.

With fewer than TIER_MIN registered descriptors there cannot be TIER_MIN cold ones, and
``_all`` is polled directly with no bookkeeping, as a single poll object would be.  At
each scan the hot set is also compared with the rest: when fewer than TIER_MIN
descriptors would be cold, waits go to ``_all`` until the next scan (the hot set would
save too little).  The threshold keeps small servers on the plain path: below it,
skipping the cold descriptors saves a few microseconds per wake-up, not worth making
them wait for scans.

``unregister`` removes a descriptor from both objects and from the activity record, so a
number reused by a new socket starts afresh (hot) and inherits nothing of the old one.

The waker's own events are left in the answer (the core has no record for that number
and skips them); a wait drains the waker only when :meth:`PollBackend.wake` was called,
so a wait costs no system call for it otherwise.

``POLLIN``/``POLLPRI``/``POLLOUT``/``POLLERR``/``POLLHUP``/``POLLNVAL`` have the values
of :mod:`pike_core.events`, so masks pass through untranslated.  Timeouts are in whole
milliseconds, rounded up so the wait never ends just before a timer is due, which would
make the loop spin until it is.
"""

from __future__ import annotations

import math
import select
from typing import ClassVar, Collection, Dict, List, Optional, Set, Tuple

from pike_core import Backend, CannotRunHere, events
from pike_core.timers import clock
from pike_core.waker import Waker

if not hasattr(select, "poll"):
    raise CannotRunHere(
        "needs poll(2), which this platform lacks (select.poll is missing); use select or iocp"
    )


class PollBackend(Backend):
    """A backend on ``poll()``, watching recently active descriptors apart (see the module)."""

    name = "poll"
    supported = events.READ | events.WRITE | events.PRIORITY
    has_wake = True

    #: Tier only when at least this many descriptors would be cold.  At 256 the kernel
    #: spends about 15-20 us per wake-up on them, more than a whole echo round trip
    #: through the core; below about 100 the saving is a few microseconds and not worth
    #: a cold descriptor's extra latency of up to a millisecond.  0 forces tiering (tests).
    TIER_MIN: ClassVar[int] = 256
    #: Time between full scans, as a multiple of the last scan's cost: 20 spends at most
    #: about 5 % of the time scanning and delays a cold descriptor's event by at most 20
    #: scans' worth while the loop is busy.
    RATIO: ClassVar[float] = 20.0
    #: Upper bound on the time between full scans, in seconds: a scan slowed down by the
    #: scheduler must not postpone the next one for long.  It binds only when a scan
    #: takes over 5 ms (some 13,000 sockets of a busy server), which then spends more
    #: than 1/RATIO of its time scanning.
    MAX_SCAN_INTERVAL: ClassVar[float] = 0.1

    def __init__(self) -> None:
        self._all = select.poll()
        self._hot = select.poll()
        # Mirrors of what the two poll objects hold, which select.poll cannot list.
        self._masks: Dict[int, int] = {}
        self._hot_fds: Set[int] = set()
        # Descriptors active since the last full scan (the values do not matter): a dict
        # so a batch of (fd, mask) pairs is recorded by one C-speed update().
        self._active: Dict[int, int] = {}
        self._wait_on = self._hot
        self._interval = 0.0
        self._next_scan = -math.inf
        self._waker = Waker()
        self._woken = False
        self.register(self._waker.fileno(), events.READ)

    def wake(self) -> None:
        self._waker.wake()
        # Set after the byte is sent: a wait that sees the flag finds the byte to drain.
        self._woken = True

    def register(self, fd: int, mask: int) -> None:
        self._all.register(fd, mask)
        self._masks[fd] = mask
        self._hot.register(fd, mask)
        self._hot_fds.add(fd)
        self._active[fd] = mask

    def modify(self, fd: int, mask: int) -> None:
        self._all.modify(fd, mask)
        self._masks[fd] = mask
        # register() on a watched descriptor replaces its mask, and promotes a cold one.
        self._hot.register(fd, mask)
        self._hot_fds.add(fd)
        self._active[fd] = mask

    def unregister(self, fd: int) -> None:
        if self._masks.pop(fd, None) is None:
            return
        self._all.unregister(fd)
        if fd in self._hot_fds:
            self._hot_fds.discard(fd)
            self._hot.unregister(fd)
        self._active.pop(fd, None)

    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        if self._woken:
            self._woken = False
            self._waker.drain()
        if len(self._masks) < self.TIER_MIN:
            return self._all.poll(-1 if timeout is None else math.ceil(timeout * 1000))
        now = clock()
        left = self._next_scan - now
        if left > 0:
            until_scan = math.ceil(left * 1000)
            if timeout is not None and timeout * 1000 <= until_scan:
                # The caller's time ends first: this one wait is the whole answer.
                ready = self._wait_on.poll(math.ceil(timeout * 1000))
                self._active.update(ready)
                return ready
            ready = self._wait_on.poll(until_scan)
            if ready:
                self._active.update(ready)
                return ready
        return self._full_scan(None if timeout is None else now + timeout)

    def _full_scan(self, deadline: Optional[float]) -> List[Tuple[int, int]]:
        """Poll every descriptor, rebalance the tiers, and block on all of them if none
        is ready (until ``deadline`` on the clock; None: no limit)."""
        start = clock()
        ready = self._all.poll(0)
        end = clock()
        self._interval = min(self.RATIO * (end - start), self.MAX_SCAN_INTERVAL)
        self._next_scan = end + self._interval
        self._rebalance(ready)
        if ready:
            return ready
        if deadline is None:
            ready = self._all.poll(-1)
        else:
            rest = deadline - end
            if rest <= 0:
                return ready
            ready = self._all.poll(math.ceil(rest * 1000))
        if ready:
            self._promote(ready)
        # That wait checked every descriptor before returning: as good as a scan.
        self._next_scan = clock() + self._interval
        return ready

    def _rebalance(self, ready: List[Tuple[int, int]]) -> None:
        active = self._active
        active.update(ready)
        # Pinned: a wake-up from another thread must never wait for a scan to be seen.
        active[self._waker.fileno()] = 0
        hot = self._hot
        for fd in self._hot_fds.difference(active):
            hot.unregister(fd)
        masks = self._masks
        for fd in active.keys() - self._hot_fds:
            hot.register(fd, masks[fd])
        self._hot_fds = set(active)
        self._active = {}
        self._wait_on = hot if len(masks) - len(active) >= self.TIER_MIN else self._all

    def _promote(self, ready: List[Tuple[int, int]]) -> None:
        self._active.update(ready)
        hot_fds = self._hot_fds
        for fd, _ in ready:
            if fd not in hot_fds:
                self._hot.register(fd, self._masks[fd])
                hot_fds.add(fd)

    def close(self) -> None:
        del self._all, self._hot, self._wait_on
        self._masks.clear()
        self._hot_fds.clear()
        self._active.clear()
        self._waker.close()
