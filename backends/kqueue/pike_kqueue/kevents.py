"""The kernel-free half of the kqueue backend: what the kernel should watch, the change
list that gets it there, and the translation of returned kevents into the core's
``(fd, mask)`` pairs.

It needs no ``select.kqueue``, so ``tests/test_kqueue_logic.py`` checks it on any system
by feeding it kevent records shaped as kqueue(2) documents them.  The system calls are
in :mod:`pike_kqueue.poller`.

Design notes: the kqueue(2) semantics relied on, by section of the FreeBSD and macOS page
-------------------------------------------------------------------------------------------
* DESCRIPTION: "A kevent is identified by the (ident, filter) pair; there may only be
  one unique kevent per kqueue."  A descriptor has at most two here, EVFILT_READ and
  EVFILT_WRITE, and one change list holds at most one change for each.
* EVFILT_READ, Sockets: it returns while data is unread or a connection is pending on a
  listening socket.  "If the read direction of the socket has shutdown, then the filter
  also sets EV_EOF in flags, and returns the socket error (if any) in fflags.  It is
  possible for EOF to be returned (indicating the connection is gone) while there is
  still data pending in the socket buffer."  So EOF is reported as READ: ``recv``
  drains the data, then returns ``b""`` and the transport gets ``handle_close``.  A
  socket error in ``fflags`` adds ERROR.
* EVFILT_WRITE: it "returns whenever it is possible to write to the descriptor"; "For
  sockets, the low water mark and socket error handling is identical to the EVFILT_READ
  case."  A failed non-blocking connect is EV_EOF with the error in ``fflags``: WRITE |
  ERROR, and the core reads ``SO_ERROR`` to tell the transport.
* Without EV_CLEAR a filter reports its condition at every wait while it holds, like
  level-triggered epoll.  The read filter is added once per descriptor and kept.
* EV_ONESHOT: "Causes the event to return only the first occurrence of the filter being
  triggered.  After the user retrieves the event from the kqueue, it is deleted."  The
  write filter is armed with it, which is the core's rule of one ``handle_write`` per
  ``defer_write``.  A delivered one is gone, so it is not deleted again (that would be
  ENOENT); and if the core still wants to write after it (it did not call
  ``write_delivered``: a wake-up before the connect's verdict, or a ``handle_read`` that
  raised first), it is armed again before the next wait, so no write event is lost
  where epoll would have repeated it.
* RETURN VALUES: "If an error occurs while processing an element of the changelist and
  there is enough room in the eventlist, then the event will be placed in the eventlist
  with EV_ERROR set in flags and the system error in data.  Otherwise, -1 will be
  returned".  :meth:`Interest.max_events` keeps a slot for every change.  The error is
  attributed through (ident, filter) to the change made for that pair: the returned
  ``flags`` cannot say whether it was an add or a delete, since FreeBSD replaces them
  with EV_ERROR (XNU ORs EV_ERROR in; only the bit is tested).
  - ENOENT, "The event could not be found to be modified or deleted", on a delete: the
    filter is gone, as the delete wanted.  Ignored.  (CPython re-submits the change
    list when ``kevent()`` meets EINTR, after which "all changes in the changelist have
    been applied", so a delete can meet ENOENT on the retry.)
  - EPIPE on an add: older macOS answers so for a descriptor whose peer is gone, yet
    registers it and reports its EOF (tokio-rs/mio#582).  Taken as added.
  - EBADF, "The specified descriptor is invalid": INVALID to the descriptor's transport;
    any other error: ERROR.  The refused filter is not retried by itself: a
    ``kevent()`` call in which a change failed returns the errors without collecting
    any event (FreeBSD and XNU ``kern_event.c``), so retrying at every wait would
    starve every other descriptor.  The transport learns of it once; the default
    handlers close it.
* The constants exist in ``select`` only where kqueue does; elsewhere, where only the
  tests use this module, the values of FreeBSD's and macOS's ``<sys/event.h>`` stand in.
  ``select``'s win where present: NetBSD numbers its filters differently.
"""

from __future__ import annotations

import errno
import select
from typing import Dict, Final, Iterable, List, Protocol, Set, Tuple

from pike_core import events


def _constant(name: str, documented: int) -> int:
    value: int = getattr(select, name, documented)
    return value


FILTER_READ: Final = _constant("KQ_FILTER_READ", -1)
FILTER_WRITE: Final = _constant("KQ_FILTER_WRITE", -2)
EV_ADD: Final = _constant("KQ_EV_ADD", 0x0001)
EV_DELETE: Final = _constant("KQ_EV_DELETE", 0x0002)
EV_ONESHOT: Final = _constant("KQ_EV_ONESHOT", 0x0010)
EV_ERROR: Final = _constant("KQ_EV_ERROR", 0x4000)
EV_EOF: Final = _constant("KQ_EV_EOF", 0x8000)

#: The most events one wait collects, beside a slot per change for its error.  Filters
#: are level-triggered or not yet delivered, so what does not fit comes at the next wait.
MAX_EVENTS: Final = 1024

Change = Tuple[int, int, int]
"""One entry of a change list: ``(ident, filter, flags)``."""


class Kevent(Protocol):
    """The fields of a returned ``struct kevent`` read here (``select.kevent`` has them)."""

    ident: int
    filter: int
    flags: int
    fflags: int
    data: int


class Interest:
    """What the kernel should watch, what it was told, and the changes in between.

    :meth:`register` and :meth:`modify` make no system call: they mark the descriptor,
    and :meth:`changes` builds the change list that goes into the next ``kevent()``
    call, the one that waits.  :meth:`unregister` returns deletes to apply at once.
    :meth:`translate` turns what that ``kevent()`` returned into ``(fd, mask)`` pairs.
    """

    def __init__(self) -> None:
        self._readers: Set[int] = set()
        """Registered descriptors: each wants a read filter."""
        self._writers: Set[int] = set()
        """Descriptors that want a write event (the core's write interest)."""
        self._reading: Set[int] = set()
        """Descriptors whose read filter was handed to the kernel."""
        self._armed: Set[int] = set()
        """Descriptors whose one-shot write filter was handed to the kernel, undelivered."""
        self._dirty: Dict[int, None] = {}
        """Descriptors to bring in line at the next :meth:`changes` (a dict keeps order)."""
        self._submitted: Dict[Tuple[int, int], int] = {}
        """The flags of the last change list by ``(ident, filter)``, to place its errors."""

    def register(self, fd: int, mask: int) -> None:
        """Watch ``fd`` for reading, and for one write event if ``mask`` has ``WRITE``."""
        self._readers.add(fd)
        self.modify(fd, mask)

    def modify(self, fd: int, mask: int) -> None:
        """Want one write event for ``fd`` if ``mask`` has ``WRITE``, else none."""
        if mask & events.WRITE:
            self._writers.add(fd)
        else:
            self._writers.discard(fd)
        self._dirty[fd] = None

    def unregister(self, fd: int) -> List[Change]:
        """Forget ``fd``.

        :returns: the deletes to apply now, while ``fd`` is open.  Waiting for the next
            ``kevent()`` would let a new socket take the number first, and its add would
            share the (ident, filter) pair of the old socket's delete; and a socket left
            open after this would keep waking every wait with its read filter.
        """
        self._readers.discard(fd)
        self._writers.discard(fd)
        self._dirty.pop(fd, None)
        deletes: List[Change] = []
        if fd in self._reading:
            self._reading.discard(fd)
            deletes.append((fd, FILTER_READ, EV_DELETE))
        if fd in self._armed:
            self._armed.discard(fd)
            deletes.append((fd, FILTER_WRITE, EV_DELETE))
        return deletes

    def changes(self) -> List[Change]:
        """The change list for the next ``kevent()`` call; from now on the kernel is
        taken to hold it (every change is applied before the call waits)."""
        changes: List[Change] = []
        for fd in self._dirty:
            if fd in self._readers and fd not in self._reading:
                self._reading.add(fd)
                changes.append((fd, FILTER_READ, EV_ADD))
            if fd in self._writers:
                if fd not in self._armed:
                    self._armed.add(fd)
                    changes.append((fd, FILTER_WRITE, EV_ADD | EV_ONESHOT))
            elif fd in self._armed:
                self._armed.discard(fd)
                changes.append((fd, FILTER_WRITE, EV_DELETE))
        self._dirty.clear()
        self._submitted = {(fd, filt): flags for fd, filt, flags in changes}
        return changes

    def max_events(self, changes: int) -> int:
        """The event list size for a ``kevent()`` call given ``changes`` changes: room
        for an error per change, and for both filters of every descriptor up to
        :data:`MAX_EVENTS`.  Never 0, which would make ``kevent()`` return at once "even
        if there is a timeout specified" (kqueue(2), DESCRIPTION)."""
        return max(1, min(2 * len(self._readers), MAX_EVENTS)) + changes

    def translate(self, received: Iterable[Kevent]) -> List[Tuple[int, int]]:
        """Turn what ``kevent()`` returned after :meth:`changes` into ``(fd, mask)``
        pairs of :mod:`pike_core.events` bits, one per descriptor."""
        masks: Dict[int, int] = {}
        for kev in received:
            fd = kev.ident
            if kev.flags & EV_ERROR:
                mask = self._refused(fd, kev.filter, kev.data)
            elif kev.filter == FILTER_WRITE:
                # EV_ONESHOT: delivering it deleted it; arm it again if still wanted.
                self._armed.discard(fd)
                self._dirty[fd] = None
                mask = events.WRITE | _socket_error(kev)
            else:
                mask = events.READ | _socket_error(kev)
            if mask:
                masks[fd] = masks.get(fd, 0) | mask
        self._submitted = {}
        return list(masks.items())

    def _refused(self, fd: int, filt: int, err: int) -> int:
        """Undo the state of the change for ``(fd, filt)`` that the kernel refused with
        ``err``; return the mask that tells the transport (0: nothing to tell)."""
        if self._submitted.get((fd, filt), 0) & EV_DELETE:
            if err == errno.ENOENT:
                return 0  # gone already, as the delete wanted
        elif err == errno.EPIPE:
            return 0  # older macOS: added all the same
        else:
            (self._armed if filt == FILTER_WRITE else self._reading).discard(fd)
        return events.INVALID if err == errno.EBADF else events.ERROR


def _socket_error(kev: Kevent) -> int:
    return events.ERROR if kev.flags & EV_EOF and kev.fflags else 0
