"""The states of a transport: each decides what an event means.

A transport is in exactly one state; the README's state table lists, for each, what a
read, write or error event turns into.  Flow control (``pause_reading``) and a pending
write are not states: they change what the transport asks the poller to watch, not what an
event means.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    """What a :class:`~pike_core.Transport` is doing with its socket."""

    IDLE = "idle"
    """A socket neither connecting, connected nor listening (or no socket yet): nothing
    is watched, since Linux reports such a TCP socket as hung up at every wait."""

    CONNECTING = "connecting"
    """``connect()`` began; the next write (or error) event carries the verdict."""

    CONNECTED = "connected"
    """A stream connection: read events go to ``handle_read``, write events flush
    :meth:`~pike_core.Transport.write`'s buffer or give the one ``handle_write`` asked for."""

    END_OF_STREAM = "end of stream"
    """The peer finished sending (or reset the connection) and ``handle_close`` was
    called, but the transport was kept open: nothing is read any more, and writes still
    go out (a half-closed peer may be waiting for a reply)."""

    LISTENING = "listening"
    """A listening socket: read events go to ``handle_accept``."""

    DATAGRAM = "datagram"
    """A datagram socket, bound or connected or neither: read events go to
    ``handle_read``; an empty datagram is data, never end of stream."""

    CLOSED = "closed"
    """``close()`` was called: the socket is released and nothing is dispatched."""
