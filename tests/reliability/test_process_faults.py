"""Faults that need a process of their own: running out of descriptors while clients
wait, a peer that never reads, and fork() with a poller in use."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from pike_core import BackendStatus, Poller
from pike_core.conformance.support import Recorder, connected_pair, in_forked_child, run_until

CHILD = Path(__file__).with_name("child.py")
CLIENTS = 5

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="uses RLIMIT_NOFILE, /proc/self and fork(), as Linux has them",
)


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _figures(proc: subprocess.Popen[str]) -> Dict[str, object]:
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, f"the child failed:\n{err}"
    result: Dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def test_out_of_descriptors_neither_spins_nor_dies(pike_backend: BackendStatus) -> None:
    proc = _spawn("emfile", pike_backend.name, str(CLIENTS))
    assert proc.stdout is not None
    assert proc.stdin is not None
    port = int(proc.stdout.readline())
    assert proc.stdout.readline().strip() == "full", "the child did not run out of descriptors"
    # The kernel completes these handshakes in the listen backlog, so they wait for an
    # accept that cannot get a descriptor.
    clients: List[socket.socket] = [socket.create_connection(("127.0.0.1", port)) for _ in range(CLIENTS)]
    for i, c in enumerate(clients):
        c.sendall(f"client {i}".encode())
    proc.stdin.write("go\n")
    proc.stdin.flush()
    for i, c in enumerate(clients):
        c.settimeout(60)
        expected = f"client {i}".encode()
        got = b""
        while len(got) < len(expected):
            data = c.recv(64)
            assert data, f"client {i} was dropped instead of served"
            got += data
        assert got == expected
        c.close()
    figures = _figures(proc)
    print(f"emfile[{pike_backend.name}]: {figures}")
    assert figures["accepted_while_full"] == 0
    assert figures["errnos"] == [24]  # EMFILE, reported through handle_accept_error
    # Back-off doubling from 0.05 s: a handful of retries in 1.5 s, not one per wake-up.
    assert 1 <= figures["accept_errors"] <= 8  # type: ignore[operator]
    cpu, wall = figures["cpu_seconds"], figures["wall_seconds"]
    assert isinstance(cpu, float)
    assert isinstance(wall, float)
    assert wall >= 1.5
    assert cpu / wall < 0.1, f"the server used {cpu / wall:.0%} of a CPU while out of descriptors"
    assert figures["accepted"] == CLIENTS


def test_peer_that_never_reads_cannot_grow_the_process(pike_backend: BackendStatus) -> None:
    figures = _figures(_spawn("memory", pike_backend.name))
    print(f"memory[{pike_backend.name}]: {figures}")
    growth = figures["peak_rss_after"] - figures["peak_rss_before"]  # type: ignore[operator]
    assert figures["attempted"] == 1 << 30
    assert figures["buffered"] <= figures["write_limit"]  # type: ignore[operator]
    # What the kernel's socket buffers took plus one write_limit, nowhere near 1 GiB.
    assert figures["taken"] < 32 << 20  # type: ignore[operator]
    assert growth < 16 << 20, f"peak RSS grew by {growth} bytes writing to a peer that never reads"


def test_fork_gives_the_child_its_own_poller_and_leaves_the_parent_alone(pike_poller: Poller) -> None:
    a, b = connected_pair()
    inherited = Recorder(pike_poller, a)
    c, d = connected_pair()
    quiet = Recorder(pike_poller, c)

    def child() -> None:
        # Through a shared OS object these would remove and change the parent's
        # interest: the parent would never hear of `inherited` again.
        inherited.close()
        pike_poller.defer_write(quiet)
        mine_a, mine_b = connected_pair()
        mine = Recorder(pike_poller, mine_a)
        mine_b.send(b"child")
        pike_poller.call_soon_threadsafe(lambda: None)
        run_until(pike_poller, lambda: bytes(mine.received) == b"child", what="the child's own transport")
        run_until(pike_poller, lambda: "write" in quiet.calls, what="the child's deferred write")
        pike_poller.close()

    in_forked_child(child)
    b.send(b"parent")
    run_until(pike_poller, lambda: bytes(inherited.received) == b"parent", what="the parent's transport")
    for _ in range(5):
        pike_poller.poll(0.01)
    assert quiet.calls == [], "the child's defer_write reached the parent"
    d.send(b"also")
    run_until(pike_poller, lambda: bytes(quiet.received) == b"also", what="the parent's other transport")
    for s in (b, d):
        s.close()
