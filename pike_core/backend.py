"""The Backend contract: the OS half of a poller.

A backend translates one OS readiness mechanism (select, poll, epoll, kqueue, an I/O
completion port) into ``(fd, mask)`` events.  It keeps no transport, no timer and no rule
of dispatch: a :class:`~pike_core.Poller` *has* a backend, owns the interest of every
descriptor, and tells the backend only what changed.  The same object is what
``pike-asyncio`` wraps as a ``selectors.BaseSelector``, so a backend must not assume the
core's poller is its only caller.

What the caller guarantees, and what a backend may therefore rely on:

* every mask passed to :meth:`Backend.register` and :meth:`Backend.modify` is non-empty
  and a subset of :attr:`Backend.supported` (``READ``, ``WRITE``, and ``PRIORITY`` where
  declared); a descriptor nobody wants events for is unregistered, never registered with
  an empty mask (epoll would still report ``HANGUP`` for it, at every wait);
* :meth:`~Backend.register` is called for a descriptor not registered yet,
  :meth:`~Backend.modify` and :meth:`~Backend.unregister` for one that is, always while
  the descriptor is open (it may have been closed behind everyone's back, see
  :meth:`~Backend.unregister`);
* every method but :meth:`~Backend.wake` is called from one thread at a time;
* the timeout of :meth:`~Backend.wait` is a float number of seconds ``>= 0`` no larger
  than :data:`MAX_WAIT`, or None for no limit (the core clamps it once).
"""

from __future__ import annotations

import abc
import socket
from typing import Any, ClassVar, Collection, Final, Optional, Tuple

from . import events

#: The longest single wait the core asks of a backend, in seconds (one day, as asyncio):
#: every OS takes it, and a longer wait is a series of these.
MAX_WAIT: Final = 86400.0


class Backend(abc.ABC):
    """The OS primitives of one readiness mechanism.

    Constructing one opens the OS object (an epoll descriptor, a completion port...).
    Events are level-triggered: while a descriptor is ready for an event it was asked
    for, every :meth:`wait` reports it again.

    Where the mechanism does not exist, the backend's module raises
    :class:`~pike_core.CannotRunHere` at import, with the reason; discovery lists the
    backend as "cannot run here" and never constructs it.  Discovery constructs every
    other backend once, registers a socket and closes it again, so a backend that cannot
    open is listed as not usable rather than chosen.

    :raises CannotRunHere: constructing it, where the mechanism exists but is unusable
        on this machine (on purpose: the reason says why and what to use instead).
    :raises OSError: constructing it, when the OS refuses (for example out of
        descriptors).
    """

    #: The backend's name, as listed by discovery and accepted by ``PIKE_POLLER``.
    name: ClassVar[str] = "abstract"
    #: The event bits :meth:`register` and :meth:`modify` accept.  ``PRIORITY``
    #: (exceptional conditions, out-of-band data) is optional: declare it only when the
    #: mechanism reports it.
    supported: ClassVar[int] = events.READ | events.WRITE
    #: Whether :meth:`wake` is implemented.  If not, the core registers a socket pair of
    #: its own and writes to it to interrupt a wait.
    has_wake: ClassVar[bool] = False

    def admit(self, fd: int) -> None:  # noqa: B027 - optional; admitting is the default
        """Refuse at once a descriptor this mechanism could never watch, before anything
        is asked of it: the core calls this when a socket is registered, which may be
        long before it wants an event (a socket is watched from ``connect()`` or
        ``listen()`` on).  The default admits every descriptor.

        :raises CapacityError: ``fd`` is beyond a limit of this mechanism; raise it with
            ``transport=None``.
        """

    @abc.abstractmethod
    def register(self, fd: int, mask: int) -> None:
        """Start watching ``fd`` for the events in ``mask``.

        :param fd: an open descriptor this backend does not watch.
        :param mask: a non-empty subset of :attr:`supported`.
        :raises CapacityError: this mechanism cannot watch ``fd`` (a limit on the number
            or count of descriptors); raise it with ``transport=None``.
        :raises PermissionError: this mechanism does not watch ``fd`` because it is
            always ready: epoll's ``EPERM`` for a regular file or a directory.  The core
            then reports ``fd`` ready for the ``READ`` and ``WRITE`` it wants at every
            wait, without a backend call, as ``poll()`` and ``select()`` report such a
            descriptor.
        :raises OSError: the OS refused.
        """

    @abc.abstractmethod
    def modify(self, fd: int, mask: int) -> None:
        """Watch the registered ``fd`` for ``mask`` instead.

        :param mask: a non-empty subset of :attr:`supported`, different from the last.
        :raises OSError: the OS refused (``EBADF``, ``ENOENT``: the descriptor was closed
            behind the core's back; the core then reports it ``INVALID``).
        """

    @abc.abstractmethod
    def unregister(self, fd: int) -> None:
        """Stop watching ``fd``.  Called before the descriptor is closed, and for a
        descriptor that may already have been closed behind the caller's back: treat
        "not watched" and "not open" as done, without raising."""

    @abc.abstractmethod
    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        """Block until a watched descriptor is ready, :meth:`wake` is called, or
        ``timeout`` seconds pass.  Returning early, or with nothing, is allowed.

        :param timeout: seconds (``0 <= timeout <= MAX_WAIT``), or None for no limit.
        :returns: a sized collection (list, tuple, ``dict.items()``) of ``(fd, mask)``
            pairs, at most one per descriptor.  ``mask`` holds the events asked for that
            hold now, and ``ERROR``, ``HANGUP`` and ``INVALID`` whenever they hold, asked
            or not (see :mod:`pike_core.events`).  A mechanism that cannot tell a hang-up
            or an error from readiness (kqueue's ``EV_EOF``, AFD's disconnect) reports
            them as ``READ``; one that tells them declares the ``"hangup"`` capability
            (:class:`~pike_core.BackendSpec`).
        :raises OSError: the wait failed for the whole mechanism.  A failure that
            concerns one descriptor (for example ``select()`` meeting a closed one) is
            reported as that descriptor's ``INVALID`` instead, so the others are served.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the OS object.  Called once; nothing is called after it."""

    def wake(self) -> None:
        """Make the current (or the next) :meth:`wait` return.  Called from any thread,
        also while :meth:`wait` runs; only when :attr:`has_wake` is True."""
        raise NotImplementedError(f"{type(self).__name__} has no wake(); it declares has_wake = False")

    def after_fork(self) -> Backend:
        """In a child process after ``fork()``: a backend for the child, with nothing
        registered (the core registers its descriptors again).  The parent's OS object
        must be left working for the parent.

        The default closes this object's copy and opens a new one of the same class,
        which suits mechanisms whose descriptor a child inherits (epoll) or that hold no
        OS object (select, poll).
        """
        self.close()
        return type(self)()

    # --- connecting, for mechanisms that report a connect by completion --------------

    def start_connect(self, sock: socket.socket, address: Any) -> int:
        """Begin a non-blocking connect of ``sock`` (registered here for ``WRITE``).

        The default is ``sock.connect_ex(address)``; the verdict arrives as a ``WRITE``
        event.  A backend whose OS connects by completion (IOCP's ``ConnectEx``)
        overrides this and :meth:`connect_error` together.

        :returns: 0 when connected at once, an errno meaning "in progress", or the errno
            of an immediate failure, as ``socket.connect_ex`` does.
        :raises OSError: as ``socket.connect_ex`` (a name that does not resolve).
        :raises TypeError: ``address`` does not suit the socket's family.
        """
        return sock.connect_ex(address)

    def connect_error(self, sock: socket.socket) -> int:
        """The outcome of the connect begun by :meth:`start_connect`, once its ``WRITE``
        event came: 0 for success, else the errno.  The default reads ``SO_ERROR``."""
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
