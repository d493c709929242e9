"""Load on loopback: 10,000 connections held at once, select refusing what it cannot
watch while serving the rest, and 1 GiB through one connection.  Each test stops by
itself within a deadline."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict

import pytest

from pike_core import BackendStatus, Poller, Transport
from pike_core.conformance.support import WriteEcho as Echo
from pike_core.conformance.support import run_until

CLIENTS = Path(__file__).with_name("clients.py")
MANY = 10_000
#: A select server gets more clients than FD_SETSIZE (1024) lets it watch.
OVER_SELECT = 1500

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="sized for Linux descriptor limits and loopback"
)


class Server(Transport):
    def __init__(self, poller: Poller) -> None:
        super().__init__(alternate_poller=poller)
        self.accepted = 0
        self.create_socket()
        self.set_reuse_addr()
        self.bind(("127.0.0.1", 0))
        self.listen(4096)

    def handle_accepted(self, sock: socket.socket, addr: object) -> None:
        Echo(alternate_poller=self.poller, sock=sock)
        self.accepted += 1


def _serve_clients(poller: Poller, count: int, deadline: float) -> Dict[str, int]:
    """Serve ``count`` clients from another process; their figures, plus the most
    connections this poller held at once."""
    server = Server(poller)
    proc = subprocess.Popen(
        [sys.executable, str(CLIENTS), str(server.addr[1]), str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    held = 0
    try:
        end = time.monotonic() + deadline
        while proc.poll() is None:
            assert time.monotonic() < end, f"{count} clients not done within {deadline} s"
            poller.poll(0.2)
            held = max(held, len(poller.connections) - 1)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    figures: Dict[str, int] = json.loads(out)
    figures["server_held_at_once"] = held
    figures["accepted"] = server.accepted
    return figures


@pytest.fixture
def many_descriptors() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < MANY + 500:
        pytest.skip(f"needs a descriptor limit of {MANY + 500} (RLIMIT_NOFILE hard limit is {hard})")
    if soft < MANY + 500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@pytest.mark.usefixtures("many_descriptors")
def test_10k_connections_at_once_echo_checksummed_data(
    pike_poller: Poller, pike_backend: BackendStatus
) -> None:
    if pike_backend.name == "select":
        pytest.skip("select watches at most FD_SETSIZE descriptors: see the refusal test")
    figures = _serve_clients(pike_poller, MANY, deadline=150)
    print(f"10k[{pike_backend.name}]: {figures}")
    assert figures["served"] == MANY
    assert figures["lost"] == 0
    assert figures["refused"] == 0
    assert figures["held_at_once"] == MANY
    assert figures["server_held_at_once"] == MANY


def test_select_refuses_what_it_cannot_watch_and_serves_the_rest() -> None:
    from pike_select.backend import SelectBackend

    with Poller(SelectBackend()) as poller:
        figures = _serve_clients(poller, OVER_SELECT, deadline=120)
    print(f"select-over-limit: {figures}")
    assert figures["lost"] == 0
    assert figures["served"] + figures["refused"] == OVER_SELECT
    # Descriptors below 1024 serve; the rest are refused cleanly, one by one, and the
    # server never stops serving those it can watch.
    assert 900 <= figures["served"] < 1024
    assert figures["refused"] >= OVER_SELECT - 1024


GIB = 1 << 30
CHUNK = 1 << 20


class Source(Transport):
    """Writes 1 GiB through the bounded buffer, as fast as the peer drains it."""

    write_high_water = 4 * CHUNK
    write_low_water = CHUNK
    write_limit = 8 * CHUNK

    def __init__(self, poller: Poller, block: bytes) -> None:
        super().__init__(alternate_poller=poller)
        self.block = memoryview(block)
        self.offset = 0
        self.digest = hashlib.sha256()

    def handle_connect(self) -> None:
        self.handle_drain()

    def handle_drain(self) -> None:
        while self.offset < GIB:
            # Chunks start at shifting places in the block, so no two are alike.
            start = (self.offset // CHUNK * 4099) % CHUNK
            chunk = self.block[start : start + CHUNK]
            self.digest.update(chunk)
            self.offset += CHUNK
            if not self.write(chunk):
                return
        self.close_when_done()


class Sink(Transport):
    def __init__(self, poller: Poller, sock: socket.socket) -> None:
        super().__init__(alternate_poller=poller, sock=sock)
        self.digest = hashlib.sha256()
        self.count = 0
        self.ended = False

    def handle_read(self) -> None:
        data = self.recv(1 << 20)
        self.digest.update(data)
        self.count += len(data)

    def handle_close(self) -> None:
        self.ended = True
        self.close()


def test_1_gib_through_one_connection_sha256(pike_poller: Poller, pike_backend: BackendStatus) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    source = Source(pike_poller, os.urandom(2 * CHUNK))
    source.create_socket()
    source.connect(listener.getsockname())
    sock, _ = listener.accept()
    listener.close()
    sink = Sink(pike_poller, sock)
    start = time.monotonic()
    run_until(pike_poller, lambda: sink.ended, timeout=120, what="1 GiB and end of stream")
    seconds = time.monotonic() - start
    print(f"1GiB[{pike_backend.name}]: {seconds:.1f} s, {GIB / seconds / 1e6:.0f} MB/s")
    assert sink.count == GIB
    assert sink.digest.hexdigest() == source.digest.hexdigest()
