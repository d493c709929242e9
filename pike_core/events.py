"""The event bits a backend reports to the core.

They have the numeric values of Linux ``poll(2)`` and ``epoll(7)`` so the poll and epoll
backends hand the kernel's masks over untranslated; other backends build them.  Written
out as numbers because ``select.POLLIN`` does not exist on Windows.
"""

from __future__ import annotations

from typing import Final

READ: Final = 0x001
"""Data (or a pending connection, or end of stream) can be read."""

WRITE: Final = 0x004
"""The socket can take more data, or a pending connect has finished."""

ERROR: Final = 0x008
"""The socket has a pending error (``SO_ERROR``)."""

HANGUP: Final = 0x010
"""Both directions are shut down: nothing more will ever be read."""

INVALID: Final = 0x020
"""The descriptor is not open (it was closed without being unregistered)."""

READ_LIKE: Final = READ | ERROR | HANGUP | INVALID
"""Bits that lead to the read side of dispatch: a read reveals the condition."""
