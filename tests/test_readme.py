"""The README's client and server examples run as written."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import pytest

from pike_core import choose_backend, new_poller
from pike_core.conformance.support import WaitLog

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_namespace() -> dict[str, object]:
    """The client and server examples, their classes defined and their run done."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    code = next(b for b in blocks if "class Hello" in b) + next(b for b in blocks if "class Server" in b)
    namespace: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), namespace)
    return namespace


def test_client_and_server_examples_run() -> None:
    start = time.monotonic()
    namespace = _readme_namespace()
    assert namespace["client"].reply == b"hello\n"  # type: ignore[attr-defined]
    # The client's stop() ended the loop, not the example's 5 s limit.
    assert time.monotonic() - start < 4


def test_asyncio_example_runs_on_the_pike_loop(capsys: pytest.CaptureFixture[str]) -> None:
    block = next(
        b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL) if "pike_asyncio" in b
    )
    exec(compile(block, str(README), "exec"), {})
    best = choose_backend().backend.name
    assert re.fullmatch(rf"serving on \('127\.0\.0\.1', \d+\) with {best}\n", capsys.readouterr().out)


def test_the_servers_echo_keeps_every_byte_for_a_slow_reader_without_spinning() -> None:
    # The echo a user copies must hold back-pressure: a client that sends much more than
    # the socket buffers hold, and reads its echo slowly, gets every byte back in order,
    # and the server's loop blocks meanwhile instead of turning on events it ignores.
    ns = _readme_namespace()
    payload = bytes(range(256)) * (16 * 4096)  # 16 MiB
    received = bytearray()
    with new_poller() as poller:
        server = ns["Server"](poller)  # type: ignore[operator]
        client = socket.create_connection(server.addr)

        def send() -> None:
            client.sendall(payload)

        def read_slowly() -> None:
            while len(received) < len(payload):
                chunk = client.recv(65536)
                if not chunk:
                    return
                received.extend(chunk)
                time.sleep(0.001)
            poller.call_soon_threadsafe(poller.stop)

        threads = [threading.Thread(target=f, daemon=True) for f in (send, read_slowly)]
        for thread in threads:
            thread.start()
        with WaitLog(poller) as log:
            poller.loop(timeout=20)
        for thread in threads:
            thread.join(5)
        client.close()
    assert len(received) == len(payload), f"{len(received)} of {len(payload)} bytes came back"
    assert received == payload, "the echo came back out of order"
    # Every useful wait moves at least one socket buffer's worth of bytes at a time (tens
    # of KiB); one that ignored a read event it was reported turned tens of thousands of
    # times here.
    assert len(log.timeouts) < len(payload) // 8192, len(log.timeouts)
