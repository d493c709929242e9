"""Transport: one non-blocking socket and the callbacks its events turn into.

The API and meaning are those of the original ``pike.transport.Transport`` (an
``asyncore.dispatcher`` look-alike), with its defects fixed: end of stream always reaches
``handle_close``; a connect counts as done only once ``SO_ERROR`` says it succeeded; a
failed connect is reported and its transport closed, never left registered.
"""

from __future__ import annotations

import _socket
import errno
import logging
import os
import socket
import sys
import threading
from typing import Any, Callable, Final, NoReturn, Optional, Tuple, Union, cast

from . import events
from .discovery import default_poller
from .errors import CapacityError, RegistrationError, WriteBufferFullError
from .interest import HELD, Interest
from .poller import Poller
from .state import State
from .timers import TimerHandle

logger = logging.getLogger("pike_core")

_PROPAGATE = (KeyboardInterrupt, SystemExit)
_WINDOWS: Final = sys.platform == "win32"
#: What ``connect_ex`` returns for a connect made at once or in progress: the verdict
#: comes as a write event.  On Windows EWOULDBLOCK means "in progress"...
_CONNECT_PENDING: Final = frozenset(
    {0, errno.EISCONN, errno.EINPROGRESS, errno.EALREADY, *([errno.EWOULDBLOCK] if _WINDOWS else [])}
)
#: ...elsewhere EAGAIN means that nothing was started: an AF_UNIX listener's backlog is
#: full (a TCP connect waits in the kernel instead), so it is tried again later.
_CONNECT_RETRY: Final = frozenset() if _WINDOWS else frozenset({errno.EAGAIN})
# Errors that mean the peer (or the path to it) is gone: reported as end of stream.
_DISCONNECTED = frozenset(
    {
        errno.ECONNRESET,
        errno.ENOTCONN,
        errno.ESHUTDOWN,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETRESET,
        errno.ENETUNREACH,
    }
)
#: ``recv`` never asks the OS for more than this at once (a larger request would only
#: allocate a buffer the kernel cannot fill); it may return fewer bytes in any case.
MAX_RECV = 1 << 20
#: Larger ``recv`` sizes are read into a reused buffer and copied out.  ``socket.recv(n)``
#: allocates n bytes and shrinks them to what arrived; above some 128 KiB glibc hands the
#: rest back to the OS and the next call faults fresh pages in, so ``recv(256 KiB)`` of a
#: 1 KiB message costs 22 µs instead of 3 (3.4 through the buffer).
DIRECT_RECV = 1 << 16
_ACCEPTS_PER_EVENT = 32
# Module globals: one dictionary lookup each on the per-event path.
_READ: Final = events.READ
_WRITE: Final = events.WRITE
_READ_LIKE: Final = events.READ_LIKE
_UNASKED: Final = events.UNASKED
_INVALID: Final = events.INVALID
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Seconds accepting pauses after the first EMFILE (doubling while it lasts), and at most.
MIN_ACCEPT_BACKOFF = 0.05
MAX_ACCEPT_BACKOFF = 1.0
#: Seconds before an AF_UNIX connect that met a full backlog is tried again (doubling
#: while it lasts), and at most.
MIN_CONNECT_BACKOFF = 0.001
MAX_CONNECT_BACKOFF = 0.1

Address = Any


# socket.socket's family and type properties make an IntEnum at each read; the C
# members underneath give the plain ints a new socket object needs.
def _raw_member(name: str) -> Callable[[socket.socket], int]:
    return cast(Callable[[socket.socket], int], getattr(_socket.socket, name).__get__)


_FAMILY: Final = _raw_member("family")
_TYPE: Final = _raw_member("type")
_PROTO: Final = _raw_member("proto")
#: ``Transport.addr`` of an accepted connection until someone reads it.
_ASK_SOCKET: Final = object()
#: What :meth:`Transport.send` takes.
Buffer = Union[bytes, bytearray, memoryview]


_per_thread = threading.local()


def _recv_copied(sock: socket.socket, size: int) -> bytes:
    """``sock.recv(size)`` for a large ``size`` (see :data:`DIRECT_RECV`), through this
    thread's buffer: a poller's transports all run on its thread."""
    try:
        buffer: memoryview = _per_thread.recv_buffer
    except AttributeError:
        buffer = _per_thread.recv_buffer = memoryview(bytearray(MAX_RECV))
    return buffer[: sock.recv_into(buffer, size)].tobytes()


class AcceptedSocket(socket.socket):
    """The socket :meth:`Transport.accept` returns: a plain ``socket.socket`` whose class
    records that it came connected from ``accept()``, so a Transport adopting it needs no
    system call to learn that."""

    __slots__ = ()


class Transport:
    """An ``asyncore.dispatcher``-like owner of one non-blocking socket.

    Subclasses override the ``handle_*`` callbacks.  Write notifications are off by
    default: call :meth:`send` when there is data, and a would-block ``send`` arms
    exactly one ``handle_write``; ``poller.defer_write(transport)`` asks for one
    explicitly.  What an event means depends on the transport's :attr:`state`.

    :param alternate_poller: the poller to register with instead of the process default
        (:func:`pike_core.default_poller`).
    :param sock: a socket to adopt, in the state it is in: connected, listening,
        datagram (bound, connected or neither) or not yet connected.
    :raises TypeError: ``sock`` is not a socket.
    :raises RegistrationError: the poller cannot take the socket (see :meth:`set_socket`).
    """

    __slots__ = (
        "__dict__",
        "__weakref__",
        "_accept_held",
        "_addr",
        "_backoff",
        "_broken",
        "_close_notified",
        "_close_when_flushed",
        "_drain_wanted",
        "_fileno",
        "_read_paused",
        "_reading",
        "_rec",
        "_shutdown_pending",
        "_state",
        "_timer",
        "_wbuf",
        "_write_requested",
        "_write_shut",
        "family_and_type",
        "poller",
        "socket",
    )

    def __init__(
        self, alternate_poller: Optional[Poller] = None, sock: Optional[socket.socket] = None
    ) -> None:
        if alternate_poller is None:
            alternate_poller = default_poller()
        elif not isinstance(alternate_poller, Poller):
            raise TypeError(f"alternate_poller must be a pike_core Poller, got {alternate_poller!r}")
        self.poller: Poller = alternate_poller
        self.socket: Optional[socket.socket] = None
        self.family_and_type: Optional[Tuple[int, int]] = None
        self._fileno = -1
        self._rec: Optional[Interest] = None
        self._state = _IDLE
        self._reading = False
        self._read_paused = False
        self._accept_held = False
        # The one timer a transport may wait on: a connect retry or accepting again.
        self._timer: Optional[TimerHandle] = None
        self._backoff = 0.0
        self._reset_flags()
        if sock is not None:
            self.set_socket(sock)

    def _reset_flags(self) -> None:
        """Forget everything of a previous socket's life."""
        self._addr: Address = None
        self._close_notified = False
        self._broken = False
        self._write_requested = False
        self._write_shut = False
        self._shutdown_pending: Optional[int] = None
        # Made by the first write() that has to keep bytes: most connections never do.
        self._wbuf: Optional[bytearray] = None
        self._drain_wanted = False
        self._close_when_flushed = False

    @property
    def state(self) -> State:
        """What the transport is doing with its socket (see :class:`~pike_core.State`)."""
        return self._state

    @property
    def connected(self) -> bool:
        """Whether a stream connection was established (and not closed since)."""
        return self._state is _CONNECTED or self._state is _END_OF_STREAM

    @property
    def connecting(self) -> bool:
        """Whether a ``connect()`` awaits its verdict."""
        return self._state is _CONNECTING

    @property
    def accepting(self) -> bool:
        """Whether the socket is listening."""
        return self._state is _LISTENING

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._state is _CLOSED

    @property
    def addr(self) -> Address:
        """The peer's address once connecting or connected, the bound address of a
        listener, else None.  For a socket from :meth:`accept` it is asked of the socket
        when first read, and None if the connection was reset before that."""
        addr = self._addr
        if addr is _ASK_SOCKET:
            sock = self.socket
            try:
                addr = sock.getpeername() if sock is not None else None
            except OSError:
                addr = None
            self._addr = addr
        return addr

    @addr.setter
    def addr(self, value: Address) -> None:
        self._addr = value

    # --- the state and what the poller watches ----------------------------------------

    def _enter(self, state: State) -> None:
        self._state = state
        self._update_interest()

    def _update_interest(self) -> None:
        """Tell the poller what the transport wants now; called after every change of
        state or of a flag the wanted events depend on."""
        state = self._state
        reading = self._reading = (state is _CONNECTED or state is _DATAGRAM) and not self._read_paused
        rec = self._rec
        if rec is not None:
            rec.reader = self if reading else None
            want = self._wanted()
            if want != rec.want:
                rec.want = want
                self.poller._changed(rec)

    def _wanted(self) -> int:
        """The events the transport's state and flags call for (the poller's question)."""
        state = self._state
        write = _WRITE if self._wbuf or self._write_requested else 0
        if self._reading:
            return _READ | write
        if state is _CONNECTING:
            return 0 if self._timer is not None else _WRITE
        if state is _LISTENING:
            return 0 if self._read_paused or self._accept_held else _READ
        if state is _CONNECTED or state is _END_OF_STREAM or state is _DATAGRAM:
            return write
        return 0

    def pause_reading(self) -> None:
        """Stop reading until :meth:`resume_reading`: no ``handle_read`` (on a listener,
        no ``handle_accept``) is called, and the OS stops watching the socket for data,
        so unread data costs nothing while it waits.  Writes still drain.  Harmless when
        repeated."""
        if not self._read_paused:
            self._read_paused = True
            self._update_interest()

    def resume_reading(self) -> None:
        """Read again after :meth:`pause_reading`; data that waited is reported at once.
        Harmless when not paused.

        :raises CapacityError: the poller's backend could not watch the socket again.
        """
        if self._read_paused:
            self._read_paused = False
            self._update_interest()

    def is_reading(self) -> bool:
        """Whether read events are dispatched now (asyncio's name)."""
        return self._reading or (self._state is _LISTENING and not self._read_paused)

    def _request_write(self) -> None:
        """Ask for the one ``handle_write`` that ``defer_write`` and a would-block
        :meth:`send` promise."""
        if not self._write_requested:
            self._write_requested = True
            self._update_interest()

    # --- the socket -----------------------------------------------------------------

    def create_socket(
        self,
        family: int = socket.AF_INET,
        type: int = socket.SOCK_STREAM,  # noqa: A002 - the pike name
    ) -> None:
        """Create the non-blocking socket and register this transport with its poller.

        :raises OSError: the OS refused the socket.
        :raises RegistrationError: as :meth:`set_socket`; the new socket is closed.
        """
        self._check_free()
        sock = socket.socket(family, type)
        try:
            self._adopt(sock, _DATAGRAM if _TYPE(sock) == socket.SOCK_DGRAM else _IDLE, None)
        except BaseException:
            sock.close()
            raise
        self.family_and_type = (family, type)

    def set_socket(self, sock: socket.socket) -> None:
        """Adopt ``sock`` (made non-blocking) in the state it is in, and register this
        transport with its poller.  On failure the transport is left without a socket
        and ``sock`` is not closed.

        :raises TypeError: ``sock`` is not a socket.
        :raises RegistrationError: this transport already has a socket, or ``sock`` is
            closed, or it is registered already (to another transport, or with another
            poller).
        :raises CapacityError: the poller's backend cannot watch this descriptor.
        :raises PollerClosedError: the poller is closed.
        :raises OSError: the socket cannot be asked what state it is in.
        """
        if not isinstance(sock, socket.socket):
            raise TypeError(f"{self!r}: set_socket needs a socket.socket, got {sock!r}")
        self._check_free()
        if sock.fileno() < 0:
            raise RegistrationError(self, f"{self!r} cannot adopt {sock!r}: the socket is closed")
        state, addr = _state_of(sock)
        self._adopt(sock, state, addr)

    def _check_free(self) -> None:
        if self._fileno >= 0:
            raise RegistrationError(self, f"{self!r} already has a socket; close it before giving it another")

    def _adopt(self, sock: socket.socket, state: State, addr: Address) -> None:
        """Take ``sock`` (the caller checked that the transport has none) and register."""
        sock.setblocking(False)
        self._fileno = sock.fileno()
        self.socket = sock
        if self._state is _CLOSED:
            # A socket had a life here; a new transport's flags are fresh from __init__.
            self._reset_flags()
        self._addr = addr
        self._read_paused = False
        self._accept_held = False
        self._enter(state)
        try:
            self.poller.register(self)
        except BaseException:
            self._fileno = -1
            self.socket = None
            self._enter(_IDLE)
            raise
        rec = self._rec
        if rec is not None and self._reading:
            # The new record learns that read events go straight to handle_read.
            rec.reader = self

    def fileno(self) -> int:
        """The socket's descriptor, or -1 once closed."""
        return self._fileno

    def _open_socket(self, what: str) -> socket.socket:
        sock = self.socket
        if sock is None or self._fileno < 0:
            raise self._no_socket(what)
        return sock

    def _no_socket(self, what: str) -> OSError:
        return OSError(
            errno.EBADF,
            f"{what} on {self!r}: it has no open socket (closed, or create_socket() not called)",
        )

    # --- client side ----------------------------------------------------------------

    def connect(self, address: Address) -> None:
        """Begin connecting to ``address``; ``handle_connect`` follows, from the poller,
        once the connect succeeded (also when it succeeded at once).

        A connect that fails later reaches ``handle_error`` (with the ``OSError`` as the
        exception being handled), then ``handle_close``, and the transport is closed.
        An ``AF_UNIX`` connect that meets a full backlog is retried, backing off up to
        :data:`MAX_CONNECT_BACKOFF` seconds, until the listener takes it or it fails.
        Bytes given to :meth:`write` and the ``handle_write`` asked for while connecting
        follow ``handle_connect``.

        :raises OSError: the connect failed at once (for example a missing AF_UNIX
            path, or a host name that does not resolve); the transport is closed before
            this is raised.
        :raises TypeError: ``address`` does not suit the socket's family (as
            ``socket.connect``); the transport is left as it was.
        :raises CapacityError: the poller's backend cannot watch the socket.
        """
        sock = self._open_socket("connect()")
        before, self._addr = self._state, address
        self._enter(_CONNECTING)
        try:
            err = self.poller.backend.start_connect(sock, address)
        except OSError:
            self._release()
            raise
        except BaseException:
            # A malformed address: nothing was started and the transport stays usable.
            self._enter(before)
            raise
        self._connect_started(err, address)

    def _connect_started(self, err: int, address: Address) -> None:
        """What ``connect_ex`` (or the backend's ``start_connect``) said: connected or in
        progress (the verdict comes as a write event), a full backlog (retry later), or a
        failure, raised."""
        if err in _CONNECT_PENDING:
            return
        if err in _CONNECT_RETRY:
            self._backoff = min(max(self._backoff * 2, MIN_CONNECT_BACKOFF), MAX_CONNECT_BACKOFF)
            self._timer = self.poller.call_later(self._backoff, self._retry_connect, address)
            self._update_interest()
            return
        self._release()
        raise OSError(err, f"connect to {address!r} failed: {os.strerror(err)}")

    def _retry_connect(self, address: Address) -> None:
        self._timer = None
        if self._state is not _CONNECTING or self.socket is None:
            return
        try:
            self._connect_started(self.poller.backend.start_connect(self.socket, address), address)
        except OSError as exc:
            self._fail(exc)
        else:
            self._update_interest()

    def _finish_connect(self) -> None:
        sock = self.socket
        assert sock is not None
        err = self.poller.backend.connect_error(sock)
        if err:
            self._fail(self._connect_failure(err))
            return
        try:
            sock.getpeername()
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise
            lost = _lost_while_connecting(sock)
            if lost is None:
                # Woken without a verdict yet (a spurious wake-up): keep waiting.
                return
            if lost:
                self._fail(self._connect_failure(lost))
                return
        self.handle_connect_event()

    def _connect_failure(self, err: int) -> OSError:
        """The error of a connect whose verdict is ``err`` (an errno)."""
        return OSError(err, f"connect to {self._addr!r} failed: {os.strerror(err)}")

    def handle_connect_event(self) -> None:
        """Called internally when the socket becomes connected: enter the connected (or,
        for a datagram socket, the datagram) state, then call ``handle_connect``."""
        sock = self.socket
        self._backoff = 0.0
        self._enter(_DATAGRAM if sock is not None and _TYPE(sock) == socket.SOCK_DGRAM else _CONNECTED)
        self.handle_connect()

    def _fail(self, exc: OSError) -> None:
        """A connect failed or the descriptor was lost: ``handle_error`` with ``exc`` as
        the exception being handled, then ``handle_close`` (whatever ``handle_error`` did),
        then the socket is released."""
        try:
            try:
                raise exc
            except OSError:
                self._report_error()
            if not self._close_notified:
                self._close_notified = True
                self.handle_close()
        finally:
            self._release()

    def _release(self) -> None:
        """Close, and release the socket even when a subclass's ``close()`` does not
        reach this class's (pike-smb2's returns early for a connection never made)."""
        self.close()
        if self._state is not _CLOSED:
            Transport.close(self)

    # --- server side ----------------------------------------------------------------

    def set_reuse_addr(self) -> None:
        """Let a listening address be reused at once after the previous owner closed."""
        if sys.platform != "win32":
            # On Windows SO_REUSEADDR lets another process steal the port; its default
            # already allows rebinding after close.
            self._open_socket("set_reuse_addr()").setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def bind(self, address: Address) -> None:
        """Bind the socket to ``address``.  :raises OSError: as ``socket.bind``."""
        sock = self._open_socket("bind()")
        sock.bind(address)
        self._addr = sock.getsockname()

    def listen(self, backlog: int = 128) -> None:
        """Start accepting connections; each one reaches ``handle_accept``.

        :raises OSError: as ``socket.listen``.
        :raises CapacityError: the poller's backend cannot watch the socket.
        """
        self._open_socket("listen()").listen(backlog)
        self._enter(_LISTENING)

    def accept(self) -> Optional[Tuple[socket.socket, Address]]:
        """Accept one pending connection.

        When the process (or system) is out of descriptors or memory, the pending
        connections stay queued in the kernel: the listener stops being watched, which
        keeps a level-triggered poller from spinning on it, ``handle_accept_error`` is
        called, and accepting resumes after a back-off that doubles up to
        :data:`MAX_ACCEPT_BACKOFF` seconds while the condition lasts.

        :returns: ``(socket, address)`` with the socket an :class:`AcceptedSocket`, or
            None when none is pending (or accepting is paused).
        :raises OSError: accept failed for another reason.
        """
        listener = self._open_socket("accept()")
        try:
            fd, addr = listener._accept()  # type: ignore[attr-defined]
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return None
        except OSError as exc:
            if exc.errno not in _OUT_OF_RESOURCES:
                raise
            self._pause_accepting(exc)
            return None
        self._backoff = 0.0
        # What socket.accept() does, without reading the listener's family and type
        # through their enum-making properties on every connection.
        return AcceptedSocket(_FAMILY(listener), _TYPE(listener), _PROTO(listener), fd), addr

    def _pause_accepting(self, exc: OSError) -> None:
        self._backoff = min(max(self._backoff * 2, MIN_ACCEPT_BACKOFF), MAX_ACCEPT_BACKOFF)
        self._accept_held = True
        self._update_interest()
        if self._timer is None:
            self._timer = self.poller.call_later(self._backoff, self._resume_accepting)
        self.handle_accept_error(exc)

    def _resume_accepting(self) -> None:
        self._timer = None
        if self._accept_held:
            self._accept_held = False
            self._update_interest()

    def handle_accept_error(self, exc: OSError) -> None:
        """Callback: ``accept`` failed for lack of descriptors or memory and accepting
        is paused for a while (see :meth:`accept`).  The default logs a warning."""
        logger.warning(
            "pike_core: %r cannot accept (%s); pending connections wait, retrying in %.2f s",
            self,
            exc,
            self._backoff,
        )

    def handle_accept(self) -> None:
        """Called when connections are pending.  The default accepts them and gives each
        to :meth:`handle_accepted`; one the poller cannot watch is refused and closed."""
        for _ in range(_ACCEPTS_PER_EVENT):
            if self._accept_held or self._state is not _LISTENING:
                return
            pair = self.accept()
            if pair is None:
                return
            sock, addr = pair
            try:
                self.handle_accepted(sock, addr)
            except CapacityError as exc:
                logger.warning("pike_core: %s; refusing the connection from %r", exc, addr)
                sock.close()

    def handle_accepted(self, sock: socket.socket, addr: Address) -> None:
        """Called with each accepted connection.  The default closes it."""
        logger.warning("pike_core: %r has no handle_accepted; closing the connection from %r", self, addr)
        sock.close()

    # --- data -----------------------------------------------------------------------

    def recv(self, bufsize: int) -> bytes:
        """Receive at most ``bufsize`` bytes.

        :returns: the bytes, or ``b""`` when none are available yet.  On a stream, when
            the peer has closed or reset the connection, ``handle_close`` is called (once)
            and ``b""`` returned; on a datagram socket ``b""`` may also be an empty
            datagram (:meth:`recvfrom` tells them apart).
        :raises TypeError: ``bufsize`` is not an int.
        :raises ValueError: ``bufsize`` is negative.
        :raises OSError: the transport is closed, or an error that is not a disconnect
            (on a datagram socket: any error, such as a refused destination).
        """
        # recv runs once per read event: one test passes the common case, and a closed
        # socket is recognised only once the OS refused it.
        sock = self.socket
        if sock is None or bufsize.__class__ is not int or not 0 < bufsize <= DIRECT_RECV:
            bufsize = self._recv_size(bufsize, "recv()")
            if sock is None:
                raise self._no_socket("recv()")
        try:
            data = sock.recv(bufsize) if bufsize <= DIRECT_RECV else _recv_copied(sock, bufsize)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            self._recv_failed(exc, "recv()")
            return b""
        if not data and bufsize and self._state is not _DATAGRAM:
            self._end_of_stream()
        return data

    def recvfrom(self, bufsize: int) -> Tuple[bytes, Address]:
        """Receive one datagram of at most ``bufsize`` bytes (or stream data).

        :returns: ``(data, address)``; ``(b"", None)`` when nothing is available yet.
            An empty datagram is ``(b"", address)``.  At a stream's end ``handle_close``
            is called (once), as :meth:`recv` does.
        :raises TypeError: ``bufsize`` is not an int.
        :raises ValueError: ``bufsize`` is negative.
        :raises OSError: as :meth:`recv`.
        """
        bufsize = self._recv_size(bufsize, "recvfrom()")
        sock = self._open_socket("recvfrom()")
        try:
            data, address = sock.recvfrom(bufsize)
        except (BlockingIOError, InterruptedError):
            return b"", None
        except OSError as exc:
            self._recv_failed(exc, "recvfrom()")
            return b"", None
        if not data and bufsize and self._state is not _DATAGRAM:
            self._end_of_stream()
        return data, address

    def _recv_failed(self, exc: OSError, what: str) -> None:
        """Called inside ``except`` when a read raised ``exc``: a disconnect of a stream
        is its end; anything else is raised again."""
        state = self._state
        if exc.errno not in _DISCONNECTED or state is _DATAGRAM or state is _IDLE:
            self._raise_failure(exc, what)
        if state is not _CONNECTING:
            self._broken = True
            self._end_of_stream()

    def _raise_failure(self, exc: OSError, what: str) -> NoReturn:
        """Raise the error a read or send ``what`` met, in the user's terms where the OS
        words it from the socket's side: a closed transport, or one never connected."""
        if self._fileno < 0:
            raise self._no_socket(what) from None
        if self._state is _IDLE:
            raise OSError(
                exc.errno,
                f"{what} on {self!r}: it is not connected; connect() it first, or give it a connected socket",
            ) from None
        raise exc

    def _recv_size(self, bufsize: object, what: str) -> int:
        """``bufsize`` checked (bool is refused; int subclasses such as IntEnum are not)
        and capped at :data:`MAX_RECV`."""
        if isinstance(bufsize, bool) or not isinstance(bufsize, int):
            raise TypeError(f"{what} on {self!r}: bufsize must be an int, got {bufsize!r}")
        if bufsize < 0:
            raise ValueError(f"{what} on {self!r}: bufsize must be >= 0, got {bufsize}")
        return min(int(bufsize), MAX_RECV)

    def send(self, data: Buffer) -> int:
        """Send as much of ``data`` as the socket takes now.

        :returns: the number of bytes sent; 0 when the socket would block (or is still
            connecting), in which case exactly one ``handle_write`` follows once it can
            take more.  While a stream connects nothing is sent, even where the OS would
            take it already: ``handle_connect`` comes first (a datagram socket's connect
            only names the peer: its datagrams go at once).  When the peer is gone, whatever
            :meth:`write` still holds is dropped (it can never be delivered),
            ``handle_close`` is called (once) and 0 returned.
        :raises BrokenPipeError: :meth:`shutdown` closed the sending side.
        :raises OSError: the transport is closed, or an error that is not a disconnect.
        """
        sock = self.socket
        if sock is None:
            raise self._no_socket("send()")
        if self._state is _CONNECTING and _awaits_verdict(sock):
            return self._send_after_connect("send()")
        try:
            return sock.send(data)
        except (BlockingIOError, InterruptedError):
            self._request_write()
        except OSError as exc:
            self._send_failed(exc, "send()")
        return 0

    def sendto(self, data: Buffer, address: Address) -> int:
        """Send one datagram to ``address``.

        :returns: the number of bytes sent; 0 when the socket would block, in which case
            exactly one ``handle_write`` follows once it can take more.
        :raises OSError: the transport is closed, or the OS refused (a datagram socket
            reports every error, a refused destination included).
        """
        sock = self._open_socket("sendto()")
        if self._state is _CONNECTING and _awaits_verdict(sock):
            return self._send_after_connect("sendto()")
        try:
            return sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            self._request_write()
        except OSError as exc:
            self._send_failed(exc, "sendto()")
        return 0

    def _send_after_connect(self, what: str) -> int:
        """A send while connecting sends nothing, even where the OS would take it
        already: ``handle_connect`` comes first, then one ``handle_write``."""
        if self._write_shut:
            raise self._shut(what)
        self._request_write()
        return 0

    def _send_failed(self, exc: OSError, what: str) -> None:
        """Called inside ``except`` when a send raised ``exc``.  A disconnect of a stream
        is reported through ``handle_close``; anything else is raised again (a send on a
        closed socket as the error ``what`` meets on a transport without one).  A stream
        sends nothing while connecting, so a send there is a datagram socket's."""
        state = self._state
        if self._write_shut and exc.errno == errno.EPIPE:
            raise self._shut(what) from None
        if exc.errno not in _DISCONNECTED or state is _DATAGRAM or state is _IDLE or state is _CONNECTING:
            self._raise_failure(exc, what)
        # Otherwise close_when_done would wait forever for a flush that cannot happen,
        # holding the descriptor.
        self._drop_buffer()
        self._broken = True
        self._end_of_stream()

    def _shut(self, what: str) -> OSError:
        return OSError(errno.EPIPE, f"{what} on {self!r} after shutdown(): its sending side is closed")

    # --- buffered writing ---------------------------------------------------------

    #: :meth:`write` returns False once more than this many bytes wait to be sent...
    write_high_water = 64 * 1024
    #: ...and ``handle_drain`` follows when they are down to this many.
    write_low_water = 16 * 1024
    #: :meth:`write` refuses data that would make more than this many bytes wait.
    write_limit = 1024 * 1024

    def write(self, data: Buffer) -> bool:
        """Send ``data``, keeping what the socket cannot take now in a bounded buffer
        that is sent as the socket drains.  While a stream connects all of it waits, even
        where the OS would take it already: it goes out after ``handle_connect``.  Do not mix
        with :meth:`send` on one transport: bytes sent while the buffer holds some would
        overtake them.

        :param data: any C-contiguous bytes-like object; its bytes are sent, whatever its
            item size or shape.
        :returns: True while the waiting bytes are at most ``write_high_water``; False
            above it, and ``handle_drain`` follows once they are down to
            ``write_low_water``.  False too when the peer is gone (``handle_close`` was
            called and nothing can be delivered any more).
        :raises WriteBufferFullError: the waiting bytes would exceed ``write_limit``;
            none of ``data`` was taken.
        :raises TypeError: ``data`` is not a contiguous bytes-like object.
        :raises BrokenPipeError: :meth:`shutdown` closed the sending side.
        :raises OSError: the transport is closed.
        """
        sock = self.socket
        if sock is None:
            raise self._no_socket("write()")
        buf = self._wbuf
        if (
            not buf
            and data.__class__ is bytes
            and (size := len(data)) <= self.write_limit
            and self._state is not _CONNECTING
        ):
            # The common case (an echo, a request), kept short because it runs once per
            # message: nothing waits, so the bytes go straight to the socket (what
            # send() does, without its call).
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._send_failed(exc, "write()")
                return False
            if sent == size:
                return True
            return self._keep(memoryview(data)[sent:])
        return self._write_more(sock, data, buf)

    def _write_more(self, sock: socket.socket, data: Buffer, buf: Optional[bytearray]) -> bool:
        """:meth:`write` of anything but a small ``bytes`` into an empty buffer."""
        if self._fileno < 0:
            raise self._no_socket("write()")
        if self._write_shut:
            raise self._shut("write()")
        view = self._byte_view(data)
        waiting = len(buf) if buf else 0
        if waiting + len(view) > self.write_limit:
            raise WriteBufferFullError(self, self._too_much(len(view), waiting))
        if not buf and not (self._state is _CONNECTING and _awaits_verdict(sock)):
            try:
                sent = sock.send(view)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._send_failed(exc, "write()")
                return False
            if sent == len(view):
                return True
            view = view[sent:]
        return self._keep(view)

    def _byte_view(self, data: Buffer) -> memoryview:
        """``data`` as a flat view of its bytes, so that counts and slices are in bytes
        whatever the item size or shape of the object."""
        try:
            view = memoryview(data)
        except TypeError:
            raise TypeError(
                f"write() on {self!r} needs a bytes-like object, got {type(data).__name__}"
            ) from None
        if view.format == "B" and view.ndim == 1 and view.c_contiguous:
            return view
        try:
            return view.cast("B")
        except TypeError:
            raise TypeError(
                f"write() on {self!r} needs a C-contiguous bytes-like object; got a "
                f"non-contiguous {type(data).__name__} (copy it with bytes(...) first)"
            ) from None

    def _too_much(self, size: int, waiting: int) -> str:
        if not waiting:
            return (
                f"{self!r}: write of {size} bytes refused: more than write_limit "
                f"({self.write_limit} bytes) at once; write it in parts, each after "
                "handle_drain, or raise write_limit"
            )
        return (
            f"{self!r}: write of {size} bytes refused: {waiting} bytes already wait for a "
            f"peer that is not reading and the limit is {self.write_limit} (write_limit); "
            "wait for handle_drain before writing more"
        )

    def _keep(self, view: memoryview) -> bool:
        """The rest of :meth:`write`: buffer what the socket did not take."""
        if self._state is _CLOSED or self._broken:
            return False
        buf = self._wbuf
        if buf is None:
            buf = self._wbuf = bytearray(view)
            self._update_interest()
        else:
            buf += view
        if len(buf) > self.write_high_water:
            self._drain_wanted = True
            return False
        return True

    @property
    def write_buffer_size(self) -> int:
        """Bytes given to :meth:`write` that the socket has not taken yet."""
        return len(self._wbuf) if self._wbuf else 0

    def close_when_done(self) -> None:
        """Close once every byte given to :meth:`write` has been sent."""
        if self._wbuf:
            self._close_when_flushed = True
        else:
            self.close()

    def _write_event(self) -> None:
        """The socket can take data: send what :meth:`write` keeps, then give the
        ``handle_write`` that was asked for."""
        rec = self._rec
        buf = self._wbuf
        if buf:
            self._flush(buf)
        elif self._shutdown_pending is not None:
            self._flushed()
        if self._rec is not rec or self._wbuf or not self._write_requested:
            return
        self._write_requested = False
        self._update_interest()
        self.handle_write()

    def _flush(self, buf: bytearray) -> None:
        """Send what :meth:`write` keeps in ``buf`` (the transport's write buffer)."""
        sock = self.socket
        assert sock is not None
        try:
            sent = sock.send(buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            # The peer is gone and the buffer with it: nothing is left to wait for.
            self._send_failed(exc, "write()")
            if self._close_when_flushed:
                self.close()
            return
        del buf[:sent]
        if not buf:
            self._flushed()
        elif self._drain_wanted and len(buf) <= self.write_low_water:
            self._drain_wanted = False
            self.handle_drain()

    def _flushed(self) -> None:
        """Everything :meth:`write` took is sent: do what waited for that."""
        self._wbuf = None
        self._update_interest()
        if self._shutdown_pending is not None:
            how, self._shutdown_pending = self._shutdown_pending, None
            self._shutdown_now(how)
        if self._close_when_flushed:
            self.close()
        elif self._drain_wanted:
            self._drain_wanted = False
            self.handle_drain()

    def _drop_buffer(self) -> None:
        buf = self._wbuf
        if buf is not None:
            # Emptied, not just dropped: a _flush under way holds it too.
            buf.clear()
            self._wbuf = None
            self._update_interest()

    def handle_drain(self) -> None:
        """Callback: after :meth:`write` returned False, the waiting bytes are down to
        ``write_low_water``; write more."""

    def shutdown(self, how: int = socket.SHUT_WR) -> None:
        """Half-close: by default stop sending (the peer reads end of stream) while
        still receiving.  Bytes :meth:`write` still keeps are sent first, and the
        sending side is shut after them (also when called while connecting); a later
        :meth:`write` or :meth:`send` raises ``BrokenPipeError``.  A connection the peer
        already reset is reported as :meth:`send` and :meth:`recv` do: through
        ``handle_close``.

        :raises OSError: the transport is closed, or another error of ``socket.shutdown``.
        """
        self._open_socket("shutdown()")
        if how != socket.SHUT_RD:
            self._write_shut = True
            if self._wbuf or self._state is _CONNECTING:
                self._shutdown_pending = how
                return
        self._shutdown_now(how)

    def _shutdown_now(self, how: int) -> None:
        try:
            self._open_socket("shutdown()").shutdown(how)
        except OSError as exc:
            if exc.errno not in _DISCONNECTED:
                raise
            self._broken = True
            self._end_of_stream()

    def close(self) -> None:
        """Unregister from the poller and close the socket at once, dropping anything
        :meth:`write` still holds (see :meth:`close_when_done`).  Harmless when repeated."""
        if self._state is _CLOSED:
            return
        self._state = _CLOSED
        self._reading = False
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if self._wbuf is not None:
            self._drop_buffer()
        rec = self._rec
        # Unless the poller dropped the record already (a socket closed behind its back).
        if rec is not None and self.poller._records.get(rec.fd) is rec:
            self.poller.unregister(self)
        self._rec = None
        self._fileno = -1
        if self.socket is not None:
            self.socket.close()

    # --- dispatch (called by the poller) --------------------------------------------

    def _handle_events(self, mask: int) -> None:
        if mask == _READ and self._reading:
            # Most events: data on an open connection (one comparison, no masking).
            try:
                self.handle_read()
            except _PROPAGATE:
                raise
            except BaseException:
                self._report_error()
            return
        try:
            self._dispatch(mask)
        except _PROPAGATE:
            raise
        except BaseException:
            self._report_error()

    def _dispatch(self, mask: int) -> None:
        """What ``mask`` means in the transport's state (the README's state table)."""
        rec = self._rec
        if rec is None:
            return
        if mask & _INVALID:
            self._lost(rec)
            return
        state = self._state
        if state is _CONNECTING:
            if self._timer is not None:
                return
            self._finish_connect()
        elif mask & _READ_LIKE:
            if self._reading:
                if mask & _READ or state is _DATAGRAM:
                    self.handle_read()
                else:
                    # An error or hang-up with nothing left to read: the peer is gone.
                    self._end_of_stream()
            elif state is _LISTENING and not (self._read_paused or self._accept_held):
                self.handle_accept()
        if (
            self._rec is rec
            and rec.epoch != HELD
            and mask & (_WRITE | _UNASKED)
            and (self._wbuf or self._write_requested or self._shutdown_pending is not None)
            and self._state in _WRITING
        ):
            self._write_event()

    def _lost(self, rec: Interest) -> None:
        """The OS stopped watching the descriptor: the socket was closed behind the
        poller's back, or the backend refused a change."""
        self._fail(
            rec.failure
            or OSError(
                errno.EBADF,
                f"{self!r}: descriptor {rec.fd} is not open any more: its socket was closed "
                "without Transport.close(); the transport is dropped",
            )
        )

    def _end_of_stream(self) -> None:
        """The peer finished or reset the connection: stop reading, tell ``handle_close``."""
        if self._state is not _CONNECTED:
            self._notify_close()
            return
        # Reading stops at once (a read event left in this batch must not reach
        # handle_read); what the OS watches is brought in line only if handle_close left
        # the transport open, as most close it.
        self._state = _END_OF_STREAM
        self._reading = False
        rec = self._rec
        if rec is not None:
            rec.reader = None
        try:
            self._notify_close()
        finally:
            if self._state is _END_OF_STREAM:
                self._update_interest()

    def _notify_close(self) -> None:
        if not self._close_notified and self._state is not _CLOSED:
            self._close_notified = True
            self.handle_close()

    def _report_error(self) -> None:
        """Hand the exception being handled to ``handle_error``; if that raises too,
        log both and close, so one broken transport never stops the poller."""
        try:
            self.handle_error()
        except _PROPAGATE:
            raise
        except BaseException:
            logger.error("pike_core: handle_error of %r raised; closing it", self, exc_info=True)
            self.close()

    # --- callbacks ------------------------------------------------------------------

    def handle_connect(self) -> None:
        """Callback: the connection is established."""

    def handle_read(self) -> None:
        """Callback: data (or end of stream) is available to :meth:`recv`.

        The default reads and drops the data with a warning: left unread, a
        level-triggered poller would report it at every wait, and end of stream would
        never reach ``handle_close``."""
        data = self.recv(MAX_RECV)
        if data:
            logger.warning("pike_core: %r has no handle_read; dropped %d bytes it received", self, len(data))

    def handle_write(self) -> None:
        """Callback: the socket can take more data (once per would-block or defer_write)."""

    def handle_close(self) -> None:
        """Callback: the peer closed or reset the connection, or a connect failed (after
        ``handle_error``).  Called at most once.  The default closes the transport."""
        self.close()

    def handle_error(self) -> None:
        """Callback, inside ``except``: a callback raised, or a connect failed
        (``sys.exc_info()`` has the exception).  The default logs it, calls
        ``handle_close`` (unless it was called already) and closes the transport."""
        logger.error("pike_core: unhandled exception in %r; closing it", self, exc_info=True)
        self._notify_close()
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} fd={self._fileno} {self._state.value} addr={self.addr!r}>"


_IDLE: Final = State.IDLE
_CONNECTING: Final = State.CONNECTING
_CONNECTED: Final = State.CONNECTED
_END_OF_STREAM: Final = State.END_OF_STREAM
_LISTENING: Final = State.LISTENING
_DATAGRAM: Final = State.DATAGRAM
_CLOSED: Final = State.CLOSED
#: The states in which write events send data.
_WRITING: Final = frozenset({_CONNECTED, _END_OF_STREAM, _DATAGRAM})
_SO_ACCEPTCONN: Final[Optional[int]] = getattr(socket, "SO_ACCEPTCONN", None)


def _state_of(sock: socket.socket) -> Tuple[State, Address]:
    """The state a transport adopting ``sock`` starts in, and the address it knows."""
    if sock.__class__ is AcceptedSocket:
        # Connected by definition (a reset since is reported by the first read), and its
        # address is only looked up if asked for: the system call and the ~150 bytes per
        # connection are saved where nobody needs them.
        return _CONNECTED, _ASK_SOCKET
    if _TYPE(sock) == socket.SOCK_DGRAM:
        try:
            return _DATAGRAM, sock.getpeername()
        except OSError:
            return _DATAGRAM, None
    if _SO_ACCEPTCONN is not None and sock.getsockopt(socket.SOL_SOCKET, _SO_ACCEPTCONN):
        return _LISTENING, sock.getsockname()
    try:
        return _CONNECTED, sock.getpeername()
    except OSError as exc:
        if exc.errno not in (errno.ENOTCONN, errno.EINVAL):
            raise
    # Reset before it was adopted: the first read reports it, as for any connection.
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
        return _CONNECTED, None
    return _IDLE, None


def _lost_while_connecting(sock: socket.socket) -> Optional[int]:
    """Why a socket whose connect reported no error is not connected: None while the
    connect is still in progress, 0 when it is connected after all, else the errno of a
    connection made and lost before its verdict was read.  Windows reports such a
    connection (reset at once by the listener) with no error in ``SO_ERROR`` and
    "not connected" from ``getpeername``, as for a connect in progress; a read tells
    them apart."""
    try:
        data = sock.recv(1, socket.MSG_PEEK)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as exc:
        return None if exc.errno == errno.ENOTCONN else exc.errno or errno.ECONNRESET
    return 0 if data else errno.ECONNRESET


def _awaits_verdict(sock: socket.socket) -> bool:
    """Whether a connecting socket must send nothing before ``handle_connect``: a
    stream's connect has a verdict to wait for; a datagram socket's only names the peer,
    at once, and datagrams sent meanwhile go out (a send of 0 would lose them, as
    datagram code does not retry)."""
    return bool(_TYPE(sock) != socket.SOCK_DGRAM)
