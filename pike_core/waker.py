"""The self-pipe that lets another thread interrupt a poller blocked in its OS wait.

A connected socket pair rather than ``os.pipe()``: it works on every platform the
backends cover, ``select()`` on Windows included, which only watches sockets.
"""

from __future__ import annotations

import contextlib
import socket
from typing import TYPE_CHECKING, Final, Optional, final

from . import events

if TYPE_CHECKING:
    from .interest import Interest

_DRAIN_SIZE: Final = 4096


@final
class Waker:
    """Registered with a poller like a transport; :meth:`wake` makes its read end readable."""

    __slots__ = ("_fileno", "_rec", "_rsock", "_wsock")

    def __init__(self) -> None:
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        self._fileno = self._rsock.fileno()
        self._rec: Optional[Interest] = None

    def fileno(self) -> int:
        return self._fileno

    def wake(self) -> None:
        """Make the next (or the current) OS wait return.  Safe from any thread."""
        # A full buffer holds earlier wake-ups nobody has drained yet: the poller is
        # already bound to wake, so this one is not needed.
        with contextlib.suppress(BlockingIOError):
            self._wsock.send(b"\0")

    def _wanted(self) -> int:
        return events.READ

    def _handle_events(self, mask: int) -> None:
        self.drain()

    def drain(self) -> None:
        """Consume every wake-up sent so far, so that the read end stops being ready."""
        try:
            while self._rsock.recv(_DRAIN_SIZE):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        self._rsock.close()
        self._wsock.close()

    def __repr__(self) -> str:
        return f"<Waker fd={self._fileno}>"
