"""The ``pike-core demo`` and ``pike-core bench`` subcommands (entry point group
``pike.commands``).

Imported at every start of ``pike-core``, so the work itself is imported in ``run``.
"""

from __future__ import annotations

import argparse
import sys

from pike_core.cli import add_poller_option, choose
from pike_core.commands import Command, positive_int


class DemoCommand(Command):
    name = "demo"
    help = "run an echo server and clients over loopback on one backend, every byte checked"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_poller_option(parser)
        parser.add_argument(
            "--clients", type=positive_int, default=16, help="concurrent clients (default 16)"
        )
        parser.add_argument(
            "--messages", type=positive_int, default=2000, help="round trips per client (default 2000)"
        )
        parser.add_argument(
            "--size", type=positive_int, default=1024, help="bytes per message (default 1024)"
        )

    def run(self, args: argparse.Namespace) -> int:
        from pike_core import new_poller  # noqa: PLC0415 - the work, only when run

        from .demo import DemoError, run_demo  # noqa: PLC0415

        choice = choose(args.poller)
        print(
            f"demo: echo server + {args.clients} clients x {args.messages} round trips of {args.size} B "
            f"over 127.0.0.1 on backend {choice.backend.name!r} ({choice.reason})"
        )
        try:
            with new_poller(choice.backend.name) as poller:
                result = run_demo(poller, args.clients, args.messages, args.size)
        except DemoError as exc:
            print(f"pike-core demo: {exc}", file=sys.stderr)
            return 2
        if result.failures:
            print(f"demo FAILED: {len(result.failures)} of {result.clients} clients", file=sys.stderr)
            for failure in result.failures:
                print(f"  {failure}", file=sys.stderr)
            return 1
        print(
            f"demo: {result.clients * result.messages} round trips, every byte checked, "
            f"in {result.seconds:.2f} s: {result.round_trips_per_second:,.0f} round trips/s, "
            f"{result.megabytes_per_second:.1f} MB/s through the server"
        )
        return 0


class BenchCommand(Command):
    name = "bench"
    help = "echo servers on every backend, asyncio, uvloop and C, side by side under a C load generator"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from .runner import add_arguments  # noqa: PLC0415

        add_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        from .runner import run  # noqa: PLC0415

        return run(args)
