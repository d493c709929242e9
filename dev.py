#!/usr/bin/env python3
"""Set-up and checks for a fresh clone, with nothing but a Python 3.9+ on the machine.

    python3 dev.py demo    set everything up, then list the backends and run the echo demo
    python3 dev.py test    set everything up, then run every check CI runs

Everything goes into virtual environments inside the clone (``.venv`` for the main
interpreter, ``.venv-3.9`` / ``.venv-3.13`` for the oldest and newest supported ones);
they are rebuilt when a ``pyproject.toml`` changes.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from tools import windows_conformance

ROOT = Path(__file__).resolve().parent
BACKENDS = ["select", "poll", "epoll", "kqueue", "iocp"]


def names(value: Optional[str]) -> List[str]:
    """``"a, b"`` -> ``["a", "b"]``; unset or blank -> ``[]``."""
    return [name.strip() for name in (value or "").split(",") if name.strip()]


#: The oldest and newest supported Pythons: CI proves they import and pass conformance.
#: PIKE_EDGE_PYTHONS narrows them (a CI job checks the one it runs on).
EDGE_PYTHONS = names(os.environ.get("PIKE_EDGE_PYTHONS")) or ["3.9", "3.13"]
#: PIKE_TEST_BACKENDS names the backends that must be usable here, and the conformance
#: suite runs on those only (CI: "kqueue,poll,select" on macOS).  Unset: every installed
#: backend, those that cannot run here reported as skipped.
TEST_BACKENDS = names(os.environ.get("PIKE_TEST_BACKENDS"))
POLLER_ARGS = ["--pike-poller", ",".join(TEST_BACKENDS)] if TEST_BACKENDS else []
XDIST_WORKERS = os.environ.get("PIKE_TEST_WORKERS", "2")
#: Import hooks that run unmodified pike-smb2 (and asyncore) code on pike-core; they
#: change what ``import pike.transport`` gives, so only the main environment has them.
SHIMS = ["pike-smb2-shim", "asyncore-shim"]
#: The asyncore drop-in matters most where the stdlib has no asyncore (3.12+): its tests
#: run on the edge Pythons too, through the shim.
ASYNCORE_TESTS = ["tests/compat/test_asyncore_echo.py", "tests/compat/test_asyncore_semantics.py"]
#: pike-asyncio's loop on the edge Pythons: 3.9 runs asyncio.run through the policy.
ASYNCIO_TESTS = [
    f"tests/asyncio_loop/{name}.py" for name in ("test_loop", "test_cpython_selectors", "test_frameworks")
]


def say(message: str) -> None:
    print(f"\n=== {message}", flush=True)


def run(args: Sequence[object], cwd: Path = ROOT) -> int:
    print("$ " + " ".join(str(a) for a in args), flush=True)
    return subprocess.call([str(a) for a in args], cwd=cwd)


def projects(shims: Sequence[str] = ()) -> List[Path]:
    backends = [ROOT / "backends" / name for name in BACKENDS]
    return [ROOT, *backends, ROOT / "integrations" / "asyncio", *(ROOT / "compat" / name for name in shims)]


def stamp_of(python: str, extras: str, editable: bool, shims: Sequence[str]) -> str:
    """What the environment was built from: with a copy (not an editable) install, the
    sources too, since the installed copy goes stale when they change."""
    digest = hashlib.sha256(f"{python} {extras} {editable}".encode())
    for project in projects(shims):
        digest.update((project / "pyproject.toml").read_bytes())
        if not editable:
            for top in sorted(project.glob("pike_*")):
                for source in [top] if top.is_file() else sorted(top.rglob("*")):
                    if source.is_file() and "__pycache__" not in source.parts:
                        digest.update(str(source.relative_to(ROOT)).encode() + source.read_bytes())
    return digest.hexdigest()


def venv(folder: str, python: str, extras: str, editable: bool = True, shims: Sequence[str] = ()) -> Path:
    """A virtual environment with pike-core, the backends and ``shims`` installed
    (reused while current)."""
    path = ROOT / folder
    bindir = path / ("Scripts" if os.name == "nt" else "bin")
    stamp_file = path / ".pike-stamp"
    stamp = stamp_of(python, extras, editable, shims)
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return bindir
    say(f"setting up {folder} with {python}")
    if path.exists():
        shutil.rmtree(path)
    if subprocess.call([python, "-m", "venv", str(path)]) != 0:
        raise SystemExit(f"dev.py: could not create a virtual environment with {python}")
    pip = [str(bindir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    targets: List[str] = []
    for project in projects(shims):
        spec = str(project) + (extras if project == ROOT else "")
        targets += ["-e", spec] if editable else [spec]
    if run([*pip, *targets]) != 0:
        raise SystemExit(f"dev.py: installing into {folder} failed (see pip's output above)")
    stamp_file.write_text(stamp)
    return bindir


def find_python(version: str) -> str:
    """An interpreter of ``version``: this one, on PATH, or under pyenv."""
    if version == f"{sys.version_info[0]}.{sys.version_info[1]}":
        # Windows has no pythonX.Y on PATH.
        return sys.executable
    found = shutil.which(f"python{version}")
    candidates = [found] if found else []
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"), reverse=True)
    for candidate in candidates:
        if candidate and subprocess.call([candidate, "-c", "import venv"], stderr=subprocess.DEVNULL) == 0:
            return candidate
    raise SystemExit(
        f"dev.py: Python {version} is needed to prove pike-core supports it, and none was found "
        f"(looked for python{version} on PATH and under {pyenv_root}/versions); install it, "
        f"for example with: pyenv install {version}"
    )


def main_venv() -> Path:
    return venv(".venv", sys.executable, "[dev]", shims=SHIMS)


def cmd_demo(argv: Sequence[str]) -> int:
    bindir = main_venv()
    say("pike-core: backends, then the echo demo on the chosen one")
    return run([bindir / "pike-core", *argv])


def check_lint(bindir: Path) -> int:
    return (
        run([bindir / "ruff", "check", "."])
        or run([bindir / "ruff", "format", "--check", "."])
        or run([bindir / "mypy"])
        # The kqueue module is skipped by a Linux check (its select stubs have no kqueue).
        or run([bindir / "mypy", "--platform", "darwin", ROOT / "backends" / "kqueue" / "pike_kqueue"])
        or run([bindir / "mypy", "--platform", "win32", ROOT / "backends" / "iocp" / "pike_iocp"])
        # Silent about pike_core's modules: their POSIX-only parts are checked above.
        or run(
            [
                bindir / "mypy",
                "--platform",
                "win32",
                "--follow-imports=silent",
                ROOT / "integrations" / "asyncio" / "pike_asyncio",
            ]
        )
    )


def check_backends(bindir: Path) -> int:
    """Each backend of PIKE_TEST_BACKENDS can run here: the suite would only skip it."""
    for name in TEST_BACKENDS:
        status = run([bindir / "python", "-m", "pike_core", "--poller", name, "list"])
        if status:
            return status
    return 0


def check_suite(bindir: Path) -> int:
    return run([bindir / "python", "-m", "pytest", "-n", XDIST_WORKERS, "-q", "-rs", *POLLER_ARGS])


def check_edge_pythons(_: Path) -> int:
    for version in EDGE_PYTHONS:
        bindir = venv(
            f".venv-{version}", find_python(version), "[test]", editable=False, shims=["asyncore-shim"]
        )
        say(f"Python {version}: import every package, the conformance suite on every backend, asyncore")
        imports = (
            "import pike_core, "
            + ", ".join(f"pike_{b}" for b in BACKENDS)
            + ", pike_asyncio; import sys; print(sys.version)"
        )
        # From outside the clone, so what is tested is the installed packages, not the sources.
        outside = bindir.parent
        status = (
            run([bindir / "python", "-c", imports], cwd=outside)
            or run(
                [
                    bindir / "python",
                    "-m",
                    "pytest",
                    "--pyargs",
                    "pike_core.conformance",
                    "-n",
                    XDIST_WORKERS,
                    "-q",
                    "-rs",
                    "-p",
                    "no:cacheprovider",
                    *POLLER_ARGS,
                ],
                cwd=outside,
            )
            # The pytest script, not python -m pytest, so the clone's folder is not on
            # sys.path and the tests import the installed copy, as their child processes do.
            or run(
                [bindir / "pytest", "-q", "-rs", "-p", "no:cacheprovider", *ASYNCORE_TESTS, *ASYNCIO_TESTS]
            )
        )
        if status:
            return status
    return 0


def check_windows(_: Path) -> int:
    """The IOCP and select backends' conformance under a real Windows CPython (Wine)."""
    if sys.platform != "linux":
        print("runs on Linux only (it drives Windows CPython under Wine); on Windows, iocp runs natively")
        return 0
    return windows_conformance.main([])


CHECKS: Dict[str, Callable[[Path], int]] = {
    f"backends that must run here ({', '.join(TEST_BACKENDS) or 'PIKE_TEST_BACKENDS unset'})": (
        check_backends
    ),
    "ruff and mypy": check_lint,
    "test suite (core, discovery, conformance on every backend)": check_suite,
    f"oldest and newest Python ({', '.join(EDGE_PYTHONS)})": check_edge_pythons,
    "Windows: iocp and select under Windows CPython on Wine": check_windows,
}


def cmd_test(argv: Sequence[str]) -> int:
    bindir = main_venv()
    results: List[tuple[str, int, float]] = []
    for name, check in CHECKS.items():
        if argv and not any(word in name for word in argv):
            continue
        say(name)
        start = time.monotonic()
        status = check(bindir)
        results.append((name, status, time.monotonic() - start))
    say("summary")
    for name, status, seconds in results:
        print(f"{'ok    ' if status == 0 else 'FAILED'} {seconds:7.1f} s  {name}")
    return 0 if all(status == 0 for _, status, _ in results) else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    commands = {"demo": cmd_demo, "test": cmd_test}
    if not args or args[0] not in commands:
        print(__doc__)
        return 2
    return commands[args[0]](args[1:])


if __name__ == "__main__":
    sys.exit(main())
