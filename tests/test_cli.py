"""``pike-core``: each option once, on its command; versions; commands from other
distributions, and what it says when the one asked for is not installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from pike_core import cli, commands

#: Modules only POSIX systems have: importing the CLI must not need them (on Windows
#: they do not exist, and pike-core list crashed there through os.sysconf).
POSIX_ONLY = ["resource", "fcntl", "termios", "grp", "pwd", "posix"]


def pike_core(*args: str, code: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``pike-core ARGS`` in a new interpreter, after ``code``."""
    program = f"{code}\nimport sys\nfrom pike_core.cli import main\nsys.exit(main({list(args)!r}))"
    return subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )


def test_list_and_help_need_nothing_posix_only() -> None:
    hide = textwrap.dedent(
        f"""
        import os, sys
        del os.sysconf
        for name in {POSIX_ONLY!r}:
            sys.modules.setdefault(name, None)  # None: importing it raises ImportError
        """
    )
    listed = pike_core("list", code=hide)
    assert listed.returncode == 0, listed.stderr
    assert "chosen: " in listed.stdout
    assert "Traceback" not in listed.stderr
    helped = pike_core("--help", code=hide)
    assert helped.returncode == 0, helped.stderr
    installed = {ep.name for ep in metadata.entry_points(group=commands.COMMAND_GROUP)}
    # Every installed command built its parser without them too.
    assert all(name in helped.stdout for name in installed | {"list"})


def test_version_lists_every_distribution_using_pike_core() -> None:
    result = pike_core("--version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"pike-core {metadata.version('pike-core')} (Python ")
    users = {
        dist.metadata["Name"]
        for dist in metadata.distributions()
        if any(req.startswith(("pike-core", "pike_core")) for req in dist.requires or ())
    }
    assert users, "the backends at least depend on pike-core"
    for name in users:
        assert f"  {name} {metadata.version(name)}" in lines


@pytest.mark.parametrize(
    "args",
    [
        ["--clients", "2", "demo"],
        ["--poller", "select", "list"],
        ["--size", "64"],
    ],
)
def test_a_command_option_before_the_command_is_refused(args: List[str]) -> None:
    result = pike_core(*args)
    assert result.returncode == 2
    assert f"{args[0]} is not an option of pike-core itself" in result.stderr
    assert "every byte checked" not in result.stdout


def test_list_takes_no_demo_options() -> None:
    result = pike_core("list", "--clients", "2")
    assert result.returncode == 2
    assert "unrecognized arguments: --clients 2" in result.stderr


def _without_plugin_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    def none(reserved: Tuple[str, ...] = ()) -> Tuple[Dict[str, commands.Command], List[str]]:
        return {}, []

    monkeypatch.setattr(cli, "load_commands", none)


@pytest.mark.parametrize("name", sorted(commands.OPTIONAL_COMMANDS))
def test_a_command_from_a_missing_distribution_says_what_to_install(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _without_plugin_commands(monkeypatch)
    assert cli.main([name, "--any", "options"]) == 2
    distribution = commands.OPTIONAL_COMMANDS[name][0]
    assert f"install it with: pip install {distribution}" in capsys.readouterr().err


def test_without_a_command_and_without_the_demo_it_lists(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _without_plugin_commands(monkeypatch)
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert "chosen: " in out
    assert "demo:" not in out


def test_a_broken_command_plugin_is_left_out_with_a_warning(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "brokencmd-1.0.dist-info").mkdir(parents=True)
    (site / "brokencmd-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: brokencmd\nVersion: 1.0\n"
    )
    (site / "brokencmd-1.0.dist-info" / "entry_points.txt").write_text(
        "[pike.commands]\nbroken = brokencmd:Command\nnotacommand = othercmd:Thing\n"
    )
    (site / "brokencmd.py").write_text("raise ImportError('needs the frobnicator')\n")
    (site / "othercmd.py").write_text("Thing = object()\n")
    code = f"import sys; sys.path.insert(0, {str(site)!r})"
    result = pike_core("list", code=code)
    assert result.returncode == 0, result.stderr
    assert "chosen: " in result.stdout
    assert "warning: command 'broken' (brokencmd:Command) left out: ImportError: needs the frobnicator" in (
        result.stderr
    )
    assert "warning: command 'notacommand' (othercmd:Thing) left out: TypeError" in result.stderr
