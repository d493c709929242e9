"""Hundreds of concurrent connections: a backend with the ``many_fds`` capability serves
500 at once; one without it refuses, at registration and with ``CapacityError``, the
transport it cannot watch, while the connections it already has go on working."""

from __future__ import annotations

import socket
from typing import Any, List, Optional

import pytest

from pike_core import BackendStatus, CapacityError, Poller

from .support import Listener, run_until
from .test_data import Echo, Pump

CONNECTIONS = 500
#: Past both of select's limits (descriptor numbers >= 1024 on POSIX, more than 512
#: sockets per set on Windows): a backend without ``many_fds`` must refuse before this.
BEYOND_SELECT_LIMITS = 600
#: Connects started at once; well under the listen backlog, which Windows answers with a
#: reset when it overflows.
BATCH = 50


class Server(Listener):
    """An echo listener that records the accepted connections it had to refuse."""

    def __init__(self, poller: Poller) -> None:
        self.refusals: List[CapacityError] = []
        super().__init__(poller, Echo)

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        try:
            super().handle_accepted(sock, addr)
        except CapacityError as exc:
            self.refusals.append(exc)
            raise


def _enough_descriptors(count: int) -> None:
    try:
        import resource
    except ImportError:
        # Windows: sockets are handles, not bounded by a descriptor table.
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= count:
        return
    if hard != resource.RLIM_INFINITY and hard < count:
        pytest.skip(f"needs {count} open descriptors; RLIMIT_NOFILE's hard limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))


def test_500_concurrent_connections(pike_poller: Poller, pike_backend: BackendStatus) -> None:
    many = "many_fds" in pike_backend.capabilities
    target = CONNECTIONS if many else BEYOND_SELECT_LIMITS
    _enough_descriptors(2 * target + 256)
    server = Server(pike_poller)
    clients: List[Pump] = []
    refused: Optional[CapacityError] = None
    while len(clients) < target and refused is None and not server.refusals:
        batch: List[Pump] = []
        for _ in range(min(BATCH, target - len(clients))):
            client = Pump(pike_poller, f"client {len(clients) + len(batch):03d}".encode())
            try:
                client.create_socket()
            except CapacityError as exc:
                refused = exc
                break
            client.connect(server.addr)
            batch.append(client)
        clients += batch
        run_until(
            pike_poller,
            lambda: all(c.closed or bytes(c.received) == bytes(c.payload) for c in batch),  # noqa: B023
            timeout=60,
            what=f"connections {len(clients) - len(batch)}-{len(clients)} echoed or refused",
        )
    if many:
        assert refused is None
        assert server.refusals == []
        assert len(server.accepted) == CONNECTIONS
    else:
        assert refused is not None or server.refusals, (
            f"{pike_backend.name} has no many_fds capability, yet watched "
            f"{len(clients)} connections without refusing one"
        )
    # Whatever was refused, every connection the poller took is still served: one more
    # round trip on all of them at once.
    alive = [c for c in clients if not c.closed]
    assert len(alive) >= (CONNECTIONS if many else 1)
    for client in alive:
        assert client.send(b" again") == len(b" again")
    run_until(
        pike_poller,
        lambda: all(bytes(c.received).endswith(b" again") for c in alive),
        timeout=60,
        what=f"a second round trip on {len(alive)} open connections",
    )
    assert all(not c.closed for c in alive)
    # Shown with -rP: how far the backend went, and what refused it.
    print(
        f"{pike_backend.name}: {len(alive)} concurrent connections served; refused: "
        f"{refused or (server.refusals[0] if server.refusals else 'none')}"
    )
