"""The self-pipe that lets another thread interrupt a poller blocked in its OS wait.

A connected socket pair rather than ``os.pipe()``: it works on every platform the
backends cover, ``select()`` on Windows included, which only watches sockets.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Final, final

_DRAIN_SIZE: Final = 4096


@final
class Waker:
    """Registered with a poller like a transport; :meth:`wake` makes its read end readable."""

    __slots__ = ("_fileno", "_rsock", "_want_write", "_wsock")

    def __init__(self) -> None:
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        self._fileno = self._rsock.fileno()
        self._want_write = False

    def fileno(self) -> int:
        return self._fileno

    def wake(self) -> None:
        """Make the next (or the current) OS wait return.  Safe from any thread."""
        # A full buffer holds earlier wake-ups nobody has drained yet: the poller is
        # already bound to wake, so this one is not needed.
        with contextlib.suppress(BlockingIOError):
            self._wsock.send(b"\0")

    def _handle_events(self, mask: int) -> None:
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
