"""``pike-core bench``: echo servers side by side under the C load generator.

Every server runs in its own process on one core, the load generator (``loadgen.c``) on
another; the runs are interleaved (each repetition goes through every workload and, in
each, every server) so that drift in the machine's load spreads over all of them.  A run
during which other processes used more than :data:`NOISE_LIMIT` percent of a core is
discarded and repeated.  Server CPU comes from ``/proc/<pid>/stat`` deltas over the
measured window, the load generator's from its own ``getrusage``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, Optional, Sequence, Tuple

from pike_core.commands import non_negative_float, positive_float, positive_int
from pike_core.discovery import available_backends, registry

from . import cbuild

#: Percent of one core that processes other than the server and the load generator may
#: use during a run before it is discarded (the machine is shared).
NOISE_LIMIT = 15.0
#: How often a noisy run is repeated before it is kept anyway (and marked noisy).
NOISE_RETRIES = 3
#: Seconds to wait at most for the machine to calm down before repeating a noisy run.
QUIET_WAIT = 3.0
IDLE_CONNECTIONS = 5000
SMOKE_IDLE_CONNECTIONS = 50
#: Linux's CPU wake-up latency limit (PM QoS): while a process holds it open with 0
#: written, idle cores poll instead of halting.  In a virtual machine a halted vCPU costs
#: a hypervisor exit to wake (some 25 µs), which a one-connection ping-pong would measure
#: instead of the server.
PM_QOS = Path("/dev/cpu_dma_latency")
#: A cell whose runs fall into two groups this far apart (a fraction of the median), with
#: the gap over half of the whole range, is marked bimodal: a second mode, not noise.
BIMODAL_GAP = 0.15
#: The ratios the report prints per workload, ``(server, reference)``; ``{best}`` is the
#: backend pike-core chooses here.  Pairs whose servers did not run are left out.
PAIRS: Tuple[Tuple[str, str], ...] = (
    ("pike-{best}", "uvloop"),
    ("pike-{best}", "selectors"),
    ("pike-{best}", "c"),
    ("asyncore-pike", "pyasyncore"),
    ("pike-{best}", "pike-{best}-own-loop"),
    ("pike-{best}", "pike-{best}-baseline"),
)


@dataclasses.dataclass(frozen=True)
class Workload:
    key: str
    title: str
    #: loadgen arguments; ``{idle}`` stands for the idle connection count.
    args: Tuple[str, ...]
    unit: str
    #: Needs a backend without a small descriptor limit, and a fresh server per run
    #: (its memory growth is what is measured).
    many_fds: bool = False


WORKLOADS: Tuple[Workload, ...] = (
    Workload("pp1x64", "ping-pong 1 x 64 B", ("pingpong", "--conns", "1", "--size", "64"), "round trips/s"),
    Workload(
        "pp64x1k", "ping-pong 64 x 1 KiB", ("pingpong", "--conns", "64", "--size", "1024"), "round trips/s"
    ),
    Workload(
        "pp16x1k", "ping-pong 16 x 1 KiB", ("pingpong", "--conns", "16", "--size", "1024"), "round trips/s"
    ),
    Workload(
        "idle5k",
        "{idle} idle + 16 x 1 KiB",
        ("idle", "--idle", "{idle}", "--conns", "16", "--size", "1024"),
        "round trips/s",
        many_fds=True,
    ),
    Workload("stream64k", "stream 64 KiB chunks, 1 conn", ("stream", "--size", "65536"), "chunks/s"),
    Workload(
        "churn", "churn: connect/echo 64 B/close", ("churn", "--conns", "16", "--size", "64"), "cycles/s"
    ),
)


@dataclasses.dataclass(frozen=True)
class Server:
    key: str
    title: str
    command: Tuple[str, ...]
    many_fds: bool = True
    #: Runs in an environment of its own: this process's PYTHONPATH is not passed on.
    foreign: bool = False


@dataclasses.dataclass
class Config:
    runs: int
    seconds: float
    warmup: float
    idle: int
    out: Path
    smoke: bool
    budget: float
    workloads: Tuple[Workload, ...]
    server_keys: Optional[Tuple[str, ...]]
    pm_qos: bool = True
    baseline: Optional[str] = None


# --- the machine ---------------------------------------------------------------------


def machine_info() -> Dict[str, str]:
    """What the table was measured on: CPU model, cores, kernel, Python."""
    model = platform.processor() or "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }


def _ticks_per_second() -> int:
    # Asked when measuring, not at import: os.sysconf is POSIX only, and `pike-core` imports
    # this module to build its parser on every platform.
    return os.sysconf("SC_CLK_TCK")


def _proc_times(pid: int) -> Tuple[float, float]:
    """Seconds of CPU process ``pid`` has used in user space and in the kernel."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = _ticks_per_second()
    return int(fields[11]) / tick, int(fields[12]) / tick


def _proc_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) process ``pid`` has used."""
    return sum(_proc_times(pid))


def _busy() -> float:
    """Seconds of CPU the whole machine has used (all but idle and iowait)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _ticks_per_second()


def _status_kib(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def _wait_quiet(limit: float) -> None:
    """Wait (up to ``limit`` seconds) for a half second in which the machine is idle."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        before = _busy()
        time.sleep(0.5)
        if (_busy() - before) / 0.5 * 100 < NOISE_LIMIT / 2:
            return


def _cores() -> Tuple[Optional[int], Optional[int]]:
    """The cores for the server and the load generator, when there are two to pin to."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if len(allowed) < 2:
        return None, None
    return allowed[0], allowed[1]


@contextlib.contextmanager
def pm_qos_held(wanted: bool) -> Iterator[Dict[str, Any]]:
    """Hold :data:`PM_QOS` at 0 µs while the block runs, where it can be written.

    :returns: (as the context value) ``held`` and, when it is not held, ``why``.
    """
    if not wanted:
        yield {"held": False, "why": "not asked for (--no-pm-qos)"}
        return
    try:
        fd = os.open(PM_QOS, os.O_WRONLY)
    except OSError as exc:
        yield {"held": False, "why": f"{PM_QOS} is not writable here ({exc.strerror})"}
        return
    try:
        # The kernel keeps the limit while the file stays open, and drops it at close.
        os.write(fd, struct.pack("i", 0))
        yield {"held": True, "path": str(PM_QOS), "latency_us": 0}
    finally:
        os.close(fd)


def pm_qos_text(state: Dict[str, Any]) -> str:
    if state["held"]:
        return f"PM QoS: {state['path']} held at {state['latency_us']} µs for the run (idle cores poll)"
    return f"PM QoS: not held, {state['why']}: idle cores halt, and waking one adds to latency"


# --- servers ---------------------------------------------------------------------------


def find_servers(echo_server: Path, baseline: Optional[str] = None) -> List[Server]:
    """The C reference, pike on every usable backend (plus the first one on a loop of
    its own), asyncio, asyncio on pike-asyncio's loop and uvloop when they are installed, a
    hand-written ``selectors`` loop, the asyncore echo server on PyPI's asyncore (when
    installed) and on the drop-in, and the first backend's pike server from ``baseline``
    (another environment's Python)."""
    python = (sys.executable, "-m", "pike_bench.servers")
    servers = [Server("c", "C epoll (reference)", (str(echo_server),))]
    usable = [s for s in available_backends() if s.usable]
    best = registry.choose().backend.name
    for status in sorted(usable, key=lambda s: s.name != best):
        many = "many_fds" in status.capabilities
        servers.append(
            Server(
                f"pike-{status.name}",
                f"pike {status.name}",
                (*python, "pike", "--backend", status.name),
                many,
            )
        )
    servers.append(
        Server(
            f"pike-{best}-own-loop", f"pike {best}, own loop", (*python, "pike-own-loop", "--backend", best)
        )
    )
    if baseline is not None:
        servers.append(
            Server(
                f"pike-{best}-baseline",
                f"pike {best} of {baseline}",
                (baseline, "-m", _baseline_module(baseline), "pike", "--backend", best),
                foreign=True,
            )
        )
    servers.append(Server("asyncio", "asyncio Protocol", (*python, "asyncio")))
    if importlib.util.find_spec("pike_asyncio") is not None:
        many = any(s.name == best and "many_fds" in s.capabilities for s in usable)
        command = (*python, "pike-asyncio", "--backend", best)
        servers.append(Server(f"pike-asyncio-{best}", f"asyncio Protocol, pike {best}", command, many))
    if importlib.util.find_spec("uvloop") is not None:
        servers.append(Server("uvloop", "uvloop Protocol", (*python, "uvloop")))
    servers.append(Server("selectors", "hand-written selectors loop", (*python, "selectors")))
    if _installed("pyasyncore"):
        servers.append(Server("pyasyncore", "asyncore echo on pyasyncore", (*python, "pyasyncore")))
    servers.append(
        Server("asyncore-pike", "asyncore echo on pike_core.compat.asyncore", (*python, "asyncore-pike"))
    )
    return servers


def _installed(distribution: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        version(distribution)
    except PackageNotFoundError:
        return False
    return True


#: Where the benchmark's servers live, in this release and before pike-bench was a
#: distribution of its own.
_SERVER_MODULES = ("pike_bench.servers", "pike_core.bench.servers")


def _baseline_module(python: str) -> str:
    """The echo server module that the interpreter ``python`` (another environment) has.

    :raises ValueError: ``python`` does not run, or has neither module.
    """
    # find_spec of a submodule raises when its package is missing.
    probe = (
        "import importlib.util\n"
        f"for module in {_SERVER_MODULES!r}:\n"
        "    try:\n"
        "        if importlib.util.find_spec(module):\n"
        "            print(module)\n"
        "            break\n"
        "    except ImportError:\n"
        "        pass\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        out = subprocess.run(
            [python, "-c", probe], capture_output=True, text=True, check=False, timeout=60, env=env, cwd="/"
        )
    except OSError as exc:
        raise ValueError(f"--baseline {python}: cannot run it: {exc}") from None
    module = out.stdout.strip()
    if out.returncode != 0 or not module:
        detail = f" ({out.stderr.strip().splitlines()[-1]})" if out.stderr.strip() else ""
        raise ValueError(
            f"--baseline {python}: that Python has none of {', '.join(_SERVER_MODULES)}{detail}; give "
            "the python of an environment with pike-bench (or a pike-core before 0.2) installed"
        )
    return module


class RunningServer:
    """A server process, started in ``cwd``: not in a checkout, whose folder ``python -m``
    would put first on the path, ahead of what the server's environment has installed."""

    def __init__(self, server: Server, core: Optional[int], cwd: Path) -> None:
        self.server = server
        env = None
        if server.foreign:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.proc = subprocess.Popen(server.command, stdout=subprocess.PIPE, text=True, cwd=cwd, env=env)
        if core is not None:
            os.sched_setaffinity(self.proc.pid, {core})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "PORT":
            self.stop()
            raise RuntimeError(
                f"server {server.key} did not start: {' '.join(server.command)} printed {line!r}"
            )
        self.port = int(line[1])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# --- one run ---------------------------------------------------------------------------


def run_once(
    loadgen: Path, server: RunningServer, workload: Workload, cfg: Config, core: Optional[int]
) -> Dict[str, Any]:
    args = [a.replace("{idle}", str(cfg.idle)) for a in workload.args]
    cmd = [str(loadgen), *args, "--port", str(server.port)]
    cmd += ["--seconds", str(cfg.seconds), "--warmup", str(cfg.warmup)]
    if core is not None:
        cmd += ["--cpu", str(core)]
    rss_before = _status_kib(server.pid, "VmRSS")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The load generator's own clock starts after connecting and warming up; sample the
    # server over about the same window.
    if workload.many_fds:
        # Every connection, the active ones included (they come last, and the load
        # generator's warm-up starts once each was answered).
        _wait_for_descriptors(server, proc, cfg.idle + int(args[args.index("--conns") + 1]))
    time.sleep(cfg.warmup)
    (user0, sys0), busy0, t0 = _proc_times(server.pid), _busy(), time.monotonic()
    out, err = proc.communicate()
    (user1, sys1), busy1, t1 = _proc_times(server.pid), _busy(), time.monotonic()
    cpu0, cpu1 = user0 + sys0, user1 + sys1
    try:
        result: Dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        result = {"ops_per_sec": 0.0, "cpu_seconds": 0.0, "error": err.strip() or f"exit {proc.returncode}"}
    wall = t1 - t0
    result["server_cpu_percent"] = (cpu1 - cpu0) / wall * 100
    # Where the server's time per operation goes: what the framework can change (user)
    # against the system calls every server makes (kernel).
    ops = float(result.get("ops_per_sec") or 0.0) * wall
    if ops:
        result["server_user_us_per_op"] = (user1 - user0) / ops * 1e6
        result["server_sys_us_per_op"] = (sys1 - sys0) / ops * 1e6
    lg_cpu = float(result.get("cpu_seconds", 0.0))
    result["loadgen_cpu_percent"] = lg_cpu / float(result.get("seconds") or cfg.seconds) * 100
    result["other_cpu_percent"] = ((busy1 - busy0) - (cpu1 - cpu0) - lg_cpu) / wall * 100
    result["returncode"] = proc.returncode
    if workload.many_fds:
        result["rss_kib_before"] = rss_before
        result["rss_kib_peak"] = _status_kib(server.pid, "VmHWM")
        result["rss_kib_per_conn"] = (result["rss_kib_peak"] - rss_before) / cfg.idle
    if proc.returncode != 0 and not result.get("error"):
        result["error"] = err.strip() or f"loadgen exited {proc.returncode}"
    if not server.alive():
        result["error"] = f"server died (exit {server.proc.returncode}); " + str(result.get("error") or "")
    return result


def _wait_for_descriptors(server: RunningServer, loadgen: subprocess.Popen[str], count: int) -> None:
    """Wait until the server holds ``count`` descriptors: the idle connections are open.

    Otherwise the load generator's connecting would fall into the measured window, and
    count as other processes' CPU.
    """
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and loadgen.poll() is None:
        try:
            if len(os.listdir(f"/proc/{server.pid}/fd")) >= count:
                return
        except OSError:
            return
        time.sleep(0.02)


# --- the whole benchmark ---------------------------------------------------------------


def _progress(stream: IO[str], text: str) -> None:
    print(text, file=stream, flush=True)


def measure_idle_cpu(servers: Dict[str, RunningServer], seconds: float) -> Dict[str, float]:
    """Percent of a core each server uses with no connection and nothing to do."""
    before = {k: _proc_cpu(s.pid) for k, s in servers.items()}
    time.sleep(seconds)
    return {k: (_proc_cpu(s.pid) - before[k]) / seconds * 100 for k, s in servers.items()}


def run_benchmark(cfg: Config, stream: IO[str] = sys.stdout) -> Dict[str, Any]:
    bin_dir = (cfg.out / "bin").resolve()
    echo_server = cbuild.build("echo_server", bin_dir)
    loadgen = cbuild.build("loadgen", bin_dir)
    servers = find_servers(echo_server, cfg.baseline)
    if cfg.server_keys:
        unknown = set(cfg.server_keys) - {s.key for s in servers}
        if unknown:
            raise ValueError(
                f"unknown server(s) {sorted(unknown)}; available here: {[s.key for s in servers]}"
            )
        servers = [s for s in servers if s.key in cfg.server_keys]
    server_core, loadgen_core = _cores()
    info = machine_info()
    _progress(stream, f"machine: {info['cpu']}, {info['cores']} cores, {info['kernel']}, {info['python']}")
    _progress(
        stream,
        "pinning: "
        + (
            f"servers on core {server_core}, load generator on core {loadgen_core}"
            if server_core is not None
            else "none (one core)"
        ),
    )
    plan = [
        (rep, w, s)
        for rep in range(cfg.runs)
        for w in cfg.workloads
        for s in servers
        if s.many_fds or not w.many_fds
    ]
    _progress(
        stream,
        f"{len(plan)} runs: {len(servers)} servers x {len(cfg.workloads)} workloads x {cfg.runs}, "
        f"{cfg.seconds} s each after {cfg.warmup} s warm-up",
    )
    started = time.monotonic()
    with pm_qos_held(cfg.pm_qos) as pm_qos:
        _progress(stream, pm_qos_text(pm_qos))
        idle_cpu, records, discarded = _run_plan(plan, servers, cfg, loadgen, stream)
    return {
        "machine": info,
        "config": {
            "runs": cfg.runs,
            "seconds": cfg.seconds,
            "warmup": cfg.warmup,
            "idle": cfg.idle,
            "smoke": cfg.smoke,
            "budget_seconds": cfg.budget,
            "server_core": server_core,
            "loadgen_core": loadgen_core,
            "noise_limit_percent": NOISE_LIMIT,
            "pm_qos": pm_qos,
            "baseline": cfg.baseline,
        },
        "elapsed_seconds": time.monotonic() - started,
        "discarded_noisy_runs": discarded,
        "servers": [dataclasses.asdict(s) for s in servers],
        "workloads": [
            dict(dataclasses.asdict(w), title=w.title.replace("{idle}", f"{cfg.idle:,}"))
            for w in cfg.workloads
        ],
        "idle_cpu_percent": idle_cpu,
        "runs": records,
        "summary": summarise(records, servers, cfg.workloads),
        "pairs": paired_table(records, servers, cfg.workloads),
    }


def _run_plan(
    plan: List[Tuple[int, Workload, Server]],
    servers: List[Server],
    cfg: Config,
    loadgen: Path,
    stream: IO[str],
) -> Tuple[Dict[str, float], List[Dict[str, Any]], int]:
    """Every run of ``plan``, noisy ones repeated.

    :returns: the servers' CPU when idle, the runs' records, how many runs were discarded.
    """
    started = time.monotonic()
    server_core, loadgen_core = _cores()
    cwd = loadgen.parent
    records: List[Dict[str, Any]] = []
    discarded = 0
    # What one run costs besides its measured time: starting the load generator,
    # connecting, stopping (measured on the reference machine; a rough figure suffices).
    per_run = cfg.seconds + cfg.warmup + 0.5
    running: Dict[str, RunningServer] = {}
    try:
        for s in servers:
            running[s.key] = RunningServer(s, server_core, cwd)
        idle_cpu = measure_idle_cpu(running, 0.2 if cfg.smoke else 2.0)
        for i, (rep, workload, server) in enumerate(plan, 1):
            for attempt in range(NOISE_RETRIES + 1):
                if workload.many_fds:
                    # A fresh process, so that its memory growth is the connections' alone.
                    target = RunningServer(server, server_core, cwd)
                else:
                    target = running[server.key]
                    if not target.alive():
                        target = running[server.key] = RunningServer(server, server_core, cwd)
                try:
                    result = run_once(loadgen, target, workload, cfg, loadgen_core)
                finally:
                    if workload.many_fds:
                        target.stop()
                noisy = result["other_cpu_percent"] > NOISE_LIMIT
                # A repeat must not push the whole benchmark past its time budget.
                left = cfg.budget - (time.monotonic() - started) - (len(plan) - i) * per_run
                if not noisy or attempt == NOISE_RETRIES or cfg.smoke or left < per_run + QUIET_WAIT:
                    break
                discarded += 1
                _progress(
                    stream,
                    f"      (discarded: other processes used {result['other_cpu_percent']:.0f}% of a core)",
                )
                _wait_quiet(QUIET_WAIT)
            result.update(rep=rep, workload=workload.key, server=server.key, noisy=noisy)
            records.append(result)
            rss = f"  {result['rss_kib_per_conn']:.2f} KiB/conn" if "rss_kib_per_conn" in result else ""
            err = f"  ERROR {result['error']}" if result.get("error") else ""
            _progress(
                stream,
                f"[{i:3}/{len(plan)} {time.monotonic() - started:5.0f}s] {workload.key:9} {server.key:22} "
                f"{result['ops_per_sec']:>10,.0f}/s  server {result['server_cpu_percent']:3.0f}%  "
                f"loadgen {result['loadgen_cpu_percent']:3.0f}%  "
                f"other {result['other_cpu_percent']:3.0f}%{rss}{err}",
            )
    finally:
        for r in running.values():
            r.stop()
    return idle_cpu, records, discarded


def _median(values: Sequence[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def _paired_ratios(records: List[Dict[str, Any]], workload: str, server: str, ref: str) -> List[float]:
    """Per repetition, ``server``'s rate divided by ``ref``'s in that repetition: the runs
    of one repetition are seconds apart, so a slow spell of the machine that spans them
    cancels out, which it does not in a ratio of medians."""
    rates: Dict[Tuple[str, int], float] = {
        (r["server"], r["rep"]): r["ops_per_sec"]
        for r in records
        if r["workload"] == workload and not r.get("error")
    }
    ratios = [
        rate / rates[ref, rep]
        for (key, rep), rate in rates.items()
        if key == server and rates.get((ref, rep))
    ]
    return sorted(ratios)


def modes(values: Sequence[float]) -> Optional[Tuple[List[float], List[float]]]:
    """The two groups of a bimodal cell (low, high), or None: the widest gap between two
    neighbouring runs is at least :data:`BIMODAL_GAP` of the median and over half of the
    whole range, so the runs do not spread evenly but fall into two places."""
    if len(values) < 3:
        return None
    ordered = sorted(values)
    gap, at = max((b - a, i) for i, (a, b) in enumerate(zip(ordered, ordered[1:]), 1))
    whole = ordered[-1] - ordered[0]
    if gap < BIMODAL_GAP * statistics.median(ordered) or gap <= whole / 2:
        return None
    return ordered[:at], ordered[at:]


def summarise(
    records: List[Dict[str, Any]], servers: Sequence[Server], workloads: Sequence[Workload]
) -> List[Dict[str, Any]]:
    """Per workload and server: median, range and spread of ops/s, paired ratios, CPU,
    memory."""
    rows: List[Dict[str, Any]] = []
    for w in workloads:
        for s in servers:
            mine = [r for r in records if r["workload"] == w.key and r["server"] == s.key]
            if not mine:
                continue
            ok = [r for r in mine if not r.get("error")]
            ops = [r["ops_per_sec"] for r in ok]
            med = _median(ops)
            split = modes(ops)
            row: Dict[str, Any] = {
                "workload": w.key,
                "server": s.key,
                "runs": len(ok),
                "ops": ops,
                "errors": [r["error"] for r in mine if r.get("error")],
                "noisy_runs": sum(1 for r in mine if r.get("noisy")),
                "median": med,
                "min": min(ops) if ops else None,
                "max": max(ops) if ops else None,
                # The farthest run from the median, as a fraction of it.
                "spread": max(abs(v / med - 1) for v in ops) if med else None,
                "bimodal": None if split is None else [len(split[0]), len(split[1])],
                "server_cpu_percent": _median([r["server_cpu_percent"] for r in ok]),
                "loadgen_cpu_percent": _median([r["loadgen_cpu_percent"] for r in ok]),
            }
            # Measured in some runs only (idle workload, runs that did any operation).
            for key in ("server_user_us_per_op", "server_sys_us_per_op", "rss_kib_per_conn"):
                row[key] = _median([r[key] for r in ok if key in r])
            for ref in ("c", "uvloop", "asyncio", "selectors", "pyasyncore"):
                ratios = _paired_ratios(records, w.key, s.key, ref)
                row[f"vs_{ref}"] = _median(ratios)
                row[f"vs_{ref}_range"] = [ratios[0], ratios[-1]] if ratios else None
            rows.append(row)
    return rows


def paired_table(
    records: List[Dict[str, Any]], servers: Sequence[Server], workloads: Sequence[Workload]
) -> List[Dict[str, Any]]:
    """The :data:`PAIRS` that ran: per workload, the median and range of the paired ratios."""
    best = registry.choose().backend.name
    keys = {s.key for s in servers}
    table: List[Dict[str, Any]] = []
    for pattern in PAIRS:
        server, ref = (k.replace("{best}", best) for k in pattern)
        if server not in keys or ref not in keys:
            continue
        cells: Dict[str, Any] = {}
        for w in workloads:
            ratios = _paired_ratios(records, w.key, server, ref)
            if ratios:
                cells[w.key] = {"median": _median(ratios), "min": ratios[0], "max": ratios[-1]}
        table.append({"server": server, "ref": ref, "workloads": cells})
    return table


# --- the command line ------------------------------------------------------------------


def default_out() -> Path:
    return Path.cwd() / ".cache" / "pike-bench"


def add_arguments(parser: Any) -> None:
    """The ``pike-core bench`` options (``parser`` is an argparse parser)."""
    keys = ", ".join(w.key for w in WORKLOADS)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny durations: proves every server and workload work, judges nothing",
    )
    parser.add_argument("--runs", type=positive_int, default=5, help="interleaved repetitions (default 5)")
    parser.add_argument(
        "--seconds", type=positive_float, default=1.0, help="measured seconds per run (default 1)"
    )
    parser.add_argument(
        "--warmup", type=non_negative_float, default=0.3, help="uncounted warm-up per run (default 0.3)"
    )
    parser.add_argument(
        "--idle",
        type=positive_int,
        default=IDLE_CONNECTIONS,
        help=f"idle connections (default {IDLE_CONNECTIONS})",
    )
    parser.add_argument("--workloads", help=f"comma-separated subset of: {keys}")
    parser.add_argument("--servers", help="comma-separated subset of the server keys (see the table)")
    parser.add_argument("--out", type=Path, help=f"results folder (default {default_out()})")
    parser.add_argument(
        "--no-pm-qos",
        action="store_true",
        help=f"do not hold {PM_QOS} at 0 during the run (by default it is, where writable)",
    )
    parser.add_argument(
        "--baseline",
        metavar="PYTHON",
        help="also run the pike server of another environment, given by its python (for example "
        "a checkout of an earlier version; PYTHONPATH is not passed on to it), interleaved with this "
        "one's, and print the paired ratio",
    )
    parser.add_argument(
        "--budget",
        type=positive_float,
        default=540.0,
        help="seconds the whole run may take; noisy runs are repeated only while it allows (default 540)",
    )


def config_from(args: Any) -> Config:
    workloads = WORKLOADS
    if args.workloads:
        wanted = [k.strip() for k in args.workloads.split(",") if k.strip()]
        by_key = {w.key: w for w in WORKLOADS}
        unknown = [k for k in wanted if k not in by_key]
        if unknown:
            raise ValueError(f"unknown workload(s) {unknown}; choose from {list(by_key)}")
        workloads = tuple(by_key[k] for k in wanted)
    servers = tuple(k.strip() for k in args.servers.split(",")) if args.servers else None
    # Absolute (servers start in another folder), but not resolved: a virtual
    # environment's python is a symbolic link to the interpreter it was made from.
    baseline = os.path.abspath(args.baseline) if args.baseline and os.sep in args.baseline else args.baseline
    if args.smoke:
        out = args.out or default_out() / "smoke"
        return Config(
            1,
            0.05,
            0.0,
            SMOKE_IDLE_CONNECTIONS,
            out,
            True,
            args.budget,
            workloads,
            servers,
            not args.no_pm_qos,
            args.baseline,
        )
    out = args.out or default_out()
    return Config(
        args.runs,
        args.seconds,
        args.warmup,
        args.idle,
        out,
        False,
        args.budget,
        workloads,
        servers,
        not args.no_pm_qos,
        baseline,
    )


def run(args: Any, stream: IO[str] = sys.stdout) -> int:
    """Run the benchmark, print the table, write the result files; 1 if a run failed."""
    from .report import write_results  # noqa: PLC0415 - keeps matplotlib out of server start-up

    try:
        cfg = config_from(args)
        results = run_benchmark(cfg, stream)
    except (ValueError, cbuild.BuildError) as exc:
        print(f"pike-core bench: {exc}", file=sys.stderr)
        return 2
    table = write_results(results, cfg.out, stream)
    print(table, file=stream)
    failed = [r for r in results["runs"] if r.get("error")]
    for r in failed:
        print(f"FAILED {r['workload']} on {r['server']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0
