"""select() cannot watch a descriptor >= FD_SETSIZE: only that transport is refused,
at registration, while the poller and every other connection keep working."""

from __future__ import annotations

import os
import resource
import socket
from typing import Iterator, List

import pytest
from pike_select.backend import FD_SETSIZE, SelectBackend

from pike_core import CapacityError, Poller
from pike_core.conformance.support import Listener, Recorder, WriteEcho, connected_pair, run_until


@pytest.fixture
def low_fds_taken() -> Iterator[List[int]]:
    """Occupies every free descriptor below FD_SETSIZE + 8, so new ones land above it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FD_SETSIZE + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, FD_SETSIZE * 4), hard))
    fillers: List[int] = []
    try:
        while not fillers or fillers[-1] < FD_SETSIZE + 8:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        yield fillers
    finally:
        for fd in fillers:
            os.close(fd)


@pytest.fixture
def select_poller() -> Iterator[Poller]:
    with Poller(SelectBackend()) as poller:
        yield poller


def test_high_descriptor_refused_at_registration(select_poller: Poller, low_fds_taken: List[int]) -> None:
    poller = select_poller
    os.close(low_fds_taken.pop(0))
    low_a, low_b = connected_pair(socket.AF_UNIX)  # one takes the free low number
    low = Recorder(poller, low_a if low_a.fileno() < FD_SETSIZE else low_b)
    high_a, high_b = connected_pair()
    victim = Recorder(poller)
    with pytest.raises(
        CapacityError, match=rf"descriptor {high_a.fileno()}.*FD_SETSIZE.*epoll or poll"
    ) as info:
        victim.set_socket(high_a)
    assert info.value.transport is victim
    assert not poller.is_registered(victim)
    other = low_b if low.socket is low_a else low_a
    other.send(b"still working")
    run_until(poller, lambda: bytes(low.received) == b"still working", what="the low transport")
    for s in (low_a, low_b, high_a, high_b):
        s.close()


def test_server_refuses_only_the_connection_it_cannot_watch(
    select_poller: Poller, low_fds_taken: List[int]
) -> None:
    poller = select_poller
    os.close(low_fds_taken.pop(0))
    server = Listener(poller, WriteEcho)
    assert server.fileno() < FD_SETSIZE
    refused = socket.create_connection(server.addr)
    run_until(poller, lambda: server.accepted or _closed_by_peer(refused), what="the refusal")
    assert server.accepted == []
    assert refused.recv(1) == b""  # refused cleanly: end of stream, nothing else
    refused.close()
    # With low descriptors free again (one for the client's own socket, one for the
    # accepted one) the same listener serves the next client.
    os.close(low_fds_taken.pop(0))
    os.close(low_fds_taken.pop(0))
    client = socket.create_connection(server.addr)
    run_until(poller, lambda: bool(server.accepted), what="the next accept")
    client.sendall(b"served")
    run_until(poller, lambda: _peek(client) == b"served", what="the echo")
    client.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False


def _peek(sock: socket.socket) -> bytes:
    try:
        return sock.recv(64, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return b""
