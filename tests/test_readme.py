"""The README's client and server examples run as written."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from pike_core import choose_backend

README = Path(__file__).resolve().parent.parent / "README.md"


def test_client_and_server_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    client = next(b for b in blocks if "class Hello" in b)
    server = next(b for b in blocks if "class Server" in b)
    namespace: dict[str, object] = {}
    start = time.monotonic()
    exec(compile(client + server, str(README), "exec"), namespace)
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
