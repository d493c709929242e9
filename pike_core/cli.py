"""``pike-core`` / ``python -m pike_core``: list the backends; with pike-bench installed,
run the echo demo and the benchmark (see :mod:`pike_core.commands`).

Without a command it lists the backends, then runs the demo where pike-bench is
installed.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
from typing import Dict, List, Optional, Sequence

from .backends import BackendStatus, Choice
from .commands import OPTIONAL_COMMANDS, Command, load_commands
from .discovery import ENV_VAR, available_backends, registry
from .errors import BackendError

if sys.version_info >= (3, 10):
    from importlib.metadata import PackageNotFoundError, distribution, distributions
else:
    from importlib_metadata import PackageNotFoundError, distribution, distributions

PROG = "pike-core"
#: A requirement on pike-core, as Requires-Dist writes it (names compare normalised).
_REQUIRES_CORE = re.compile(r"^\s*pike[-_.]+core\b", re.IGNORECASE)


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


def choose(poller_name: Optional[str]) -> Choice:
    """The backend ``--poller NAME`` names, or else the one the choice rules pick.

    :raises BackendError: as :meth:`pike_core.BackendRegistry.choose`.
    """
    if poller_name:
        return registry.choose([poller_name], "--poller")
    return registry.choose()


def add_poller_option(parser: argparse.ArgumentParser) -> None:
    """``--poller NAME``, for a subcommand that runs on one backend."""
    parser.add_argument(
        "--poller", metavar="NAME", help=f"backend to use (default: {ENV_VAR}, else the best usable)"
    )


def cmd_list(poller_name: Optional[str]) -> int:
    statuses = available_backends()
    try:
        choice: Optional[Choice] = choose(poller_name)
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


def versions() -> str:
    """pike-core's version and the Python running it, then every installed distribution
    that depends on pike-core (backends, pike-bench, shims, third-party pollers)."""
    try:
        core = distribution("pike-core").version
    except PackageNotFoundError:
        core = "(not installed: run from a source folder)"
    lines = [f"{PROG} {core} (Python {platform.python_version()}, {sys.platform})"]
    found: Dict[str, str] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name and any(_REQUIRES_CORE.match(req) for req in dist.requires or ()):
            found[name] = dist.version
    lines += [f"  {name} {found[name]}" for name in sorted(found, key=str.lower)]
    return "\n".join(lines)


class _Missing(Command):
    """What an optional command does when its distribution is not installed: say so."""

    def __init__(self, name: str) -> None:
        self.name = name
        distribution_name, what = OPTIONAL_COMMANDS[name]
        self.distribution = distribution_name
        self.help = f"{what} (needs {distribution_name}: not installed)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """None: :func:`main` runs this command before parsing what follows it."""

    def run(self, args: argparse.Namespace) -> int:
        print(
            f"{PROG} {self.name}: this command comes with the {self.distribution} distribution, "
            f"which is not installed here; install it with: pip install {self.distribution}",
            file=sys.stderr,
        )
        return 2


def build_parser(commands: Dict[str, Command]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="List pike-core's poller backends; with pike-bench, run the echo demo and the "
        "benchmark. Without a command: list, then demo.",
    )
    parser.add_argument(
        "--version",
        action="store_true",
        help="print the versions of pike-core and of every distribution using it",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    listing = sub.add_parser("list", help="list the installed backends and which one would be chosen")
    add_poller_option(listing)
    for name in sorted(commands):
        command = commands[name]
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    commands, problems = load_commands(reserved=("list",))
    for problem in problems:
        print(f"{PROG}: warning: {problem}", file=sys.stderr)
    for name in OPTIONAL_COMMANDS:
        commands.setdefault(name, _Missing(name))
    parser = build_parser(commands)
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0].startswith("-") and words[0] not in ("-h", "--help", "--version"):
        # Otherwise argparse reports the option's value as an unknown command.
        parser.error(
            f"{words[0]} is not an option of {PROG} itself: a command's options go after it "
            f"({PROG} demo {words[0]} ...; see {PROG} COMMAND --help)"
        )
    missing = commands.get(words[0]) if words else None
    if isinstance(missing, _Missing):
        return missing.run(argparse.Namespace(command=missing.name))
    args = parser.parse_args(words)
    try:
        if args.version:
            print(versions())
            return 0
        if args.command == "list":
            return cmd_list(args.poller)
        if args.command is not None:
            return commands[args.command].run(args)
        status = cmd_list(None)
        demo = commands["demo"]
        if status or isinstance(demo, _Missing):
            return status
        print()
        return demo.run(parser.parse_args(["demo"]))
    except BackendError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
