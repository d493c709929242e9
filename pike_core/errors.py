"""The exceptions a caller of pike-core may need to tell apart.

Everything else is raised as a built-in type (``ValueError``, ``TypeError``, ``OSError``).
Each class also derives from the built-in it refines, so code that catches the built-in
keeps working.
"""

from __future__ import annotations

from typing import Sequence


class PikeError(Exception):
    """Base class of every exception defined by pike-core."""


class PollerClosedError(PikeError, RuntimeError):
    """The poller was used after :meth:`Poller.close`.

    :ivar poller: the closed poller.
    """

    def __init__(self, poller: object) -> None:
        super().__init__(f"{poller!r} is closed; create a new poller")
        self.poller = poller


class RegistrationError(PikeError, ValueError):
    """A transport cannot be registered with (or unregistered from) a poller.

    :ivar transport: the transport at fault.
    """

    def __init__(self, transport: object, message: str) -> None:
        super().__init__(message)
        self.transport = transport


class CapacityError(RegistrationError):
    """The poller's OS mechanism cannot watch this descriptor (for example
    ``select()`` and descriptors at or above ``FD_SETSIZE``).

    Only this transport is refused; the poller and its other transports go on.  A
    backend raises it from ``Backend.admit`` or ``Backend.register`` with
    ``transport=None``; the core fills it in.
    """


class WriteBufferFullError(PikeError, BufferError):
    """:meth:`Transport.write` would take the transport's buffer past its
    ``write_limit``: the peer is not reading fast enough.  Nothing was queued.

    :ivar transport: the transport whose buffer is full.
    """

    def __init__(self, transport: object, message: str) -> None:
        super().__init__(message)
        self.transport = transport


class CannotRunHere(PikeError, ImportError):
    """Raised by a backend, on purpose, where it cannot run: by its module at import
    (the OS lacks the mechanism: ``raise CannotRunHere("needs Linux epoll ...")`` after a
    platform check), or by its constructor (the mechanism exists but is unusable here,
    for example a kernel too old).  Discovery then lists the backend as "cannot run here"
    with ``reason``, the choice passes over it, and the conformance suite skips it unless
    it was named.

    It is an ``ImportError`` so a platform check at import reads as one.  Any *other*
    exception while importing or opening a backend, a plain ``ImportError`` from a typo
    or a missing dependency included, marks the backend broken: a fault to fix, never
    skipped.

    :param reason: why it cannot run, and what to use instead.
    :ivar reason: the same.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BackendError(PikeError, LookupError):
    """No poller backend could be chosen.  The message says what to install or set."""


class UnknownBackendError(BackendError):
    """A backend name that no installed distribution registers.

    :ivar name: the name asked for.
    :ivar installed: the names that are installed.
    """

    def __init__(self, name: str, installed: Sequence[str], source: str = "PIKE_POLLER") -> None:
        listed = ", ".join(installed) if installed else "none"
        super().__init__(
            f"{source}: no poller backend named {name!r} is installed (installed: {listed}); "
            "name one of the installed backends, or install the distribution that provides it"
        )
        self.name = name
        self.installed = tuple(installed)


class BackendUnavailableError(BackendError):
    """A backend is installed but cannot run on this machine.

    :ivar name: the backend's name.
    :ivar reason: why it cannot run here.
    """

    def __init__(self, name: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.reason = reason


class NoBackendError(BackendError):
    """No usable poller backend is installed at all."""
