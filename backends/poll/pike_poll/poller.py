"""poll(2): the POSIX backend without select's descriptor-number limit.

Design notes
------------
The kernel keeps no state between calls: every ``poll()`` passes the whole array.
CPython's ``select.poll`` object keeps that array and rebuilds it only after a
register/modify/unregister, so a wake-up costs one copy of the array into the kernel and
a scan of it there -- linear in the descriptors watched, but with no Python work per idle
descriptor (pyasyncore's poll mode rebuilds its poll set in Python on every pass).

``POLLIN``/``POLLOUT``/``POLLERR``/``POLLHUP``/``POLLNVAL`` have the values of
:mod:`pike_core.events`, so masks pass through untranslated.  The timeout is in whole
milliseconds; it is rounded up so the wait never ends just before a timer is due, which
would make the loop spin until it is.
"""

from __future__ import annotations

import math
import select
from typing import Collection, Optional, Tuple

from pike_core import Poller

if not hasattr(select, "poll"):
    raise ImportError("needs poll(2), which this platform lacks (select.poll is missing); use select or iocp")


class PollPoller(Poller):
    """A poller on ``poll()``."""

    name = "poll"

    def os_open(self) -> None:
        self._poll = select.poll()

    def os_register(self, fd: int, mask: int) -> None:
        self._poll.register(fd, mask)

    def os_modify(self, fd: int, mask: int) -> None:
        self._poll.modify(fd, mask)

    def os_unregister(self, fd: int) -> None:
        self._poll.unregister(fd)

    def os_wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        return self._poll.poll(-1 if timeout is None else math.ceil(timeout * 1000))

    def os_close(self) -> None:
        del self._poll
