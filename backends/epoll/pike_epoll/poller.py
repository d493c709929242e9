"""epoll(7): the Linux backend, O(1) per wake-up in the number of idle descriptors.

Design notes
------------
The interest list lives in the kernel; ``epoll_wait`` returns only the ready descriptors,
so an idle connection costs nothing per wake-up.  It is used level-triggered: the core's
rule of one ``handle_read`` per readiness and callbacks that may read only part of the
data need the event to come again while data remains, which edge-triggered mode would not
do without the core draining every socket.

``EPOLLIN``/``EPOLLOUT``/``EPOLLERR``/``EPOLLHUP`` equal :mod:`pike_core.events`, so the
kernel's masks go to dispatch untranslated and ``os_wait`` is the bare system call.

The interest list holds *open file descriptions*, not numbers: a descriptor closed
without being unregistered is dropped by the kernel on its own, which is why
``os_unregister`` accepts "not there" (ENOENT, EBADF) as already done.  The epoll
descriptor is close-on-exec; after ``fork()`` the child shares it with the parent, so
the core gives a child its own default poller.
"""

from __future__ import annotations

import errno
import select
from typing import Collection, Final, Optional, Tuple

from pike_core import Poller

if not hasattr(select, "epoll"):
    raise ImportError("needs Linux epoll (select.epoll is missing on this platform); use poll or select")

_GONE: Final = (errno.ENOENT, errno.EBADF)


class EpollPoller(Poller):
    """A poller on ``epoll``."""

    name = "epoll"

    def os_open(self) -> None:
        self._epoll = select.epoll()

    def os_register(self, fd: int, mask: int) -> None:
        self._epoll.register(fd, mask)

    def os_modify(self, fd: int, mask: int) -> None:
        self._epoll.modify(fd, mask)

    def os_unregister(self, fd: int) -> None:
        try:
            self._epoll.unregister(fd)
        except OSError as exc:
            if exc.errno not in _GONE:
                raise

    def os_wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        return self._epoll.poll(-1 if timeout is None else timeout)

    def os_close(self) -> None:
        self._epoll.close()
