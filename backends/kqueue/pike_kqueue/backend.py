"""kqueue(2): the macOS and BSD backend, O(1) per wake-up in the number of idle descriptors.

Design notes
------------
How the filters behave and how their events become the core's ``(fd, mask)`` pairs is
in :mod:`pike_kqueue.kevents`, kept free of ``select.kqueue`` so that it is tested on
every platform; this module makes the system calls.  The kqueue(2) semantics they rely
on, by section of the FreeBSD and macOS manual page:

* DESCRIPTION: "All changes contained in the changelist are applied before any pending
  events are read from the queue."  So registering and changing write interest cost no
  system call of their own: the changes ride in the next wait,
  ``kqueue.control(changes, max_events, timeout)``.
* DESCRIPTION: "Calling close() on a file descriptor will remove any kevents that
  reference the descriptor."  The core's ``os_unregister`` contract is to stop watching
  whether or not the socket is closed next, and a number freed by ``close()`` can be
  reused before the next wait, so ``os_unregister``'s deletes are applied at once, one
  call each: with no room for errors ("Otherwise, -1 will be returned", RETURN VALUES)
  a failing change would keep the changes after it from being applied.  ENOENT and
  EBADF there mean the filter is gone already.
* RETURN VALUES: a change's error goes into the event list "if there is enough room in
  the eventlist", so every wait has a slot per change.  A call in which a change failed
  returns its errors without collecting events or waiting (FreeBSD and XNU
  ``kern_event.c``): that wait is short, and the events come with the next one.
* DESCRIPTION: "If timeout is a NULL pointer, kevent() waits indefinitely"; a timeout of
  None is passed as NULL.  BUGS (FreeBSD): "The timeout value is limited to 24 hours;
  longer timeouts will be silently reinterpreted as 24 hours."  Longer waits are cut to
  24 hours here on every system; the core takes an early return like any wake-up.
* ERRORS: "When kevent() call fails with EINTR error, all changes in the changelist
  have been applied."  CPython then calls again with the same change list, which is
  harmless: EV_ADD of an existing event "will modify the parameters of the original
  event, and not result in a duplicate entry" (DESCRIPTION, EV_ADD), and a repeated
  delete's ENOENT is ignored.
* DESCRIPTION: "The queue is not inherited by a child created with fork(2)."  The core
  gives a child process its own default poller.

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
from typing import Collection, Final, Optional, Tuple

from pike_core import Backend, CannotRunHere

from .kevents import Interest

# The sys.platform tests tell type checkers what hasattr() finds out at run time, so they
# skip the rest of this module where their select stubs have no kqueue (CI checks it
# with --platform darwin).
if sys.platform == "linux" or sys.platform == "win32" or not hasattr(select, "kqueue"):
    raise CannotRunHere(
        "needs kqueue(2), of macOS or a BSD (select.kqueue is missing on this platform); "
        "use epoll on Linux, iocp on Windows, or poll or select"
    )

_GONE: Final = (errno.ENOENT, errno.EBADF)
#: The longest single wait: FreeBSD cuts longer ones to this itself (kqueue(2), BUGS).
MAX_WAIT: Final = 24 * 3600.0


class KqueueBackend(Backend):
    """A backend on ``kqueue``."""

    name = "kqueue"

    def __init__(self) -> None:
        self._kqueue = select.kqueue()
        self._interest = Interest()

    def register(self, fd: int, mask: int) -> None:
        self._interest.register(fd, mask)

    def modify(self, fd: int, mask: int) -> None:
        self._interest.modify(fd, mask)

    def unregister(self, fd: int) -> None:
        for ident, filt, flags in self._interest.unregister(fd):
            try:
                self._kqueue.control([select.kevent(ident, filt, flags)], 0, 0)
            except OSError as exc:
                if exc.errno not in _GONE:
                    raise

    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        interest = self._interest
        changes = [select.kevent(ident, filt, flags) for ident, filt, flags in interest.changes()]
        received = self._kqueue.control(
            changes,
            interest.max_events(len(changes)),
            None if timeout is None else min(timeout, MAX_WAIT),
        )
        return interest.translate(received)

    def close(self) -> None:
        self._kqueue.close()
