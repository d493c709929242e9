"""Echo throughput beside thousands of idle connections: pike-core's asyncore vs pyasyncore.

The server is :mod:`asyncore_echo`'s, unchanged, run in a child process by either
implementation; the clients are pike-core's C load generator (``loadgen idle``), which
opens the idle connections first, then measures ping-pong echoes on the active ones::

    python tests/compat/asyncore_idle_bench.py [--idle 900,5000] [--conns 8] [--seconds 3]

prints one line per (idle count, use_poll, implementation) and the ratio of each pair.
PyPI ``pyasyncore`` is loaded from its installed file under its own name, so the stdlib
``asyncore`` of Python <= 3.11 never stands in for it.  With ``use_poll=False`` it uses
``select()``, which fails once a descriptor number reaches 1,024: that row reports the
failure rather than a figure.

``serve`` is the child's entry point: it prints the port, then serves until killed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
IMPLEMENTATIONS = ("pike", "pyasyncore")
#: Descriptors a server needs beyond one per connection (listener, poller, std streams...).
FD_MARGIN = 64


def pyasyncore_path() -> Optional[Path]:
    """Where PyPI pyasyncore's module is installed, or None when it is not."""
    from importlib import metadata

    try:
        path = metadata.distribution("pyasyncore").locate_file("asyncore/__init__.py")
    except metadata.PackageNotFoundError:
        return None
    return Path(str(path))


def load_implementation(name: str) -> ModuleType:
    """The asyncore module ``name`` stands for, under a name of its own."""
    if name == "pike":
        import pike_core.compat.asyncore as ours

        return ours
    path = pyasyncore_path()
    if path is None:
        raise SystemExit("pyasyncore is not installed here: pip install pyasyncore")
    spec = importlib.util.spec_from_file_location("pyasyncore", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def raise_fd_limit(needed: int) -> None:
    """Raise this process's descriptor limit to ``needed`` (children inherit it).

    :raises SystemExit: the hard limit is lower.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"needs {needed} descriptors but the hard limit is {hard}; raise it (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def serve(implementation: str, use_poll: bool, connections: int) -> None:
    raise_fd_limit(connections + FD_MARGIN)
    module = load_implementation(implementation)
    # asyncore_echo does `import asyncore`: it gets the implementation under test.
    sys.modules["asyncore"] = module
    sys.path.insert(0, str(HERE))
    asyncore_echo = importlib.import_module("asyncore_echo")

    server = asyncore_echo.EchoServer("127.0.0.1")
    # The example's backlog of 5 would make thousands of connects wait on SYN retries.
    server.socket.listen(4096)
    print(server.address[1], flush=True)
    module.loop(timeout=30.0, use_poll=use_poll)


def start_server(implementation: str, use_poll: bool, connections: int) -> Tuple[subprocess.Popen[str], int]:
    """A child serving echoes; returns it and its port."""
    args = [sys.executable, __file__, "serve", implementation, "--connections", str(connections)]
    if use_poll:
        args.append("--use-poll")
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.strip().isdigit():
        child.kill()
        child.wait()
        raise RuntimeError(f"the {implementation} echo server did not start (printed {line!r})")
    return child, int(line)


def loadgen() -> Path:
    """The C load generator, built on first use.

    :raises pike_bench.cbuild.BuildError: no C compiler, or the build failed.
    """
    from pike_bench import cbuild

    return cbuild.build("loadgen", ROOT / ".cache" / "bench")


def measure(
    implementation: str,
    use_poll: bool,
    *,
    idle: int,
    conns: int,
    size: int,
    seconds: float,
    warmup: float = 0.5,
) -> Dict[str, Any]:
    """One loadgen ``idle`` run against a fresh server: loadgen's JSON result."""
    binary = loadgen()
    # loadgen raises its own descriptor limit; the server child raises its own too.
    child, port = start_server(implementation, use_poll, idle + conns)
    try:
        workload = ["idle", "--idle", str(idle), "--conns", str(conns), "--size", str(size)]
        run = subprocess.run(
            [str(binary), *workload, "--port", str(port), "--seconds", str(seconds), "--warmup", str(warmup)],
            capture_output=True,
            text=True,
            timeout=120 + warmup + seconds,
            check=False,
        )
    finally:
        child.kill()
        child.wait()
    lines = run.stdout.strip().splitlines()
    if not lines:
        return {"error": f"loadgen printed nothing (exit {run.returncode}): {run.stderr.strip()}"}
    result: Dict[str, Any] = json.loads(lines[-1])
    return result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    serve_args = sub.add_parser("serve")
    serve_args.add_argument("implementation", choices=IMPLEMENTATIONS)
    serve_args.add_argument("--use-poll", action="store_true")
    serve_args.add_argument("--connections", type=int, default=1024)
    parser.add_argument("--idle", default="900,5000", help="comma-separated idle connection counts")
    parser.add_argument("--conns", type=int, default=8, help="active connections")
    parser.add_argument("--size", type=int, default=512, help="message size")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--warmup",
        type=float,
        default=0.5,
        help="uncounted seconds first; pyasyncore accepts one connection per pass, so with thousands "
        "of idle ones it needs long (tens of seconds) before the active ones are even accepted",
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.implementation, args.use_poll, args.connections)
        return 0
    print(
        f"Python {sys.version.split()[0]}; {args.conns} active connections, {args.size}-byte echoes, "
        f"{args.warmup} s warm-up, {args.seconds} s measured"
    )
    print(f"{'idle':>6} {'use_poll':>8} {'pike-core':>16} {'pyasyncore':>24} {'ratio':>8}")
    for idle in (int(n) for n in args.idle.split(",")):
        for use_poll in (False, True):
            rates: Dict[str, Optional[float]] = {}
            shown: Dict[str, str] = {}
            for implementation in IMPLEMENTATIONS:
                result = measure(
                    implementation,
                    use_poll,
                    idle=idle,
                    conns=args.conns,
                    size=args.size,
                    seconds=args.seconds,
                    warmup=args.warmup,
                )
                if result.get("error"):
                    rates[implementation] = None
                    shown[implementation] = "failed: " + str(result["error"])[:40]
                else:
                    rates[implementation] = float(result["ops_per_sec"])
                    shown[implementation] = f"{result['ops_per_sec']:.0f} echo/s"
            ours, theirs = rates["pike"], rates["pyasyncore"]
            if ours is None or theirs is None:
                ratio = "-"
            elif theirs == 0:
                ratio = "inf"
            else:
                ratio = f"{ours / theirs:.1f}x"
            row = f"{idle:>6} {use_poll!s:>8} {shown['pike']:>16} {shown['pyasyncore']:>24} {ratio:>8}"
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
