"""The benchmark's judgement of its own figures: bimodal cells, spread, paired ratios, and a
baseline environment that cannot serve."""

from __future__ import annotations

import sys
from typing import Any, Dict, List

import pytest
from pike_bench import report, runner


@pytest.mark.parametrize(
    ("values", "groups"),
    [
        # The stream slow mode as it was seen: one run of eight at about half.
        ([3496, 3566, 3927, 3390, 3372, 1966, 3578, 3865], (1, 7)),
        ([1900, 2000, 1950, 3900, 4000, 3950, 4100, 3800], (3, 5)),
        # Noise, however wide, that spreads evenly is not two modes.
        ([4007, 4008, 4711, 4182, 4088, 3695, 3996, 4241], None),
        ([100, 110, 120, 130, 140, 150, 160, 170], None),
        # A gap over 15 % of the median, but no wider than the groups on either side.
        ([1000, 1100, 1200, 1300, 1600, 1700, 1800, 1900], None),
        # Too few runs to tell.
        ([1000, 2000], None),
    ],
)
def test_modes_finds_two_groups_only_where_runs_fall_into_two_places(
    values: List[float], groups: Any
) -> None:
    split = runner.modes(values)
    if groups is None:
        assert split is None
    else:
        assert split is not None
        assert (len(split[0]), len(split[1])) == groups
        assert max(split[0]) < min(split[1])


def record(server: str, rep: int, ops: float, workload: str = "w") -> Dict[str, Any]:
    return {
        "server": server,
        "rep": rep,
        "workload": workload,
        "ops_per_sec": ops,
        "server_cpu_percent": 100.0,
        "loadgen_cpu_percent": 90.0,
    }


def test_summary_reports_spread_bimodal_and_paired_ratios() -> None:
    servers = [runner.Server("pike-epoll", "", ()), runner.Server("selectors", "", ())]
    workloads = [runner.Workload("w", "w", (), "ops/s")]
    pike = [3496, 3566, 3927, 3390, 3372, 1966, 3578, 3865]
    records = [record("pike-epoll", i, v) for i, v in enumerate(pike)]
    records += [record("selectors", i, 3500.0) for i in range(8)]
    rows = {r["server"]: r for r in runner.summarise(records, servers, workloads)}
    cell = rows["pike-epoll"]
    assert cell["bimodal"] == [1, 7]
    median = (3496 + 3566) / 2
    assert cell["spread"] == pytest.approx(1 - 1966 / median)
    assert cell["vs_selectors"] == pytest.approx(median / 3500)
    assert cell["vs_selectors_range"] == pytest.approx([1966 / 3500, 3927 / 3500])
    assert rows["selectors"]["bimodal"] is None
    assert report._spread(cell) == f"±{(1 - 1966 / median) * 100:.0f}% bimodal 1+7"
    assert report._spread(rows["selectors"]) == "±0%"
    pairs = runner.paired_table(records, servers, workloads)
    assert [(p["server"], p["ref"]) for p in pairs] == [("pike-epoll", "selectors")]
    assert pairs[0]["workloads"]["w"]["min"] == pytest.approx(1966 / 3500)


def test_a_baseline_without_the_servers_says_what_to_give(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match=r"--baseline .*-missing: cannot run it"):
        runner._baseline_module(sys.executable + "-missing")
    # A Python that runs but has neither module (-I: no site-packages, no cwd).
    isolated = tmp_path / "python"
    isolated.write_text(f'#!/bin/sh\nexec {sys.executable} -I -S "$@"\n')
    isolated.chmod(0o755)
    with pytest.raises(ValueError, match=r"none of pike_bench\.servers, pike_core\.bench\.servers"):
        runner._baseline_module(str(isolated))
    assert runner._baseline_module(sys.executable) == "pike_bench.servers"
