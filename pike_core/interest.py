"""The interest record: what one registered descriptor wants, and what the OS has.

A :class:`~pike_core.Poller` keeps one record per descriptor, as ``selectors`` keeps a
``SelectorKey``; it is the only place interest lives.  The channel (a transport, the
asyncore compatibility layer, the poller's own waker) says what it *wants*; the poller may
*hold* it (watch nothing for now); what the OS was last told is *os*.  The poller brings
*os* in line with the rest as a diff, at most one backend call per descriptor between two
waits, and a record's identity stands for one registration: a descriptor number reused by a
new registration gets a new record.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Final, Optional, final

if TYPE_CHECKING:
    from .poller import Channel, Reader


#: The epoch of a held record: later than any wait, so no event is dispatched to it.
HELD: Final = sys.maxsize


@final
class Interest:
    """One registration of a descriptor with a poller (core use)."""

    __slots__ = ("channel", "dirty", "epoch", "failure", "fd", "os", "reader", "want")

    def __init__(self, fd: int, channel: Channel, want: int, epoch: int) -> None:
        self.fd = fd
        self.channel = channel
        #: The :mod:`pike_core.events` bits the channel wants now.
        self.want = want
        #: The mask the backend has for ``fd``; 0 means it is not registered there.
        self.os = 0
        #: Waiting in the poller's list of records to bring in line before the next wait.
        self.dirty = False
        #: The poller's wait count when this registration was made (or resumed): events
        #: of that wait, or of one begun earlier, are not dispatched to it; they belong to
        #: a previous owner of the number, or came before a resume (and come again).
        #: :data:`HELD` while :meth:`Poller.pause` holds the record (see :attr:`held`).
        self.epoch = epoch
        #: Why the backend stopped watching ``fd`` (a refused change), once it did.
        self.failure: Optional[OSError] = None
        #: The channel while a plain read event means only its ``handle_read`` (a
        #: transport reading data), which the poller then calls itself: one Python call
        #: per event instead of two.  None when the channel's own dispatch must decide.
        self.reader: Optional[Reader] = None

    @property
    def held(self) -> bool:
        """Held by :meth:`Poller.pause`: the OS watches nothing meanwhile."""
        return self.epoch == HELD

    def __repr__(self) -> str:
        return (
            f"<Interest fd={self.fd} want={self.want:#x} os={self.os:#x}"
            f"{' held' if self.held else ''} {self.channel!r}>"
        )
