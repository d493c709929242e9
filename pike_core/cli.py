"""``pike-core`` / ``python -m pike_core``: list the backends, run the echo demo."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence

from .backends import BackendStatus, Choice
from .demo import run_demo
from .discovery import ENV_VAR, available_backends, registry
from .errors import BackendError


def _table(rows: List[List[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _status_row(status: BackendStatus, chosen: Optional[str]) -> List[str]:
    mark = "*" if status.name == chosen else " "
    dist = f"{status.distribution or '?'} {status.version or ''}".strip()
    usable = "yes" if status.usable else f"no: {status.problem}"
    priority = "-" if status.priority is None else str(status.priority)
    caps = ",".join(sorted(status.capabilities)) or "-"
    return [mark + status.name, dist, priority, caps, usable]


def _choose(poller_name: Optional[str]) -> Choice:
    if poller_name:
        return registry.choose([poller_name], "--poller")
    return registry.choose()


def cmd_list(args: argparse.Namespace) -> int:
    statuses = available_backends()
    try:
        choice: Optional[Choice] = _choose(args.poller)
    except BackendError as exc:
        choice = None
        problem = str(exc)
    if statuses:
        rows = [["  backend", "distribution", "priority", "capabilities", "usable here"]]
        rows += [_status_row(s, choice.backend.name if choice else None) for s in statuses]
        print(_table(rows))
    else:
        print("no poller backends are installed")
    if choice is None:
        print(f"\nno backend can be chosen: {problem}", file=sys.stderr)
        return 2
    print(f"\nchosen: {choice.backend.name} -- {choice.reason}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    choice = _choose(args.poller)
    print(
        f"demo: echo server + {args.clients} clients x {args.messages} round trips of {args.size} B "
        f"over 127.0.0.1 on backend {choice.backend.name!r} ({choice.reason})"
    )
    with registry.new_poller(choice.backend.name) as poller:
        result = run_demo(poller, args.clients, args.messages, args.size)
    for failure in result.failures:
        print(f"  FAILED {failure}", file=sys.stderr)
    print(
        f"demo: {result.clients * result.messages} round trips, every byte checked, "
        f"in {result.seconds:.2f} s: {result.round_trips_per_second:,.0f} round trips/s, "
        f"{result.megabytes_per_second:.1f} MB/s through the server"
    )
    return 1 if result.failures else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pike-core",
        description="List pike-core's poller backends and run an echo demo on the chosen one. "
        "Without a command: list, then demo.",
    )
    parser.add_argument(
        "--poller", metavar="NAME", help=f"backend to use (default: {ENV_VAR}, else the best usable)"
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("list", help="list the installed backends and which one would be chosen")
    bench = sub.add_parser(
        "bench",
        help="echo servers on every backend, asyncio, uvloop and C, side by side under a C load generator",
    )
    # Imported here: the suite and its plot are not needed to list backends or run the demo.
    from .bench.runner import add_arguments  # noqa: PLC0415

    add_arguments(bench)
    demo = sub.add_parser("demo", help="run an echo server and clients over loopback")
    for p in (parser, demo):
        p.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
        p.add_argument("--messages", type=int, default=2000, help="round trips per client (default 2000)")
        p.add_argument("--size", type=int, default=1024, help="bytes per message (default 1024)")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list(args)
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "bench":
            from .bench.runner import run  # noqa: PLC0415

            return run(args)
        status = cmd_list(args)
        if status:
            return status
        print()
        return cmd_demo(args)
    except BackendError as exc:
        print(f"pike-core: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
