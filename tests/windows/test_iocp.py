"""What only the IOCP backend can get wrong: completions that come back after their
socket was closed, and operations still in flight when the poller closes.

Windows only; ``tools/windows_conformance.py`` runs it under Wine on Linux machines.
"""

from __future__ import annotations

import importlib
import select
import socket
import sys
from typing import List

import pytest

from pike_core import Poller
from pike_core.conformance.support import DEADLINE, Recorder, connected_pair, run_until

if sys.platform != "win32":
    pytest.skip(
        "the IOCP backend runs on Windows only (tools/windows_conformance.py runs it under Wine)",
        allow_module_level=True,
    )

# By name: the backend module raises CannotRunHere where it cannot run.
iocp = importlib.import_module("pike_iocp.backend")


def test_late_completion_never_reaches_the_next_owner_of_the_handle() -> None:
    with Poller(iocp.IocpBackend()) as poller:
        a, b = connected_pair()
        old = Recorder(poller, a)
        poller.poll(0)  # the AFD poll of `old` is now in flight
        b.send(b"for the old owner only")
        # Readable means the in-flight poll has completed: its packet waits in the port.
        assert select.select([a], [], [], DEADLINE)[0]
        number = old.fileno()
        old.close()
        spares: List[socket.socket] = []
        fresh = socket.socket()
        while fresh.fileno() != number and len(spares) < 256:
            spares.append(fresh)
            fresh = socket.socket()
        for spare in spares:
            spare.close()
        if fresh.fileno() != number:
            fresh.close()
            pytest.skip(f"Windows did not hand out socket handle {number} again within 256 sockets")
        newcomer = Recorder(poller, fresh)
        for _ in range(5):
            poller.poll(0.01)
        assert newcomer.calls == []
        assert old.calls == []
        # Only the newcomer's own poll is still in flight: nothing of the old one is kept.
        assert len(poller._ops) <= len(poller._watched)
        newcomer.close()
        b.close()


def test_closing_the_poller_takes_back_every_operation() -> None:
    poller = Poller(iocp.IocpBackend())
    pairs = [connected_pair() for _ in range(20)]
    for a, _ in pairs:
        Recorder(poller, a)
    poller.poll(0)
    assert len(poller._ops) >= 20
    poller.close()
    assert poller._ops == {}
    assert iocp._abandoned == []
    for _, b in pairs:
        b.close()


def test_cross_thread_wakeups_are_coalesced_into_one_packet() -> None:
    with Poller(iocp.IocpBackend()) as poller:
        called: List[int] = []
        for i in range(100):
            poller.call_soon_threadsafe(called.append, i)
        run_until(poller, lambda: len(called) == 100, what="100 queued callbacks")
        assert called == list(range(100))
        assert not poller._wake_posted
