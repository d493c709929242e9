"""Programs the reliability tests run in a child process, so that lowering the
descriptor limit or measuring peak memory touches only that process.

    python child.py emfile BACKEND CLIENTS   a server out of descriptors, then not
    python child.py memory BACKEND           write 1 GiB to a peer that never reads

Each prints one line of JSON with its figures as its last line.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import socket
import sys
import time
from typing import Dict, List

from pike_core import Poller, Transport, WriteBufferFullError, available_backends
from pike_core.conformance.support import WriteEcho as Echo
from pike_core.conformance.support import connected_pair, run_until


def _poller(name: str) -> Poller:
    for status in available_backends():
        if status.name == name and status.backend_class is not None:
            return Poller(status.backend_class())
    raise SystemExit(f"child.py: backend {name!r} cannot run here")


class Server(Transport):
    def __init__(self, poller: Poller) -> None:
        super().__init__(alternate_poller=poller)
        self.accept_errors: List[int] = []
        self.peers: List[Echo] = []
        self.create_socket()
        self.bind(("127.0.0.1", 0))
        self.listen(64)

    def handle_accepted(self, sock: socket.socket, addr: object) -> None:
        self.peers.append(Echo(alternate_poller=self.poller, sock=sock))

    def handle_accept_error(self, exc: OSError) -> None:
        self.accept_errors.append(exc.errno or 0)


def emfile(backend: str, clients: int) -> Dict[str, object]:
    poller = _poller(backend)
    server = Server(poller)
    print(server.addr[1], flush=True)
    # Lower the limit to just above what is open, then take every descriptor left.
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 8, hard))
    fillers: List[int] = []
    while True:
        try:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as exc:
            if exc.errno != errno.EMFILE:
                raise
            break
    print("full", flush=True)
    sys.stdin.readline()  # the parent's clients are connected and waiting
    cpu, wall = time.process_time(), time.monotonic()
    poller.loop(timeout=1.5)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    errors_while_full = len(server.accept_errors)
    accepted_while_full = len(server.peers)
    for fd in fillers:
        os.close(fd)
    run_until(
        poller,
        lambda: len(server.peers) == clients and all(p.closed for p in server.peers),
        timeout=30,
        what="every waiting client served once descriptors were free",
    )
    poller.close()
    return {
        "accept_errors": errors_while_full,
        "errnos": sorted(set(server.accept_errors)),
        "accepted_while_full": accepted_while_full,
        "accepted": len(server.peers),
        "cpu_seconds": cpu,
        "wall_seconds": wall,
    }


def _peak_rss() -> int:
    """The process's peak resident size in bytes (VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def memory(backend: str) -> Dict[str, object]:
    poller = _poller(backend)
    a, b = connected_pair()  # b never reads
    t = Transport(alternate_poller=poller, sock=a)
    chunk = bytes(1 << 20)
    before = _peak_rss()
    taken = refused = 0
    for _ in range(1024):
        try:
            t.write(chunk)
            taken += len(chunk)
        except WriteBufferFullError:
            refused += len(chunk)
        poller.poll(0)
    after = _peak_rss()
    result: Dict[str, object] = {
        "attempted": 1024 * len(chunk),
        "taken": taken,
        "refused": refused,
        "buffered": t.write_buffer_size,
        "write_limit": t.write_limit,
        "peak_rss_before": before,
        "peak_rss_after": after,
    }
    t.close()
    b.close()
    poller.close()
    return result


if __name__ == "__main__":
    figures = emfile(sys.argv[2], int(sys.argv[3])) if sys.argv[1] == "emfile" else memory(sys.argv[2])
    print(json.dumps(figures), flush=True)
