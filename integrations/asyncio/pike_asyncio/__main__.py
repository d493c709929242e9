"""``python -m pike_asyncio``: which backend asyncio's loop would wait on, and why."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from typing import Optional, Sequence

from pike_core import BackendError
from pike_core.cli import add_poller_option, choose, cmd_list

from .loop import PIPES_ON_WINDOWS, run


async def _round_trip() -> None:
    """Send a few bytes over a socket pair through the running loop's selector."""
    loop = asyncio.get_running_loop()
    left, right = socket.socketpair()
    with left, right:
        left.setblocking(False)
        right.setblocking(False)
        await loop.sock_sendall(left, b"pike")
        received = await asyncio.wait_for(loop.sock_recv(right, 4), 10)
    if received != b"pike":
        raise RuntimeError(f"the loop's round trip returned {received!r}, not b'pike'")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pike_asyncio",
        description="List pike-core's backends, say which one pike_asyncio.run() and "
        "PikeEventLoopPolicy() would wait on and why, and run a loop on it once.",
    )
    add_poller_option(parser)
    args = parser.parse_args(argv)
    status = cmd_list(args.poller)
    if status:
        return status
    try:
        choice = choose(args.poller)
        run(_round_trip(), backend=choice.backend.name)
    except BackendError as exc:
        print(f"pike_asyncio: {exc}", file=sys.stderr)
        return 2
    print(
        f"asyncio: pike_asyncio.run() and PikeEventLoopPolicy() run asyncio's selector loop on "
        f"{choice.backend.name!r}: {choice.reason}; checked: a loop on it passed data over a socket pair"
    )
    if sys.platform == "win32":
        print(f"asyncio on Windows: no subprocesses or pipes: {PIPES_ON_WINDOWS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
