"""select(2): the portable fallback backend.

Design notes
------------
``select()`` is given the whole interest set on every call, so its cost grows with the
number of descriptors watched; it exists everywhere, Windows included, which is why it is
the fallback.  The interest sets are kept here as Python sets and handed over as they are.

Its hard limit is the ``fd_set`` size (``FD_SETSIZE``).  On POSIX it bounds the descriptor
*number*: CPython's ``select.select`` raises ``ValueError`` for a descriptor >= 1024 and the
whole call fails, which is how pyasyncore's loop dies and drops every connection.  On
Windows it bounds the *count* of sockets per set (CPython builds with 512).  Both are
checked at registration, so only the one transport that cannot be watched is refused.

Windows reports a failed non-blocking connect in the *except* set, not the write set, so
there descriptors with write interest are watched for exceptions too.
"""

from __future__ import annotations

import select
import sys
from typing import Collection, Dict, Final, Optional, Set, Tuple

from pike_core import CapacityError, Poller, events

_WINDOWS: Final = sys.platform == "win32"
#: The fd_set size CPython's select module is built with on this platform.
FD_SETSIZE: Final = 512 if _WINDOWS else 1024
_ADVICE: Final = (
    "use a backend without this limit (PIKE_POLLER=" + ("iocp" if _WINDOWS else "epoll or poll") + ")"
)


class SelectPoller(Poller):
    """A poller on ``select()``."""

    name = "select"

    def os_open(self) -> None:
        self._readers: Set[int] = set()
        self._writers: Set[int] = set()

    def os_register(self, fd: int, mask: int) -> None:
        if _WINDOWS:
            if len(self._readers) >= FD_SETSIZE:
                raise CapacityError(
                    None, f"select() watches at most {FD_SETSIZE} sockets on Windows; {_ADVICE}"
                )
        elif fd >= FD_SETSIZE:
            raise CapacityError(
                None, f"select() cannot watch descriptor {fd} (FD_SETSIZE is {FD_SETSIZE}); {_ADVICE}"
            )
        self._readers.add(fd)
        self.os_modify(fd, mask)

    def os_modify(self, fd: int, mask: int) -> None:
        if mask & events.WRITE:
            self._writers.add(fd)
        else:
            self._writers.discard(fd)

    def os_unregister(self, fd: int) -> None:
        self._readers.discard(fd)
        self._writers.discard(fd)

    def os_wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        writers = self._writers
        readable, writable, failed = select.select(
            self._readers, writers, writers if _WINDOWS else (), timeout
        )
        if not writable and not failed:
            return [(fd, events.READ) for fd in readable]
        masks: Dict[int, int] = dict.fromkeys(readable, events.READ)
        for fd in writable:
            masks[fd] = masks.get(fd, 0) | events.WRITE
        for fd in failed:
            masks[fd] = masks.get(fd, 0) | events.ERROR
        return masks.items()

    def os_close(self) -> None:
        self._readers.clear()
        self._writers.clear()
