"""The event bits a backend reports to the core.

They have the numeric values of Linux ``poll(2)`` and ``epoll(7)`` so the poll and epoll
backends hand the kernel's masks over untranslated; other backends build them.  Written
out as numbers because ``select.POLLIN`` does not exist on Windows.

A backend is asked for ``READ``, ``WRITE`` and (where it declares it) ``PRIORITY``, and
reports those that hold; it reports ``ERROR``, ``HANGUP`` and ``INVALID`` whenever they
hold, asked or not (:data:`UNASKED`).
"""

from __future__ import annotations

from typing import Final

READ: Final = 0x001
"""Data (or a pending connection, or end of stream) can be read."""

PRIORITY: Final = 0x002
"""Exceptional condition: out-of-band (urgent) data can be read.  Optional: a backend
reports it only if its ``supported`` mask has it."""

WRITE: Final = 0x004
"""The socket can take more data, or a pending connect has finished."""

ERROR: Final = 0x008
"""The socket has a pending error (``SO_ERROR``)."""

HANGUP: Final = 0x010
"""Both directions are shut down: nothing more will ever be read or written."""

INVALID: Final = 0x020
"""The descriptor is not open (it was closed without being unregistered)."""

UNASKED: Final = ERROR | HANGUP | INVALID
"""Reported whenever they hold, whatever the descriptor was registered for."""

READ_LIKE: Final = READ | UNASKED
"""Bits that lead to the read side of dispatch: a read reveals the condition."""
