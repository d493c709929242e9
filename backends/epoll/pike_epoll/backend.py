"""epoll(7): the Linux backend, O(1) per wake-up in the number of idle descriptors.

Design notes
------------
The interest list lives in the kernel; ``epoll_wait`` returns only the ready descriptors,
so an idle connection costs nothing per wake-up.  It is used level-triggered: the core's
rule of one ``handle_read`` per readiness and callbacks that may read only part of the
data need the event to come again while data remains, which edge-triggered mode would not
do without the core draining every socket.

``EPOLLIN``/``EPOLLPRI``/``EPOLLOUT``/``EPOLLERR``/``EPOLLHUP`` equal
:mod:`pike_core.events`, so masks go to the kernel and back untranslated and ``wait`` is
the bare system call.

The interest list holds *open file descriptions*, not numbers: a descriptor closed
without being unregistered is dropped by the kernel on its own, which is why
``unregister`` accepts "not there" (ENOENT, EBADF) as already done.  The epoll
descriptor is close-on-exec; after ``fork()`` the child shares it with the parent, so the
core gives the child a new one (the default :meth:`~pike_core.Backend.after_fork`).

``epoll_wait`` returns at most ``maxevents`` events, and CPython's default is
``FD_SETSIZE - 1``: with more descriptors ready, the rest would wait for the next call.
The wait asks for as many as are registered (as ``selectors.EpollSelector`` does), so
one wait reports everything that is ready, which a ``selectors`` caller relies on.

epoll refuses a regular file or a directory with ``EPERM`` (``PermissionError``): such a
descriptor is always ready, and the core, told so by the Backend contract, reports it
ready at every wait itself, as poll(2) and select(2) would.
"""

from __future__ import annotations

import errno
import select
from typing import Collection, Final, Optional, Tuple

from pike_core import Backend, CannotRunHere, events

if not hasattr(select, "epoll"):
    raise CannotRunHere("needs Linux epoll (select.epoll is missing on this platform); use poll or select")

_GONE: Final = (errno.ENOENT, errno.EBADF)


class EpollBackend(Backend):
    """A backend on ``epoll``."""

    name = "epoll"
    supported = events.READ | events.WRITE | events.PRIORITY

    def __init__(self) -> None:
        self._epoll = select.epoll()
        # The core registers and unregisters each descriptor once, so this is exact.
        self._registered = 0

    def register(self, fd: int, mask: int) -> None:
        self._epoll.register(fd, mask)
        self._registered += 1

    def modify(self, fd: int, mask: int) -> None:
        self._epoll.modify(fd, mask)

    def unregister(self, fd: int) -> None:
        self._registered -= 1
        try:
            self._epoll.unregister(fd)
        except OSError as exc:
            if exc.errno not in _GONE:
                raise

    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        return self._epoll.poll(-1 if timeout is None else timeout, max(self._registered, 1))

    def close(self) -> None:
        self._epoll.close()
