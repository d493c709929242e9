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
    "xC",
    "xuvloop",
    "xasyncio",
    "server CPU",
    "µs/op user+kernel",
    "loadgen CPU",
    "KiB/idle conn",
]


def _num(value: Optional[float], fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _split(user: Optional[float], kernel: Optional[float]) -> str:
    return f"{_num(user, '.2f')}+{_num(kernel, '.2f')}"


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
                _num(row["vs_c"], ".2f"),
                _num(row["vs_uvloop"], ".2f"),
                _num(row["vs_asyncio"], ".2f"),
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
        f"{c['runs']} interleaved runs of {c['seconds']} s (+{c['warmup']} s warm-up) per cell, "
        f"{results['elapsed_seconds']:.0f} s in all; {results['discarded_noisy_runs']} runs discarded and "
        f"repeated because other processes used > {c['noise_limit_percent']:.0f}% of a core",
        "xC, xuvloop, xasyncio: median over repetitions of the ratio within each repetition (paired: "
        "a slow spell of the machine during one repetition cancels out)",
        "µs/op user+kernel: the server's CPU time per operation (round trip, chunk, connection) "
        "in user space and in the kernel: a framework can only change the first",
        "KiB/idle conn: (peak RSS during the idle workload - RSS before) / idle connections, in a fresh "
        "server process: the socket and framework objects, buffers and allocator overhead, not kernel "
        "socket memory",
        f"CPU with no connections and nothing due: {idle}",
        *_own_loop_lines(results),
    ]


def _own_loop_lines(results: Dict[str, Any]) -> List[str]:
    """The pluggable dispatch's cost: a backend through the core against its own loop."""
    pairs: Dict[str, List[str]] = {}
    for row in results["summary"]:
        if row.get("vs_own_loop") is not None:
            pairs.setdefault(f"{row['server']} / {row['own_loop']}", []).append(
                f"{row['workload']} {row['vs_own_loop']:.2f}"
            )
    return [f"{pair} (paired, as the x columns): {', '.join(cells)}" for pair, cells in pairs.items()]


def text_table(results: Dict[str, Any]) -> str:
    rows = [_HEADER, *table_rows(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER))]
    lines = [
        "  ".join(cell.rjust(w) if i >= 2 else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths)))
        for r in rows
    ]
    return "\n".join([*lines, "", *_footer(results)])


def markdown_table(results: Dict[str, Any]) -> str:
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + "---|" * 2 + "---:|" * (len(_HEADER) - 2)]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(results)]
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
