"""I/O completion ports: the Windows backend, through ``_overlapped`` and AFD poll.

Design notes
------------
This is the part of a poller that talks to Windows: the :class:`~pike_core.Poller` holds
an :class:`IocpBackend` and tells it, as a diff, what each socket should be watched for;
the backend keeps no transport and no rule of dispatch.

An I/O completion port reports *finished operations*, while the core dispatches on
*readiness*.  Readiness is emulated the way wepoll and mio do it, with one operation that
completes when a socket becomes ready: ``IOCTL_AFD_POLL``, issued with
``DeviceIoControl`` (through ctypes; ``_overlapped`` has no DeviceIoControl) on a handle
to the AFD driver (``\\Device\\Afd``) that is associated with the port.  One poll is in
flight per registered socket, and it asks for exactly the events the mask calls for:

* ``READ``: receive, accept and the peer's disconnect (end of stream);
* ``WRITE``: send;
* always: abort (a reset), connect failure and local close, the core's ``ERROR`` and
  ``INVALID``, reported whether asked or not.

So a socket whose reading is paused (a ``WRITE``-only mask, or no registration at all)
has no poll with receive bits in flight: unread data and the peer's end of stream cost
nothing, and its writes still drain.  The completion carries the events that hold now;
they are translated to :mod:`pike_core.events` bits, and the poll is issued again at the
next :meth:`~IocpBackend.wait`, after the core has dispatched.  That makes it
level-triggered like epoll: data a ``handle_read`` left in the socket is reported again,
and after a would-block ``send`` the send event gives exactly the one ``handle_write``
the contract promises.  A change of mask while a poll is in flight cancels it
(``CancelIoEx``); the next wait issues it with the new events.  AFD polls work on UDP
sockets as on TCP ones (wepoll relies on it too), so datagram transports need nothing of
their own.

The alternatives were weighed under Wine and on paper.  A zero-byte overlapped
``WSARecv`` (libuv) gives "readable" only: it fails on listening and unconnected sockets,
and a zero-byte ``WSASend`` completes at once whether or not the send buffer has room, so
it cannot say "writable again".  AFD poll covers readable, writable, acceptable and
failed connects with one mechanism, so accepting is readiness-based and ``accept()``
stays the core's own.

Stream connects go through ``ConnectEx`` (after ``BindLocal`` when the socket is
unbound), via the :meth:`~IocpBackend.start_connect` hook: the socket is associated with
the port, its completion becomes the ``WRITE`` event, ``SO_UPDATE_CONNECT_CONTEXT`` is set
before the core looks (so ``getpeername`` and ``SO_ERROR`` behave), and a failure's
error, mapped to its WSA code, is what :meth:`~IocpBackend.connect_error` returns, so a
refused connect is a ``ConnectionRefusedError`` in ``handle_error``, never "connected".
Windows supports ``ConnectEx`` on connection-oriented sockets only (Wine accepts it on
UDP too), so a datagram socket connects with ``connect_ex``, which is immediate for it.
So does a socket already associated with another port (it was registered with another
IOCP poller before), with readiness from AFD poll.

Every in-flight operation is kept in a dict by the address of its OVERLAPPED, with the
descriptor and the *generation* of the registration it belongs to; the buffers live until
the completion is dequeued.  Unregistering cancels the socket's operations; their
completions (usually "aborted", error 995) are then dropped, and so is any completion of
an older generation, so a late completion never reaches a socket that reuses the handle.
Closing the backend cancels everything and drains the port before freeing.

The rest of the contract:

* ``has_wake``: :meth:`~IocpBackend.wake` posts one packet with
  ``PostQueuedCompletionStatus`` (coalesced: none is posted while one is queued), so the
  core needs no socket-pair waker.  Waits take a batch of completions per call through
  ``GetQueuedCompletionStatusEx`` (ctypes; ``_overlapped`` takes one per call), and an
  idle loop sleeps in it.
* ``admit``: the default, admitting every socket.  A completion port has no limit on the
  handles associated with it, and each AFD poll is one small allocation, so the only limit
  is memory (where ``select`` on Windows stops at 512 sockets).
* ``after_fork``: not applicable; Windows has no ``fork()``.
* ``supported``: ``READ | WRITE | PRIORITY``.  ``PRIORITY`` is AFD's receive expedited:
  out-of-band data, asked for only while the mask has ``PRIORITY`` (a receive poll that
  asked for it would complete at every wait while the urgent byte is unread).

Not supported on Windows: ``AF_UNIX`` (Windows 10 has it, but CPython's ``socket`` module
does not expose it there).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import math
import socket
import sys
from typing import Any, Collection, Dict, Final, List, Optional, Set, Tuple, Union

from pike_core import Backend, CannotRunHere, events
from pike_core.timers import clock

if sys.platform != "win32":
    raise CannotRunHere(
        "needs Windows (I/O completion ports through _overlapped); use epoll, poll or select here"
    )

# Only on Windows, hence after the platform check; typeshed has no stub for it.
import _overlapped  # type: ignore[import-not-found]
import _winapi
from ctypes import wintypes

logger = logging.getLogger("pike_core")

_IOCTL_AFD_POLL: Final = 0x00012024
_AFD_POLL_RECEIVE: Final = 0x0001
_AFD_POLL_RECEIVE_EXPEDITED: Final = 0x0002
_AFD_POLL_SEND: Final = 0x0004
_AFD_POLL_DISCONNECT: Final = 0x0008
_AFD_POLL_ABORT: Final = 0x0010
_AFD_POLL_LOCAL_CLOSE: Final = 0x0020
_AFD_POLL_ACCEPT: Final = 0x0080
_AFD_POLL_CONNECT_FAIL: Final = 0x0100
#: Asked with READ interest: data, a pending connection, or the peer's end of stream.
_AFD_READ: Final = _AFD_POLL_RECEIVE | _AFD_POLL_ACCEPT | _AFD_POLL_DISCONNECT
_AFD_WRITE: Final = _AFD_POLL_SEND
#: Asked whatever the mask: the core's ERROR and INVALID, reported unasked (wepoll asks for
#: the local close too; Wine reports it even unasked).  The end of stream is not among
#: them: a transport that paused reading must not be woken by it, at every wait.
_AFD_ALWAYS: Final = _AFD_POLL_ABORT | _AFD_POLL_CONNECT_FAIL | _AFD_POLL_LOCAL_CLOSE

_SIO_BASE_HANDLE: Final = 0x48000022
_ERROR_IO_PENDING: Final = 997
#: What connect_ex returns for "in progress" on Windows.
_WSAEWOULDBLOCK: Final = 10035
_NO_TIMEOUT: Final = 0x7FFFFFFFFFFFFFFF
#: Completions taken from the port in one call.
_ENTRIES: Final = 256
_WAIT_TIMEOUT: Final = 258
#: How long closing the poller waits for cancelled operations to come back.
_CLOSE_DRAIN_SECONDS: Final = 5.0
_STATUS_SUCCESS: Final = 0

#: Win32 errors a failed ConnectEx completes with, as the WSA codes ``connect_ex``
#: returns (and ``OSError`` maps to ConnectionRefusedError and friends).
_CONNECT_ERRORS: Final = {
    1225: 10061,  # ERROR_CONNECTION_REFUSED -> WSAECONNREFUSED
    1234: 10061,  # ERROR_PORT_UNREACHABLE -> WSAECONNREFUSED
    1231: 10051,  # ERROR_NETWORK_UNREACHABLE -> WSAENETUNREACH
    1232: 10065,  # ERROR_HOST_UNREACHABLE -> WSAEHOSTUNREACH
    1236: 10053,  # ERROR_CONNECTION_ABORTED -> WSAECONNABORTED
    121: 10060,  # ERROR_SEM_TIMEOUT -> WSAETIMEDOUT
    64: 10054,  # ERROR_NETNAME_DELETED -> WSAECONNRESET
}


class _OVERLAPPED(ctypes.Structure):
    _fields_ = [
        ("Internal", ctypes.c_size_t),
        ("InternalHigh", ctypes.c_size_t),
        ("Offset", wintypes.DWORD),
        ("OffsetHigh", wintypes.DWORD),
        ("hEvent", wintypes.HANDLE),
    ]


class _AFD_POLL_HANDLE_INFO(ctypes.Structure):
    _fields_ = [("Handle", wintypes.HANDLE), ("Events", wintypes.ULONG), ("Status", ctypes.c_long)]


class _AFD_POLL_INFO(ctypes.Structure):
    _fields_ = [
        ("Timeout", ctypes.c_longlong),
        ("NumberOfHandles", wintypes.ULONG),
        ("Exclusive", wintypes.ULONG),
        ("Handles", _AFD_POLL_HANDLE_INFO * 1),
    ]


class _OVERLAPPED_ENTRY(ctypes.Structure):
    _fields_ = [
        ("lpCompletionKey", ctypes.c_size_t),
        ("lpOverlapped", ctypes.c_void_p),
        ("Internal", ctypes.c_size_t),
        ("dwNumberOfBytesTransferred", wintypes.DWORD),
    ]


class _UNICODE_STRING(ctypes.Structure):
    _fields_ = [("Length", wintypes.USHORT), ("MaximumLength", wintypes.USHORT), ("Buffer", wintypes.LPWSTR)]


class _OBJECT_ATTRIBUTES(ctypes.Structure):
    _fields_ = [
        ("Length", wintypes.ULONG),
        ("RootDirectory", wintypes.HANDLE),
        ("ObjectName", ctypes.POINTER(_UNICODE_STRING)),
        ("Attributes", wintypes.ULONG),
        ("SecurityDescriptor", ctypes.c_void_p),
        ("SecurityQualityOfService", ctypes.c_void_p),
    ]


class _IO_STATUS_BLOCK(ctypes.Structure):
    _fields_ = [("Status", ctypes.c_size_t), ("Information", ctypes.c_size_t)]


_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
_ws2_32 = ctypes.WinDLL("ws2_32", use_last_error=True)
_ntdll = ctypes.WinDLL("ntdll")

_DeviceIoControl = _kernel32.DeviceIoControl
_DeviceIoControl.argtypes = [
    wintypes.HANDLE,
    wintypes.DWORD,
    ctypes.c_void_p,
    wintypes.DWORD,
    ctypes.c_void_p,
    wintypes.DWORD,
    ctypes.c_void_p,
    ctypes.c_void_p,
]
_DeviceIoControl.restype = wintypes.BOOL
_CancelIoEx = _kernel32.CancelIoEx
_CancelIoEx.argtypes = [wintypes.HANDLE, ctypes.c_void_p]
_CancelIoEx.restype = wintypes.BOOL
_WSAIoctl = _ws2_32.WSAIoctl
_WSAIoctl.argtypes = [
    ctypes.c_size_t,
    wintypes.DWORD,
    ctypes.c_void_p,
    wintypes.DWORD,
    ctypes.c_void_p,
    wintypes.DWORD,
    ctypes.POINTER(wintypes.DWORD),
    ctypes.c_void_p,
    ctypes.c_void_p,
]
_WSAIoctl.restype = ctypes.c_int
_NtCreateFile = _ntdll.NtCreateFile
_NtCreateFile.argtypes = [
    ctypes.POINTER(wintypes.HANDLE),
    wintypes.DWORD,
    ctypes.POINTER(_OBJECT_ATTRIBUTES),
    ctypes.POINTER(_IO_STATUS_BLOCK),
    ctypes.c_void_p,
    wintypes.ULONG,
    wintypes.ULONG,
    wintypes.ULONG,
    wintypes.ULONG,
    ctypes.c_void_p,
    wintypes.ULONG,
]
_NtCreateFile.restype = ctypes.c_long
_RtlNtStatusToDosError = _ntdll.RtlNtStatusToDosError
_RtlNtStatusToDosError.argtypes = [wintypes.ULONG]
_RtlNtStatusToDosError.restype = wintypes.ULONG
# _overlapped's wrapper takes one completion per call; under Wine each call is a round
# trip to wineserver, so a batch per call matters.
_GetQueuedCompletionStatusEx = _kernel32.GetQueuedCompletionStatusEx
_GetQueuedCompletionStatusEx.argtypes = [
    wintypes.HANDLE,
    ctypes.POINTER(_OVERLAPPED_ENTRY),
    wintypes.ULONG,
    ctypes.POINTER(wintypes.ULONG),
    wintypes.DWORD,
    wintypes.BOOL,
]
_GetQueuedCompletionStatusEx.restype = wintypes.BOOL

#: Operations still in flight when a poller closed and did not come back in time: the
#: kernel may yet write into their buffers, so they are never freed.
_abandoned: List[object] = []
_generations = itertools.count(1)


def _open_afd() -> int:
    """A handle to the AFD driver, through which sockets are polled."""
    name = "\\Device\\Afd\\PikeIocp"
    unicode_name = _UNICODE_STRING(len(name) * 2, len(name) * 2, name)
    attributes = _OBJECT_ATTRIBUTES(ctypes.sizeof(_OBJECT_ATTRIBUTES), None, ctypes.pointer(unicode_name), 0)
    handle = wintypes.HANDLE()
    status_block = _IO_STATUS_BLOCK()
    synchronize, share_read_write, file_open = 0x00100000, 3, 1
    status = _NtCreateFile(
        ctypes.byref(handle),
        synchronize,
        ctypes.byref(attributes),
        ctypes.byref(status_block),
        None,
        0,
        share_read_write,
        file_open,
        0,
        None,
        0,
    )
    if status != _STATUS_SUCCESS:
        error = _RtlNtStatusToDosError(status & 0xFFFFFFFF)
        raise ctypes.WinError(error, f"cannot open {name} to poll sockets")
    assert handle.value is not None
    return handle.value


def _base_handle(fd: int) -> int:
    """The socket's handle below any layered service provider (what AFD knows)."""
    base = ctypes.c_void_p()
    returned = wintypes.DWORD()
    if _WSAIoctl(
        fd,
        _SIO_BASE_HANDLE,
        None,
        0,
        ctypes.byref(base),
        ctypes.sizeof(base),
        ctypes.byref(returned),
        None,
        None,
    ):
        raise ctypes.WinError(ctypes.get_last_error(), f"socket {fd}: SIO_BASE_HANDLE failed")
    assert base.value is not None
    return base.value


def _to_mask(afd_events: int) -> int:
    mask = 0
    if afd_events & (_AFD_READ | _AFD_POLL_ABORT):
        mask |= events.READ
    if afd_events & (_AFD_POLL_SEND | _AFD_POLL_CONNECT_FAIL):
        mask |= events.WRITE
    if afd_events & (_AFD_POLL_ABORT | _AFD_POLL_CONNECT_FAIL):
        mask |= events.ERROR
    if afd_events & _AFD_POLL_LOCAL_CLOSE:
        mask |= events.INVALID
    if afd_events & _AFD_POLL_RECEIVE_EXPEDITED:
        mask |= events.PRIORITY
    return mask


class _Poll:
    """One IOCTL_AFD_POLL in flight, with the buffers the kernel writes into."""

    __slots__ = ("afd_events", "fd", "generation", "info", "overlapped")

    def __init__(self, fd: int, generation: int, base: int, afd_events: int) -> None:
        self.fd = fd
        self.generation = generation
        self.afd_events = afd_events
        self.overlapped = _OVERLAPPED()
        self.info = _AFD_POLL_INFO()
        self.info.Timeout = _NO_TIMEOUT
        self.info.NumberOfHandles = 1
        self.info.Handles[0].Handle = base
        self.info.Handles[0].Events = afd_events


class _Connect:
    """One ConnectEx in flight."""

    __slots__ = ("fd", "generation", "overlapped", "sock")

    def __init__(self, sock: socket.socket, generation: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.generation = generation
        self.overlapped = _overlapped.Overlapped(0)


class _Watched:
    """What the poller knows of one registered socket."""

    __slots__ = ("base", "connect_result", "connecting", "generation", "mask", "poll")

    def __init__(self, base: int, mask: int) -> None:
        self.base = base
        self.mask = mask
        self.generation = next(_generations)
        self.poll: Optional[_Poll] = None
        self.connecting: Optional[_Connect] = None
        self.connect_result: Optional[int] = None


class IocpBackend(Backend):
    """A backend on an I/O completion port."""

    name = "iocp"
    supported = events.READ | events.WRITE | events.PRIORITY
    has_wake = True

    def __init__(self) -> None:
        self._port: int = _overlapped.CreateIoCompletionPort(_overlapped.INVALID_HANDLE_VALUE, 0, 0, 0)
        try:
            self._afd = _open_afd()
            _overlapped.CreateIoCompletionPort(self._afd, self._port, 0, 0)
        except BaseException:
            _winapi.CloseHandle(self._port)
            raise
        self._watched: Dict[int, _Watched] = {}
        self._ops: Dict[int, Union[_Poll, _Connect]] = {}
        # Descriptors whose poll must be (re)issued before the next wait.
        self._dirty: Set[int] = set()
        # Any distinct non-NULL address serves for the wake-up packet (it is never read).
        self._wake_token = ctypes.c_char()
        self._wake_address = ctypes.addressof(self._wake_token)
        self._wake_posted = False
        self._entries = (_OVERLAPPED_ENTRY * _ENTRIES)()
        self._removed = wintypes.ULONG()

    def register(self, fd: int, mask: int) -> None:
        self._watched[fd] = _Watched(_base_handle(fd), mask)
        self._dirty.add(fd)

    def modify(self, fd: int, mask: int) -> None:
        self._watched[fd].mask = mask
        self._dirty.add(fd)

    def unregister(self, fd: int) -> None:
        watched = self._watched.pop(fd, None)
        self._dirty.discard(fd)
        if watched is None:
            return
        # The operations stay in self._ops until their completions come back; being of
        # a dropped generation, those completions are then ignored.
        if watched.poll is not None:
            _CancelIoEx(self._afd, ctypes.byref(watched.poll.overlapped))
        if watched.connecting is not None:
            self._cancel_connect(watched.connecting)

    @staticmethod
    def _cancel_connect(op: _Connect) -> None:
        # OSError: it finished already, and its completion is on its way.
        with contextlib.suppress(OSError):
            op.overlapped.cancel()

    # --- connecting -----------------------------------------------------------------

    def start_connect(self, sock: socket.socket, address: Any) -> int:
        watched = self._watched.get(sock.fileno())
        if (
            watched is None
            or sock.type != socket.SOCK_STREAM
            or sock.family not in (socket.AF_INET, socket.AF_INET6)
            or not (isinstance(address, tuple) and len(address) >= 2)
            or not (isinstance(address[0], str) and isinstance(address[1], int))
        ):
            # connect_ex gives whatever verdict (or TypeError) such a connect deserves.
            return super().start_connect(sock, address)
        if not 0 <= address[1] <= 0xFFFF:
            # What socket.connect says, since its address parsing is bypassed here.
            raise OverflowError(f"connect(): port must be 0-65535, got {address[1]}")
        # ConnectEx takes numeric addresses only; connect_ex would resolve names too.
        resolved = socket.getaddrinfo(address[0], address[1], sock.family, sock.type)[0][4]
        try:
            _overlapped.CreateIoCompletionPort(sock.fileno(), self._port, 0, 0)
        except OSError:
            # Associated with another port already: its completions would go there.
            return super().start_connect(sock, address)
        try:
            sock.getsockname()
        except OSError:
            # ConnectEx needs a bound socket; connect() binds an unbound one implicitly.
            _overlapped.BindLocal(sock.fileno(), sock.family)
        op = _Connect(sock, watched.generation)
        try:
            op.overlapped.ConnectEx(sock.fileno(), resolved)
        except OSError as exc:
            return _CONNECT_ERRORS.get(exc.winerror, exc.winerror)
        self._ops[op.overlapped.address] = op
        watched.connecting = op
        watched.connect_result = None
        if watched.poll is not None:
            _CancelIoEx(self._afd, ctypes.byref(watched.poll.overlapped))
        return _WSAEWOULDBLOCK

    def connect_error(self, sock: socket.socket) -> int:
        watched = self._watched.get(sock.fileno())
        if watched is None or watched.connect_result is None:
            return super().connect_error(sock)
        result, watched.connect_result = watched.connect_result, None
        return result

    # --- waiting --------------------------------------------------------------------

    def wake(self) -> None:
        # A packet already queued wakes the wait as well; the flag is cleared when the
        # loop dequeues it, before it runs the queued callbacks.
        if self._wake_posted:
            return
        self._wake_posted = True
        _overlapped.PostQueuedCompletionStatus(self._port, 0, 0, self._wake_address)

    def _arm(self, ready: Dict[int, int]) -> None:
        """Issue the poll of every socket whose poll finished or whose interest changed."""
        for fd in self._dirty:
            watched = self._watched.get(fd)
            if watched is None or watched.connecting is not None:
                continue
            wanted = (
                _AFD_ALWAYS
                | (_AFD_READ if watched.mask & events.READ else 0)
                | (_AFD_WRITE if watched.mask & events.WRITE else 0)
                | (_AFD_POLL_RECEIVE_EXPEDITED if watched.mask & events.PRIORITY else 0)
            )
            current = watched.poll
            if current is not None:
                if current.afd_events != wanted:
                    # Its completion (cancelled, or with events) makes the fd dirty again.
                    _CancelIoEx(self._afd, ctypes.byref(current.overlapped))
                continue
            op = _Poll(fd, watched.generation, watched.base, wanted)
            size = ctypes.sizeof(op.info)
            info = ctypes.byref(op.info)
            if not _DeviceIoControl(
                self._afd, _IOCTL_AFD_POLL, info, size, info, size, None, ctypes.byref(op.overlapped)
            ):
                error = ctypes.get_last_error()
                if error != _ERROR_IO_PENDING:
                    # The handle is no longer a socket (closed without unregistering).
                    ready[fd] = events.INVALID
                    continue
            # Even a poll that succeeded at once completes through the port.
            self._ops[ctypes.addressof(op.overlapped)] = op
            watched.poll = op
        self._dirty.clear()

    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        deadline = None if timeout is None else clock() + timeout
        ready: Dict[int, int] = {}
        while True:
            self._arm(ready)
            if ready:
                wait = 0
            elif deadline is None:
                wait = _overlapped.INFINITE
            else:
                wait = min(math.ceil(max(deadline - clock(), 0.0) * 1000), _overlapped.INFINITE - 1)
            woken = False
            taken = self._dequeue(wait)
            while True:
                for address, error in taken:
                    woken = self._complete(address, error, ready) or woken
                if len(taken) < _ENTRIES:
                    break
                # A full batch: more completions may be queued.  Take them now, without
                # waiting, so one wait reports every ready socket (a selectors caller
                # expects that of select()).
                taken = self._dequeue(0)
            # Only cancelled or stale operations came back: keep waiting, re-armed.
            if ready or woken or (deadline is not None and clock() >= deadline):
                return ready.items()

    def _dequeue(self, wait: int) -> List[Tuple[int, int]]:
        """Take a batch of completions, waiting at most ``wait`` ms for the first.

        :returns: ``(OVERLAPPED address, Win32 error)`` pairs; empty on time-out.
        """
        entries = self._entries
        if not _GetQueuedCompletionStatusEx(
            self._port, entries, _ENTRIES, ctypes.byref(self._removed), wait, False
        ):
            error = ctypes.get_last_error()
            if error == _WAIT_TIMEOUT:
                return []
            raise ctypes.WinError(error, "GetQueuedCompletionStatusEx failed")
        # Internal holds the operation's NTSTATUS (0 for the wake-up packet).
        return [
            (
                entries[i].lpOverlapped or 0,
                _RtlNtStatusToDosError(entries[i].Internal & 0xFFFFFFFF) if entries[i].Internal else 0,
            )
            for i in range(self._removed.value)
        ]

    def _complete(self, address: int, error: int, ready: Dict[int, int]) -> bool:
        """Account for one dequeued completion; True if it was the wake-up packet."""
        op = self._ops.pop(address, None)
        if op is None:
            if address == self._wake_address:
                self._wake_posted = False
                return True
            return False
        watched = self._watched.get(op.fd)
        if watched is None or watched.generation != op.generation:
            return False
        self._dirty.add(op.fd)
        if isinstance(op, _Connect):
            watched.connecting = None
            if error == 0:
                # Without it the socket does not know it is connected: getpeername,
                # shutdown and SO_ERROR would fail.
                op.sock.setsockopt(socket.SOL_SOCKET, _overlapped.SO_UPDATE_CONNECT_CONTEXT, 0)
                watched.connect_result = 0
                ready[op.fd] = ready.get(op.fd, 0) | events.WRITE
            else:
                watched.connect_result = _CONNECT_ERRORS.get(error, error)
                ready[op.fd] = ready.get(op.fd, 0) | events.WRITE | events.ERROR
            return False
        watched.poll = None
        if error or watched.connecting is not None or not op.info.NumberOfHandles:
            # Cancelled (interest changed, or a ConnectEx took over the socket).
            return False
        mask = _to_mask(op.info.Handles[0].Events) & (watched.mask | events.UNASKED)
        if mask:
            ready[op.fd] = ready.get(op.fd, 0) | mask
        return False

    def close(self) -> None:
        # Cancel everything, then take the completions back: until then the kernel may
        # still write into the operations' buffers.
        _CancelIoEx(self._afd, None)
        for op in self._ops.values():
            if isinstance(op, _Connect):
                self._cancel_connect(op)
        deadline = clock() + _CLOSE_DRAIN_SECONDS
        while self._ops:
            left = deadline - clock()
            if left <= 0:
                break
            taken = self._dequeue(math.ceil(left * 1000))
            if not taken:
                break
            for address, _error in taken:
                self._ops.pop(address, None)
        if self._ops:
            logger.warning(
                "pike_core: %d IOCP operations did not complete within %.0f s of closing %r; "
                "their buffers are kept for the life of the process",
                len(self._ops),
                _CLOSE_DRAIN_SECONDS,
                self,
            )
            _abandoned.append(self._ops)
        self._watched.clear()
        self._dirty.clear()
        _winapi.CloseHandle(self._afd)
        _winapi.CloseHandle(self._port)
