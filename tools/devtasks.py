"""The two commands of ``dev.py``: ``demo`` and ``test`` (see the README, "The two commands").

Virtual environments go inside the clone and are rebuilt when what they were made from
changes:

* ``.venv``, on the Python running dev.py (any of 3.9 to 3.13): every distribution of the
  repository installed editable (``dev.py demo`` needs no more), then what the test suite
  needs (requirements/test.txt);
* the tools -- ruff, mypy, hatchling, build, twine, MkDocs (requirements/tools.txt) --
  need Python 3.10 or newer: they go into ``.venv`` too when it is, and otherwise into
  ``.venv-tools`` on the newest Python found (from ``PATH``, pyenv or the ``py`` launcher);
* fresh ones under ``.cache/`` for the built wheels and the fresh-clone demo, every run.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from tools import release

ROOT = Path(__file__).resolve().parent.parent
#: The Pythons pike-core supports; CI proves the oldest and the newest (hatch_build.py's
#: classifiers say the same: tests/repository checks).
SUPPORTED_PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
#: The oldest Python the tools (mypy 2.4) run on.
TOOLS_MIN_PYTHON = (3, 10)


def names(value: Optional[str]) -> List[str]:
    """``"a, b"`` -> ``["a", "b"]``; unset or blank -> ``[]``."""
    return [name.strip() for name in (value or "").split(",") if name.strip()]


#: The oldest and newest supported Pythons: the built wheels are installed and tested on
#: them, and ``dev.py demo`` runs from a fresh copy of the clone with each.
#: PIKE_EDGE_PYTHONS narrows them (a CI job checks the one it runs on).
EDGE_PYTHONS = names(os.environ.get("PIKE_EDGE_PYTHONS")) or [SUPPORTED_PYTHONS[0], SUPPORTED_PYTHONS[-1]]
XDIST_WORKERS = os.environ.get("PIKE_TEST_WORKERS", "2")
#: The checks of the repository and of the built sdists and wheels (run by the
#: distributions step on its files, with the tools: hatchling loads the build hook).
DIST_TESTS = "tests/repository"
#: The backend ``pike-core`` must choose on a fresh ``pip install pike-core`` here.
EXPECTED_BACKEND = {"linux": "epoll", "darwin": "kqueue", "win32": "iocp"}.get(sys.platform, "poll")
#: The asyncore drop-in matters most where the stdlib has no asyncore (3.12+): its tests
#: run against the built wheels on the edge Pythons too, through the shim.
ASYNCORE_TESTS = [
    "tests/compat/test_asyncore_echo.py",
    "tests/compat/test_asyncore_semantics.py",
    "tests/compat/test_asyncore_startup.py",
]
#: pike-asyncio's loop against the built wheels on the edge Pythons: 3.9 runs asyncio.run
#: through the policy, and the frameworks' newest releases run on 3.13.
ASYNCIO_TESTS = [
    f"tests/asyncio_loop/{name}.py" for name in ("test_loop", "test_cpython_selectors", "test_frameworks")
]


def say(message: str) -> None:
    print(f"\n=== {message}", flush=True)


def run(args: Sequence[object], cwd: Path = ROOT, env: Optional[Mapping[str, str]] = None) -> int:
    print("$ " + " ".join(str(a) for a in args), flush=True)
    return subprocess.call(
        [str(a) for a in args], cwd=cwd, env=None if env is None else {**os.environ, **env}
    )


def output(args: Sequence[object], cwd: Path) -> Tuple[int, str]:
    """Run ``args``, show and return what it printed (stdout and stderr together)."""
    print("$ " + " ".join(str(a) for a in args), flush=True)
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    print(proc.stdout, end="", flush=True)
    return proc.returncode, proc.stdout


def bin_dir(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin")


# --- finding Pythons -------------------------------------------------------------------


def find_python(version: str) -> Optional[str]:
    """An interpreter of ``version`` (``"3.9"``): this one, ``pythonX.Y`` on PATH, one under
    pyenv, or the Windows ``py`` launcher's; None if there is none."""
    if version == f"{sys.version_info[0]}.{sys.version_info[1]}":
        return sys.executable
    candidates = [shutil.which(f"python{version}")]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"), reverse=True)
    if shutil.which("py"):
        found = subprocess.run(
            ["py", f"-{version}", "-c", "import sys; print(sys.executable)"],
            capture_output=True,
            text=True,
            check=False,
        )
        candidates.append(found.stdout.strip() if found.returncode == 0 else None)
    for candidate in candidates:
        if candidate and subprocess.call([candidate, "-c", "import venv"], stderr=subprocess.DEVNULL) == 0:
            return candidate
    return None


def require_python(version: str, why: str) -> str:
    found = find_python(version)
    if found is None:
        raise SystemExit(
            f"dev.py: Python {version} is needed {why}, and none was found (looked for python{version} "
            f"on PATH, under pyenv and through the py launcher); install it, for example with: "
            f"pyenv install {version}"
        )
    return found


def tools_python() -> str:
    """This Python if the tools run on it, else the newest supported one found."""
    if sys.version_info[:2] >= TOOLS_MIN_PYTHON:
        return sys.executable
    newer = [v for v in SUPPORTED_PYTHONS if tuple(map(int, v.split("."))) >= TOOLS_MIN_PYTHON]
    for version in reversed(newer):
        found = find_python(version)
        if found:
            return found
    raise SystemExit(
        "dev.py: ruff, mypy and the documentation build need Python 3.10 or newer (mypy 2.4 does), "
        f"beside the Python {sys.version_info[0]}.{sys.version_info[1]} running the suite, and none "
        "was found; install one, for example with: pyenv install 3.13"
    )


# --- virtual environments --------------------------------------------------------------


class Layer(NamedTuple):
    """One ``pip install`` into a virtual environment, and what it was made from."""

    name: str
    pip_args: List[str]
    digest: str


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def project_layer() -> Layer:
    """Every distribution that installs here, editable: the sources are what runs."""
    folders = [
        folder
        for name, folder in release.DISTRIBUTIONS.items()
        # pike-smb2 (the shim's dependency) ships compiled wheels for Linux, where its
        # Samba tests run.
        if name != "pike-smb2-shim" or sys.platform == "linux"
    ]
    inputs = [(ROOT / "VERSION").read_bytes(), (ROOT / "hatch_build.py").read_bytes()]
    inputs += [(folder / "pyproject.toml").read_bytes() for folder in folders]
    args = [arg for folder in folders for arg in ("-e", str(folder))]
    return Layer("project", args, _digest(*inputs))


def requirements_layer(name: str) -> Layer:
    path = ROOT / "requirements" / f"{name}.txt"
    return Layer(name, ["-r", str(path)], _digest(path.read_bytes()))


def ensure_venv(folder: Path, python: str, layers: Sequence[Layer]) -> Path:
    """A virtual environment at ``folder`` on ``python`` with ``layers`` installed, the
    first being its base: reused while current, rebuilt when the base changed.

    :returns: its scripts folder.
    """
    stamp_file = folder / ".pike-stamp"
    base = f"{python} {layers[0].digest}"
    stamps: Dict[str, str] = {}
    if stamp_file.is_file():
        lines = stamp_file.read_text().splitlines()
        if lines and lines[0] == base:
            stamps = dict(line.split(" ", 1) for line in lines[1:])
    if not stamps:
        say(f"setting up {folder.name} with {python}")
        # Left by the setuptools builds of pike-core 0.1: on sys.path through an editable
        # install, an old one would shadow the metadata of what is installed now.
        for stale in release.DISTRIBUTIONS.values():
            for egg_info in stale.glob("*.egg-info"):
                shutil.rmtree(egg_info)
        if folder.exists():
            shutil.rmtree(folder)
        if subprocess.call([python, "-m", "venv", str(folder)]) != 0:
            raise SystemExit(f"dev.py: could not create a virtual environment with {python}")
    bindir = bin_dir(folder)
    for layer in layers:
        if stamps.get(layer.name) == layer.digest:
            continue
        pip = [bindir / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        if run([*pip, *layer.pip_args]) != 0:
            raise SystemExit(f"dev.py: installing {layer.name} into {folder.name} failed (see pip's output)")
        stamps[layer.name] = layer.digest
        stamp_file.write_text("\n".join([base, *(f"{k} {v}" for k, v in stamps.items())]) + "\n")
    return bindir


def main_venv(layers: Sequence[str] = ()) -> Path:
    """``.venv`` on this Python: the project, then the named requirement layers."""
    return ensure_venv(
        ROOT / ".venv", sys.executable, [project_layer(), *(requirements_layer(n) for n in layers)]
    )


def tools_venv() -> Path:
    python = tools_python()
    if python == sys.executable:
        return main_venv(["test", "tools"])
    layers = [project_layer(), requirements_layer("test"), requirements_layer("tools")]
    return ensure_venv(ROOT / ".venv-tools", python, layers)


# --- the checks ------------------------------------------------------------------------


def check_lint(_: Path) -> int:
    tools = tools_venv()
    site = ROOT / ".cache" / "site"
    return (
        run([tools / "ruff", "check", "."])
        or run([tools / "ruff", "format", "--check", "."])
        or run([tools / "mypy"])
        # The kqueue module is skipped by a Linux check (its select stubs have no kqueue).
        or run([tools / "mypy", "--platform", "darwin", ROOT / "backends" / "kqueue" / "pike_kqueue"])
        or run([tools / "mypy", "--platform", "win32", ROOT / "backends" / "iocp" / "pike_iocp"])
        # Silent about pike_core's modules: their POSIX-only parts are checked above.
        or run(
            [
                tools / "mypy",
                "--platform",
                "win32",
                "--follow-imports=silent",
                ROOT / "integrations" / "asyncio" / "pike_asyncio",
            ]
        )
        # The distributions' hook stubs are one file (tests/repository checks): check one.
        or run([tools / "mypy", ROOT / "bench" / "hatch_build.py"])
        or run([tools / "mkdocs", "build", "--strict", "--clean", "--site-dir", site])
    )


def check_suite(bindir: Path) -> int:
    return run([bindir / "python", "-m", "pytest", "-n", XDIST_WORKERS, "-q", "-rs"])


def third_party_requirements(dist_dir: Path, distributions: Sequence[str]) -> List[str]:
    """What the built wheels of ``distributions`` need from the package index: their
    requirements (extras aside) that are not distributions of this repository."""
    needed = set()
    for name in distributions:
        for requirement in release.wheel_metadata(release.wheel_of(dist_dir, name)).get_all(
            "Requires-Dist", []
        ):
            project = re.match(r"[A-Za-z0-9._-]+", requirement)
            if project and project.group(0) not in release.DISTRIBUTIONS and "extra ==" not in requirement:
                needed.add(requirement)
    return sorted(needed)


def check_wheels(dist_dir: Path, version: str) -> int:
    """The built wheels in a fresh virtual environment on Python ``version``, installed as a
    user would (``pip install pike-core``) but from ``dist_dir`` alone (``--no-index``): the
    platform's backends come with the core, and ``pike-core`` works."""
    venv = ROOT / ".cache" / "wheel-venvs" / version
    if venv.exists():
        shutil.rmtree(venv)
    python = require_python(version, "to install the built wheels on the oldest and newest supported Python")
    if run([python, "-m", "venv", venv]) != 0:
        return 1
    bindir = bin_dir(venv)
    pip = [bindir / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    ours = [*pip, "--no-index", "--find-links", dist_dir]
    outside = venv  # no clone on sys.path, no pytest configuration of the clone
    # Third-party requirements from the index first; ours only from the built files.
    wanted = ["pike-core", *release.platform_backends(), "pike-bench", "pike-asyncio", "pike-asyncore-shim"]
    third_party = third_party_requirements(dist_dir, wanted)
    status = run([*pip, *third_party, "-r", ROOT / "requirements" / "test.txt"])
    status = status or run([*ours, "pike-core"])
    if status:
        return status
    # pike-core alone: the platform's backends, and demo says where it comes from.
    code, text = output([bindir / "pike-core", "list"], outside)
    if code != 0 or f"chosen: {EXPECTED_BACKEND} " not in text:
        print(f"FAILED: `pike-core list` after `pip install pike-core` did not choose {EXPECTED_BACKEND}")
        return 1
    code, text = output([bindir / "pike-core", "demo"], outside)
    if code != 2 or "pip install pike-bench" not in text:
        print("FAILED: `pike-core demo` without pike-bench did not say to install it")
        return 1
    status = run([*ours, "pike-bench", "pike-asyncio", "pike-asyncore-shim"])
    if status:
        return status
    code, text = output([bindir / "pike-core", "--version"], outside)
    installed = [n for n in release.DISTRIBUTIONS if f"{n} {release.read_version()}" in text]
    if code != 0 or set(installed) != set(wanted):
        print(f"FAILED: `pike-core --version` lists {sorted(installed)}, expected {sorted(wanted)}")
        return 1
    # The pytest script, not python -m pytest, which would put the clone on sys.path: the
    # clone's tests import the installed wheels (its configuration imports tests by path).
    pytest = [bindir / "pytest", "-p", "no:cacheprovider", "-q", "-rs"]
    backends = names(os.environ.get("PIKE_TEST_BACKENDS"))
    return (
        run([bindir / "pike-core", "demo", "--clients", "4", "--messages", "200"], outside)
        or run(
            [*pytest, "-n", XDIST_WORKERS, "--pyargs", "pike_core.conformance"]
            + (["--pike-poller", ",".join(backends)] if backends else []),
            outside,
        )
        or run([*pytest, *ASYNCORE_TESTS, *ASYNCIO_TESTS])
    )


def check_distributions(_: Path) -> int:
    """Build every sdist and wheel, check them, then install and run them in fresh
    virtual environments on the edge Pythons."""
    tools = tools_venv()
    dist_dir = ROOT / ".cache" / "dist"
    if dist_dir.exists():
        shutil.rmtree(dist_dir)
    try:
        release.build(dist_dir, isolation=False, python=str(tools / "python"))
    except RuntimeError as exc:
        print(f"FAILED: {exc}")
        return 1
    files = sorted(dist_dir.iterdir())
    status = run([tools / "twine", "check", "--strict", *files]) or run(
        [tools / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", DIST_TESTS],
        env={"PIKE_DIST_DIR": str(dist_dir)},
    )
    for version in EDGE_PYTHONS:
        if status:
            break
        say(f"the built wheels on Python {version}, in a fresh virtual environment")
        status = check_wheels(dist_dir, version)
    return status


def fresh_copy(destination: Path) -> None:
    """What a fresh clone of the working tree would hold: the files git tracks, and the
    new ones it does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def check_fresh_clone(_: Path) -> int:
    """The README's first command, ``dev.py demo``, from a fresh copy of the clone with the
    oldest and the newest supported Python as the only thing it may rely on."""
    for version in EDGE_PYTHONS:
        python = require_python(version, "to run dev.py demo from a fresh clone with it")
        say(f"dev.py demo from a fresh copy of the clone, with Python {version}")
        with tempfile.TemporaryDirectory(prefix="pike-fresh-") as folder:
            fresh_copy(Path(folder))
            code, text = output([python, "dev.py", "demo"], Path(folder))
        if code != 0 or "every byte checked" not in text:
            print(f"FAILED: `python{version} dev.py demo` from a fresh clone (exit {code})")
            return code or 1
    return 0


class Skipped(Exception):
    """Raised by a check that cannot run on this machine, with the reason."""


#: The interpreter whose ``test`` package holds CPython's asyncore tests: the last one
#: with asyncore, asynchat and smtpd.
CPYTHON_ASYNCORE_PYTHON = "3.11"


def check_cpython_asyncore(bindir: Path) -> int:
    """CPython 3.11's own test_asyncore, test_asynchat and test_smtpd, from its ``test``
    package, with ``import asyncore`` giving the drop-in (tools/cpython_asyncore_tests.py),
    on each backend that declares what they expect."""
    version = CPYTHON_ASYNCORE_PYTHON
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        python = bindir / "python"
    else:
        found = find_python(version)
        if found is None:
            raise Skipped(
                f"no Python {version} found (looked on PATH, under pyenv and through the py "
                f"launcher); its test package holds the tests: pyenv install {version}"
            )
        python = ensure_venv(ROOT / ".cache" / f"venv-{version}", found, [project_layer()]) / "python"
    script = ROOT / "tools" / "cpython_asyncore_tests.py"
    code, missing = output([python, script, "--missing"], ROOT)
    if code != 0:
        return code
    if missing.strip():
        raise Skipped(
            f"{python} has no {missing.strip()} in its test package (Debian and Ubuntu ship "
            f"that apart, in libpython{version}-testsuite; pyenv builds have it)"
        )
    return run([python, script])


def check_windows(_: Path) -> int:
    """pike-core under a real Windows CPython (Wine): pip installs the built wheels, and
    the conformance suite runs on iocp and select."""
    if sys.platform != "linux":
        print("runs on Linux only (it drives Windows CPython under Wine); on Windows, iocp runs natively")
        return 0
    # Imported here: it needs fcntl, which Windows lacks.
    from tools import windows_conformance  # noqa: PLC0415

    return windows_conformance.main([])


CHECKS: Dict[str, Callable[[Path], int]] = {
    "ruff, mypy and the documentation site": check_lint,
    "test suite (core, discovery, conformance on every backend, bench)": check_suite,
    f"distributions: build, check, install the wheels on Python {' and '.join(EDGE_PYTHONS)}": (
        check_distributions
    ),
    f"fresh clone: dev.py demo with Python {' and '.join(EDGE_PYTHONS)}": check_fresh_clone,
    f"CPython {CPYTHON_ASYNCORE_PYTHON}'s asyncore, asynchat and smtpd tests on the asyncore drop-in": (
        check_cpython_asyncore
    ),
    "Windows: pike-core installed by pip, iocp and select under Windows CPython on Wine": check_windows,
}


def cmd_demo(argv: Sequence[str]) -> int:
    bindir = main_venv()
    say("pike-core: backends, then the echo demo on the chosen one")
    return run([bindir / "pike-core", *argv])


def cmd_test(argv: Sequence[str]) -> int:
    bindir = main_venv(["test"])
    # The status of each check; None: skipped, with the reason printed.
    results: List[Tuple[str, Optional[int], float]] = []
    for name, check in CHECKS.items():
        if argv and not any(word in name for word in argv):
            continue
        say(name)
        start = time.monotonic()
        status: Optional[int]
        try:
            status = check(bindir)
        except Skipped as exc:
            print(f"SKIPPED: {exc}")
            status = None
        results.append((name, status, time.monotonic() - start))
    say("summary")
    for name, status, seconds in results:
        word = "ok     " if status == 0 else "skipped" if status is None else "FAILED "
        print(f"{word} {seconds:7.1f} s  {name}")
    return 0 if all(not status for _, status, _ in results) else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    commands = {"demo": cmd_demo, "test": cmd_test}
    if not args or args[0] not in commands:
        print(sys.modules["__main__"].__doc__ or __doc__)
        return 2
    return commands[args[0]](args[1:])
