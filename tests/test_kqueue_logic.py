"""The kqueue backend on any system: its kernel-free logic, and its system calls over a
simulated kernel.

The records fed to ``pike_kqueue.kevents`` have the fields of ``struct kevent`` and the
values kqueue(2) documents for them: what the kernel returns for a socket's read and
write filters, and the EV_ERROR entries it puts in the event list for a refused change,
in the shape of both kernels (FreeBSD replaces the change's flags with EV_ERROR, XNU ORs
EV_ERROR in).  This checks which filters are asked for, the translation, the attribution
and the batching.

``pike_kqueue.backend`` itself is then imported over a *simulated* ``select.kqueue``
(:class:`FakeKernel`): a descriptor table that hands out the lowest free number, drops
kqueues from a child's table at a simulated fork as kqueue(2) says, and a kqueue object
that closes its number when closed or collected as CPython before 3.12.1 does
(gh-110395).  That proves the module loads wherever ``select.kqueue`` exists, what it
passes to ``kevent()``, and what its ``after_fork`` leaves open; it says nothing of a
real kernel's answers.  None of this is a substitute for a run on a real kqueue kernel,
which the conformance suite does in CI's macOS job (the tests at the end of this file
run there too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gc
import importlib
import os
import select
import socket
import sys
import weakref
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Type

import pike_kqueue
import pytest
from pike_kqueue.kevents import (
    EV_ADD,
    EV_DELETE,
    EV_EOF,
    EV_ERROR,
    FILTER_READ,
    FILTER_WRITE,
    MAX_EVENTS,
    Filters,
)

from pike_core import Backend, CannotRunHere, Poller, available_backends
from pike_core.conformance.support import Recorder, connected_pair, in_forked_child, run_until
from pike_core.events import ERROR, INVALID, PRIORITY, READ, WRITE

HAS_KQUEUE = hasattr(select, "kqueue")


@dataclasses.dataclass
class Kev:
    """A ``struct kevent``: the fields ``select.kevent`` exposes, in its argument order."""

    ident: int
    filter: int
    flags: int = 0
    fflags: int = 0
    data: int = 0


def readable(fd: int, nbytes: int = 1, eof: bool = False, error: int = 0) -> Kev:
    """EVFILT_READ on a socket: ``data`` is the bytes to read; on EOF, ``fflags`` has
    the socket error, if any."""
    return Kev(fd, FILTER_READ, EV_EOF if eof else 0, error, nbytes)


def writable(fd: int, space: int = 65536, eof: bool = False, error: int = 0) -> Kev:
    """EVFILT_WRITE on a socket: ``data`` is the space left in the send buffer."""
    return Kev(fd, FILTER_WRITE, EV_EOF if eof else 0, error, space)


Refuse = Callable[[Tuple[int, int, int], int], Kev]


@pytest.fixture(params=["freebsd", "xnu"])
def refused(request: pytest.FixtureRequest) -> Refuse:
    """Builds the EV_ERROR entry a kernel returns for a change it refused with an errno."""
    kernel: str = request.param

    def build(change: Tuple[int, int, int], err: int) -> Kev:
        ident, filt, flags = change
        returned = EV_ERROR if kernel == "freebsd" else flags | EV_ERROR
        return Kev(ident, filt, returned, 0, err)

    return build


def registered(*fds: int, mask: int = READ) -> Filters:
    """Filters whose descriptors' changes went to the kernel in one wait."""
    filters = Filters()
    for fd in fds:
        filters.register(fd, mask)
    filters.changes()
    filters.translate([])
    return filters


# --- which filters, batched into the next wait ---------------------------------------


@pytest.mark.parametrize(
    ("mask", "added"),
    [(READ, [FILTER_READ]), (WRITE, [FILTER_WRITE]), (READ | WRITE, [FILTER_READ, FILTER_WRITE])],
    ids=["read", "write", "read+write"],
)
def test_register_adds_the_filters_of_its_mask_at_the_next_wait(mask: int, added: List[int]) -> None:
    filters = Filters()
    filters.register(5, mask)
    # Plain EV_ADD: no EV_ONESHOT or EV_CLEAR, so each filter is level-triggered.
    assert filters.changes() == [(5, filt, EV_ADD) for filt in added]
    assert filters.changes() == []


def test_a_write_only_mask_puts_no_read_filter_in_the_kernel() -> None:
    # A transport that paused reading while a write is pending: a read filter would
    # report its unread data at every wait.
    filters = registered(5, mask=READ | WRITE)
    filters.modify(5, WRITE)
    assert filters.changes() == [(5, FILTER_READ, EV_DELETE)]
    assert filters.unregister(5) == [(5, FILTER_WRITE, EV_DELETE)]


def test_read_then_write_only_then_read_again_swaps_the_filters() -> None:
    filters = registered(5)
    filters.modify(5, WRITE)
    assert filters.changes() == [(5, FILTER_READ, EV_DELETE), (5, FILTER_WRITE, EV_ADD)]
    filters.translate([writable(5)])
    filters.modify(5, READ)
    assert filters.changes() == [(5, FILTER_READ, EV_ADD), (5, FILTER_WRITE, EV_DELETE)]
    assert filters.unregister(5) == [(5, FILTER_READ, EV_DELETE)]


def test_changes_of_many_descriptors_go_into_one_change_list() -> None:
    filters = registered(3)
    filters.register(5, READ)
    filters.register(6, WRITE)
    filters.modify(3, READ | WRITE)
    filters.modify(6, READ | WRITE)
    assert filters.changes() == [
        (5, FILTER_READ, EV_ADD),
        (6, FILTER_READ, EV_ADD),
        (6, FILTER_WRITE, EV_ADD),
        (3, FILTER_WRITE, EV_ADD),
    ]


def test_a_mask_changed_and_changed_back_between_waits_makes_no_change() -> None:
    filters = registered(5)
    filters.modify(5, READ | WRITE)
    filters.modify(5, WRITE)
    filters.modify(5, READ)
    assert filters.changes() == []


def test_dropping_write_interest_deletes_the_write_filter() -> None:
    filters = registered(5, mask=READ | WRITE)
    filters.modify(5, READ)
    assert filters.changes() == [(5, FILTER_WRITE, EV_DELETE)]


def test_filters_stay_in_the_kernel_after_their_events() -> None:
    # Level-triggered: delivering an event deletes nothing and asks for nothing again.
    filters = registered(5, mask=READ | WRITE)
    assert filters.translate([readable(5), writable(5)]) == [(5, READ | WRITE)]
    assert filters.changes() == []
    assert filters.unregister(5) == [(5, FILTER_READ, EV_DELETE), (5, FILTER_WRITE, EV_DELETE)]


def test_unregister_before_any_wait_drops_the_pending_changes_and_deletes_nothing() -> None:
    filters = Filters()
    filters.register(5, READ | WRITE)
    assert filters.unregister(5) == []
    assert filters.changes() == []


def test_unregister_deletes_the_filters_the_kernel_holds() -> None:
    filters = registered(5, mask=READ | WRITE)
    filters.register(6, WRITE)
    filters.changes()
    filters.modify(5, READ)  # not submitted yet: the kernel still holds both of 5's
    assert filters.unregister(5) == [(5, FILTER_READ, EV_DELETE), (5, FILTER_WRITE, EV_DELETE)]
    assert filters.unregister(6) == [(6, FILTER_WRITE, EV_DELETE)]
    assert filters.changes() == []


def test_a_number_reused_after_unregister_starts_afresh() -> None:
    filters = registered(5, mask=READ | WRITE)
    filters.unregister(5)
    filters.register(5, WRITE)
    assert filters.changes() == [(5, FILTER_WRITE, EV_ADD)]


@pytest.mark.parametrize("mask", [0, PRIORITY, READ | PRIORITY, 0x40])
def test_a_mask_kqueue_cannot_watch_is_refused_with_the_reason(mask: int) -> None:
    filters = registered(5)
    with pytest.raises(ValueError, match=r"descriptor 5 .* READ \(0x1\) and WRITE \(0x4\) only"):
        filters.modify(5, mask)
    with pytest.raises(ValueError, match="descriptor 6"):
        filters.register(6, mask)
    assert filters.changes() == []
    assert filters.unregister(5) == [(5, FILTER_READ, EV_DELETE)]


def test_the_event_list_has_room_for_an_error_per_change() -> None:
    filters = registered(*range(10, 20))
    assert filters.max_events(0) == 20
    assert filters.max_events(7) == 27
    assert registered(*range(10, 10 + MAX_EVENTS)).max_events(3) == MAX_EVENTS + 3


def test_the_event_list_is_never_empty() -> None:
    # kqueue(2): "When nevents is zero, kevent() will return immediately even if there
    # is a timeout specified".
    assert Filters().max_events(0) == 1


# --- translating events --------------------------------------------------------------


def test_read_and_write_of_one_descriptor_make_one_pair() -> None:
    filters = registered(5, 6, mask=READ | WRITE)
    pairs = filters.translate([readable(5), writable(6), writable(5), readable(6)])
    assert sorted(pairs) == [(5, READ | WRITE), (6, READ | WRITE)]


def test_eof_is_read_so_data_still_pending_is_read_first() -> None:
    # "It is possible for EOF to be returned (indicating the connection is gone) while
    # there is still data pending in the socket buffer."
    filters = registered(5)
    assert filters.translate([readable(5, nbytes=10, eof=True)]) == [(5, READ)]


def test_eof_with_a_socket_error_is_read_and_error() -> None:
    filters = registered(5)
    assert filters.translate([readable(5, 0, eof=True, error=errno.ECONNRESET)]) == [(5, READ | ERROR)]


def test_a_failed_connect_is_write_and_error() -> None:
    # A connecting transport asks for WRITE alone.
    filters = registered(5, mask=WRITE)
    received = [writable(5, 0, eof=True, error=errno.ECONNREFUSED)]
    assert filters.translate(received) == [(5, WRITE | ERROR)]


def test_write_eof_without_an_error_is_plain_write() -> None:
    filters = registered(5, mask=WRITE)
    assert filters.translate([writable(5, eof=True)]) == [(5, WRITE)]


# --- errors on changes (EV_ERROR entries) --------------------------------------------


def test_enoent_on_a_delete_is_not_an_error(refused: Refuse) -> None:
    # After EINTR "all changes in the changelist have been applied" and CPython calls
    # kevent() again with the same list: the delete meets ENOENT the second time.
    filters = registered(5, mask=READ | WRITE)
    filters.modify(5, READ)
    [delete] = filters.changes()
    assert filters.translate([refused(delete, errno.ENOENT)]) == []
    assert filters.unregister(5) == [(5, FILTER_READ, EV_DELETE)]


def test_ebadf_on_an_add_marks_that_descriptor_invalid(refused: Refuse) -> None:
    filters = registered(5)
    filters.register(6, READ)
    filters.register(7, READ)
    changes = filters.changes()
    assert filters.translate([refused(changes[0], errno.EBADF)]) == [(6, INVALID)]
    # Not in the kernel, so nothing to delete; and not retried at every wait.
    assert filters.changes() == []
    assert filters.unregister(6) == []
    assert filters.unregister(7) == [(7, FILTER_READ, EV_DELETE)]


def test_other_errors_on_an_add_mark_that_descriptor_error(refused: Refuse) -> None:
    filters = registered(5, 6)
    filters.modify(6, READ | WRITE)
    [add] = filters.changes()
    assert filters.translate([refused(add, errno.ENOMEM), readable(5)]) == [(6, ERROR), (5, READ)]
    assert filters.unregister(6) == [(6, FILTER_READ, EV_DELETE)]


def test_a_refused_filter_is_asked_for_again_when_the_mask_asks_anew(refused: Refuse) -> None:
    filters = registered(6)
    filters.modify(6, READ | WRITE)
    [add] = filters.changes()
    filters.translate([refused(add, errno.ENOMEM)])
    filters.modify(6, READ)
    assert filters.changes() == []
    filters.modify(6, READ | WRITE)
    assert filters.changes() == [(6, FILTER_WRITE, EV_ADD)]


def test_epipe_on_an_add_counts_as_added(refused: Refuse) -> None:
    # Older macOS refuses a descriptor whose peer is gone with EPIPE, yet registers it.
    filters = Filters()
    filters.register(5, READ)
    [add] = filters.changes()
    assert filters.translate([refused(add, errno.EPIPE)]) == []
    assert filters.unregister(5) == [(5, FILTER_READ, EV_DELETE)]


def test_a_delete_refused_for_a_bad_descriptor_is_reported(refused: Refuse) -> None:
    filters = registered(5, mask=READ | WRITE)
    filters.modify(5, WRITE)
    [delete] = filters.changes()
    assert filters.translate([refused(delete, errno.EBADF)]) == [(5, INVALID)]
    assert filters.unregister(5) == [(5, FILTER_WRITE, EV_DELETE)]


# --- the backend's system calls, over a simulated kernel -----------------------------


@dataclasses.dataclass
class Call:
    """One ``kqueue.control()`` call, by the number of the kqueue called (it is the
    caller's: a kqueue whose number was taken cannot call)."""

    kqueue: int
    changes: List[Kev]
    max_events: int
    timeout: Optional[float]


class FakeKernel:
    """A process's descriptor table with kqueue(2)'s fork rule, and ``select.kqueue``
    over it as CPython before 3.12.1 has it (see the module)."""

    def __init__(self) -> None:
        self.table: Dict[int, object] = {0: "stdin", 1: "stdout", 2: "stderr"}
        self._made: List[weakref.ref[FakeKqueue]] = []
        self.calls: List[Call] = []
        self.answer: List[Kev] = []
        """What the next ``control()`` returns."""
        self.failure: Optional[OSError] = None
        """What the next ``control()`` raises."""

    def _lowest_free(self) -> int:
        return min(set(range(len(self.table) + 1)) - self.table.keys())

    def kqueue(self) -> FakeKqueue:
        """``select.kqueue()``: the new queue takes the lowest free number."""
        kq = FakeKqueue(self, self._lowest_free())
        self.table[kq.fd] = kq
        self._made.append(weakref.ref(kq))
        return kq

    def made(self, index: int) -> FakeKqueue:
        """The kqueue made ``index``-th (counting as a list does).  Held weakly here, so
        that what a test lets go can be collected."""
        kq = self._made[index]()
        assert kq is not None, f"kqueue {index} was collected"
        return kq

    def open_file(self, name: str) -> int:
        fd = self._lowest_free()
        self.table[fd] = name
        return fd

    def close(self, fd: int) -> None:
        if fd not in self.table:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        del self.table[fd]

    def fork(self) -> None:
        """Become the child: "The queue is not inherited by a child created with
        fork(2)"; the Python objects are, with the numbers they held."""
        self.table = {fd: what for fd, what in self.table.items() if not isinstance(what, FakeKqueue)}


class FakeKqueue:
    """``select.kqueue`` before CPython 3.12.1: it closes its number when closed or
    collected, whoever has the number by then."""

    def __init__(self, kernel: FakeKernel, fd: int) -> None:
        self.kernel = kernel
        self.fd = fd

    def control(self, changes: Sequence[Kev], max_events: int, timeout: Optional[float] = None) -> List[Kev]:
        if self.kernel.table.get(self.fd) is not self:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        self.kernel.calls.append(Call(self.fd, list(changes), max_events, timeout))
        failure, self.kernel.failure = self.kernel.failure, None
        if failure is not None:
            raise failure
        answer, self.kernel.answer = self.kernel.answer, []
        return answer

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            self.kernel.close(fd)

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            self.close()

    def is_open(self) -> bool:
        """Its number still stands for it in the table."""
        return self.kernel.table.get(self.fd) is self


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    """The simulated kernel, installed as ``select.kqueue`` and ``select.kevent``."""
    kernel = FakeKernel()
    monkeypatch.setattr(select, "kqueue", kernel.kqueue, raising=False)
    monkeypatch.setattr(select, "kevent", Kev, raising=False)
    return kernel


@pytest.fixture
def backend_class(kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch) -> Type[Backend]:
    """``KqueueBackend`` of ``pike_kqueue.backend`` imported afresh over the simulated
    kernel; the module is forgotten afterwards, so other tests import the real one."""
    name = "pike_kqueue.backend"
    # Recorded so that monkeypatch restores (or removes) them at the end, then cleared.
    monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(pike_kqueue, "backend", None, raising=False)
    del sys.modules[name]
    delattr(pike_kqueue, "backend")
    module = importlib.import_module(name)
    cls: Type[Backend] = module.KqueueBackend
    return cls


def test_the_backend_loads_wherever_select_kqueue_exists(backend_class: Type[Backend]) -> None:
    # Where Python has no kqueue (Linux, here) the simulated select.kqueue is all there
    # is: the module decides by it, not by sys.platform.
    backend = backend_class()
    assert backend.name == "kqueue"
    assert backend.supported == READ | WRITE  # no PRIORITY: see pike_kqueue.kevents
    backend.close()


def test_changes_ride_in_the_wait_and_deletes_go_at_once(
    kernel: FakeKernel, backend_class: Type[Backend]
) -> None:
    backend = backend_class()
    kq = kernel.made(0)
    backend.register(5, READ)
    backend.register(6, WRITE)
    assert kernel.calls == []
    kernel.answer = [readable(5), writable(6)]
    assert sorted(backend.wait(2.5)) == [(5, READ), (6, WRITE)]
    assert kernel.calls == [
        Call(kq.fd, [Kev(5, FILTER_READ, EV_ADD), Kev(6, FILTER_WRITE, EV_ADD)], 4 + 2, 2.5)
    ]
    backend.modify(5, WRITE)
    backend.wait(None)
    assert kernel.calls[-1] == Call(
        kq.fd, [Kev(5, FILTER_READ, EV_DELETE), Kev(5, FILTER_WRITE, EV_ADD)], 4 + 2, None
    )
    backend.unregister(5)
    assert kernel.calls[-1] == Call(kq.fd, [Kev(5, FILTER_WRITE, EV_DELETE)], 0, 0)
    backend.close()
    assert not kq.is_open()


def test_the_timeout_goes_to_the_kernel_as_the_core_gives_it(
    kernel: FakeKernel, backend_class: Type[Backend]
) -> None:
    # The core clamps it to MAX_WAIT, one day, which meets FreeBSD's 24-hour limit.
    backend = backend_class()
    for timeout in (0.0, 0.001, 86400.0, None):
        backend.wait(timeout)
        assert kernel.calls[-1].timeout == timeout
    backend.close()


def test_unregister_takes_a_filter_already_gone_as_done_and_raises_other_errors(
    kernel: FakeKernel, backend_class: Type[Backend]
) -> None:
    backend = backend_class()
    backend.register(5, READ)
    backend.register(6, READ)
    backend.register(7, READ)
    backend.wait(0)
    kernel.failure = OSError(errno.EBADF, "closed behind the poller's back")
    backend.unregister(5)
    kernel.failure = OSError(errno.ENOENT, "gone")
    backend.unregister(6)
    kernel.failure = OSError(errno.ENOMEM, "no memory")
    with pytest.raises(OSError, match="no memory") as caught:
        backend.unregister(7)
    assert caught.value.errno == errno.ENOMEM
    backend.close()


def test_after_fork_leaves_the_childs_new_kqueue_open(
    kernel: FakeKernel, backend_class: Type[Backend]
) -> None:
    parent = backend_class()
    number = kernel.made(0).fd
    parent.register(5, READ)
    parent.wait(0)
    kernel.fork()
    child = parent.after_fork()
    new = kernel.made(1)
    # The hazard is real here: the child's kqueue took the number the old object holds.
    assert new.fd == number
    # The core drops the parent's backend in the child; the collector may take it.
    del parent
    gc.collect()
    assert new.is_open()
    child.register(5, READ)
    child.wait(0)
    assert kernel.calls[-1] == Call(number, [Kev(5, FILTER_READ, EV_ADD)], 2 + 1, 0)
    child.close()


def test_after_fork_of_several_backends_closes_nothing_the_child_opened(
    kernel: FakeKernel, backend_class: Type[Backend]
) -> None:
    first, second = backend_class(), backend_class()
    kernel.fork()
    # Another fork handler ran first and took the lowest free number, the first's old one.
    log = kernel.open_file("log")
    # The core re-opens pollers in no set order.
    children = [second.after_fork(), first.after_fork()]
    del first, second
    gc.collect()
    assert kernel.table.get(log) == "log"
    assert kernel.made(-1).is_open()
    assert kernel.made(-2).is_open()
    for child in children:
        child.wait(0)
        child.close()


@pytest.mark.skipif(HAS_KQUEUE, reason="this platform has select.kqueue")
def test_without_kqueue_the_backend_module_refuses_to_import_and_says_why() -> None:
    with pytest.raises(CannotRunHere, match=r"select\.kqueue is missing"):
        importlib.import_module("pike_kqueue.backend")
    [status] = [s for s in available_backends() if s.name == "kqueue"]
    assert not status.usable
    assert not status.broken
    assert status.problem is not None
    assert "select.kqueue is missing" in status.problem


# --- the backend on a real kqueue (macOS, the BSDs: CI's macOS job) ------------------

needs_kqueue = pytest.mark.skipif(not HAS_KQUEUE, reason="needs select.kqueue (macOS or a BSD)")


@pytest.fixture
def kqueue_poller() -> Iterator[Poller]:
    from pike_kqueue.backend import KqueueBackend

    poller = Poller(KqueueBackend())
    try:
        yield poller
    finally:
        poller.close()


@needs_kqueue
def test_a_write_only_mask_reports_no_unread_data() -> None:
    from pike_kqueue.backend import KqueueBackend

    backend = KqueueBackend()
    a, b = socket.socketpair()
    fd = a.fileno()
    try:
        b.send(b"unread")
        backend.register(fd, WRITE)
        assert list(backend.wait(0.2)) == [(fd, WRITE)]
        backend.modify(fd, READ | WRITE)
        assert list(backend.wait(0.2)) == [(fd, READ | WRITE)]
        backend.modify(fd, WRITE)
        assert list(backend.wait(0.2)) == [(fd, WRITE)]
        backend.modify(fd, READ)
        assert list(backend.wait(0.2)) == [(fd, READ)]
        backend.unregister(fd)
        assert list(backend.wait(0)) == []
    finally:
        backend.close()
        a.close()
        b.close()


@needs_kqueue
def test_a_socket_closed_behind_the_pollers_back_is_told_to_its_transport_only(
    kqueue_poller: Poller,
) -> None:
    a, b = connected_pair()
    c, d = connected_pair()
    lost = Recorder(kqueue_poller, a)
    other = Recorder(kqueue_poller, c)
    try:
        a.close()  # before the first wait: its EV_ADD meets EBADF
        d.sendall(b"still here")
        run_until(kqueue_poller, lambda: lost.closed and other.received, what="both transports")
        assert lost.calls == ["close"]
        assert bytes(other.received) == b"still here"
    finally:
        other.close()
        for sock in (b, d):
            sock.close()


@needs_kqueue
def test_unregister_without_close_stops_the_events(kqueue_poller: Poller) -> None:
    a, b = connected_pair()
    t = Recorder(kqueue_poller, a)
    try:
        kqueue_poller.poll(0)
        kqueue_poller.unregister(t)
        b.sendall(b"unheard")
        # The socket is readable and open: a read filter left behind would wake this.
        assert kqueue_poller.poll(0.2) == 0
        assert t.calls == []
    finally:
        t.close()
        b.close()


@needs_kqueue
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_gets_a_kqueue_of_its_own_that_survives_collection(kqueue_poller: Poller) -> None:
    a, b = connected_pair()
    inherited = Recorder(kqueue_poller, a)
    kqueue_poller.poll(0)

    def child() -> None:
        # Before CPython 3.12.1 a collected parent kqueue object closed its number,
        # which the child's new kqueue has taken.
        gc.collect()
        mine_a, mine_b = connected_pair()
        mine = Recorder(kqueue_poller, mine_a)
        mine_b.send(b"child")
        run_until(kqueue_poller, lambda: bytes(mine.received) == b"child", what="the child's transport")
        kqueue_poller.close()

    in_forked_child(child)
    b.send(b"parent")
    run_until(kqueue_poller, lambda: bytes(inherited.received) == b"parent", what="the parent's transport")
    inherited.close()
    b.close()
