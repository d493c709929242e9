"""The backend: pike-core's Backend contract on ``selectors.DefaultSelector``.

Design notes
------------
``selectors`` picks the best mechanism of the platform (epoll, kqueue, devpoll, poll, or
select where there is nothing better, as on Windows) and already keeps a map from
descriptor to interest, so each method is one call.  It reports only ``EVENT_READ`` and
``EVENT_WRITE``: an error or hang-up on a descriptor comes as both bits, filtered by the
interest, so this backend reports it as READ or WRITE and the core finds the condition
when it reads or writes.  That is within the contract, which asks that the condition
reaches the transport, not that ERROR or HANGUP be named.

Where the mechanism is select(), it inherits select's limit (``FD_SETSIZE``: 512 sockets
per set on Windows, descriptor numbers below 1024 elsewhere); the plugin then leaves out
the ``many_fds`` capability, and :meth:`SelectorsBackend.admit` refuses what select()
could not watch, as the contract asks of a backend without it.
"""

from __future__ import annotations

import selectors
import sys
from typing import Collection, Final, Optional, Tuple

from pike_core import Backend, CapacityError, events

_WINDOWS: Final = sys.platform == "win32"
#: select()'s limit: a count of sockets on Windows, a descriptor number elsewhere.
SELECT_LIMIT: Final = 512 if _WINDOWS else 1024


def _selector_events(mask: int) -> int:
    return (selectors.EVENT_READ if mask & events.READ else 0) | (
        selectors.EVENT_WRITE if mask & events.WRITE else 0
    )


def _pike_events(ready: int) -> int:
    return (events.READ if ready & selectors.EVENT_READ else 0) | (
        events.WRITE if ready & selectors.EVENT_WRITE else 0
    )


class SelectorsBackend(Backend):
    """A backend on ``selectors.DefaultSelector``."""

    name = "selectors"
    supported = events.READ | events.WRITE

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    def admit(self, fd: int) -> None:
        if not isinstance(self._selector, selectors.SelectSelector):
            return
        used = len(self._selector.get_map()) if _WINDOWS else fd
        if used >= SELECT_LIMIT:
            raise CapacityError(
                None,
                f"selectors chose select() here, which cannot watch descriptor {fd} "
                f"(FD_SETSIZE is {SELECT_LIMIT}); use a backend with the many_fds capability",
            )

    def register(self, fd: int, mask: int) -> None:
        self.admit(fd)
        self._selector.register(fd, _selector_events(mask))

    def modify(self, fd: int, mask: int) -> None:
        self._selector.modify(fd, _selector_events(mask))

    def unregister(self, fd: int) -> None:
        # "Not watched" is done, as the contract asks; selectors itself ignores a
        # descriptor closed behind its back.
        if fd in self._selector.get_map():
            self._selector.unregister(fd)

    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        # selectors takes seconds, None for no limit, as the contract gives them.
        return [(key.fd, _pike_events(ready)) for key, ready in self._selector.select(timeout)]

    def close(self) -> None:
        self._selector.close()
