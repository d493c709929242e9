"""The Poller contract, and the bookkeeping and dispatch every backend shares.

A backend subclasses :class:`Poller` and implements only the OS primitives (``os_open``,
``os_register``, ``os_modify``, ``os_unregister``, ``os_wait``, ``os_close``).  Which
transport owns a descriptor, write interest, timers, cross-thread calls, and the rules of
dispatch live here, once, so every backend behaves the same and the conformance suite
judges them all by one standard.
"""

from __future__ import annotations

import abc
import collections
import logging
import math
import os
import socket
import threading
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ClassVar,
    Collection,
    Deque,
    Dict,
    Final,
    List,
    Optional,
    Protocol,
    Set,
    Tuple,
    Type,
)

from . import events
from .errors import CapacityError, PollerClosedError, RegistrationError
from .timers import CLOCK_RESOLUTION, TimerHandle, TimerQueue, clock
from .waker import Waker

if TYPE_CHECKING:
    from types import TracebackType

logger = logging.getLogger("pike_core")

_PROPAGATE = (KeyboardInterrupt, SystemExit)


class Channel(Protocol):
    """What a poller keeps per descriptor: a transport, or the poller's own waker."""

    _fileno: int
    _want_write: bool

    def _handle_events(self, mask: int) -> None: ...

    def close(self) -> None: ...


#: The types a timeout may have without a closer look (bool is an int, and refused there).
_SECONDS: Final = (int, float)


def _check_timeout(timeout: Optional[float], what: str) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{what} timeout must be a number of seconds or None, got {timeout!r}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"{what} timeout must be >= 0 seconds or None (no limit), got {timeout!r}")


def _fileno_of(transport: Channel, what: str) -> Optional[int]:
    try:
        return transport._fileno
    except AttributeError:
        raise TypeError(f"{what} needs a pike_core Transport, got {transport!r}") from None


class Poller(abc.ABC):
    """Waits for socket events and dispatches them to registered transports.

    Subclasses implement the OS primitives below; everything public is implemented here.
    All methods belong to the thread that runs :meth:`poll` / :meth:`loop`, except
    :meth:`call_soon_threadsafe` and :meth:`stop`, which are safe from any thread.
    """

    #: The backend's name, as listed by discovery and accepted by ``PIKE_POLLER``.
    name: ClassVar[str] = "abstract"

    def __init__(self) -> None:
        self._map: Dict[int, Channel] = {}
        # Descriptors registered since the last OS wait returned: an event in the current
        # batch for one of them belongs to the previous owner of that number.
        self._fresh: Set[int] = set()
        # Registered descriptors the OS is not watching for now (see pause()).
        self._paused: Set[int] = set()
        self._timers = TimerQueue()
        self._timer_heap = self._timers.heap
        self._ready: Deque[Tuple[Callable[..., object], Tuple[Any, ...]]] = collections.deque()
        self._stopping = False
        self._closed = False
        self._close_lock = threading.Lock()
        self.os_open()
        self._waker = Waker()
        self.os_register(self._waker._fileno, events.READ)
        self._map[self._waker._fileno] = self._waker
        _live_pollers.add(self)

    # --- the OS primitives a backend implements -----------------------------------

    @abc.abstractmethod
    def os_open(self) -> None:
        """Create the OS polling object.  Called once, from ``__init__``.

        :raises OSError: the OS refused (for example out of descriptors).
        """

    @abc.abstractmethod
    def os_register(self, fd: int, mask: int) -> None:
        """Start watching ``fd`` for the :mod:`pike_core.events` bits in ``mask``.

        :param fd: a descriptor not watched yet.
        :param mask: ``READ``, optionally with ``WRITE``.
        :raises CapacityError: the mechanism cannot watch this descriptor.
        :raises OSError: the OS refused.
        """

    @abc.abstractmethod
    def os_modify(self, fd: int, mask: int) -> None:
        """Change the interest of a watched ``fd`` to ``mask``.

        :raises OSError: the OS refused.
        """

    @abc.abstractmethod
    def os_unregister(self, fd: int) -> None:
        """Stop watching ``fd``.  Called while the descriptor is still open.

        :raises OSError: the OS refused.
        """

    @abc.abstractmethod
    def os_wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        """Block until an event or for at most ``timeout`` seconds (None: no limit).

        :returns: a sized collection (list, tuple, ``dict.items()``) of ``(fd, mask)``
            pairs, at most one per descriptor, with ``mask`` made of
            :mod:`pike_core.events` bits; ``ERROR`` and ``HANGUP`` are reported even when
            only ``READ`` was asked for.  Empty when the time ran out.
        :raises OSError: the OS wait failed.
        """

    @abc.abstractmethod
    def os_close(self) -> None:
        """Release the OS polling object.  Called once, from :meth:`close`."""

    # --- connecting: hooks for backends whose OS connects by completion -----------------

    def start_connect(self, sock: socket.socket, address: Any) -> int:
        """Begin a non-blocking connect of ``sock`` (registered here) to ``address``.

        The default is ``sock.connect_ex(address)``; the verdict arrives as a ``WRITE``
        event.  A backend whose OS reports connects by completion (IOCP) overrides this
        and :meth:`connect_error` together.

        :returns: 0 when connected at once, an errno meaning "in progress", or the errno
            of an immediate failure, as ``socket.connect_ex`` does.
        """
        return sock.connect_ex(address)

    def connect_error(self, sock: socket.socket) -> int:
        """The outcome of the connect begun by :meth:`start_connect`, once its ``WRITE``
        event came: 0 for success, else the errno.  The default reads ``SO_ERROR``."""
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    # --- registration ---------------------------------------------------------------

    def register(self, transport: Channel) -> None:
        """Watch ``transport``'s socket for reading (and writing, if it asked to).

        Registering a transport that is already registered here does nothing.

        :raises PollerClosedError: the poller is closed.
        :raises RegistrationError: the transport has no open socket, or another
            transport holds the same descriptor here.
        :raises CapacityError: this backend cannot watch the descriptor.
        :raises TypeError: ``transport`` is not a transport.
        """
        if self._closed:
            raise PollerClosedError(self)
        fd = _fileno_of(transport, "register()")
        if fd is None or fd < 0:
            raise RegistrationError(
                transport,
                f"{transport!r} has no open socket; call create_socket() or set_socket() first",
            )
        current = self._map.get(fd)
        if current is transport:
            return
        if current is not None:
            raise RegistrationError(
                transport,
                f"cannot register {transport!r}: descriptor {fd} is already registered "
                f"to {current!r}; close that one first",
            )
        try:
            self.os_register(fd, events.READ | events.WRITE if transport._want_write else events.READ)
        except CapacityError as exc:
            raise CapacityError(transport, f"cannot register {transport!r}: {exc}") from None
        # Only once the OS took it, so a refusal leaves no trace of the transport here.
        self._map[fd] = transport
        self._fresh.add(fd)

    def unregister(self, transport: Channel) -> None:
        """Stop watching ``transport``; call it before its socket is closed.

        :raises RegistrationError: ``transport`` is not registered with this poller.
        :raises TypeError: ``transport`` is not a transport.
        """
        fd = _fileno_of(transport, "unregister()")
        if fd is None or self._map.get(fd) is not transport:
            raise RegistrationError(transport, f"{transport!r} is not registered with {self!r}")
        del self._map[fd]
        if fd in self._paused:
            self._paused.discard(fd)
        elif not self._closed:
            self.os_unregister(fd)

    def pause(self, transport: Channel) -> None:
        """Stop watching ``transport``'s socket for now, keeping it registered (it stays
        in :meth:`transports` and is closed with the poller).  Harmless when repeated.

        :raises RegistrationError: ``transport`` is not registered with this poller.
        """
        fd = _fileno_of(transport, "pause()")
        if fd is None or self._map.get(fd) is not transport:
            raise RegistrationError(transport, f"pause({transport!r}): it is not registered with {self!r}")
        if fd not in self._paused:
            self.os_unregister(fd)
            self._paused.add(fd)

    def resume(self, transport: Channel) -> None:
        """Watch a paused transport's socket again, with the interest it has now.
        Does nothing for a transport that is not paused."""
        fd = transport._fileno
        if fd in self._paused:
            self.os_register(fd, events.READ | events.WRITE if transport._want_write else events.READ)
            self._paused.discard(fd)
            self._fresh.add(fd)

    def add_channel(self, transport: Channel) -> None:
        """The original pike name of :meth:`register`."""
        self.register(transport)

    def del_channel(self, transport: Channel) -> None:
        """The original pike name of :meth:`unregister`."""
        self.unregister(transport)

    def is_registered(self, transport: Channel) -> bool:
        """Whether ``transport`` is registered with this poller."""
        fd = _fileno_of(transport, "is_registered()")
        return fd is not None and self._map.get(fd) is transport

    @property
    def connections(self) -> Dict[int, Channel]:
        """A snapshot of the registered transports by descriptor (the pike attribute)."""
        waker = self._waker
        return {fd: t for fd, t in self._map.items() if t is not waker}

    def defer_write(self, transport: Channel) -> None:
        """Ask for exactly one ``handle_write`` callback when the socket can take data.

        Asking again before the callback came changes nothing: one callback follows.

        :raises RegistrationError: ``transport`` is not registered with this poller.
        :raises TypeError: ``transport`` is not a transport.
        """
        # Inline rather than _fileno_of(): this runs on every would-block send.
        try:
            if transport._want_write:
                return
            fd = transport._fileno
        except AttributeError:
            raise TypeError(f"defer_write() needs a pike_core Transport, got {transport!r}") from None
        if fd is None or self._map.get(fd) is not transport:
            raise RegistrationError(
                transport,
                f"defer_write({transport!r}): it is not registered with {self!r} "
                "(closed, or never given a socket)",
            )
        if fd not in self._paused:
            self.os_modify(fd, events.READ | events.WRITE)
        transport._want_write = True

    def write_delivered(self, transport: Channel) -> None:
        """Drop write interest after the one callback it was armed for (core use)."""
        transport._want_write = False
        self.os_modify(transport._fileno, events.READ)

    # --- timers and callbacks -------------------------------------------------------

    def time(self) -> float:
        """The clock timers are measured on (``time.monotonic``)."""
        return clock()

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Call ``callback(*args)`` in the loop after ``delay`` seconds.

        A delay <= 0 runs it in the next iteration.  Timers due at the same time run in
        the order they were made.  Exceptions go to :meth:`handle_callback_error`.

        :returns: a handle whose ``cancel()`` stops the call.
        :raises TypeError: ``callback`` is not callable, or ``delay`` not a number.
        :raises ValueError: ``delay`` is NaN or infinite.
        :raises PollerClosedError: the poller is closed.
        """
        if self._closed:
            raise PollerClosedError(self)
        return self._timers.add(delay, callback, args)

    def call_soon(self, callback: Callable[..., object], *args: Any) -> None:
        """Call ``callback(*args)`` in the next iteration (from the loop's own thread).

        :raises TypeError: ``callback`` is not callable.
        :raises PollerClosedError: the poller is closed.
        """
        if not callable(callback):
            raise TypeError(f"call_soon needs a callable, got {callback!r}")
        if self._closed:
            raise PollerClosedError(self)
        self._ready.append((callback, args))

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> None:
        """Like :meth:`call_soon`, from any thread: it wakes a blocked wait.

        :raises TypeError: ``callback`` is not callable.
        :raises PollerClosedError: the poller is closed.
        """
        if not callable(callback):
            raise TypeError(f"call_soon_threadsafe needs a callable, got {callback!r}")
        with self._close_lock:
            if self._closed:
                raise PollerClosedError(self)
            # deque.append is atomic, so the loop thread needs no lock to pop.
            self._ready.append((callback, args))
            self.wake()

    def wake(self) -> None:
        """Interrupt the OS wait (or the next one).  Safe from any thread."""
        self._waker.wake()

    def handle_callback_error(self, callback: object) -> None:
        """Called inside ``except`` when a timer or a queued callback raised.

        The default logs the traceback on the ``pike_core`` logger; the loop goes on.
        """
        logger.error("pike_core: %r raised; the poller goes on", callback, exc_info=True)

    # --- running --------------------------------------------------------------------

    def poll(self, timeout: Optional[float] = None) -> int:
        """Wait at most ``timeout`` seconds for events, dispatch them, then run due
        timers and queued callbacks.  The wait ends early at the next timer, and does
        not happen while callbacks are queued.

        :param timeout: seconds, or None to wait for the first event or timer.
        :returns: the number of events the OS reported.
        :raises ValueError: ``timeout`` is negative or NaN.
        :raises PollerClosedError: the poller is closed.
        """
        if self._closed:
            raise PollerClosedError(self)
        if timeout is not None and (timeout.__class__ not in _SECONDS or not timeout >= 0):
            _check_timeout(timeout, "poll")
        if self._ready:
            timeout = 0.0
        elif self._timer_heap:
            due = self._timers.next_delay(clock())
            if due is not None and (timeout is None or due < timeout):
                timeout = due
        fresh = self._fresh
        fresh.clear()
        batch = self.os_wait(timeout)
        # The hot path: per event one dict lookup and one bound-method call.
        get = self._map.get
        for fd, mask in batch:
            channel = get(fd)
            if channel is None or (fresh and fd in fresh):
                continue
            channel._handle_events(mask)
        if self._timer_heap:
            self._run_timers()
        if self._ready:
            self._run_ready()
        return len(batch)

    def _run_timers(self) -> None:
        for handle in self._timers.pop_due(clock() + CLOCK_RESOLUTION):
            try:
                handle.run()
            except _PROPAGATE:
                raise
            except BaseException:
                self.handle_callback_error(handle)

    def _run_ready(self) -> None:
        ready = self._ready
        # Only what was queued before this point: a callback that queues another must
        # not keep this iteration from returning to the OS wait.
        for _ in range(len(ready)):
            callback, args = ready.popleft()
            try:
                callback(*args)
            except _PROPAGATE:
                raise
            except BaseException:
                self.handle_callback_error(callback)

    def loop(self, timeout: Optional[float] = None, count: Optional[int] = None) -> None:
        """Poll repeatedly, blocking in the OS wait between events (the pike semantics).

        :param timeout: total seconds to run, or None for no limit.  At least one poll
            happens even when it is 0.
        :param count: the most poll iterations to run, or None for no limit.
        Returns when either limit is reached or :meth:`stop` was called.

        :raises ValueError: a negative ``timeout`` or ``count``.
        :raises PollerClosedError: the poller is closed.
        """
        _check_timeout(timeout, "loop")
        if count is not None:
            if isinstance(count, bool) or not isinstance(count, int):
                raise TypeError(f"loop count must be an int or None, got {count!r}")
            if count < 0:
                raise ValueError(f"loop count must be >= 0 or None (no limit), got {count!r}")
        # Measured as elapsed time (not against start + timeout) so that with a coarse
        # clock (Windows before Python 3.13 ticks in milliseconds) the loop never ends a
        # hair before ``timeout`` has passed by the caller's own subtraction.
        start = clock()
        done = 0
        try:
            while count is None or done < count:
                wait = None
                if timeout is not None:
                    wait = timeout - (clock() - start)
                    if wait <= 0:
                        if done:
                            break
                        wait = 0.0
                if self._stopping:
                    wait = 0.0
                self.poll(wait)
                done += 1
                if self._stopping:
                    break
        finally:
            self._stopping = False

    def stop(self) -> None:
        """Make :meth:`loop` return after the current iteration.  Safe from any thread;
        called before :meth:`loop`, it makes the next loop poll once without waiting."""
        self._stopping = True
        if not self._closed:
            self.wake()

    # --- lifetime -------------------------------------------------------------------

    def _reopen_after_fork(self) -> None:
        """In a child process: take a private OS object and waker, with the same interest.

        After ``fork()`` the child shares the parent's epoll descriptor and waker sockets
        (a kqueue is not inherited at all); changing interest or waking through them would
        disturb the parent.  Dropping the child's copies leaves the parent untouched.
        """
        old = self._waker
        del self._map[old._fileno]
        self.os_open()
        self._waker = Waker()
        old.close()
        for fd, channel in self._map.items():
            if fd not in self._paused:
                self.os_register(fd, events.READ | events.WRITE if channel._want_write else events.READ)
        self.os_register(self._waker._fileno, events.READ)
        self._map[self._waker._fileno] = self._waker

    @property
    def closed(self) -> bool:
        return self._closed

    def transports(self) -> List[Channel]:
        """The registered transports."""
        return list(self.connections.values())

    def close(self) -> None:
        """Close every registered transport (without ``handle_close``), cancel timers,
        drop queued callbacks and release the OS object.  Harmless when repeated."""
        if self._closed:
            return
        for transport in self.transports():
            transport.close()
        with self._close_lock:
            self._closed = True
        self._map.clear()
        self._timers.clear()
        self._ready.clear()
        self.os_unregister(self._waker._fileno)
        self._waker.close()
        self.os_close()

    def __enter__(self) -> Poller:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._map) - 1} transports"
        return f"<{type(self).__name__} {self.name!r} {state}>"


_live_pollers: weakref.WeakSet[Poller] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for poller in list(_live_pollers):
        if poller.closed:
            continue
        try:
            poller._reopen_after_fork()
        except Exception:
            # Nothing can propagate out of a fork hook: make the poller refuse use with
            # a clear error rather than let the child share the parent's OS object.
            logger.exception("pike_core: %r could not be re-created after fork(); it is closed", poller)
            poller._closed = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
