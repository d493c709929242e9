"""pike-core: an event-driven socket transport with pluggable poller backends.

A :class:`Transport` owns one non-blocking socket and receives ``handle_*`` callbacks; a
:class:`Poller` waits on the OS and dispatches events to transports.  Backends (epoll,
poll, select, kqueue, iocp) are separate distributions found through the ``pike.pollers``
entry point group; :func:`default_poller` picks one by ``PIKE_POLLER`` or by priority.
"""

from __future__ import annotations

from . import events
from .backend import MAX_WAIT, Backend
from .backends import BackendSpec, BackendStatus, Choice
from .discovery import (
    ENTRY_POINT_GROUP,
    ENV_VAR,
    BackendRegistry,
    available_backends,
    choose_backend,
    default_poller,
    new_poller,
    set_default_poller,
)
from .errors import (
    BackendError,
    BackendUnavailableError,
    CannotRunHere,
    CapacityError,
    NoBackendError,
    PikeError,
    PollerClosedError,
    RegistrationError,
    UnknownBackendError,
    WriteBufferFullError,
)
from .hookspecs import hookimpl, hookspec
from .poller import Poller
from .state import State
from .timers import TimerHandle
from .transport import AcceptedSocket, Transport

__all__ = [
    "ENTRY_POINT_GROUP",
    "ENV_VAR",
    "MAX_WAIT",
    "AcceptedSocket",
    "Backend",
    "BackendError",
    "BackendRegistry",
    "BackendSpec",
    "BackendStatus",
    "BackendUnavailableError",
    "CannotRunHere",
    "CapacityError",
    "Choice",
    "NoBackendError",
    "PikeError",
    "Poller",
    "PollerClosedError",
    "RegistrationError",
    "State",
    "TimerHandle",
    "Transport",
    "UnknownBackendError",
    "WriteBufferFullError",
    "available_backends",
    "choose_backend",
    "default_poller",
    "events",
    "hookimpl",
    "hookspec",
    "new_poller",
    "set_default_poller",
]
