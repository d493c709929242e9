"""select(2): the portable fallback backend.

Design notes
------------
``select()`` is given the whole interest set on every call, so its cost grows with the
number of descriptors watched; it exists everywhere, Windows included, which is why it is
the fallback.  The interest is kept here as three Python sets (read, write, exceptional)
and handed over as they are.

Its hard limit is the ``fd_set`` size (``FD_SETSIZE``).  On POSIX it bounds the descriptor
*number*: CPython's ``select.select`` raises ``ValueError`` for a descriptor >= 1024 and the
whole call fails, which is how pyasyncore's loop dies and drops every connection.  On
Windows it bounds the *count* of sockets per set (CPython builds with 512).  Both are
checked at registration, so only the one transport that cannot be watched is refused.

One closed descriptor makes the whole call fail (``EBADF``; ``WSAENOTSOCK`` on Windows).
The core unregisters every descriptor before closing it, but a socket can be closed
behind its back; then each watched descriptor is asked alone, and the ones that fail are
reported ``INVALID``, so the others keep being served.

``PRIORITY`` is the exceptional set: out-of-band data.  Windows also reports a failed
non-blocking connect there rather than in the write set, so there a descriptor asked for
writing is watched for exceptions too, and an exception on it is reported as ``ERROR``.

``select()`` folds a pending error and a hang-up (both directions shut) into "readable"
and "writable", where the contract reports them as ``ERROR`` and ``HANGUP`` whenever they
hold.  It matters to asyncore's ``poll2`` flavour, whose ``readwrite`` closes a hung-up
socket after the first read even when data is still unread, as poll(2) makes it do.  So
on POSIX the descriptors a ``select()`` found ready are asked once more, all in one
``poll()`` call that asks for no event: it returns only ``POLLERR``, ``POLLHUP`` and
``POLLNVAL``, which need no asking.  That costs one system call per wait that found
something (0.5 us, plus 0.12 us per ready descriptor, on the machine this was written
on: 7 us more for 64 ready ones, about 1 % of dispatching their events).  Windows has
no ``poll()`` in Python (``WSAPoll`` is not exposed), so there neither is reported, and
the plugin does not declare the ``hangup`` capability.
"""

from __future__ import annotations

import select
import sys
from typing import Collection, Dict, Final, Iterable, List, Optional, Set, Tuple

from pike_core import Backend, CapacityError, events

_WINDOWS: Final = sys.platform == "win32"
#: What tells a hang-up and an error apart from readiness (see the design notes).
_PROBE: Final = getattr(select, "poll", None)
_UNASKED_BY_POLL: Final = (
    ()
    if _PROBE is None
    else (
        (select.POLLERR, events.ERROR),
        (select.POLLHUP, events.HANGUP),
        (select.POLLNVAL, events.INVALID),
    )
)
#: The fd_set size CPython's select module is built with on this platform.
FD_SETSIZE: Final = 512 if _WINDOWS else 1024
_ADVICE: Final = (
    "use a backend without this limit (PIKE_POLLER=" + ("iocp" if _WINDOWS else "epoll or poll") + ")"
)


class SelectBackend(Backend):
    """A backend on ``select()``."""

    name = "select"
    supported = events.READ | events.WRITE | events.PRIORITY

    def __init__(self) -> None:
        self._masks: Dict[int, int] = {}
        self._readers: Set[int] = set()
        self._writers: Set[int] = set()
        self._exceptional: Set[int] = set()

    def admit(self, fd: int) -> None:
        if _WINDOWS:
            if len(self._masks) >= FD_SETSIZE:
                raise CapacityError(
                    None, f"select() watches at most {FD_SETSIZE} sockets on Windows; {_ADVICE}"
                )
        elif fd >= FD_SETSIZE:
            raise CapacityError(
                None, f"select() cannot watch descriptor {fd} (FD_SETSIZE is {FD_SETSIZE}); {_ADVICE}"
            )

    def register(self, fd: int, mask: int) -> None:
        # Again here: on Windows the limit is a count, and others may have come in
        # since this socket was admitted.
        self.admit(fd)
        self.modify(fd, mask)

    def modify(self, fd: int, mask: int) -> None:
        self._masks[fd] = mask
        for bit, watched in (
            (events.READ, self._readers),
            (events.WRITE, self._writers),
            (events.PRIORITY | (events.WRITE if _WINDOWS else 0), self._exceptional),
        ):
            if mask & bit:
                watched.add(fd)
            else:
                watched.discard(fd)

    def unregister(self, fd: int) -> None:
        self._masks.pop(fd, None)
        self._readers.discard(fd)
        self._writers.discard(fd)
        self._exceptional.discard(fd)

    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        try:
            readable, writable, failed = select.select(
                self._readers, self._writers, self._exceptional, timeout
            )
        except (OSError, ValueError):
            invalid = self._closed_ones(self._masks)
            if not invalid:
                raise
            return [(fd, events.INVALID) for fd in invalid]
        masks: Dict[int, int] = dict.fromkeys(readable, events.READ)
        for fd in writable:
            masks[fd] = masks.get(fd, 0) | events.WRITE
        for fd in failed:
            wanted = self._masks[fd]
            bits = events.PRIORITY if wanted & events.PRIORITY else 0
            if _WINDOWS and wanted & events.WRITE:
                bits |= events.ERROR
            masks[fd] = masks.get(fd, 0) | bits
        if _PROBE is not None and masks:
            self._add_unasked(masks)
        return masks.items()

    @staticmethod
    def _add_unasked(masks: Dict[int, int]) -> None:
        """Add ``ERROR``, ``HANGUP`` and ``INVALID`` to the ready descriptors' ``masks``
        where ``poll()`` sees them."""
        assert _PROBE is not None
        probe = _PROBE()
        for fd in masks:
            probe.register(fd, 0)
        for fd, revents in probe.poll(0):
            for theirs, ours in _UNASKED_BY_POLL:
                if revents & theirs:
                    masks[fd] |= ours

    @staticmethod
    def _closed_ones(fds: Iterable[int]) -> List[int]:
        """The descriptors ``select()`` refuses one by one: those closed (or no longer
        sockets) since they were registered."""
        closed = []
        for fd in fds:
            try:
                select.select([fd], [], [], 0)
            except (OSError, ValueError):
                closed.append(fd)
        return closed

    def close(self) -> None:
        self._masks.clear()
        self._readers.clear()
        self._writers.clear()
        self._exceptional.clear()
