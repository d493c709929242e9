"""Helpers for the conformance suite: recording transports, socket pairs, waiting."""

from __future__ import annotations

import collections
import ctypes
import os
import socket
import sys
import time
import traceback
from typing import Any, Callable, Collection, List, Optional, Tuple

from pike_core import Backend, Poller, Transport, events

#: Upper bound for waiting on loopback events; generous for shared, noisy machines.
DEADLINE = 10.0


def run_until(
    poller: Poller, condition: Callable[[], object], timeout: float = DEADLINE, what: str = ""
) -> None:
    """Poll until ``condition()`` holds; fail the test after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not condition():
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition!r}")
        poller.poll(min(left, 0.5))


class Recorder(Transport):
    """A transport that records every callback, in order, with what it saw."""

    def __init__(self, poller: Poller, sock: Optional[socket.socket] = None) -> None:
        self.calls: List[str] = []
        self.errors: List[BaseException] = []
        self.received = bytearray()
        self.read_size = 65536
        super().__init__(alternate_poller=poller, sock=sock)

    def handle_connect(self) -> None:
        sock = self.socket
        assert sock is not None
        # The rule under test: connected only after SO_ERROR said so.
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        sock.getpeername()
        self.calls.append("connect")

    def handle_read(self) -> None:
        self.calls.append("read")
        self.received += self.recv(self.read_size)

    def handle_write(self) -> None:
        self.calls.append("write")

    def handle_close(self) -> None:
        self.calls.append("close")
        self.close()

    def handle_error(self) -> None:
        self.calls.append("error")
        self.errors.append(sys.exc_info()[1])  # type: ignore[arg-type]
        self.close()

    def count(self, name: str) -> int:
        return self.calls.count(name)


class Listener(Transport):
    """A listening transport that wraps each accepted socket in ``factory``."""

    def __init__(
        self,
        poller: Poller,
        factory: Callable[[Poller, socket.socket], Transport],
        family: int = socket.AF_INET,
        address: Any = ("127.0.0.1", 0),
    ) -> None:
        super().__init__(alternate_poller=poller)
        self.factory = factory
        self.accepted: List[Transport] = []
        self.create_socket(family, socket.SOCK_STREAM)
        if family != getattr(socket, "AF_UNIX", None):
            self.set_reuse_addr()
        self.bind(address)
        self.listen(256)

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        self.accepted.append(self.factory(self.poller, sock))


class WriteEcho(Transport):
    """Echoes through the bounded buffered :meth:`Transport.write`."""

    def handle_read(self) -> None:
        data = self.recv(65536)
        if data:
            self.write(data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def connected_pair(family: int = socket.AF_INET) -> Tuple[socket.socket, socket.socket]:
    """Two connected non-blocking stream sockets over loopback (real TCP for AF_INET)."""
    if family == socket.AF_INET:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            a = socket.create_connection(listener.getsockname())
            b, _ = listener.accept()
    else:
        a, b = socket.socketpair(family)
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def drain_into(sock: socket.socket, got: bytearray) -> None:
    """Add to ``got`` everything the non-blocking ``sock`` has received so far."""
    try:
        while True:
            data = sock.recv(1 << 20)
            if not data:
                return
            got.extend(data)
    except BlockingIOError:
        pass


def read_until(poller: Poller, sock: socket.socket, size: int, what: str, timeout: float = DEADLINE) -> bytes:
    """Poll until the non-blocking ``sock`` (a raw peer of a transport) has received
    ``size`` bytes; everything it received."""
    got = bytearray()

    def arrived() -> bool:
        drain_into(sock, got)
        return len(got) >= size

    run_until(poller, arrived, timeout, what)
    return bytes(got)


def read_to_end(poller: Poller, sock: socket.socket, what: str, timeout: float = DEADLINE) -> bytes:
    """Poll until the non-blocking ``sock`` (a raw peer of a transport) reads end of
    stream; everything it received before."""
    got = bytearray()

    def ended() -> bool:
        while True:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                return False
            if not data:
                return True
            got.extend(data)

    run_until(poller, ended, timeout, what)
    return bytes(got)


def assert_quiet_while_writes_wait(poller: Poller, transport: Transport, why: str) -> None:
    """``transport`` has writes waiting for a peer that reads nothing: the poller must
    idle all the same (watched for writing only, whatever else the socket holds)."""
    for _ in range(3):
        poller.poll(0.01)
    assert transport.write_buffer_size > 0, "the peer reads nothing yet, so some bytes must wait"
    waits, cpu = idle_cost(poller)
    assert waits <= 2, f"{waits} waits in 0.5 s {why}, writes waiting"
    assert cpu < 0.05, f"{cpu:.2f} s of CPU in 0.5 s {why}, writes waiting"


def in_forked_child(body: Callable[[], object]) -> None:
    """Run ``body`` in a child made by ``fork()``; fail with the child's traceback if it
    raised (the child reports through a pipe and leaves with ``os._exit``)."""
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        status = 1
        try:
            os.close(report_r)
            body()
            status = 0
        except BaseException:
            os.write(report_w, traceback.format_exc().encode())
        finally:
            os._exit(status)
    os.close(report_w)
    with os.fdopen(report_r, "rb") as report:
        problem = report.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"the child failed:\n{problem}"


def open_descriptor_count() -> int:
    """How many descriptors (handles, on Windows) this process holds open."""
    if sys.platform == "win32":
        count = ctypes.c_ulong()
        kernel32 = ctypes.WinDLL("kernel32")  # type: ignore[attr-defined,unused-ignore]
        if not kernel32.GetProcessHandleCount(kernel32.GetCurrentProcess(), ctypes.byref(count)):
            raise OSError("GetProcessHandleCount failed")
        return int(count.value)
    for folder in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(folder):
            # listdir itself opens one descriptor, listed in both counts alike.
            return len(os.listdir(folder))
    raise OSError("cannot count open descriptors: neither /proc/self/fd nor /dev/fd exists")


class Counts:
    """What the core asked of a backend, and what the backend answered, per descriptor."""

    def __init__(self) -> None:
        self.waits = 0
        #: (operation, fd) -> calls, for "register", "modify" and "unregister".
        self.calls: collections.Counter[Tuple[str, int]] = collections.Counter()
        #: fd -> waits that reported the WRITE bit for it.
        self.write_events: collections.Counter[int] = collections.Counter()


class CountingBackend(Backend):
    """Mixed in before a real backend class (see :func:`counted`), it counts the calls."""

    counts: Counts

    def register(self, fd: int, mask: int) -> None:
        self.counts.calls["register", fd] += 1
        super().register(fd, mask)  # type: ignore[safe-super]

    def modify(self, fd: int, mask: int) -> None:
        self.counts.calls["modify", fd] += 1
        super().modify(fd, mask)  # type: ignore[safe-super]

    def unregister(self, fd: int) -> None:
        self.counts.calls["unregister", fd] += 1
        super().unregister(fd)  # type: ignore[safe-super]

    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        self.counts.waits += 1
        ready = super().wait(timeout)  # type: ignore[safe-super]
        for fd, mask in ready:
            if mask & events.WRITE:
                self.counts.write_events[fd] += 1
        return ready


def counted(poller: Poller) -> Tuple[Poller, Counts]:
    """A new poller on the backend class of ``poller``, counting what the core asks of
    its backend (the caller closes it)."""
    base = type(poller.backend)
    counts = Counts()
    counting: type = type(f"Counting{base.__name__}", (CountingBackend, base), {"counts": counts})
    return Poller(counting()), counts


class WaitLog:
    """Records the timeouts a poller passes to its backend's ``wait``: installed on the
    backend object itself, so any backend, ours or a third party's, can be watched."""

    def __init__(self, poller: Poller) -> None:
        self.timeouts: List[Optional[float]] = []
        self._backend = poller.backend
        self._wait = self._backend.wait

        def wait(timeout: Optional[float]) -> Collection[Tuple[int, int]]:
            self.timeouts.append(timeout)
            return self._wait(timeout)

        self._backend.wait = wait  # type: ignore[method-assign]

    def remove(self) -> None:
        del self._backend.wait

    def __enter__(self) -> WaitLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def waits_while_idle(poller: Poller, seconds: float = 0.5) -> int:
    """How many OS waits ``poller`` makes in ``seconds`` of ``loop()`` with nothing to
    do: a loop that blocks makes one or two, a spinning one thousands."""
    with WaitLog(poller) as log:
        poller.loop(timeout=seconds)
    return len(log.timeouts)


def idle_cost(poller: Poller, seconds: float = 0.5) -> Tuple[int, float]:
    """``(waits, CPU seconds)`` of ``seconds`` of ``loop()`` with nothing to do on
    ``poller``.  A backend that spins inside one wait (a
    completion it drops and asks for again) shows in the CPU, not in the waits: a
    blocked loop uses next to none, such a spin 0.15 s even under Wine, where most of
    it is spent in wineserver and not counted."""
    cpu = time.process_time()
    waits = waits_while_idle(poller, seconds)
    return waits, time.process_time() - cpu
