"""The kqueue backend's kernel-free logic (``pike_kqueue.kevents``), on any system.

The records fed to it have the fields of ``struct kevent`` and the values kqueue(2)
documents for them: what the kernel returns for a socket's read and write filters, and
the EV_ERROR entries it puts in the event list for a refused change, in the shape of
both kernels (FreeBSD replaces the change's flags with EV_ERROR, XNU ORs EV_ERROR in).
This checks the translation, the attribution and the batching; it is no substitute for
a run on a real kqueue kernel, which the conformance suite does in CI's macOS job (the
tests at the end of this file run there too).
"""

from __future__ import annotations

import dataclasses
import errno
import importlib
import select
from typing import Callable, Iterator, Tuple

import pytest
from pike_kqueue.kevents import (
    EV_ADD,
    EV_DELETE,
    EV_EOF,
    EV_ERROR,
    EV_ONESHOT,
    FILTER_READ,
    FILTER_WRITE,
    MAX_EVENTS,
    Interest,
)

from pike_core import CannotRunHere, Poller, available_backends
from pike_core.conformance.support import Recorder, connected_pair, run_until
from pike_core.events import ERROR, INVALID, READ, WRITE

HAS_KQUEUE = hasattr(select, "kqueue")


@dataclasses.dataclass
class Kev:
    """A returned ``struct kevent``: the fields ``select.kevent`` exposes."""

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


def registered(*fds: int, mask: int = READ) -> Interest:
    """An Interest whose descriptors' changes went to the kernel in one wait."""
    interest = Interest()
    for fd in fds:
        interest.register(fd, mask)
    interest.changes()
    interest.translate([])
    return interest


# --- batching ------------------------------------------------------------------------


def test_register_adds_a_persistent_read_filter_at_the_next_wait() -> None:
    interest = Interest()
    interest.register(5, READ)
    assert interest.changes() == [(5, FILTER_READ, EV_ADD)]
    assert interest.changes() == []


def test_register_with_write_interest_also_arms_a_oneshot_write_filter() -> None:
    interest = Interest()
    interest.register(5, READ | WRITE)
    assert interest.changes() == [(5, FILTER_READ, EV_ADD), (5, FILTER_WRITE, EV_ADD | EV_ONESHOT)]


def test_changes_of_many_descriptors_go_into_one_change_list() -> None:
    interest = registered(3)
    interest.register(5, READ)
    interest.register(6, READ)
    interest.modify(3, READ | WRITE)
    interest.modify(6, READ | WRITE)
    assert interest.changes() == [
        (5, FILTER_READ, EV_ADD),
        (6, FILTER_READ, EV_ADD),
        (6, FILTER_WRITE, EV_ADD | EV_ONESHOT),
        (3, FILTER_WRITE, EV_ADD | EV_ONESHOT),
    ]


def test_write_interest_asked_and_dropped_between_waits_makes_no_change() -> None:
    interest = registered(5)
    interest.modify(5, READ | WRITE)
    interest.modify(5, READ)
    assert interest.changes() == []


def test_dropping_write_interest_deletes_an_armed_write_filter() -> None:
    interest = registered(5, mask=READ | WRITE)
    interest.modify(5, READ)
    assert interest.changes() == [(5, FILTER_WRITE, EV_DELETE)]


def test_a_delivered_oneshot_is_not_deleted_again() -> None:
    # kqueue(2), EV_ONESHOT: "After the user retrieves the event from the kqueue, it is
    # deleted."  Deleting it again would be refused with ENOENT.
    interest = registered(5, mask=READ | WRITE)
    assert interest.translate([writable(5)]) == [(5, WRITE)]
    interest.modify(5, READ)  # the core's write_delivered
    assert interest.changes() == []


def test_a_delivered_oneshot_is_armed_again_while_the_core_still_wants_to_write() -> None:
    # A wake-up before the connect's verdict: the core keeps its write interest.
    interest = registered(5, mask=READ | WRITE)
    interest.translate([writable(5)])
    assert interest.changes() == [(5, FILTER_WRITE, EV_ADD | EV_ONESHOT)]
    assert interest.translate([writable(5, 0, eof=True, error=errno.ECONNREFUSED)]) == [(5, WRITE | ERROR)]


def test_unregister_before_any_wait_drops_the_pending_changes_and_deletes_nothing() -> None:
    interest = Interest()
    interest.register(5, READ | WRITE)
    assert interest.unregister(5) == []
    assert interest.changes() == []


def test_unregister_deletes_the_filters_the_kernel_holds() -> None:
    interest = registered(5, 6, mask=READ | WRITE)
    interest.translate([writable(6)])
    assert interest.unregister(5) == [(5, FILTER_READ, EV_DELETE), (5, FILTER_WRITE, EV_DELETE)]
    assert interest.unregister(6) == [(6, FILTER_READ, EV_DELETE)]
    assert interest.changes() == []


def test_a_number_reused_after_unregister_starts_afresh() -> None:
    interest = registered(5, mask=READ | WRITE)
    interest.unregister(5)
    interest.register(5, READ)
    assert interest.changes() == [(5, FILTER_READ, EV_ADD)]


def test_the_event_list_has_room_for_an_error_per_change() -> None:
    interest = registered(*range(10, 20))
    assert interest.max_events(0) == 20
    assert interest.max_events(7) == 27
    assert registered(*range(10, 10 + MAX_EVENTS)).max_events(3) == MAX_EVENTS + 3


def test_the_event_list_is_never_empty() -> None:
    # kqueue(2): "When nevents is zero, kevent() will return immediately even if there
    # is a timeout specified".
    assert Interest().max_events(0) == 1


# --- translating events --------------------------------------------------------------


def test_read_and_write_of_one_descriptor_make_one_pair() -> None:
    interest = registered(5, 6, mask=READ | WRITE)
    pairs = interest.translate([readable(5), writable(6), writable(5), readable(6)])
    assert sorted(pairs) == [(5, READ | WRITE), (6, READ | WRITE)]


def test_eof_is_read_so_data_still_pending_is_read_first() -> None:
    # "It is possible for EOF to be returned (indicating the connection is gone) while
    # there is still data pending in the socket buffer."
    interest = registered(5)
    assert interest.translate([readable(5, nbytes=10, eof=True)]) == [(5, READ)]


def test_eof_with_a_socket_error_is_read_and_error() -> None:
    interest = registered(5)
    assert interest.translate([readable(5, 0, eof=True, error=errno.ECONNRESET)]) == [(5, READ | ERROR)]


def test_a_failed_connect_is_write_and_error() -> None:
    interest = registered(5, mask=READ | WRITE)
    received = [
        readable(5, 0, eof=True, error=errno.ECONNREFUSED),
        writable(5, 0, eof=True, error=errno.ECONNREFUSED),
    ]
    assert interest.translate(received) == [(5, READ | WRITE | ERROR)]


def test_write_eof_without_an_error_is_plain_write() -> None:
    interest = registered(5, mask=READ | WRITE)
    assert interest.translate([writable(5, eof=True)]) == [(5, WRITE)]


# --- errors on changes (EV_ERROR entries) --------------------------------------------


def test_enoent_on_a_delete_is_not_an_error(refused: Refuse) -> None:
    # After EINTR "all changes in the changelist have been applied" and CPython calls
    # kevent() again with the same list: the delete meets ENOENT the second time.
    interest = registered(5, mask=READ | WRITE)
    interest.modify(5, READ)
    [delete] = interest.changes()
    assert interest.translate([refused(delete, errno.ENOENT)]) == []
    assert interest.unregister(5) == [(5, FILTER_READ, EV_DELETE)]


def test_ebadf_on_an_add_marks_that_descriptor_invalid(refused: Refuse) -> None:
    interest = registered(5)
    interest.register(6, READ)
    interest.register(7, READ)
    changes = interest.changes()
    assert interest.translate([refused(changes[0], errno.EBADF)]) == [(6, INVALID)]
    # Not in the kernel, so nothing to delete; and not retried at every wait.
    assert interest.unregister(6) == []
    assert interest.changes() == []
    assert interest.unregister(7) == [(7, FILTER_READ, EV_DELETE)]


def test_other_errors_on_an_add_mark_that_descriptor_error(refused: Refuse) -> None:
    interest = registered(5, 6)
    interest.modify(6, READ | WRITE)
    [arm] = interest.changes()
    assert interest.translate([refused(arm, errno.ENOMEM), readable(5)]) == [(6, ERROR), (5, READ)]
    assert interest.unregister(6) == [(6, FILTER_READ, EV_DELETE)]


def test_epipe_on_an_add_counts_as_added(refused: Refuse) -> None:
    # Older macOS refuses a descriptor whose peer is gone with EPIPE, yet registers it.
    interest = Interest()
    interest.register(5, READ)
    [add] = interest.changes()
    assert interest.translate([refused(add, errno.EPIPE)]) == []
    assert interest.unregister(5) == [(5, FILTER_READ, EV_DELETE)]


def test_a_delete_refused_for_a_bad_descriptor_is_reported(refused: Refuse) -> None:
    interest = registered(5, mask=READ | WRITE)
    interest.modify(5, READ)
    [delete] = interest.changes()
    assert interest.translate([refused(delete, errno.EBADF)]) == [(5, INVALID)]


# --- the backend on this platform ----------------------------------------------------


@pytest.mark.skipif(HAS_KQUEUE, reason="this platform has select.kqueue")
def test_without_kqueue_the_poller_module_refuses_to_import_and_says_why() -> None:
    with pytest.raises(CannotRunHere, match=r"select\.kqueue is missing"):
        importlib.import_module("pike_kqueue.backend")
    [status] = [s for s in available_backends() if s.name == "kqueue"]
    assert not status.usable
    assert not status.broken
    assert status.problem is not None
    assert "select.kqueue is missing" in status.problem


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
