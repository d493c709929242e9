"""The README's client and server examples run as written."""

from __future__ import annotations

import re
import time
from pathlib import Path

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
