"""The kernel-free half of the kqueue backend: which filters the kernel should hold, the
change list that gets them there, and the translation of returned kevents into the core's
``(fd, mask)`` pairs.

It needs no ``select.kqueue``, so ``tests/test_kqueue_logic.py`` checks it on any system
by feeding it kevent records shaped as kqueue(2) documents them.  The system calls are
in :mod:`pike_kqueue.backend`.

Design notes: the kqueue(2) semantics relied on, by section of the FreeBSD and macOS page
-------------------------------------------------------------------------------------------
* DESCRIPTION: "A kevent is identified by the (ident, filter) pair; there may only be
  one unique kevent per kqueue."  A descriptor has at most two here, EVFILT_READ and
  EVFILT_WRITE, and one change list holds at most one change for each.
* The filters follow the mask: EVFILT_READ is in the kernel while the core asks for
  ``READ``, EVFILT_WRITE while it asks for ``WRITE``, and neither otherwise.  A
  transport that paused reading while a write is pending asks for ``WRITE`` alone; a
  read filter kept for it would report its unread data at every wait.
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
* Neither EV_CLEAR nor EV_ONESHOT is used: without them a filter reports its condition
  at every wait while it holds, the core's level-triggered contract (and epoll's
  default).  The rule of one ``handle_write`` per ``defer_write`` is the core's.
* ``PRIORITY`` (out-of-band data) is not offered, so the core never asks for it.
  FreeBSD's kqueue(2) documents no way to learn of out-of-band data, and its socket read
  filter (``filt_soread``, ``uipc_socket.c``) does not look at the out-of-band mark,
  which its poll(2) does: the event would never come.  macOS documents two ways that do
  not agree: EV_OOBAND in the ``flags`` of EVFILT_READ, and EVFILT_EXCEPT with NOTE_OOB
  in ``fflags`` (XNU's source also honours NOTE_OOB on EVFILT_READ, undocumented).  A
  read filter also reports ordinary data, so a mask of ``PRIORITY`` without ``READ``
  would wake every wait while data is unread, the fault that filters kept to the mask
  avoid.  EVFILT_EXCEPT is not exported by CPython's ``select`` and is numbered
  differently on each system that has it (-15 on macOS, -9 on OpenBSD, -8 on
  DragonFly): this backend would need a table of them and could test none without those
  kernels.  It is the way to add ``PRIORITY`` later, where such a kernel is at hand.
* RETURN VALUES: "If an error occurs while processing an element of the changelist and
  there is enough room in the eventlist, then the event will be placed in the eventlist
  with EV_ERROR set in flags and the system error in data.  Otherwise, -1 will be
  returned".  :meth:`Filters.max_events` keeps a slot for every change.  The error is
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
    handlers close it.  A later change of its mask asks for the filter again.
* The constants exist in ``select`` only where kqueue does; elsewhere, where only the
  tests use this module, the values of FreeBSD's and macOS's ``<sys/event.h>`` stand in.
  ``select``'s win where present: NetBSD numbers its filters differently.
"""

from __future__ import annotations

import errno
import select
from typing import Dict, Final, Iterable, List, Protocol, Tuple

from pike_core import events


def _constant(name: str, documented: int) -> int:
    value: int = getattr(select, name, documented)
    return value


FILTER_READ: Final = _constant("KQ_FILTER_READ", -1)
FILTER_WRITE: Final = _constant("KQ_FILTER_WRITE", -2)
EV_ADD: Final = _constant("KQ_EV_ADD", 0x0001)
EV_DELETE: Final = _constant("KQ_EV_DELETE", 0x0002)
EV_ERROR: Final = _constant("KQ_EV_ERROR", 0x4000)
EV_EOF: Final = _constant("KQ_EV_EOF", 0x8000)

#: The event bits this backend accepts, each watched by its own filter.
SUPPORTED: Final = events.READ | events.WRITE
_FILTERS: Final = ((events.READ, FILTER_READ), (events.WRITE, FILTER_WRITE))

#: The most events one wait collects, beside a slot per change for its error.  Filters
#: are level-triggered, so what does not fit comes at the next wait.
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


class Filters:
    """The filters the kernel should hold per descriptor, those it was told of, and the
    changes in between.

    :meth:`register` and :meth:`modify` make no system call: they record the mask, and
    :meth:`changes` builds the change list that goes into the next ``kevent()`` call,
    the one that waits.  :meth:`unregister` returns deletes to apply at once.
    :meth:`translate` turns what that ``kevent()`` returned into ``(fd, mask)`` pairs.
    Masks are :mod:`pike_core.events` bits, and so are the filters a descriptor has in
    the kernel: ``READ`` for EVFILT_READ, ``WRITE`` for EVFILT_WRITE.
    """

    def __init__(self) -> None:
        self._wanted: Dict[int, int] = {}
        """The mask of every registered descriptor: the filters it should have."""
        self._in_kernel: Dict[int, int] = {}
        """The filters of each descriptor that were handed to the kernel."""
        self._dirty: Dict[int, None] = {}
        """Descriptors to bring in line at the next :meth:`changes` (a dict keeps order)."""
        self._submitted: Dict[Tuple[int, int], int] = {}
        """The flags of the last change list by ``(ident, filter)``, to place its errors."""

    def register(self, fd: int, mask: int) -> None:
        """Watch ``fd`` for the events of ``mask``, from the next :meth:`changes` on.

        :raises ValueError: ``mask`` is empty or has bits beyond :data:`SUPPORTED`.
        """
        self.modify(fd, mask)

    def modify(self, fd: int, mask: int) -> None:
        """Watch ``fd`` for the events of ``mask`` instead, from the next :meth:`changes` on.

        :raises ValueError: ``mask`` is empty or has bits beyond :data:`SUPPORTED`.
        """
        if not mask or mask & ~SUPPORTED:
            raise ValueError(
                f"kqueue cannot watch descriptor {fd} for mask {mask:#x}: give a non-empty "
                f"mask of READ ({events.READ:#x}) and WRITE ({events.WRITE:#x}) only; "
                "kqueue reports no PRIORITY here"
            )
        self._wanted[fd] = mask
        self._dirty[fd] = None

    def unregister(self, fd: int) -> List[Change]:
        """Forget ``fd``.

        :returns: the deletes to apply now, while ``fd`` is open.  Waiting for the next
            ``kevent()`` would let a new socket take the number first, and its add would
            share the (ident, filter) pair of the old socket's delete; and a socket left
            open after this would keep waking every wait with its filters.
        """
        self._wanted.pop(fd, None)
        self._dirty.pop(fd, None)
        in_kernel = self._in_kernel.pop(fd, 0)
        return [(fd, filt, EV_DELETE) for bit, filt in _FILTERS if in_kernel & bit]

    def changes(self) -> List[Change]:
        """The change list for the next ``kevent()`` call; from now on the kernel is
        taken to hold it (every change is applied before the call waits)."""
        changes: List[Change] = []
        wanted = self._wanted
        in_kernel = self._in_kernel
        for fd in self._dirty:
            want = wanted[fd]
            had = in_kernel.get(fd, 0)
            for bit, filt in _FILTERS:
                if want & bit and not had & bit:
                    changes.append((fd, filt, EV_ADD))
                elif had & bit and not want & bit:
                    changes.append((fd, filt, EV_DELETE))
            in_kernel[fd] = want
        self._dirty.clear()
        self._submitted = {(fd, filt): flags for fd, filt, flags in changes}
        return changes

    def max_events(self, changes: int) -> int:
        """The event list size for a ``kevent()`` call given ``changes`` changes: room
        for an error per change, and for both filters of every descriptor up to
        :data:`MAX_EVENTS`.  Never 0, which would make ``kevent()`` return at once "even
        if there is a timeout specified" (kqueue(2), DESCRIPTION)."""
        return max(1, min(2 * len(self._wanted), MAX_EVENTS)) + changes

    def translate(self, received: Iterable[Kevent]) -> List[Tuple[int, int]]:
        """Turn what ``kevent()`` returned after :meth:`changes` into ``(fd, mask)``
        pairs of :mod:`pike_core.events` bits, one per descriptor."""
        masks: Dict[int, int] = {}
        for kev in received:
            fd = kev.ident
            if kev.flags & EV_ERROR:
                mask = self._refused(fd, kev.filter, kev.data)
            else:
                mask = (events.WRITE if kev.filter == FILTER_WRITE else events.READ) | _socket_error(kev)
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
        elif fd in self._in_kernel:
            self._in_kernel[fd] &= ~(events.WRITE if filt == FILTER_WRITE else events.READ)
        return events.INVALID if err == errno.EBADF else events.ERROR


def _socket_error(kev: Kevent) -> int:
    return events.ERROR if kev.flags & EV_EOF and kev.fflags else 0
