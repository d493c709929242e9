"""``pike-core demo``: bad counts are usage errors, running out of descriptors says which
limit and how to raise it, and a failed run never reads as a success."""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import List

import pytest
from pike_bench import commands, demo


def pike_core(*args: str, descriptors: int = 0) -> subprocess.CompletedProcess[str]:
    """``pike-core ARGS`` in a new interpreter, with at most ``descriptors`` open files."""
    limit = ""
    if descriptors:
        limit = (
            f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, ({descriptors}, {descriptors}))\n"
        )
    program = f"{limit}import sys\nfrom pike_core.cli import main\nsys.exit(main({list(args)!r}))"
    return subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--clients", "-1"],
        ["demo", "--clients", "0"],
        ["demo", "--size", "0"],
        ["demo", "--size", "-1"],
        ["demo", "--messages", "-5"],
        ["demo", "--messages", "1.5"],
        ["demo", "--clients", "many"],
        ["bench", "--runs", "0"],
        ["bench", "--idle", "-3"],
    ],
)
def test_counts_below_one_are_usage_errors(args: List[str]) -> None:
    result = pike_core(*args)
    assert result.returncode == 2
    assert f"argument {args[1]}: expected a whole number of at least 1, got '{args[2]}'" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["bench", "--seconds", "0"], "expected a number above 0, got '0'"),
        (["bench", "--seconds", "nan"], "expected a number above 0, got 'nan'"),
        (["bench", "--warmup", "-0.5"], "expected a number of at least 0, got '-0.5'"),
        (["bench", "--budget", "-1"], "expected a number above 0, got '-1'"),
    ],
)
def test_durations_out_of_range_are_usage_errors(args: List[str], expected: str) -> None:
    result = pike_core(*args)
    assert result.returncode == 2
    assert f"argument {args[1]}: {expected}" in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE is POSIX (resource module)")
def test_too_many_clients_for_the_descriptor_limit_names_it() -> None:
    result = pike_core("demo", "--clients", "100", "--messages", "10", descriptors=64)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "this process may open 64 file descriptors" in result.stderr
    assert "ulimit -n 216" in result.stderr
    assert "every byte checked" not in result.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE is POSIX (resource module)")
def test_descriptors_running_out_midway_name_the_limit() -> None:
    # The up-front count errs on the safe side; this is what is left when it is not
    # enough (descriptors opened elsewhere): the real EMFILE, turned into the message.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
            "from pike_bench import demo\n"
            "demo.descriptors_needed = lambda clients: 0\n"
            "from pike_core.cli import main\n"
            "sys.exit(main(['demo', '--clients', '100', '--messages', '10']))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "out of file descriptors: after " in result.stderr
    assert "this process may open 64 file descriptors" in result.stderr
    assert "ulimit -n" in result.stderr


def test_a_failed_run_is_reported_as_failed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(poller: object, clients: int, messages: int, size: int) -> demo.DemoResult:
        return demo.DemoResult("select", clients, messages, size, 0.5, ["client 1: echo did not match"])

    monkeypatch.setattr(demo, "run_demo", failing)
    args = argparse.Namespace(poller="select", clients=2, messages=3, size=4)
    assert commands.DemoCommand().run(args) == 1
    out, err = capsys.readouterr()
    assert "demo FAILED: 1 of 2 clients" in err
    assert "client 1: echo did not match" in err
    assert "every byte checked" not in out + err


def test_run_demo_checks_every_byte_and_closes_everything() -> None:
    from pike_core import new_poller

    with new_poller() as poller:
        result = demo.run_demo(poller, clients=3, messages=50, size=3000)
        assert len(poller.connections) == 0
    assert result.failures == []
    assert result.round_trips_per_second > 0


@pytest.mark.parametrize("name", ["clients", "messages", "size"])
def test_run_demo_refuses_counts_below_one(name: str) -> None:
    from pike_core import new_poller

    counts = {"clients": 1, "messages": 1, "size": 1, name: 0}
    with new_poller() as poller, pytest.raises(ValueError, match=f"{name} must be at least 1, got 0"):
        demo.run_demo(poller, **counts)
