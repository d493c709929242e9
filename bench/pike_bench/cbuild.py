"""Build the benchmark's C programs (echo_server, loadgen) on demand.

The benchmark must run on any machine with a C compiler and nothing else,
so this compiles from source at run time and caches the binary keyed by a
hash of everything that affects it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = [
    "CFLAGS",
    "SOURCE_DIR",
    "BuildError",
    "CompilerNotFoundError",
    "build",
    "find_compiler",
]

SOURCE_DIR: Path = Path(__file__).resolve().parent
CFLAGS: tuple[str, ...] = ("-O2", "-Wall", "-Wextra", "-Werror")
_COMPILERS: tuple[str, ...] = ("cc", "gcc", "clang")


class BuildError(RuntimeError):
    """A C source could not be compiled."""


class CompilerNotFoundError(BuildError):
    """No C compiler is available on this machine."""


def find_compiler() -> str:
    """Return the path of the C compiler to use.

    ``$CC`` wins when set, so a developer can point at another toolchain;
    otherwise the first of cc, gcc, clang found on PATH.
    """
    override = os.environ.get("CC")
    candidates = (override,) if override else _COMPILERS
    for name in candidates:
        path = shutil.which(name)
        if path is not None:
            return path
    looked = f"$CC={override!r}" if override else ", ".join(_COMPILERS)
    raise CompilerNotFoundError(
        f"no C compiler found (looked for {looked} on PATH); the benchmark's "
        "C programs need one: install it with `apt-get install gcc` "
        "(or set CC to an existing compiler)"
    )


def _digest(source: bytes, compiler: str) -> str:
    # The compiler and flags are part of the key: changing either must not
    # silently reuse a binary built the old way.
    h = hashlib.sha256()
    h.update(compiler.encode())
    h.update(b"\0")
    h.update(" ".join(CFLAGS).encode())
    h.update(b"\0")
    h.update(source)
    return h.hexdigest()


def _write_atomic(path: Path, data: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(data)
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build(name: str, out_dir: Path) -> Path:
    """Compile ``<name>.c`` from this folder into ``out_dir/<name>``.

    Returns the binary's path. A binary whose recorded source hash matches
    the current source (and compiler and flags) is reused without running
    the compiler. Raises :class:`CompilerNotFoundError` when there is no
    compiler and :class:`BuildError` when compilation fails.
    """
    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"expected a bare program name like 'loadgen', got {name!r}")
    src = SOURCE_DIR / f"{name}.c"
    if not src.is_file():
        raise BuildError(f"no C source for {name!r}: {src} does not exist")

    compiler = find_compiler()
    source = src.read_bytes()
    digest = _digest(source, compiler)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = out_dir / name
    stamp = out_dir / f"{name}.sha256"
    try:
        if stamp.read_text().strip() == digest and binary.is_file() and os.access(binary, os.X_OK):
            return binary
    except FileNotFoundError:
        pass

    # Compile to a private name and rename into place, so a concurrent run
    # never executes a half-written binary.
    fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.")
    os.close(fd)
    tmp = Path(tmp_name)
    cmd = [compiler, *CFLAGS, "-o", str(tmp), str(src)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BuildError(
                f"compiling {src.name} failed with {compiler} "
                f"(exit {proc.returncode}):\n$ {' '.join(cmd)}\n"
                f"{proc.stderr.strip()}"
            )
        tmp.chmod(0o755)
        tmp.replace(binary)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_atomic(stamp, digest + "\n")
    return binary


def _main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: cbuild.py OUT_DIR NAME [NAME ...]", file=sys.stderr)
        return 2
    out_dir = Path(argv[0])
    try:
        for name in argv[1:]:
            print(build(name, out_dir))
    except (BuildError, ValueError) as exc:
        print(f"cbuild: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
