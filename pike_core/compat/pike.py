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
from typing import Any, Callable, Dict, Optional, Type

from pike_core import discovery
from pike_core import transport as _core
from pike_core.backend import Backend
from pike_core.errors import BackendUnavailableError
from pike_core.poller import Poller

__all__ = ["BasePoller", "KQueuePoller", "PollPoller", "SelectPoller", "Transport", "loop", "poller"]

#: The original's abstract poller: every pike-core poller is one.  An OS mechanism of
#: one's own is a :class:`pike_core.Backend` (see "Shipping your own poller" in the
#: README) instead of the original's ``poll()`` calling ``process_readables`` /
#: ``process_writables``.
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


def _poller_class(attr: str) -> Type[Poller]:
    """pike's poller class ``attr``: a Poller on pike-core's backend of that mechanism.
    Like the original's class for a mechanism the platform lacks, it can be imported
    where the backend cannot run, and constructing it then fails with the reason and
    what to use instead."""
    backend = _BACKEND_OF[attr]
    statuses = discovery.available_backends()
    status = next((b for b in statuses if b.name == backend), None)
    backend_class = None if status is None else status.backend_class
    make: Callable[[], Backend]
    if backend_class is not None:
        make = backend_class
        doc = f"pike's {attr}: a pike-core Poller on the {backend!r} backend."
    else:
        why = (
            f"is not installed (pip install pike-{backend})"
            if status is None
            else f"cannot run here: {status.problem}"
        )
        usable = ", ".join(b.name for b in statuses if b.usable) or "none"
        error = BackendUnavailableError(
            backend,
            why,
            f"pike.transport.{attr} is pike-core's {backend!r} backend, which {why}. Use "
            f"pike.transport.poller (pike-core's choice; PIKE_POLLER steers it) or a usable "
            f"backend: {usable}",
        )

        def make() -> Backend:
            raise error.with_traceback(None)

        doc = f"Cannot run here: {error}"

    def __init__(self: Poller) -> None:
        Poller.__init__(self, make())

    return type(attr, (Poller,), {"__init__": __init__, "__module__": __name__, "__doc__": doc})


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

    :param alternate_poller: the poller to register with instead of the module-level
        ``poller``.
    """

    __slots__ = ()

    def __init__(self, alternate_poller: Optional[Poller] = None) -> None:
        super().__init__(alternate_poller if alternate_poller is not None else _current_poller())
