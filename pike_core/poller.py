"""The Poller: the loop, the user's API, and the interest of every descriptor.

A poller *has* a :class:`~pike_core.backend.Backend` (the OS primitives) and keeps the
rest once, for every backend: which channel owns a descriptor and what it wants (one
:class:`~pike_core.interest.Interest` record each, applied to the backend as a diff),
timers, cross-thread calls, stopping, and the rules of dispatch.
"""

from __future__ import annotations

import collections
import errno
import logging
import math
import os
import threading
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Deque,
    Dict,
    Final,
    FrozenSet,
    List,
    Optional,
    Protocol,
    Tuple,
    Type,
    Union,
)

from . import events
from .backend import MAX_WAIT, Backend
from .errors import CapacityError, PollerClosedError, RegistrationError
from .interest import HELD, Interest
from .timers import CLOCK_RESOLUTION, TimerHandle, TimerQueue, clock
from .waker import Waker

if TYPE_CHECKING:
    from types import TracebackType

logger = logging.getLogger("pike_core")

_PROPAGATE = (KeyboardInterrupt, SystemExit)
_READ: Final = events.READ
#: The types a timeout may have without a closer look (bool is an int, and refused there).
_SECONDS: Final = (int, float)
#: What a descriptor the OS refused as always ready is reported ready for (what poll(2)
#: and select(2) say of a regular file).
_ALWAYS_READY: Final = events.READ | events.WRITE


class Channel(Protocol):
    """What a poller dispatches to: a transport, the poller's waker, or the asyncore layer.

    The poller sets ``_rec`` to the channel's record on :meth:`Poller.register` and to
    None on :meth:`Poller.unregister`.
    """

    _fileno: int
    _rec: Optional[Interest]

    def _wanted(self) -> int:
        """The events the channel wants now (0: none)."""

    def _handle_events(self, mask: int) -> None: ...

    def close(self) -> None: ...


class Reader(Protocol):
    """A channel whose plain read events the poller may hand to ``handle_read`` itself
    (see :attr:`Interest.reader <pike_core.interest.Interest.reader>`)."""

    def handle_read(self) -> None: ...

    def _report_error(self) -> None:
        """Called inside ``except`` when ``handle_read`` raised."""


def _check_timeout(timeout: Optional[float], what: str) -> Optional[float]:
    """``timeout`` checked; infinity means no limit (None)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{what} timeout must be a number of seconds or None, got {timeout!r}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"{what} timeout must be >= 0 seconds or None (no limit), got {timeout!r}")
    return None if timeout == math.inf else timeout


def _fileno_of(channel: Channel, what: str) -> int:
    try:
        return channel._fileno
    except AttributeError:
        raise TypeError(f"{what} needs a pike_core Transport, got {channel!r}") from None


def _closed_behind_our_back(rec: Interest) -> bool:
    """Whether the socket of ``rec``'s channel was closed without unregistering it."""
    sock = getattr(rec.channel, "socket", None)
    return sock is not None and sock.fileno() != rec.fd


class Poller:
    """Waits for socket events and dispatches them to registered transports.

    All methods belong to the thread that runs :meth:`poll` / :meth:`loop`, except
    :meth:`call_soon_threadsafe`, :meth:`wake` and :meth:`stop`, which are safe from any
    thread at any time.

    :param backend: the OS mechanism: a :class:`~pike_core.backend.Backend`, the name of
        an installed one, or None for the one ``PIKE_POLLER`` or priority chooses.
    :raises BackendError: ``backend`` names nothing usable here; the message says why.
    :raises TypeError: ``backend`` is neither a Backend, a name nor None.
    """

    def __init__(self, backend: Union[Backend, str, None] = None) -> None:
        if backend is None or isinstance(backend, str):
            from .discovery import registry  # noqa: PLC0415 - discovery imports this module

            backend = registry.new_backend(backend)
        elif not isinstance(backend, Backend):
            raise TypeError(
                f"Poller(backend) needs a pike_core.Backend, a backend name or None, got {backend!r}"
            )
        self._use(backend)
        self._records: Dict[int, Interest] = {}
        # Records whose OS interest may be out of line, applied before the next wait.
        self._dirty: List[Interest] = []
        # Records the backend refused to watch because they are always ready (a regular
        # file on epoll): every wait reports them ready for what they want.
        self._always: Dict[int, Interest] = {}
        # Incremented by every wait: a record made since a wait began gets none of its events.
        self._epoch = 0
        self._timers = TimerQueue()
        self._timer_heap = self._timers.heap
        self._ready: Deque[Tuple[Callable[..., object], Tuple[Any, ...]]] = collections.deque()
        self._stopping = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._waker: Optional[Waker] = None
        if not backend.has_wake:
            self._waker = Waker()
            self.register(self._waker)
        _live_pollers.add(self)
        global _open_pollers
        _open_pollers += 1

    def _use(self, backend: Backend) -> None:
        self._backend = backend
        self._supported = backend.supported
        # Asked of each new descriptor only where the backend has a limit to check.
        self._admit = None if type(backend).admit is Backend.admit else backend.admit

    @property
    def backend(self) -> Backend:
        """The OS mechanism this poller waits on."""
        return self._backend

    @property
    def name(self) -> str:
        """The backend's name (``"epoll"``, ``"select"``...)."""
        return self._backend.name

    # --- registration ---------------------------------------------------------------

    def register(self, transport: Channel) -> None:
        """Watch ``transport``'s socket for what it wants (reading, writing, or nothing
        yet: a socket neither connected nor listening is watched from ``connect()`` or
        ``listen()`` on).  Registering a transport registered here already does nothing.

        :raises PollerClosedError: the poller is closed.
        :raises RegistrationError: the transport has no open socket, or its socket is
            registered already (to another transport, or with another poller).
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
        current = self._records.get(fd)
        if current is not None:
            if current.channel is transport:
                return
            if not _closed_behind_our_back(current):
                raise RegistrationError(
                    transport,
                    f"cannot register {transport!r}: descriptor {fd} is already registered "
                    f"to {current.channel!r}; close that one first",
                )
            self._evict(current)
        if _open_pollers > 1:
            self._check_other_pollers(transport, fd)
        rec = Interest(fd, transport, transport._wanted(), self._epoch)
        mask = rec.want & self._supported
        try:
            if self._admit is not None:
                self._admit(fd)
            if mask:
                self._os_register(rec, mask)
        except CapacityError as exc:
            raise CapacityError(transport, f"cannot register {transport!r}: {exc}") from None
        # Only once the OS took it, so a refusal leaves no trace of the transport here.
        self._records[fd] = rec
        transport._rec = rec

    def _check_other_pollers(self, transport: Channel, fd: int) -> None:
        """One socket must not be registered with two pollers, which the OS does not
        always refuse: raise unless another poller's registration of ``fd`` is of a
        socket closed behind its back (then it is dropped).  The pollers are asked, not
        an index of every descriptor, which would cost memory per connection for a case
        that only arises with more than one poller."""
        for other in list(_live_pollers):
            held = None if other is self or other._closed else other._records.get(fd)
            if held is None:
                continue
            if not _closed_behind_our_back(held):
                raise RegistrationError(
                    transport,
                    f"cannot register {transport!r}: its socket (descriptor {fd}) is registered "
                    f"with another poller, {other!r}, to {held.channel!r}; "
                    "one socket can belong to one transport only",
                )
            other._evict(held)

    def _os_register(self, rec: Interest, mask: int) -> None:
        """Have the backend watch ``rec``'s descriptor for ``mask``.  One it refuses as
        always ready (``PermissionError``) is reported ready at every wait instead."""
        try:
            self._backend.register(rec.fd, mask)
        except PermissionError:
            self._always[rec.fd] = rec
            return
        rec.os = mask

    def _evict(self, rec: Interest) -> None:
        """Drop the registration of a socket closed without telling the poller, whose
        number a new socket now has, and tell its channel (an ``INVALID`` event, from the
        loop: not inside the registration of the newcomer)."""
        del self._records[rec.fd]
        self._always.pop(rec.fd, None)
        if rec.os:
            rec.os = 0
            # The number names the newcomer's socket now; nothing of it is watched yet.
            self._backend.unregister(rec.fd)
        rec.failure = OSError(
            errno.EBADF,
            f"{rec.channel!r}: its socket was closed without Transport.close(), and descriptor "
            f"{rec.fd} now belongs to another socket; the transport is dropped",
        )
        # Thread-safe: the evicting registration may run on another poller's thread.
        self.call_soon_threadsafe(rec.channel._handle_events, events.INVALID)

    def unregister(self, transport: Channel) -> None:
        """Stop watching ``transport``; call it before its socket is closed.

        :raises RegistrationError: ``transport`` is not registered with this poller.
        :raises TypeError: ``transport`` is not a transport.
        """
        fd = _fileno_of(transport, "unregister()")
        rec = self._records.get(fd) if fd is not None else None
        if rec is None or rec.channel is not transport:
            raise RegistrationError(transport, f"{transport!r} is not registered with {self!r}")
        del self._records[fd]
        self._always.pop(fd, None)
        transport._rec = None
        if rec.os:
            rec.os = 0
            self._backend.unregister(fd)

    def _changed(self, rec: Interest) -> None:
        """Bring the OS in line with ``rec`` (core use, after ``want`` or ``held`` changed).

        A descriptor the OS does not watch yet is registered at once, so that a refusal
        (``CapacityError``, ``OSError``) reaches the caller that asked for the events;
        every other change waits for the next wait, so that changes made back and forth
        within one dispatch cost one backend call, or none.
        """
        mask = 0 if rec.epoch == HELD else rec.want & self._supported
        if mask == rec.os or rec.failure is not None:
            return
        if not rec.os:
            if self._always.get(rec.fd) is rec:
                return
            try:
                self._os_register(rec, mask)
            except CapacityError as exc:
                raise CapacityError(rec.channel, f"cannot watch {rec.channel!r}: {exc}") from None
        elif not rec.dirty:
            rec.dirty = True
            self._dirty.append(rec)

    def _apply(self) -> List[Tuple[int, int]]:
        """Apply the pending interest changes.

        :returns: ``(fd, INVALID)`` for each descriptor the backend refused to change:
            it no longer watches it (closed behind the poller's back, most likely).
        """
        refused: List[Tuple[int, int]] = []
        records = self._records
        backend = self._backend
        for rec in self._dirty:
            rec.dirty = False
            if records.get(rec.fd) is not rec or rec.failure is not None:
                continue
            mask = 0 if rec.epoch == HELD else rec.want & self._supported
            if mask == rec.os:
                continue
            try:
                if mask:
                    backend.modify(rec.fd, mask)
                else:
                    backend.unregister(rec.fd)
            except OSError as exc:
                rec.failure = exc
                rec.os = 0
                refused.append((rec.fd, events.INVALID))
                continue
            rec.os = mask
        self._dirty.clear()
        return refused

    def pause(self, transport: Channel) -> None:
        """Stop watching ``transport``'s socket for now, whatever it wants, keeping it
        registered (it stays in :meth:`transports` and is closed with the poller).
        Harmless when repeated; :meth:`resume` undoes it.

        :raises RegistrationError: ``transport`` is not registered with this poller.
        """
        rec = self._record_of(transport, "pause()")
        if rec.epoch != HELD:
            # Nor is it given what the current batch still holds for it.
            rec.epoch = HELD
            self._changed(rec)

    def resume(self, transport: Channel) -> None:
        """Watch a paused transport's socket again, for exactly what it wants now.
        Does nothing for a transport that is not paused.

        :raises RegistrationError: ``transport`` is not registered with this poller.
        """
        rec = self._record_of(transport, "resume()")
        if rec.epoch == HELD:
            # Events come again from the next wait on (level-triggered: none is lost).
            rec.epoch = self._epoch
            self._changed(rec)

    def _record_of(self, transport: Channel, what: str) -> Interest:
        fd = _fileno_of(transport, what)
        rec = self._records.get(fd) if fd is not None else None
        if rec is None or rec.channel is not transport:
            raise RegistrationError(
                transport, f"{what[:-2]}({transport!r}): it is not registered with {self!r}"
            )
        return rec

    def add_channel(self, transport: Channel) -> None:
        """The original pike name of :meth:`register`."""
        self.register(transport)

    def del_channel(self, transport: Channel) -> None:
        """The original pike name of :meth:`unregister`."""
        self.unregister(transport)

    def is_registered(self, transport: Channel) -> bool:
        """Whether ``transport`` is registered with this poller."""
        fd = _fileno_of(transport, "is_registered()")
        rec = self._records.get(fd) if fd is not None else None
        return rec is not None and rec.channel is transport

    @property
    def connections(self) -> Dict[int, Channel]:
        """A snapshot of the registered transports by descriptor (the pike attribute)."""
        waker = self._waker
        return {fd: rec.channel for fd, rec in self._records.items() if rec.channel is not waker}

    @property
    def deferred_writers(self) -> FrozenSet[int]:
        """A snapshot of the descriptors whose transports await the ``handle_write`` that
        :meth:`defer_write` (or a ``send`` that would block) asked for: the original pike
        attribute, read-only (ask with :meth:`defer_write`)."""
        return frozenset(
            fd for fd, rec in self._records.items() if getattr(rec.channel, "_write_requested", False)
        )

    def defer_write(self, transport: Channel) -> None:
        """Ask for exactly one ``handle_write`` callback when the socket can take data.

        Asking again before the callback came changes nothing: one callback follows.

        :raises RegistrationError: ``transport`` is not registered with this poller.
        :raises TypeError: ``transport`` is not a transport.
        """
        try:
            request = transport._request_write  # type: ignore[attr-defined]
            fd = transport._fileno
        except AttributeError:
            raise TypeError(f"defer_write() needs a pike_core Transport, got {transport!r}") from None
        rec = self._records.get(fd) if fd is not None else None
        if rec is None or rec.channel is not transport:
            raise RegistrationError(
                transport,
                f"defer_write({transport!r}): it is not registered with {self!r} "
                "(closed, or never given a socket)",
            )
        request()

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
        """Like :meth:`call_soon`, from any thread: it wakes a blocked wait.  Once the
        poller is closed (also by a close racing this call) the callback is dropped, as
        everything queued is at close: a thread never gets an error for a poller that
        another thread closed.

        :raises TypeError: ``callback`` is not callable.
        """
        if not callable(callback):
            raise TypeError(f"call_soon_threadsafe needs a callable, got {callback!r}")
        with self._close_lock:
            if self._closed:
                return
            # deque.append is atomic, so the loop thread needs no lock to pop.
            self._ready.append((callback, args))
            self._wake()

    def wake(self) -> None:
        """Interrupt the OS wait (or the next one).  Safe from any thread; does nothing
        once the poller is closed."""
        with self._close_lock:
            if not self._closed:
                self._wake()

    def _wake(self) -> None:
        # Called with _close_lock held, so close() cannot release the waker meanwhile.
        if self._waker is not None:
            self._waker.wake()
        else:
            self._backend.wake()

    def handle_callback_error(self, callback: object) -> None:
        """Called inside ``except`` when a timer or a queued callback raised.

        The default logs the traceback on the ``pike_core`` logger; the loop goes on.
        """
        logger.error("pike_core: %r raised; the poller goes on", callback, exc_info=True)

    # --- running --------------------------------------------------------------------

    def poll(self, timeout: Optional[float] = None) -> int:
        """Wait at most ``timeout`` seconds for events, dispatch them, then run due
        timers and queued callbacks.  The wait ends early at the next timer, and does
        not block while callbacks are queued or a descriptor the backend refused as
        always ready (:meth:`~pike_core.backend.Backend.register`) wants to read or
        write: such a descriptor is reported ready at every call.

        :param timeout: seconds, or None (or infinity) to wait for the first event or timer.
        :returns: the number of events the OS reported.
        :raises ValueError: ``timeout`` is negative or NaN.
        :raises PollerClosedError: the poller is closed.
        """
        if self._closed:
            raise PollerClosedError(self)
        if timeout is not None and (timeout.__class__ not in _SECONDS or not 0 <= timeout <= MAX_WAIT):
            timeout = _check_timeout(timeout, "poll")
            if timeout is not None:
                timeout = MAX_WAIT
        if self._ready:
            timeout = 0.0
        elif self._timer_heap:
            due = self._timers.next_delay(clock())
            if due is not None and (timeout is None or due < timeout):
                timeout = min(due, MAX_WAIT)
        extra = self._apply() if self._dirty else None
        if self._always:
            ready = [
                (rec.fd, rec.want & _ALWAYS_READY)
                for rec in self._always.values()
                if rec.want & _ALWAYS_READY and rec.epoch != HELD
            ]
            if ready:
                timeout = 0.0
                extra = [*(extra or ()), *ready]
        self._epoch = epoch = self._epoch + 1
        batch = self._backend.wait(timeout)
        if extra:
            batch = [*batch, *extra]
        # The hot path: per event one dict lookup, two comparisons and one method call.
        # Data for a transport that is reading goes straight to its handle_read (the
        # rule of Transport._handle_events, which decides every other event).
        get = self._records.get
        for fd, mask in batch:
            rec = get(fd)
            if rec is None or rec.epoch >= epoch:
                continue
            reader = rec.reader
            if reader is not None and mask == _READ:
                try:
                    reader.handle_read()
                except _PROPAGATE:
                    raise
                except BaseException:
                    reader._report_error()
            else:
                rec.channel._handle_events(mask)
        if self._timer_heap:
            self._run_timers()
        if self._ready:
            self._run_ready()
        return len(batch)

    def _run_timers(self) -> None:
        due = self._timers.pop_due(clock() + CLOCK_RESOLUTION)
        started = 0
        try:
            for handle in due:
                if self._closed:
                    return
                started += 1
                try:
                    handle.run()
                except _PROPAGATE:
                    raise
                except BaseException:
                    self.handle_callback_error(handle)
        finally:
            # Left by an exception out of the loop (KeyboardInterrupt, or one raised by
            # handle_callback_error itself): the others run at the next pass.
            if started < len(due) and not self._closed:
                self._timers.put_back(due[started:])

    def _run_ready(self) -> None:
        ready = self._ready
        # Only what was queued before this point: a callback that queues another must
        # not keep this iteration from returning to the OS wait.  A nested poll() may
        # have run some already, and close() drops them all.  What an exception out of
        # the loop leaves stays queued for the next pass.
        count = len(ready)
        while count and ready:
            count -= 1
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
        Returns when either limit is reached, :meth:`stop` was called, the poller was
        closed by one of its callbacks, or nothing is left to wait for (no transport, no
        timer, no queued callback), as ``asyncore.loop`` does once its map is empty.

        :raises ValueError: a negative ``timeout`` or ``count``.
        :raises PollerClosedError: the poller was closed before the call.
        """
        if self._closed:
            raise PollerClosedError(self)
        timeout = _check_timeout(timeout, "loop")
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
        records, ready, timers, poll = self._records, self._ready, self._timers, self.poll
        try:
            # Until nothing could end a wait: no registered transport (the waker aside), no
            # queued callback, no timer (asyncore's loop ends once its map is empty; so
            # does this; close() drops them all).
            while (count is None or done < count) and (
                len(records) > (self._waker is not None) or ready or timers
            ):
                wait = None
                if timeout is not None:
                    wait = timeout - (clock() - start)
                    if wait <= 0:
                        if done:
                            break
                        wait = 0.0
                if self._stopping:
                    wait = 0.0
                poll(wait)
                done += 1
                if self._stopping:
                    break
        finally:
            self._stopping = False

    def stop(self) -> None:
        """Make :meth:`loop` return after the current iteration.  Safe from any thread;
        called before :meth:`loop`, it makes the next loop poll once without waiting."""
        self._stopping = True
        self.wake()

    # --- lifetime -------------------------------------------------------------------

    def _reopen_after_fork(self) -> None:
        """In a child process: take a private OS object and waker, with the same interest.

        After ``fork()`` the child shares the parent's epoll descriptor and waker sockets
        (a kqueue is not inherited at all); changing interest or waking through them would
        disturb the parent.  Dropping the child's copies leaves the parent untouched.
        """
        self._use(self._backend.after_fork())
        old_waker = self._waker
        if old_waker is not None:
            del self._records[old_waker._fileno]
            old_waker.close()
        for rec in self._records.values():
            rec.dirty = False
            rec.os = 0
            mask = 0 if rec.epoch == HELD or rec.failure is not None else rec.want & self._supported
            if mask and self._always.get(rec.fd) is not rec:
                self._os_register(rec, mask)
        self._dirty.clear()
        if old_waker is not None:
            self._waker = Waker()
            self.register(self._waker)

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
        global _open_pollers
        _open_pollers -= 1
        waker = self._waker
        if waker is not None and self.is_registered(waker):
            self.unregister(waker)
        self._records.clear()
        self._dirty.clear()
        self._always.clear()
        self._timers.clear()
        self._ready.clear()
        if waker is not None:
            waker.close()
        self._backend.close()

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
        count = len(self._records) - (self._waker is not None)
        state = "closed" if self._closed else f"{count} transports"
        return f"<{type(self).__name__} {self.name!r} {state}>"


_live_pollers: weakref.WeakSet[Poller] = weakref.WeakSet()
#: Pollers made and not closed yet (garbage collected ones included): while there is one,
#: registering needs no look at the others (len() of the WeakSet is a Python call).
_open_pollers = 0


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
