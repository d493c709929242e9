"""The benchmark's outputs: a text table, the same as Markdown and JSON, and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any, Dict, List, Optional

_HEADER = [
    "workload",
    "server",
    "median/s",
    "min-max",
    "spread",
    "xC",
    "xuvloop",
    "xselectors",
    "server CPU",
    "µs/op user+kernel",
    "loadgen CPU",
    "KiB/idle conn",
]


def _num(value: Optional[float], fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _split(user: Optional[float], kernel: Optional[float]) -> str:
    return f"{_num(user, '.2f')}+{_num(kernel, '.2f')}"


def _spread(row: Dict[str, Any]) -> str:
    """The farthest run from the median, in percent of it, and the two groups' sizes
    (low+high) of a bimodal cell."""
    if row.get("spread") is None:
        return "-"
    text = f"±{row['spread'] * 100:.0f}%"
    if row.get("bimodal"):
        low, high = row["bimodal"]
        text += f" bimodal {low}+{high}"
    return text


def table_rows(results: Dict[str, Any]) -> List[List[str]]:
    titles = {w["key"]: w["title"] for w in results["workloads"]}
    names = {s["key"]: s["key"] for s in results["servers"]}
    rows: List[List[str]] = []
    previous = None
    for row in results["summary"]:
        title = titles[row["workload"]] if row["workload"] != previous else ""
        previous = row["workload"]
        if row["median"] is None:
            rng = "failed: " + "; ".join(row["errors"])[:60]
        else:
            rng = f"{row['min']:,.0f}-{row['max']:,.0f}"
            if row["noisy_runs"]:
                rng += f" ({row['noisy_runs']} noisy)"
        rows.append(
            [
                title,
                names[row["server"]],
                _num(row["median"], ",.0f"),
                rng,
                _spread(row),
                _num(row["vs_c"], ".2f"),
                _num(row["vs_uvloop"], ".2f"),
                _num(row["vs_selectors"], ".2f"),
                _num(row["server_cpu_percent"], ".0f") + "%",
                _split(row.get("server_user_us_per_op"), row.get("server_sys_us_per_op")),
                _num(row["loadgen_cpu_percent"], ".0f") + "%",
                _num(row["rss_kib_per_conn"], ".2f"),
            ]
        )
    return rows


def _footer(results: Dict[str, Any]) -> List[str]:
    m, c = results["machine"], results["config"]
    idle = ", ".join(f"{k} {v:.1f}%" for k, v in results["idle_cpu_percent"].items())
    pinning = (
        f"server on core {c['server_core']}, load generator on core {c['loadgen_core']}"
        if c["server_core"] is not None
        else "not pinned (one core)"
    )
    return [
        f"machine: {m['cpu']}, {m['cores']} cores, {m['kernel']}, {m['python']}; {pinning}",
        _pm_qos_line(c.get("pm_qos")),
        f"{c['runs']} interleaved runs of {c['seconds']} s (+{c['warmup']} s warm-up) per cell, "
        f"{results['elapsed_seconds']:.0f} s in all; {results['discarded_noisy_runs']} runs discarded and "
        f"repeated because other processes used > {c['noise_limit_percent']:.0f}% of a core",
        "spread: the farthest run from the median, in percent of it; 'bimodal L+H': the runs fall "
        "into a low group of L and a high group of H, apart by over 15% of the median",
        "xC, xuvloop, xselectors: median over repetitions of the ratio within each repetition (paired: "
        "a slow spell of the machine during one repetition cancels out)",
        "µs/op user+kernel: the server's CPU time per operation (round trip, chunk, connection) "
        "in user space and in the kernel: a framework can only change the first",
        "KiB/idle conn: (peak RSS during the idle workload - RSS before) / idle connections, in a fresh "
        "server process: the socket and framework objects, buffers and allocator overhead, not kernel "
        "socket memory",
        f"CPU with no connections and nothing due: {idle}",
    ]


def _pm_qos_line(state: Optional[Dict[str, Any]]) -> str:
    if state is None:
        return "PM QoS: not recorded"
    if state["held"]:
        return f"PM QoS: {state['path']} held at {state['latency_us']} µs for the whole run"
    return f"PM QoS: not held ({state['why']})"


def pair_rows(results: Dict[str, Any]) -> List[List[str]]:
    """The paired ratios the runner picked (goal by goal): one row per pair, one column per
    workload, each ``median (min-max)``."""
    keys = [w["key"] for w in results["workloads"]]
    rows = [["paired ratio", *keys]]
    for pair in results.get("pairs", []):
        cells = []
        for key in keys:
            cell = pair["workloads"].get(key)
            cells.append(
                "-" if cell is None else f"{cell['median']:.2f} ({cell['min']:.2f}-{cell['max']:.2f})"
            )
        rows.append([f"{pair['server']} / {pair['ref']}", *cells])
    return rows


def _aligned(rows: List[List[str]], left: int) -> List[str]:
    """``rows`` as text columns, the first ``left`` of them left-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) if i < left else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
        for r in rows
    ]


def text_table(results: Dict[str, Any]) -> str:
    lines = _aligned([_HEADER, *table_rows(results)], 2)
    pairs = pair_rows(results)
    extra = ["", *_aligned(pairs, 1)] if len(pairs) > 1 else []
    return "\n".join([*lines, *extra, "", *_footer(results)])


def _markdown(rows: List[List[str]], left: int) -> List[str]:
    return [
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * left + "---:|" * (len(rows[0]) - left),
        *("| " + " | ".join(r) + " |" for r in rows[1:]),
    ]


def markdown_table(results: Dict[str, Any]) -> str:
    lines = _markdown([_HEADER, *table_rows(results)], 2)
    pairs = pair_rows(results)
    if len(pairs) > 1:
        lines += ["", *_markdown(pairs, 1)]
    return "\n".join([*lines, "", *(f"- {line}" for line in _footer(results))]) + "\n"


def plot(results: Dict[str, Any], path: Path) -> bool:
    """Write a PNG of every workload's ratios to C and the memory per idle connection.

    :returns: False when matplotlib is not installed (nothing written).
    """
    try:
        import matplotlib  # noqa: PLC0415 - optional, and slow to import

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    servers = [s["key"] for s in results["servers"]]
    workloads = results["workloads"]
    summary = {(r["workload"], r["server"]): r for r in results["summary"]}
    colours = {key: plt.get_cmap("tab10")(i % 10) for i, key in enumerate(servers)}
    panels = len(workloads) + 1
    cols = 4
    rows = (panels + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    flat = [ax for line in axes for ax in line]
    for ax, w in zip(flat, workloads):
        # The table's paired ratios to the C server, with the range over repetitions.
        present = [s for s in servers if (w["key"], s) in summary and summary[w["key"], s]["vs_c"]]
        med = [summary[w["key"], s]["vs_c"] for s in present]
        lo = [m - summary[w["key"], s]["vs_c_range"][0] for m, s in zip(med, present)]
        hi = [summary[w["key"], s]["vs_c_range"][1] - m for m, s in zip(med, present)]
        y = list(range(len(present)))
        ax.barh(y, med, xerr=[lo, hi], color=[colours[s] for s in present], capsize=3)
        ax.set_yticks(y, present, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(w["title"], fontsize=10)
        ax.set_xlabel("x C epoll server (median of paired runs, min-max)", fontsize=8)
        ax.axvline(1.0, color="grey", linewidth=0.8, linestyle=":")
        for yi, m, h in zip(y, med, hi):
            # Right of the error bar, so the figure never sits on the whisker.
            ax.text(m + h + 0.02, yi, f"{m:.2f}", va="center", fontsize=8)
        ax.set_xlim(0, max([m + h for m, h in zip(med, hi)] + [1.0]) * 1.2)
    ax = flat[len(workloads)]
    idle_key = next((w["key"] for w in workloads if w["many_fds"]), None)
    mem = [
        (s, summary[idle_key, s]["rss_kib_per_conn"])
        for s in servers
        if idle_key and (idle_key, s) in summary and summary[idle_key, s]["rss_kib_per_conn"] is not None
    ]
    ax.barh(range(len(mem)), [v for _, v in mem], color=[colours[s] for s, _ in mem])
    ax.set_yticks(range(len(mem)), [s for s, _ in mem], fontsize=8)
    ax.invert_yaxis()
    ax.set_title("memory per idle connection", fontsize=10)
    ax.set_xlabel("KiB (peak RSS growth / idle conns)", fontsize=8)
    for yi, (_, v) in enumerate(mem):
        ax.text(v, yi, f" {v:.2f}", va="center", fontsize=7)
    for extra in flat[panels:]:
        extra.axis("off")
    m = results["machine"]
    fig.suptitle(
        f"pike-core bench: {m['cpu']}, {m['cores']} cores, {m['kernel']}, {m['python']}", fontsize=11
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write_results(results: Dict[str, Any], out: Path, stream: IO[str]) -> str:
    """Write results.json, results.md, results.txt and results.png into ``out``.

    :returns: the text table.
    """
    out.mkdir(parents=True, exist_ok=True)
    table = text_table(results)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "results.md").write_text(markdown_table(results))
    (out / "results.txt").write_text(table + "\n")
    png = out / "results.png"
    if plot(results, png):
        print(f"results: {out}/results.{{txt,md,json,png}}", file=stream)
    else:
        print(f"results: {out}/results.{{txt,md,json}} (no plot: matplotlib is not installed)", file=stream)
    return table
