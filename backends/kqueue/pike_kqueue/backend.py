"""kqueue(2): the macOS and BSD backend, O(1) per wake-up in the number of idle descriptors.

Design notes
------------
Which filters the kernel holds and how their events become the core's ``(fd, mask)``
pairs is in :mod:`pike_kqueue.kevents`, kept free of ``select.kqueue`` so that it is
tested on every platform; this module makes the system calls.  The kqueue(2) semantics
they rely on, by section of the FreeBSD and macOS manual page:

* DESCRIPTION: "All changes contained in the changelist are applied before any pending
  events are read from the queue."  So registering and changing interest cost no system
  call of their own: the changes ride in the next wait,
  ``kqueue.control(changes, max_events, timeout)``.
* DESCRIPTION: "Calling close() on a file descriptor will remove any kevents that
  reference the descriptor."  The core's ``unregister`` contract is to stop watching
  whether or not the socket is closed next, and a number freed by ``close()`` can be
  reused before the next wait, so ``unregister``'s deletes are applied at once, one
  call each: with no room for errors ("Otherwise, -1 will be returned", RETURN VALUES)
  a failing change would keep the changes after it from being applied.  ENOENT and
  EBADF there mean the filter is gone already.
* RETURN VALUES: a change's error goes into the event list "if there is enough room in
  the eventlist", so every wait has a slot per change.  A call in which a change failed
  returns its errors without collecting events or waiting (FreeBSD and XNU
  ``kern_event.c``): that wait is short, and the events come with the next one.
* DESCRIPTION: "If timeout is a NULL pointer, kevent() waits indefinitely"; a timeout of
  None is passed as NULL.  BUGS (FreeBSD): "The timeout value is limited to 24 hours;
  longer timeouts will be silently reinterpreted as 24 hours."  The core never asks for
  more than :data:`pike_core.MAX_WAIT`, one day, so the timeout goes to the kernel as
  it comes.
* ERRORS: "When kevent() call fails with EINTR error, all changes in the changelist
  have been applied."  CPython then calls again with the same change list, which is
  harmless: EV_ADD of an existing event "will modify the parameters of the original
  event, and not result in a duplicate entry" (DESCRIPTION, EV_ADD), and a repeated
  delete's ENOENT is ignored.
* DESCRIPTION: "The queue is not inherited by a child created with fork(2)."  The
  child's copy of the descriptor table has no queue at the parent's number, so any
  descriptor the child opens may take that number, its new kqueue included.
  CPython before 3.12.1 does not know (gh-110395): the inherited ``select.kqueue``
  object still holds the number and closes it when closed or collected, which would
  close whatever has the number by then (the child's new kqueue, another poller's, a
  file).  :meth:`KqueueBackend.after_fork` therefore never closes it and keeps it
  referenced for the life of the process; from 3.12.1 on CPython has disowned the
  number in the child, and keeping the object costs nothing.  What remains before
  3.12.1: at interpreter exit the kept object is finalised and closes its number then,
  so a file that holds that number in the child and is still open during finalisation
  may lose what it had not flushed.

Another thread wakes a wait through the core's socket-pair waker, registered like any
socket.  EVFILT_USER with NOTE_TRIGGER could do without the pair, but it does not fit
the core cleanly: the core creates and registers its waker whatever the backend;
CPython's ``select`` does not export the filter, whose number differs between systems
(-11 on FreeBSD, -10 on macOS); and macOS's kqueue(2) does not document it.
"""

from __future__ import annotations

import errno
import select
import sys
from typing import TYPE_CHECKING, Collection, Final, List, Optional, Tuple

from pike_core import Backend, CannotRunHere

from .kevents import SUPPORTED, Filters

# The backend runs wherever select.kqueue exists: at run time only hasattr() decides.
# TYPE_CHECKING is False then; for type checkers, whose select stubs have no kqueue on
# Linux and Windows, the platform test makes them skip the rest of this module there
# (CI checks it with --platform darwin).
if (TYPE_CHECKING and (sys.platform == "linux" or sys.platform == "win32")) or not hasattr(select, "kqueue"):
    raise CannotRunHere(
        "needs kqueue(2), of macOS or a BSD (select.kqueue is missing on this platform); "
        "use epoll on Linux, iocp on Windows, or poll or select"
    )

_GONE: Final = (errno.ENOENT, errno.EBADF)

_inherited: Final[List[object]] = []
"""The kqueue objects of parent processes, never to be closed here (see the module)."""


class KqueueBackend(Backend):
    """A backend on ``kqueue``."""

    name = "kqueue"
    supported = SUPPORTED

    def __init__(self) -> None:
        self._kqueue = select.kqueue()
        self._filters = Filters()

    def register(self, fd: int, mask: int) -> None:
        self._filters.register(fd, mask)

    def modify(self, fd: int, mask: int) -> None:
        self._filters.modify(fd, mask)

    def unregister(self, fd: int) -> None:
        for ident, filt, flags in self._filters.unregister(fd):
            try:
                self._kqueue.control([select.kevent(ident, filt, flags)], 0, 0)
            except OSError as exc:
                if exc.errno not in _GONE:
                    raise

    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        filters = self._filters
        changes = [select.kevent(ident, filt, flags) for ident, filt, flags in filters.changes()]
        received = self._kqueue.control(changes, filters.max_events(len(changes)), timeout)
        return filters.translate(received)

    def after_fork(self) -> KqueueBackend:
        """A new kqueue for the child.  The parent's queue is not in the child, and the
        object that stood for it must never close its number here (see the module)."""
        _inherited.append(self._kqueue)
        return type(self)()

    def close(self) -> None:
        self._kqueue.close()
