"""Subcommands that other distributions add to ``pike-core`` (entry point group
``pike.commands``), and the argument checks they share.

pike-bench adds ``demo`` and ``bench`` this way, so the core wheel carries neither.  A
distribution registers a :class:`Command` subclass::

    [project.entry-points."pike.commands"]
    demo = "pike_bench.commands:DemoCommand"

Commands are loaded to build the parser, at every start of ``pike-core``: their modules
must be cheap to import and import nothing platform-specific at the top (the work itself
is imported in :meth:`Command.run`).
"""

from __future__ import annotations

import abc
import argparse
import math
import sys
from typing import Dict, List, Tuple

if sys.version_info >= (3, 10):
    from importlib.metadata import entry_points
else:
    from importlib_metadata import entry_points

COMMAND_GROUP = "pike.commands"
#: Commands documented as part of pike-core that come with another distribution: what to
#: say when it is not installed.  name -> (distribution, what the command does)
OPTIONAL_COMMANDS: Dict[str, Tuple[str, str]] = {
    "demo": ("pike-bench", "an echo server and clients over loopback on the chosen backend"),
    "bench": ("pike-bench", "echo servers on every backend, asyncio, uvloop and C, side by side"),
}


class Command(abc.ABC):
    """One ``pike-core NAME`` subcommand.

    Instantiated with no arguments each time ``pike-core`` starts.
    """

    #: The subcommand's name; equal to its entry point's name.
    name: str
    #: One line for ``pike-core --help``.
    help: str

    @abc.abstractmethod
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the subcommand's options to ``parser``.

        :param parser: the subcommand's own parser; every option is defined here once.
        """

    @abc.abstractmethod
    def run(self, args: argparse.Namespace) -> int:
        """Do the work.

        :param args: the parsed command line (``args.command`` is :attr:`name`).
        :returns: the process exit status: 0 success, 1 a failure the output describes,
            2 a usage problem.
        :raises pike_core.BackendError: no backend can be chosen (``pike-core`` prints
            the message and exits with 2).
        """


def load_commands(reserved: Tuple[str, ...] = ()) -> Tuple[Dict[str, Command], List[str]]:
    """The commands registered in :data:`COMMAND_GROUP`, by name, and a warning for each
    entry point that could not be used (it is left out; the others work).

    :param reserved: names of the built-in commands, which no plugin may take.
    """
    commands: Dict[str, Command] = {}
    problems: List[str] = []
    for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda ep: (ep.name, ep.value)):
        where = f"command {ep.name!r} ({ep.value})"
        # Third-party code, like poller plugins: whatever it raises is reported here.
        try:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Command)):
                raise TypeError(f"{cls!r} is not a pike_core.commands.Command subclass")
            if cls.name != ep.name:
                raise ValueError(f"it calls itself {cls.name!r}")
            if ep.name in reserved or ep.name in commands:
                raise ValueError("another command has that name")
            commands[ep.name] = cls()
        except Exception as exc:
            problems.append(f"{where} left out: {type(exc).__name__}: {exc}")
    return commands, problems


def positive_int(text: str) -> int:
    """argparse ``type=`` for counts: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse ``type=`` for durations: a number above 0."""
    value = _float(text, "a number above 0")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """argparse ``type=`` for durations that may be 0: a number of at least 0."""
    value = _float(text, "a number of at least 0")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of at least 0, got {text!r}")
    return value


def _float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value
