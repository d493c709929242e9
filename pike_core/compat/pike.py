"""The module-level surface of pike-smb2's ``pike.transport``, on pike-core.

``Transport``, ``BasePoller``, ``SelectPoller``, ``PollPoller``, ``KQueuePoller``, the
module-level ``poller`` and ``loop(timeout=None, count=None)`` keep their pike names and
meaning, so pike-smb2's ``pike.model`` runs unmodified once this module stands in for
``pike.transport`` (the ``pike-smb2-shim`` distribution in ``compat/pike-smb2-shim`` does
that with an import hook).  What changes is what the original got wrong: end of stream
reaches ``handle_close``, a refused connect is never reported as connected and never stays
registered, and ``loop`` blocks in the OS wait instead of spinning.
``docs/migrating-from-pike.md`` lists every difference.

``poller`` is pike-core's :func:`~pike_core.default_poller` (chosen by ``PIKE_POLLER`` or by
priority), looked up at each use so that it follows a default re-created after ``close()``
or ``fork()``.  Assigning ``pike.transport.poller = p`` makes new transports and ``loop``
use ``p``, as it did with the original.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional, Type

from pike_core import discovery
from pike_core import transport as _core
from pike_core.errors import BackendError, BackendUnavailableError
from pike_core.poller import Poller

__all__ = ["BasePoller", "KQueuePoller", "PollPoller", "SelectPoller", "Transport", "loop", "poller"]

#: The original's abstract poller: every pike-core poller derives from it.  A poller of
#: one's own implements the ``os_*`` primitives (see :class:`pike_core.Poller`) instead of
#: the original's ``poll()`` calling ``process_readables`` / ``process_writables``.
BasePoller = Poller

#: The pike class names and the pike-core backend of the same OS mechanism.
_BACKEND_OF: Dict[str, str] = {"SelectPoller": "select", "PollPoller": "poll", "KQueuePoller": "kqueue"}
_resolve_lock = threading.Lock()

# Declared for type checkers only: at run time these names are provided by __getattr__
# (lazily, so that importing pike.transport neither runs discovery nor opens a poller).
poller: Poller
SelectPoller: Type[Poller]
PollPoller: Type[Poller]
KQueuePoller: Type[Poller]


def _current_poller() -> Poller:
    # A poller assigned to the module (pike's way of switching pollers) wins over the default.
    assigned = globals().get("poller")
    if assigned is None:
        return discovery.default_poller()
    if not isinstance(assigned, Poller):
        raise TypeError(
            f"pike.transport.poller must be a pike_core Poller (for example "
            f"pike_core.new_poller('epoll')), got {assigned!r}; del it to use the default"
        )
    return assigned


def _unusable_poller_class(attr: str, error: BackendError) -> Type[Poller]:
    """A stand-in for a backend that cannot run here: like the original's class for a
    missing mechanism, it can be imported, and constructing it fails, here with ``error``
    (which says why and what to use instead)."""

    def __new__(cls: Type[Poller], *args: Any, **kwargs: Any) -> Poller:
        raise error.with_traceback(None)

    return type(
        attr,
        (Poller,),
        {
            "__new__": __new__,
            "__module__": __name__,
            "__doc__": f"Cannot run here: {error}",
        },
    )


def _poller_class(attr: str) -> Type[Poller]:
    backend = _BACKEND_OF[attr]
    statuses = discovery.available_backends()
    status = next((b for b in statuses if b.name == backend), None)
    if status is not None and status.poller_class is not None:
        return status.poller_class
    why = (
        f"is not installed (pip install pike-{backend})"
        if status is None
        else f"cannot run here: {status.problem}"
    )
    usable = ", ".join(b.name for b in statuses if b.usable) or "none"
    message = (
        f"pike.transport.{attr} is pike-core's {backend!r} backend, which {why}. Use "
        f"pike.transport.poller (pike-core's choice; PIKE_POLLER steers it) or a usable backend: {usable}"
    )
    return _unusable_poller_class(attr, BackendUnavailableError(backend, why, message))


def __getattr__(name: str) -> Any:
    if name == "poller":
        return discovery.default_poller()
    if name in _BACKEND_OF:
        with _resolve_lock:
            cls = globals().get(name)
            if cls is None:
                cls = globals()[name] = _poller_class(name)
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def loop(timeout: Optional[float] = None, count: Optional[int] = None) -> None:
    """Run the module-level poller: at most ``count`` iterations, for at most ``timeout``
    seconds, blocking in the OS wait while nothing happens (see :meth:`Poller.loop`)."""
    if timeout is not None and timeout < 0:
        # The original ran one iteration for a deadline already past; pike's callers
        # compute ``deadline - now`` and may hand over a hair below zero.
        timeout = 0.0
    _current_poller().loop(timeout, count)


class Transport(_core.Transport):
    """pike's ``Transport``: :class:`pike_core.Transport` with the original constructor.

    A failed connect also releases the socket when a subclass's ``close()`` does not reach
    this class's (pike's ``Connection.close`` returns early for a connection that never
    got ``handle_connect``), so a refused connection never stays registered.

    :param alternate_poller: the poller to register with instead of the module-level
        ``poller``.
    """

    __slots__ = ()

    def __init__(self, alternate_poller: Optional[Poller] = None) -> None:
        super().__init__(alternate_poller if alternate_poller is not None else _current_poller())

    def connect(self, address: _core.Address) -> None:
        try:
            super().connect(address)
        except OSError:
            self._release()
            raise

    def _finish_connect(self) -> None:
        super()._finish_connect()
        if not (self.connecting or self.connected):
            self._release()

    def _release(self) -> None:
        if not self.closed:
            _core.Transport.close(self)
