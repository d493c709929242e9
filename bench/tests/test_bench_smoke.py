"""``pike-core bench --smoke`` runs every server on every workload and reports each.

It judges no speed (the durations are tiny and CI machines are noisy): it proves the
suite works, so a broken server, load generator or report shows up in CI.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pike_bench import cbuild, runner

pytestmark = [
    pytest.mark.skipif(
        not sys.platform.startswith("linux"),
        reason="the benchmark's load generator and CPU accounting are Linux-only (epoll, /proc)",
    ),
]


def test_smoke_runs_every_server_on_every_workload(tmp_path: Path) -> None:
    try:
        cbuild.find_compiler()
    except cbuild.CompilerNotFoundError as exc:
        pytest.skip(str(exc))
    proc = subprocess.run(
        [sys.executable, "-m", "pike_core", "bench", "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    servers = {s["key"]: s for s in results["servers"]}
    expected_servers = {"c", "asyncio", "selectors", "asyncore-pike"}
    expected_servers |= {f"pike-{b}" for b in ("epoll", "poll", "select")}
    if importlib.util.find_spec("uvloop") is not None:
        expected_servers.add("uvloop")
    if runner._installed("pyasyncore"):
        expected_servers.add("pyasyncore")
    if importlib.util.find_spec("pike_asyncio") is not None:
        expected_servers.add("pike-asyncio-epoll")
    assert expected_servers <= set(servers)
    cells = {(r["workload"], r["server"]): r for r in results["summary"]}
    for workload in results["workloads"]:
        for key, server in servers.items():
            if workload["many_fds"] and not server["many_fds"]:
                # select() cannot watch the idle workload's descriptors: not run, not listed.
                assert (workload["key"], key) not in cells
                continue
            cell = cells[workload["key"], key]
            assert cell["errors"] == [], (workload["key"], key)
            assert cell["median"] > 0, (workload["key"], key)
            if workload["many_fds"]:
                assert cell["rss_kib_per_conn"] is not None
    table = (tmp_path / "results.txt").read_text()
    assert all(key in table for key in servers)
    assert "machine:" in table
    # Whether the run held the wake-up latency at 0 is recorded, and said, either way.
    pm_qos = results["config"]["pm_qos"]
    writable = os.access(runner.PM_QOS, os.W_OK)
    assert pm_qos["held"] is writable, pm_qos
    assert ("held at 0 µs" if writable else "PM QoS: not held") in table
    pairs = {(p["server"], p["ref"]) for p in results["pairs"]}
    assert ("pike-epoll", "uvloop") in pairs or "uvloop" not in servers
    assert ("pike-epoll", "selectors") in pairs
    assert "pike-epoll / selectors" in table
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "results.png").stat().st_size > 10_000
