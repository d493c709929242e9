"""The example backend with the fault :mod:`selectors_poller.faults` chose, for
pike-core's own tests: never used unless ``SELECTORS_POLLER_FAULT`` is set."""

from __future__ import annotations

import socket
from typing import Collection, Final, List, Optional, Tuple

from pike_core import events

from .backend import SelectorsBackend
from .faults import chosen

FAULT: Final = chosen()
if FAULT == "import":
    # The typo: a plain ImportError, which makes the backend broken, not "cannot run here".
    from selectors import DefaultSelecter  # type: ignore[attr-defined]  # noqa: F401


def _at_end_of_stream(fd: int) -> bool:
    sock = socket.socket(fileno=fd)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return False
    finally:
        sock.detach()


class FaultyBackend(SelectorsBackend):
    """:class:`SelectorsBackend` with one fault."""

    def unregister(self, fd: int) -> None:
        if FAULT != "unregister":
            super().unregister(fd)

    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        if FAULT == "ms" and timeout is not None:
            timeout *= 1000
        answer = super().wait(timeout)
        if FAULT == "write":
            return [(fd, mask & ~events.WRITE) for fd, mask in answer if mask & ~events.WRITE]
        if FAULT == "eof":
            return [(fd, mask) for fd, mask in answer if not (mask & events.READ and _at_end_of_stream(fd))]
        if FAULT == "twice":
            split: List[Tuple[int, int]] = []
            for fd, mask in answer:
                split += [(fd, bit) for bit in (events.READ, events.WRITE) if mask & bit]
            return split
        return answer
