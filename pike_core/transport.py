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
from typing import Any, Callable, Final, Optional, Tuple, Union, cast

from . import events
from .discovery import default_poller
from .errors import CapacityError, RegistrationError, WriteBufferFullError
from .poller import Poller

logger = logging.getLogger("pike_core")

_PROPAGATE = (KeyboardInterrupt, SystemExit)
_CONNECT_PENDING = frozenset(
    {errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK, getattr(errno, "WSAEWOULDBLOCK", -1)}
)
_CONNECT_DONE = frozenset({0, errno.EISCONN})
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
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Seconds accepting pauses after the first EMFILE (doubling while it lasts), and at most.
MIN_ACCEPT_BACKOFF = 0.05
MAX_ACCEPT_BACKOFF = 1.0

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
    explicitly.

    :param alternate_poller: the poller to register with instead of the process default
        (:func:`pike_core.default_poller`).
    :param sock: an already connected (or listening) socket to adopt.
    :raises TypeError: ``sock`` is not a socket.
    :raises RegistrationError: the poller cannot take the socket (see :meth:`set_socket`).
    """

    __slots__ = (
        "__dict__",
        "__weakref__",
        "_accept_backoff",
        "_addr",
        "_broken",
        "_close_notified",
        "_close_when_flushed",
        "_closed",
        "_drain_wanted",
        "_fileno",
        "_want_write",
        "_wbuf",
        "accepting",
        "connected",
        "connecting",
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
        self._addr: Address = None
        self.connected = False
        self.connecting = False
        self.accepting = False
        self.family_and_type: Optional[Tuple[int, int]] = None
        self._fileno = -1
        self._want_write = False
        self._closed = False
        self._close_notified = False
        self._broken = False
        self._accept_backoff = 0.0
        # Made by the first write() that has to keep bytes: most connections never do.
        self._wbuf: Optional[bytearray] = None
        self._drain_wanted = False
        self._close_when_flushed = False
        if sock is not None:
            self.set_socket(sock)
            if sock.__class__ is AcceptedSocket:
                # Connected by definition (a reset since is reported by the first read),
                # and its address is only looked up if asked for: the syscall and the
                # ~150 bytes per connection are saved where nobody needs them.
                self.connected = True
                self._addr = _ASK_SOCKET
                return
            try:
                self._addr = sock.getpeername()
                self.connected = True
            except OSError as exc:
                if exc.errno not in (errno.ENOTCONN, errno.EINVAL):
                    self.close()
                    raise

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
        sock = socket.socket(family, type)
        try:
            self.set_socket(sock)
        except BaseException:
            sock.close()
            raise
        self.family_and_type = (family, type)

    def set_socket(self, sock: socket.socket) -> None:
        """Adopt ``sock`` (made non-blocking) and register this transport with its poller.

        On failure the transport is left without a socket and ``sock`` is not closed.

        :raises TypeError: ``sock`` is not a socket.
        :raises RegistrationError: this transport already has a socket, or the socket is
            closed, or its descriptor is registered to another transport.
        :raises CapacityError: the poller's backend cannot watch this descriptor.
        :raises PollerClosedError: the poller is closed.
        """
        if not isinstance(sock, socket.socket):
            raise TypeError(f"{self!r}: set_socket needs a socket.socket, got {sock!r}")
        if self._fileno >= 0:
            raise RegistrationError(self, f"{self!r} already has a socket; close it before giving it another")
        sock.setblocking(False)
        self._fileno = sock.fileno()
        self.socket = sock
        self._closed = False
        self._close_notified = False
        self._broken = False
        try:
            self.poller.register(self)
        except BaseException:
            self._fileno = -1
            self.socket = None
            raise

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
        """Begin connecting to ``address``; ``handle_connect`` follows once it succeeded.

        A connect that fails later reaches ``handle_error`` (with the ``OSError`` as the
        exception being handled), then ``handle_close``, and the transport is closed.

        :raises OSError: the connect failed at once (for example a missing AF_UNIX
            path, or a host name that does not resolve); the transport is closed before
            this is raised.
        :raises TypeError: ``address`` does not suit the socket's family (as
            ``socket.connect``); the transport is left as it was.
        """
        sock = self._open_socket("connect()")
        self.poller.resume(self)
        self.connected = False
        self.connecting = True
        try:
            err = self.poller.start_connect(sock, address)
        except OSError:
            self.connecting = False
            self.close()
            raise
        except BaseException:
            # A malformed address: nothing was started and the transport stays usable.
            self.connecting = False
            raise
        if err in _CONNECT_PENDING:
            self.addr = address
            self.poller.defer_write(self)
            return
        if err in _CONNECT_DONE:
            self.addr = address
            self.handle_connect_event()
            return
        self.connecting = False
        self.close()
        raise OSError(err, f"connect to {address!r} failed: {os.strerror(err)}")

    def _finish_connect(self) -> None:
        sock = self.socket
        assert sock is not None
        err = self.poller.connect_error(sock)
        if err == 0:
            try:
                sock.getpeername()
            except OSError as exc:
                if exc.errno != errno.ENOTCONN:
                    raise
                # Woken without a verdict yet (a spurious wake-up): keep waiting.
                return
            self.poller.write_delivered(self)
            self.handle_connect_event()
            return
        self.connecting = False
        try:
            raise OSError(err, f"connect to {self.addr!r} failed: {os.strerror(err)}")
        except OSError:
            self._report_error()
        self._peer_gone()
        if not self._closed:
            self.close()

    def handle_connect_event(self) -> None:
        """Called internally when the socket becomes connected."""
        self.connected = True
        self.connecting = False
        self.handle_connect()

    # --- server side ----------------------------------------------------------------

    def set_reuse_addr(self) -> None:
        """Let a listening address be reused at once after the previous owner closed."""
        if sys.platform != "win32":
            # On Windows SO_REUSEADDR lets another process steal the port; its default
            # already allows rebinding after close.
            self._open_socket("set_reuse_addr()").setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def bind(self, address: Address) -> None:
        """Bind the socket to ``address``.  :raises OSError: as ``socket.bind``."""
        self._open_socket("bind()").bind(address)
        self.addr = self.socket.getsockname() if self.socket is not None else address

    def listen(self, backlog: int = 128) -> None:
        """Start accepting connections; each one reaches ``handle_accept``."""
        self._open_socket("listen()").listen(backlog)
        self.accepting = True
        self.poller.resume(self)

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
        self._accept_backoff = 0.0
        # What socket.accept() does, without reading the listener's family and type
        # through their enum-making properties on every connection.
        return AcceptedSocket(_FAMILY(listener), _TYPE(listener), _PROTO(listener), fd), addr

    def _pause_accepting(self, exc: OSError) -> None:
        self._accept_backoff = min(max(self._accept_backoff * 2, MIN_ACCEPT_BACKOFF), MAX_ACCEPT_BACKOFF)
        self.poller.pause(self)
        self.poller.call_later(self._accept_backoff, self._resume_accepting)
        self.handle_accept_error(exc)

    def _resume_accepting(self) -> None:
        if not self._closed:
            self.poller.resume(self)

    def handle_accept_error(self, exc: OSError) -> None:
        """Callback: ``accept`` failed for lack of descriptors or memory and accepting
        is paused for a while (see :meth:`accept`).  The default logs a warning."""
        logger.warning(
            "pike_core: %r cannot accept (%s); pending connections wait, retrying in %.2f s",
            self,
            exc,
            self._accept_backoff,
        )

    def handle_accept(self) -> None:
        """Called when connections are pending.  The default accepts them and gives each
        to :meth:`handle_accepted`; one the poller cannot watch is refused and closed."""
        for _ in range(_ACCEPTS_PER_EVENT):
            if not self.accepting:
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

        :returns: the bytes, or ``b""`` when none are available yet.  When the peer has
            closed or reset the connection, ``handle_close`` is called (once) and ``b""``
            returned.
        :raises TypeError: ``bufsize`` is not an int.
        :raises ValueError: ``bufsize`` is negative.
        :raises OSError: the transport is closed, or an error that is not a disconnect.
        """
        # recv runs once per read event: one test passes the common case, and a closed
        # socket is recognised only once the OS refused it.
        if bufsize.__class__ is not int or not 0 < bufsize <= DIRECT_RECV:
            bufsize = self._recv_size(bufsize)
        sock = self.socket
        if sock is None:
            raise self._no_socket("recv()")
        try:
            data = sock.recv(bufsize) if bufsize <= DIRECT_RECV else _recv_copied(sock, bufsize)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            if exc.errno in _DISCONNECTED:
                self._broken = True
                self._peer_gone()
                return b""
            if self._fileno < 0:
                raise self._no_socket("recv()") from None
            raise
        if not data and bufsize:
            self._peer_gone()
        return data

    def _recv_size(self, bufsize: object) -> int:
        """``bufsize`` checked (bool is refused; int subclasses such as IntEnum are not)
        and capped at :data:`MAX_RECV`."""
        if isinstance(bufsize, bool) or not isinstance(bufsize, int):
            raise TypeError(f"recv() on {self!r}: bufsize must be an int, got {bufsize!r}")
        if bufsize < 0:
            raise ValueError(f"recv() on {self!r}: bufsize must be >= 0, got {bufsize}")
        return min(int(bufsize), MAX_RECV)

    def send(self, data: Buffer) -> int:
        """Send as much of ``data`` as the socket takes now.

        :returns: the number of bytes sent; 0 when the socket would block, in which case
            exactly one ``handle_write`` follows once it can take more.  When the peer is
            gone, whatever :meth:`write` still holds is dropped (it can never be
            delivered), ``handle_close`` is called (once) and 0 returned.
        :raises OSError: the transport is closed, or an error that is not a disconnect.
        """
        sock = self.socket
        if sock is None:
            raise self._no_socket("send()")
        try:
            return sock.send(data)
        except (BlockingIOError, InterruptedError):
            self.poller.defer_write(self)
            return 0
        except OSError as exc:
            self._send_failed(exc, "send()")
            return 0

    def _send_failed(self, exc: OSError, what: str) -> None:
        """Called inside ``except`` when a send raised ``exc``: a disconnect is reported
        through ``handle_close``, anything else raised again (a send on a closed socket
        as the error ``what`` meets on a transport without one)."""
        if exc.errno not in _DISCONNECTED:
            if self._fileno < 0:
                raise self._no_socket(what) from None
            raise exc
        # Otherwise close_when_done would wait forever for a flush that cannot happen,
        # holding the descriptor.
        self._drop_buffer()
        self._broken = True
        self._peer_gone()

    # --- buffered writing ---------------------------------------------------------

    #: :meth:`write` returns False once more than this many bytes wait to be sent...
    write_high_water = 64 * 1024
    #: ...and ``handle_drain`` follows when they are down to this many.
    write_low_water = 16 * 1024
    #: :meth:`write` refuses data that would make more than this many bytes wait.
    write_limit = 1024 * 1024

    def write(self, data: Buffer) -> bool:
        """Send ``data``, keeping what the socket cannot take now in a bounded buffer
        that is sent as the socket drains.  Do not mix with :meth:`send` or ``defer_write``
        on one transport: while the buffer holds data, write events go to sending it.

        :returns: True while the waiting bytes are at most ``write_high_water``; False
            above it, and ``handle_drain`` follows once they are down to
            ``write_low_water``.  False too when the peer is gone (``handle_close`` was
            called and nothing can be delivered any more).
        :raises WriteBufferFullError: the waiting bytes would exceed ``write_limit``;
            none of ``data`` was taken.
        :raises TypeError: ``data`` is not a bytes-like object.
        :raises OSError: the transport is closed.
        """
        sock = self.socket
        if sock is None:
            raise self._no_socket("write()")
        buf = self._wbuf
        if not buf and data.__class__ is bytes and (size := len(data)) <= self.write_limit:
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
        if self._fileno < 0:
            raise self._no_socket("write()")
        try:
            view = memoryview(data)
        except TypeError:
            raise TypeError(
                f"write() on {self!r} needs a bytes-like object, got {type(data).__name__}"
            ) from None
        waiting = len(buf) if buf else 0
        if waiting + view.nbytes > self.write_limit:
            raise WriteBufferFullError(
                self,
                f"{self!r}: write of {view.nbytes} bytes refused: {waiting} bytes already wait for a "
                f"peer that is not reading and the limit is {self.write_limit} (write_limit); "
                "wait for handle_drain before writing more",
            )
        if not buf:
            sent = self.send(view)
            if sent == view.nbytes:
                return True
            view = view[sent:]
        return self._keep(view)

    def _keep(self, view: memoryview) -> bool:
        """The rest of :meth:`write`: buffer what the socket did not take."""
        if self._closed or self._broken:
            return False
        buf = self._wbuf
        if buf is None:
            buf = self._wbuf = bytearray(view)
        else:
            buf += view
        if not self._want_write:
            self.poller.defer_write(self)
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

    def _flush(self, buf: bytearray) -> None:
        """Send what :meth:`write` keeps in ``buf`` (the transport's write buffer)."""
        sent = self.send(buf)
        if self._closed:
            return
        if sent:
            del buf[:sent]
            if not buf:
                self._wbuf = None
            elif not self._want_write:
                self.poller.defer_write(self)
        if not buf and self._close_when_flushed:
            self.close()
        elif self._drain_wanted and len(buf) <= self.write_low_water:
            self._drain_wanted = False
            self.handle_drain()

    def _drop_buffer(self) -> None:
        buf = self._wbuf
        if buf is not None:
            # Emptied, not just dropped: a _flush under way holds it too.
            buf.clear()
            self._wbuf = None

    def handle_drain(self) -> None:
        """Callback: after :meth:`write` returned False, the waiting bytes are down to
        ``write_low_water``; write more."""

    def shutdown(self, how: int = socket.SHUT_WR) -> None:
        """Half-close: by default stop sending (the peer reads end of stream) while
        still receiving.  A connection the peer already reset is reported as
        :meth:`send` and :meth:`recv` do: through ``handle_close``.

        :raises OSError: the transport is closed, or another error of ``socket.shutdown``.
        """
        try:
            self._open_socket("shutdown()").shutdown(how)
        except OSError as exc:
            if exc.errno not in _DISCONNECTED:
                raise
            self._broken = True
            self._peer_gone()

    def close(self) -> None:
        """Unregister from the poller and close the socket at once, dropping anything
        :meth:`write` still holds (see :meth:`close_when_done`).  Harmless when repeated."""
        if self._closed:
            return
        self._closed = True
        self.connected = self.connecting = self.accepting = False
        self._want_write = False
        if self._wbuf is not None:
            self._drop_buffer()
        if self._fileno >= 0 and self.poller.is_registered(self):
            self.poller.unregister(self)
        self._fileno = -1
        if self.socket is not None:
            self.socket.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    # --- dispatch (called by the poller) --------------------------------------------

    def _handle_events(self, mask: int) -> None:
        try:
            if mask == _READ and self.connected:
                # Most events: data on an open connection (one comparison, no masking).
                self.handle_read()
                return
            if self.connected:
                if mask & _READ:
                    self.handle_read()
                elif mask & _READ_LIKE:
                    # An error or hang-up with nothing left to read: the peer is gone.
                    self._peer_gone()
            elif self.connecting:
                self._finish_connect()
                return
            elif self.accepting:
                if mask & _READ:
                    self.handle_accept()
            else:
                # Neither connected nor listening yet: Linux reports a fresh TCP socket
                # as hung up, and would keep doing so at every wait.  Stop watching it
                # until connect() or listen() gives its events a meaning.
                self.poller.pause(self)
                return
            if mask & _WRITE and self._want_write:
                self.poller.write_delivered(self)
                buf = self._wbuf
                if buf:
                    self._flush(buf)
                else:
                    self.handle_write()
        except _PROPAGATE:
            raise
        except BaseException:
            self._report_error()

    def _peer_gone(self) -> None:
        if not self._close_notified and not self._closed:
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
        self._peer_gone()
        self.close()

    def __repr__(self) -> str:
        state = (
            "closed"
            if self._closed
            else "listening"
            if self.accepting
            else "connected"
            if self.connected
            else "connecting"
            if self.connecting
            else "idle"
        )
        return f"<{type(self).__name__} fd={self._fileno} {state} addr={self.addr!r}>"
