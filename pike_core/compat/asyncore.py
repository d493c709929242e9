"""The stdlib ``asyncore`` (removed in Python 3.12), on pike-core's poller backends.

The public API of Python 3.11's ``asyncore`` with its meaning: ``dispatcher``,
``dispatcher_with_send``, ``file_wrapper``/``file_dispatcher`` (POSIX), ``loop``, ``poll``,
``poll2``/``poll3``, ``read``, ``write``, ``_exception``, ``readwrite``, ``socket_map``,
``close_all``, ``ExitNow`` and ``compact_traceback``.  Code that does ``import asyncore``
gets this module on Python 3.12+ through the ``pike-asyncore-shim`` distribution
(``compat/asyncore-shim``); ``docs/migrating-from-asyncore.md`` is the user's guide.

Design note
-----------
The stdlib asks every dispatcher of the map ``readable()`` and ``writable()`` on every pass
and hands the whole set to ``select()`` or a freshly built ``poll()`` object, so a pass
costs time in proportion to *all* connections, idle or not, and ``select()`` fails for the
whole loop once one descriptor number reaches 1,024.  Here each socket map gets one
pike-core poller (chosen by pike-core's rules: ``PIKE_POLLER``, else the best backend that
runs here, epoll on Linux) that keeps every descriptor's interest between passes, and a
pass only touches what may have changed:

* A dispatcher whose ``readable``/``writable`` are the ones defined here (``dispatcher``'s
  constants, ``dispatcher_with_send.writable``) is *not* asked on every pass: those
  answers depend only on ``accepting``, ``connected`` and ``out_buffer``, which change in
  this module's own methods (``listen``, ``connect``, ``send``/``initiate_send``, the
  ``out_buffer`` and ``connected`` setters of ``dispatcher_with_send``) or in one of the
  dispatcher's own callbacks.  Such a change marks the dispatcher, and only marked ones
  are asked again before the next wait, as is each one right after an event of its own.
* A dispatcher whose class (or instance) overrides ``readable`` or ``writable`` is asked
  on every pass, as asyncore promises, since its answer may depend on anything.  This is
  the limit: the per-pass cost grows with the number of such dispatchers (one Python call
  each, and an OS call only when an answer changed), not with the idle ones of the base
  classes.  ``asynchat.async_chat`` overrides both, so 5,000 idle ``async_chat``
  connections still cost 10,000 predicate calls per pass (but no poll set rebuild).
* The poll flavour dispatches each descriptor's events as the poller reports them; the
  select flavour collects the pass first, to order it by kind.  A watched dispatcher
  holds its channel (``_pike_channel``), so marking it is an attribute read, not a
  lookup, and the module's own predicates are answered by reading what they read
  (``accepting``, ``connected``, ``out_buffer``) rather than by calling them.
* ``add_channel``/``del_channel``/``close`` update the poller directly.  A map changed
  behind their back (``map[fd] = obj``, ``del map[fd]``) is noticed by its size at the
  start of a pass, or when an event finds the map holding another object for that
  descriptor; only then is the whole map compared with the poller's set.  An entry
  replaced directly, size unchanged and without any event on it, is noticed late.

``use_poll`` picks which of asyncore's two *dispatch flavours* runs, not the OS mechanism:
``use_poll=False`` (``poll()``) gives all read events of a pass, then all write events,
then the exceptional ones (``read``/``write``/``_exception``), an error or hang-up counting
as readable and writable as ``select()`` reports them; ``use_poll=True`` (``poll2()``) gives
each descriptor's events together through ``readwrite`` (``POLLHUP``/``POLLERR``/``POLLNVAL``
reach ``handle_close``).  Either runs on the chosen backend, so ``use_poll=False`` has no
1,024-descriptor limit on Linux (unless ``PIKE_POLLER=select`` asks for one).

Where asyncore's documented behaviour and pike-core's dispatch rules differ, asyncore code
gets asyncore's: ``handle_write`` is called on every pass while ``writable()`` is True and
the socket can take data (not once per ``defer_write``); end of stream reaches
``handle_close`` only through ``recv`` returning ``b""`` (a closed peer is a read event);
``handle_connect_event`` runs on the first read or write event of a connecting socket;
``POLLPRI`` (out-of-band data) reaches ``handle_expt_event``; errors go to
``handle_error``, whose default logs a ``compact_traceback`` line through ``log_info`` and
calls ``handle_close``; ``loop``'s ``timeout`` bounds each poll call, not the whole loop.
pike-core's rules hold where asyncore did not say or was wrong:

* An event for a descriptor whose dispatcher closed earlier in the same pass, or whose
  number a new dispatcher took since, is dropped instead of reaching the newcomer.
* A change of interest made from another thread (a ``send`` of ``dispatcher_with_send``)
  wakes the wait, which the stdlib left blocked until its timeout ran out.
* A descriptor the backend cannot watch (``PIKE_POLLER=select`` beyond ``FD_SETSIZE``)
  fails that one dispatcher through its ``handle_error``, where ``select()`` failed the
  whole loop.  A regular file, which epoll refuses, is always ready on every backend, as
  ``select()`` and ``poll()`` say.
* Out-of-band data (``POLLPRI``) is reported by backends that declare the ``PRIORITY``
  event in ``Backend.supported`` (select, poll, epoll, iocp); on the others it is not.  The
  ``poll2`` flavour's ``POLLHUP`` (a hang-up closes after the first read, data left
  unread or not) comes from backends with the ``hangup`` capability (select where
  Python has ``poll()``, poll, epoll); on the others a hang-up is read to its end.

Imported as ``asyncore`` (through the shim), its classes carry that module name, so
``repr()`` of a dispatcher and the log lines that show one say ``asyncore.dispatcher``.
"""

from __future__ import annotations

import atexit
import contextlib
import operator
import os
import select
import socket
import sys
import threading
import warnings
from errno import (
    EAGAIN,
    EALREADY,
    EBADF,
    ECONNABORTED,
    ECONNRESET,
    EINPROGRESS,
    EINVAL,
    EISCONN,
    ENOTCONN,
    EPIPE,
    ESHUTDOWN,
    EWOULDBLOCK,
    errorcode,
)
from typing import Any, Dict, Final, List, Optional, Tuple

from pike_core import events
from pike_core.discovery import new_poller
from pike_core.errors import RegistrationError
from pike_core.interest import Interest

__all__ = [
    "ExitNow",
    "close_all",
    "compact_traceback",
    "dispatcher",
    "dispatcher_with_send",
    "loop",
    "poll",
    "poll2",
    "poll3",
    "read",
    "readwrite",
    "socket_map",
    "write",
]

#: Every dispatcher's home unless it was given a ``map``: descriptor -> dispatcher.
socket_map: Dict[int, Any] = {}

_DISCONNECTED: Final = frozenset({ECONNRESET, ENOTCONN, ESHUTDOWN, ECONNABORTED, EPIPE, EBADF})

# asyncore's POLL* names; on a platform without select.poll they take the Linux values,
# which are also pike-core's event bits.
POLLIN: Final[int] = getattr(select, "POLLIN", events.READ)
POLLPRI: Final[int] = getattr(select, "POLLPRI", 0x002)
POLLOUT: Final[int] = getattr(select, "POLLOUT", events.WRITE)
POLLERR: Final[int] = getattr(select, "POLLERR", events.ERROR)
POLLHUP: Final[int] = getattr(select, "POLLHUP", events.HANGUP)
POLLNVAL: Final[int] = getattr(select, "POLLNVAL", events.INVALID)

_GONE: Final = events.UNASKED
_TO_POLL: Final = (
    (events.READ, POLLIN),
    (events.PRIORITY, POLLPRI),
    (events.WRITE, POLLOUT),
    (events.ERROR, POLLERR),
    (events.HANGUP, POLLHUP),
    (events.INVALID, POLLNVAL),
)
_POLL_IS_PIKE: Final = all(ours == theirs for ours, theirs in _TO_POLL)


def _strerror(err: int) -> str:
    try:
        return os.strerror(err)
    except (ValueError, OverflowError):
        return errorcode.get(err, f"Unknown error {err}")


class ExitNow(Exception):
    """Raised by a handler to leave :func:`loop`: it is not given to ``handle_error``."""


_reraised_exceptions: Final = (ExitNow, KeyboardInterrupt, SystemExit)


def _guarded(obj: Any, handler: str) -> None:
    try:
        getattr(obj, handler)()
    except _reraised_exceptions:
        raise
    except BaseException:
        obj.handle_error()


def read(obj: Any) -> None:
    """Call ``obj.handle_read_event()``, sending what it raises to ``handle_error``."""
    _guarded(obj, "handle_read_event")


def write(obj: Any) -> None:
    """Call ``obj.handle_write_event()``, sending what it raises to ``handle_error``."""
    _guarded(obj, "handle_write_event")


def _exception(obj: Any) -> None:
    """Call ``obj.handle_expt_event()``, sending what it raises to ``handle_error``."""
    _guarded(obj, "handle_expt_event")


def readwrite(obj: Any, flags: int) -> None:
    """Dispatch one descriptor's ``poll()`` flags: read, write, priority, then close on
    ``POLLHUP``/``POLLERR``/``POLLNVAL``.  An ``OSError`` meaning the peer is gone goes to
    ``handle_close``, anything else to ``handle_error``."""
    try:
        if flags & POLLIN:
            obj.handle_read_event()
        if flags & POLLOUT:
            obj.handle_write_event()
        if flags & POLLPRI:
            obj.handle_expt_event()
        if flags & (POLLHUP | POLLERR | POLLNVAL):
            obj.handle_close()
    except OSError as exc:
        if exc.errno in _DISCONNECTED:
            obj.handle_close()
        else:
            obj.handle_error()
    except _reraised_exceptions:
        raise
    except BaseException:
        obj.handle_error()


def _poll_flags(mask: int) -> int:
    if _POLL_IS_PIKE:
        return mask
    return sum(theirs for ours, theirs in _TO_POLL if mask & ours)


# --- one pike-core poller per socket map --------------------------------------------


#: How a channel's interest is found (``_Channel.known``): by asking its dispatcher on
#: every pass; or, for the predicates of this module, by reading what they read.
_ASKED: Final = 0
_ALWAYS_WRITABLE: Final = 1
_WRITABLE_WHILE_SENDING: Final = 2
_READ_PRI: Final = events.READ | events.PRIORITY
_READ_PRI_WRITE: Final = _READ_PRI | events.WRITE


class _Channel:
    """What a map's pike-core poller holds for one descriptor of the map."""

    __slots__ = ("_fileno", "_rec", "dirty", "interest", "known", "obj", "owner")

    def __init__(self, owner: _MapWatch, fd: int, obj: Any, known: int) -> None:
        self.owner = owner
        self._fileno = fd
        self._rec: Optional[Interest] = None
        self.obj = obj
        self.known = known
        self.interest = 0
        self.dirty = False

    def _wanted(self) -> int:
        return self.interest

    def _handle_events(self, mask: int) -> None:
        owner = self.owner
        if owner.by_kind:
            # Collected, not dispatched: asyncore's select flavour orders a whole pass's
            # events by kind (all reads, then all writes), which needs the pass complete.
            owner.batch.append((self, mask))
            return
        # The poll flavour: each descriptor's events together, as the poller reports
        # them (the poller drops those of a channel unregistered earlier in the batch).
        wanted = mask & (self.interest | _GONE)
        if not wanted:
            return
        obj = self.obj
        if owner.map.get(self._fileno) is not obj:
            owner.stale = True
            return
        if self.known and not self.dirty:
            # Asked again before the next wait, as after every event of its own.
            self.dirty = True
            owner.pending.append(self)
        readwrite(obj, wanted if _POLL_IS_PIKE else _poll_flags(wanted))

    def close(self) -> None:
        """Called when the map's poller closes; the socket is the dispatcher's, not ours."""


class _MapWatch:
    """The pike-core poller of one socket map and the interest it holds per descriptor."""

    def __init__(self, socket_map: Dict[int, Any]) -> None:
        self.map = socket_map
        self.poller = new_poller()
        self.channels: Dict[int, _Channel] = {}
        # Dispatchers whose readable()/writable() are not ours, asked on every pass.
        self.asked: Dict[int, _Channel] = {}
        # Dispatchers whose answers may have changed since they were last asked.
        self.pending: List[_Channel] = []
        self.batch: List[Tuple[_Channel, int]] = []
        # Whether the current wait collects its events for the select flavour.
        self.by_kind = False
        self.stale = True
        self.loop_thread = threading.get_ident()

    def sync(self) -> None:
        """Bring the poller's set in line with a map that was changed directly."""
        self.stale = False
        current = self.map
        for fd, channel in list(self.channels.items()):
            if current.get(fd) is not channel.obj:
                self.forget(fd)
        for fd, obj in list(current.items()):
            if fd not in self.channels:
                self.added(fd, obj)

    def added(self, fd: int, obj: Any) -> None:
        old = self.channels.get(fd)
        if old is not None:
            if old.obj is obj:
                return
            self.forget(fd)
        channel = _Channel(self, fd, obj, _predicates_are_ours(obj))
        self.channels[fd] = channel
        if isinstance(obj, dispatcher) and getattr(obj, "_map", None) is self.map:
            # Its setters reach the channel of its own map without a lookup (see
            # _interest_changed, which looks there).
            obj._pike_channel = channel
        if channel.known:
            # Asked before the next wait, not now: add_channel runs inside __init__,
            # before a subclass has set what its predicates read.
            self.changed(channel)
        else:
            self.asked[fd] = channel

    def forget(self, fd: int) -> None:
        channel = self.channels.pop(fd, None)
        if channel is None:
            return
        self.asked.pop(fd, None)
        obj = channel.obj
        if isinstance(obj, dispatcher) and obj._pike_channel is channel:
            obj._pike_channel = None
        if channel._rec is not None:
            self.poller.unregister(channel)

    def changed(self, channel: _Channel) -> None:
        if channel.known and not channel.dirty:
            channel.dirty = True
            self.pending.append(channel)
            if threading.get_ident() != self.loop_thread:
                # asyncore code often sends from another thread; the stdlib left that
                # data waiting until the poll timeout ran out.
                self.poller.wake()

    def is_current(self, channel: _Channel) -> bool:
        fd = channel._fileno
        if self.channels.get(fd) is not channel:
            return False
        if self.map.get(fd) is not channel.obj:
            self.stale = True
            return False
        return True

    def run(self, timeout: Optional[float], by_kind: bool) -> List[Tuple[_Channel, int]]:
        """One pass: ask the dispatchers whose answers may differ from the poller's
        interest, then wait for events, dispatched as they come in the poll flavour,
        returned as a batch for the select flavour (``by_kind``)."""
        self.loop_thread = threading.get_ident()
        channels = self.channels
        if self.stale or len(self.map) != len(channels):
            self.sync()
        if self.asked:
            for channel in list(self.asked.values()):
                if channels.get(channel._fileno) is channel:
                    obj = channel.obj
                    # PRIORITY is dropped by the poller where the backend cannot report it.
                    interest = _READ_PRI if obj.readable() else 0
                    # asyncore never watches a listening socket for writing.
                    if obj.writable() and not obj.accepting:
                        interest |= events.WRITE
                    if interest != channel.interest:
                        self.set_interest(channel, interest)
        # Popped from the one list, never swapped for a new one: a change marked from
        # another thread while this runs is either seen now or left for the next pass.
        pending = self.pending
        while pending:
            channel = pending.pop()
            channel.dirty = False
            if channels.get(channel._fileno) is channel:
                # This module's predicates, answered from what they read: readable() is
                # True; writable() is True, or dispatcher_with_send's.
                obj = channel.obj
                if obj.accepting or (
                    channel.known == _WRITABLE_WHILE_SENDING and obj.connected and len(obj.out_buffer) == 0
                ):
                    interest = _READ_PRI
                else:
                    interest = _READ_PRI_WRITE
                if interest != channel.interest:
                    self.set_interest(channel, interest)
        # Restored after: a handler may run a pass of the other flavour inside this one.
        outer = self.by_kind
        self.by_kind = by_kind
        try:
            self.poller.poll(timeout)
        finally:
            self.by_kind = outer
        batch, self.batch = self.batch, []
        return batch

    def set_interest(self, channel: _Channel, interest: int) -> None:
        try:
            self._watch(channel, interest)
        except (RegistrationError, OSError):
            # Only this dispatcher fails (select() failed the whole loop), the asyncore way.
            channel.obj.handle_error()

    def _watch(self, channel: _Channel, interest: int) -> None:
        channel.interest = interest
        rec = channel._rec
        if rec is None:
            # Registered with the poller (and the OS) only once it wants something.
            if interest:
                self.poller.register(channel)
        else:
            rec.want = interest
            self.poller._changed(rec)

    def close(self) -> None:
        self.poller.close()


# Keyed by id(): a map is a plain dict, which cannot be weakly referenced; the watch holds
# the map, so the id stays unique, and is dropped when a pass finds the map empty.
_watches: Dict[int, _MapWatch] = {}
#: The class attribute caching :func:`_predicates_are_ours`'s verdict on a class.
_KNOWN: Final = "_pike_asyncore_predicates"


def _predicates_are_ours(obj: Any) -> int:
    """How ``obj``'s interest is found: ``_ASKED`` unless its ``readable`` and
    ``writable`` are this module's, else which ``writable`` it has."""
    cls = type(obj)
    # Kept in the class's own namespace (not inherited: a subclass is judged apart), so
    # that a new connection costs one dictionary lookup here.
    known: Optional[int] = cls.__dict__.get(_KNOWN)
    if known is None:
        known = _ASKED
        if getattr(cls, "readable", None) is dispatcher.readable:
            writable = getattr(cls, "writable", None)
            if writable is dispatcher.writable:
                known = _ALWAYS_WRITABLE
            elif writable is dispatcher_with_send.writable:
                known = _WRITABLE_WHILE_SENDING
        with contextlib.suppress(TypeError, AttributeError):
            setattr(cls, _KNOWN, known)
    own = getattr(obj, "__dict__", None)
    if own and ("readable" in own or "writable" in own):
        return _ASKED
    return known


def _drop_watch(map: Dict[int, Any]) -> None:  # noqa: A002
    watch = _watches.pop(id(map), None)
    if watch is not None:
        watch.close()


def _drop_every_watch() -> None:
    # At interpreter exit: a map's poller holds a wake-up socket pair, which the
    # interpreter's teardown would report as ResourceWarnings.  The dispatchers' sockets
    # are theirs (the stdlib's asyncore left them open too); a later pass starts afresh.
    while _watches:
        _, watch = _watches.popitem()
        watch.close()


atexit.register(_drop_every_watch)


def _pass(timeout: Optional[float], map: Optional[Dict[int, Any]], select_flavour: bool) -> None:  # noqa: A002
    if map is None:
        map = socket_map  # noqa: A001
    if not map:
        _drop_watch(map)
        return
    watch = _watches.get(id(map))
    if watch is None:
        watch = _watches[id(map)] = _MapWatch(map)
    batch = watch.run(timeout, select_flavour)
    if batch:
        _dispatch_by_kind(watch, batch)


def _dispatch_by_kind(watch: _MapWatch, batch: List[Tuple[_Channel, int]]) -> None:
    reads: List[_Channel] = []
    writes: List[_Channel] = []
    urgent: List[_Channel] = []
    for channel, mask in batch:
        interest = channel.interest
        # select() reports a socket in error or hung up as readable and writable.
        if mask & (events.READ | _GONE) and interest & events.READ:
            reads.append(channel)
        if mask & (events.WRITE | _GONE) and interest & events.WRITE:
            writes.append(channel)
        if mask & events.PRIORITY and interest & events.PRIORITY:
            urgent.append(channel)
    for channels, handler in ((reads, read), (writes, write), (urgent, _exception)):
        for channel in channels:
            if watch.is_current(channel):
                watch.changed(channel)
                handler(channel.obj)


def _interest_changed(obj: Any) -> None:
    """Have ``obj``'s readable()/writable() asked again before the next wait."""
    channel = obj._pike_channel
    if channel is not None:
        # Marked already while it is being dispatched: the common case, kept short.
        if not channel.dirty:
            channel.owner.changed(channel)
        return
    watch = _watches.get(id(obj._map))
    if watch is not None:
        channel = watch.channels.get(obj._fileno)
        if channel is not None and channel.obj is obj:
            watch.changed(channel)


def poll(timeout: Optional[float] = 0.0, map: Optional[Dict[int, Any]] = None) -> None:  # noqa: A002
    """One pass of the select flavour: wait up to ``timeout`` seconds (None: no limit),
    then every read event, every write event, every exceptional one."""
    _pass(timeout, map, select_flavour=True)


def poll2(timeout: Optional[float] = 0.0, map: Optional[Dict[int, Any]] = None) -> None:  # noqa: A002
    """One pass of the poll flavour: wait up to ``timeout`` seconds (None or negative: no
    limit), then each descriptor's events through :func:`readwrite`."""
    if timeout is not None and timeout < 0:
        timeout = None
    _pass(timeout, map, select_flavour=False)


poll3 = poll2


def loop(
    timeout: Optional[float] = 30.0,
    use_poll: bool = False,
    map: Optional[Dict[int, Any]] = None,  # noqa: A002
    count: Optional[int] = None,
) -> None:
    """Run passes until the map is empty, or ``count`` passes have run.

    :param timeout: the most seconds *each* pass waits (asyncore's meaning).
    :param use_poll: the dispatch flavour of :func:`poll2` instead of :func:`poll`
        (where ``select.poll`` exists, as in asyncore); the OS mechanism is pike-core's
        choice either way.
    """
    if map is None:
        map = socket_map  # noqa: A001
    poll_fun = poll2 if use_poll and hasattr(select, "poll") else poll
    if count is None:
        while map:
            poll_fun(timeout, map)
    else:
        while map and count > 0:
            poll_fun(timeout, map)
            count -= 1
    if not map:
        # The map's poller holds descriptors; a private map may never be polled again.
        _drop_watch(map)


class dispatcher:
    """A non-blocking socket and the ``handle_*`` callbacks of its events."""

    debug = False
    connected = False
    accepting = False
    connecting = False
    closing = False
    addr: Any = None
    # The channel of the map's poller watching it, while one does (set by the watch).
    _pike_channel: Optional[_Channel] = None
    ignore_log_types: frozenset[str] = frozenset({"warning"})

    def __init__(self, sock: Optional[socket.socket] = None, map: Optional[Dict[int, Any]] = None) -> None:  # noqa: A002
        self._map: Dict[int, Any] = socket_map if map is None else map
        # None when the dispatcher has no socket (asyncore puts even that in the map).
        self._fileno: Any = None
        self.socket: Any
        if not sock:
            self.socket = None
            return
        # The socket may come from a blocking source (accept() of a blocking listener).
        sock.setblocking(False)
        self.set_socket(sock, map)
        self.connected = True
        try:
            self.addr = sock.getpeername()
        except OSError as exc:
            if exc.errno not in (ENOTCONN, EINVAL):
                # Broken in some unknown way: leave the map rather than be polled forever.
                self.del_channel(map)
                raise
            self.connected = False

    def __repr__(self) -> str:
        status = [f"{type(self).__module__}.{type(self).__qualname__}"]
        if self.accepting and self.addr:
            status.append("listening")
        elif self.connected:
            status.append("connected")
        if self.addr is not None:
            try:
                status.append("%s:%d" % self.addr)  # noqa: UP031 - asyncore's exact format
            except TypeError:
                status.append(repr(self.addr))
        return f"<{' '.join(status)} at {id(self):#x}>"

    # --- the map ----------------------------------------------------------------------

    def add_channel(self, map: Optional[Dict[int, Any]] = None) -> None:  # noqa: A002
        if map is None:
            map = self._map  # noqa: A001
        fd = self._fileno
        map[fd] = self
        watch = _watches.get(id(map))
        if watch is not None and fd is not None:
            watch.added(fd, self)

    def del_channel(self, map: Optional[Dict[int, Any]] = None) -> None:  # noqa: A002
        fd = self._fileno
        if map is None:
            map = self._map  # noqa: A001
        if fd in map:
            del map[fd]
            watch = _watches.get(id(map))
            if watch is not None and fd is not None:
                watch.forget(fd)
        self._fileno = None

    # --- the socket -------------------------------------------------------------------

    def create_socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> None:  # noqa: A002
        self.family_and_type = family, type
        sock = socket.socket(family, type)
        sock.setblocking(False)
        self.set_socket(sock)

    def set_socket(self, sock: Any, map: Optional[Dict[int, Any]] = None) -> None:  # noqa: A002
        self.socket = sock
        self._fileno = sock.fileno()
        self.add_channel(map)

    def set_reuse_addr(self) -> None:
        """Set ``SO_REUSEADDR`` if the socket allows it (errors are ignored, as asyncore)."""
        try:
            sock = self.socket
            sock.setsockopt(
                socket.SOL_SOCKET,
                socket.SO_REUSEADDR,
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) | 1,
            )
        except OSError:
            pass

    def readable(self) -> bool:
        """Whether to watch for reading; asked on every pass when overridden."""
        return True

    def writable(self) -> bool:
        """Whether to watch for writing; asked on every pass when overridden."""
        return True

    def listen(self, num: int) -> None:
        self.accepting = True
        _interest_changed(self)
        if os.name == "nt" and num > 5:
            num = 5
        self.socket.listen(num)

    def bind(self, addr: Any) -> None:
        self.addr = addr
        self.socket.bind(addr)

    def connect(self, address: Any) -> None:
        self.connected = False
        self.connecting = True
        _interest_changed(self)
        err = self.socket.connect_ex(address)
        if err in (EINPROGRESS, EALREADY, EWOULDBLOCK) or (err == EINVAL and os.name == "nt"):
            self.addr = address
            return
        if err in (0, EISCONN):
            self.addr = address
            self.handle_connect_event()
            return
        raise OSError(err, errorcode.get(err, _strerror(err)))

    def accept(self) -> Optional[Tuple[socket.socket, Any]]:
        """One pending connection, or None when there is none."""
        try:
            conn, addr = self.socket.accept()
        except TypeError:
            # asyncore's own quirk, kept: a socket whose accept() returned None.
            return None
        except OSError as exc:
            if exc.errno in (EWOULDBLOCK, ECONNABORTED, EAGAIN):
                return None
            raise
        return conn, addr

    def send(self, data: Any) -> int:
        """Send what the socket takes now: the byte count, 0 when it would block, or 0
        after ``handle_close`` when the peer is gone."""
        try:
            sent: int = self.socket.send(data)
        except OSError as exc:
            if exc.errno == EWOULDBLOCK:
                return 0
            if exc.errno in _DISCONNECTED:
                self.handle_close()
                return 0
            raise
        return sent

    def recv(self, buffer_size: int) -> bytes:
        """At most ``buffer_size`` bytes; ``b""`` after ``handle_close`` at end of stream
        or when the peer is gone."""
        try:
            data: bytes = self.socket.recv(buffer_size)
        except OSError as exc:
            if exc.errno in _DISCONNECTED:
                self.handle_close()
                return b""
            raise
        if not data:
            self.handle_close()
            return b""
        return data

    def close(self) -> None:
        self.connected = False
        self.accepting = False
        self.connecting = False
        self.del_channel()
        if self.socket is not None:
            try:
                self.socket.close()
            except OSError as exc:
                if exc.errno not in (ENOTCONN, EBADF):
                    raise

    # --- logging ----------------------------------------------------------------------

    def log(self, message: Any) -> None:
        """'Hit' logging: ``log: message`` on stderr."""
        sys.stderr.write(f"log: {message}\n")

    def log_info(self, message: str, type: str = "info") -> None:  # noqa: A002
        """Informational, warning and error logging: ``type: message`` on stdout, unless
        ``type`` is in ``ignore_log_types``."""
        if type not in self.ignore_log_types:
            print(f"{type}: {message}")

    # --- events -----------------------------------------------------------------------

    def handle_read_event(self) -> None:
        if self.accepting:
            # A listening socket is never connected: it accepts sockets that are.
            self.handle_accept()
        elif not self.connected:
            if self.connecting:
                self.handle_connect_event()
            self.handle_read()
        else:
            self.handle_read()

    def handle_connect_event(self) -> None:
        err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            raise OSError(err, _strerror(err))
        self.handle_connect()
        self.connected = True
        self.connecting = False

    def handle_write_event(self) -> None:
        if self.accepting:
            # A write event on a listening socket means nothing; asyncore ignores it.
            return
        if not self.connected and self.connecting:
            self.handle_connect_event()
        self.handle_write()

    def handle_expt_event(self) -> None:
        # Urgent data, or (select() on Windows) a failed connect: SO_ERROR tells them apart.
        err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            self.handle_close()
        else:
            self.handle_expt()

    def handle_error(self) -> None:
        """Called inside ``except``: logs the compact traceback and closes."""
        _, t, v, tbinfo = compact_traceback()
        # A user's __repr__ may be what is broken.
        try:
            self_repr = repr(self)
        except BaseException:
            self_repr = f"<__repr__(self) failed for object at {id(self):0x}>"
        self.log_info(f"uncaptured python exception, closing channel {self_repr} ({t}:{v} {tbinfo})", "error")
        self.handle_close()

    def handle_expt(self) -> None:
        self.log_info("unhandled incoming priority event", "warning")

    def handle_read(self) -> None:
        self.log_info("unhandled read event", "warning")

    def handle_write(self) -> None:
        self.log_info("unhandled write event", "warning")

    def handle_connect(self) -> None:
        self.log_info("unhandled connect event", "warning")

    def handle_accept(self) -> None:
        pair = self.accept()
        if pair is not None:
            self.handle_accepted(*pair)

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        sock.close()
        self.log_info("unhandled accepted event", "warning")

    def handle_close(self) -> None:
        self.log_info("unhandled close event", "warning")
        self.close()


class dispatcher_with_send(dispatcher):
    """A dispatcher whose :meth:`send` buffers what the socket cannot take yet."""

    def __init__(self, sock: Optional[socket.socket] = None, map: Optional[Dict[int, Any]] = None) -> None:  # noqa: A002
        dispatcher.__init__(self, sock, map)
        self.out_buffer = b""

    _out_buffer = b""
    _connected = False

    def _set_out_buffer(self, value: bytes) -> None:
        self._out_buffer = value
        _interest_changed(self)

    def _set_connected(self, value: bool) -> None:
        self._connected = value
        _interest_changed(self)

    # writable() reads these two: their setters tell the poller its answer may change.
    # The getters are C (attrgetter): a send reads out_buffer three times.
    out_buffer = property(operator.attrgetter("_out_buffer"), _set_out_buffer)
    connected = property(operator.attrgetter("_connected"), _set_connected)

    def initiate_send(self) -> None:
        num_sent = dispatcher.send(self, self.out_buffer[:65536])
        self.out_buffer = self.out_buffer[num_sent:]

    def handle_write(self) -> None:
        self.initiate_send()

    def writable(self) -> bool:
        return (not self.connected) or len(self.out_buffer) > 0

    def send(self, data: Any) -> None:  # type: ignore[override] # asyncore's returns None
        """Buffer ``data`` and send what the socket takes now."""
        if self.debug:
            self.log_info(f"sending {data!r}")
        self.out_buffer = self.out_buffer + data
        self.initiate_send()


def compact_traceback() -> Tuple[Tuple[str, str, str], Any, Any, str]:
    """For the exception being handled: ``((file, function, line), type, value, info)``
    with ``info`` as ``[file|function|line]`` for every frame, innermost last.

    :raises AssertionError: no exception is being handled.
    """
    t, v, tb = sys.exc_info()
    if tb is None:
        raise AssertionError("traceback does not exist")
    frames: List[Tuple[str, str, str]] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, code.co_name, str(tb.tb_lineno)))
        tb = tb.tb_next
    info = " ".join(f"[{file}|{function}|{line}]" for file, function, line in frames)
    return frames[-1], t, v, info


def close_all(map: Optional[Dict[int, Any]] = None, ignore_all: bool = False) -> None:  # noqa: A002
    """Close every dispatcher of ``map`` and empty it; errors other than EBADF propagate
    unless ``ignore_all``."""
    if map is None:
        map = socket_map  # noqa: A001
    for obj in list(map.values()):
        try:
            obj.close()
        except OSError as exc:
            if exc.errno != EBADF and not ignore_all:
                raise
        except _reraised_exceptions:
            raise
        except BaseException:
            if not ignore_all:
                raise
    map.clear()
    _drop_watch(map)


if os.name == "posix":

    class file_wrapper:
        """Just enough of a socket around a file descriptor (a ``dup`` of it) for asyncore."""

        def __init__(self, fd: int) -> None:
            self.fd = os.dup(fd)

        def __del__(self) -> None:
            if self.fd >= 0:
                warnings.warn(f"unclosed file {self!r}", ResourceWarning, source=self, stacklevel=1)
            self.close()

        def recv(self, *args: Any) -> bytes:
            return os.read(self.fd, *args)

        def send(self, *args: Any) -> int:
            return os.write(self.fd, *args)

        def getsockopt(self, level: int, optname: int, buflen: Optional[int] = None) -> int:
            if level == socket.SOL_SOCKET and optname == socket.SO_ERROR and not buflen:
                return 0
            raise NotImplementedError("Only asyncore specific behaviour implemented.")

        read = recv
        write = send

        def close(self) -> None:
            if self.fd < 0:
                return
            fd, self.fd = self.fd, -1
            os.close(fd)

        def fileno(self) -> int:
            return self.fd

    class file_dispatcher(dispatcher):
        """A dispatcher on a pipe or terminal descriptor (or an object with ``fileno()``)."""

        def __init__(self, fd: Any, map: Optional[Dict[int, Any]] = None) -> None:  # noqa: A002
            dispatcher.__init__(self, None, map)
            self.connected = True
            with contextlib.suppress(AttributeError):
                fd = fd.fileno()
            self.set_file(fd)
            os.set_blocking(fd, False)

        def set_file(self, fd: int) -> None:
            self.socket = file_wrapper(fd)
            self._fileno = self.socket.fileno()
            self.add_channel()

    __all__ += ["file_dispatcher", "file_wrapper"]


def _imported_as(name: str) -> None:
    """Give this module's classes the module name ``name``: the pike-asyncore-shim calls
    it with ``"asyncore"`` when ``import asyncore`` gives this module, so that ``repr()``
    of a dispatcher, and the log lines that show one, say ``asyncore.dispatcher`` as the
    stdlib's did."""
    for public in __all__:
        value = globals()[public]
        if isinstance(value, type):
            value.__module__ = name
