"""Every distribution of the repository, built as a release publishes them.

    python tools/release.py build OUT_DIR [--no-isolation]

builds an sdist of each, then its wheel from that sdist (what ``python -m build`` does), into
OUT_DIR: so a wheel can only hold what its sdist does, and every sdist builds on its own.
The release workflow (.github/workflows/release.yml) and ``dev.py test`` both call it.
"""

from __future__ import annotations

import argparse
import email.parser
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
#: Distribution name -> its project folder.  The backends come in the order of README's table.
DISTRIBUTIONS: Dict[str, Path] = {
    "pike-core": ROOT,
    "pike-select": ROOT / "backends" / "select",
    "pike-poll": ROOT / "backends" / "poll",
    "pike-epoll": ROOT / "backends" / "epoll",
    "pike-kqueue": ROOT / "backends" / "kqueue",
    "pike-iocp": ROOT / "backends" / "iocp",
    "pike-asyncio": ROOT / "integrations" / "asyncio",
    "pike-bench": ROOT / "bench",
    "pike-asyncore-shim": ROOT / "compat" / "asyncore-shim",
    "pike-smb2-shim": ROOT / "compat" / "pike-smb2-shim",
}


#: Which backends ``pip install pike-core`` brings, by the environment markers of its
#: dependencies (pyproject.toml; tests/repository checks the two agree).
PLATFORM_BACKENDS: Dict[str, List[str]] = {
    "linux": ["pike-select", "pike-poll", "pike-epoll"],
    "darwin": ["pike-select", "pike-poll", "pike-kqueue"],
    "win32": ["pike-select", "pike-iocp"],
}


def platform_backends(platform: str = sys.platform) -> List[str]:
    """The backend distributions ``pip install pike-core`` installs on ``platform``."""
    if platform in PLATFORM_BACKENDS:
        return PLATFORM_BACKENDS[platform]
    bsd = ["pike-kqueue"] if "bsd" in platform else []
    return ["pike-select", "pike-poll", *bsd]


def file_stem(distribution: str) -> str:
    """``pike-core`` -> ``pike_core``, as wheel and sdist file names spell it."""
    return distribution.replace("-", "_")


def read_version() -> str:
    """The release version (the one line of ``VERSION``)."""
    return (ROOT / "VERSION").read_text(encoding="utf-8").strip()


def build(out_dir: Path, isolation: bool = True, python: str = sys.executable) -> List[Path]:
    """Build every distribution's sdist and wheel into ``out_dir``.

    :param isolation: build in a fresh environment with the ``build-system.requires`` of
        each (as a release does); without, with the build backend installed where
        ``python`` runs, which is faster and pinned by requirements/tools.txt.
    :returns: the files built.
    :raises RuntimeError: a build failed (its output was shown).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, folder in DISTRIBUTIONS.items():
        command = [python, "-m", "build", "--outdir", str(out_dir), str(folder)]
        if not isolation:
            command.insert(3, "--no-isolation")
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            print(result.stdout[-4000:], result.stderr[-4000:], sep="\n", file=sys.stderr)
            raise RuntimeError(f"building {name} from {folder} failed: {' '.join(command)}")
    return sorted(out_dir.iterdir())


def wheel_of(dist_dir: Path, distribution: str, version: Optional[str] = None) -> Path:
    """The wheel of ``distribution`` in ``dist_dir``."""
    return dist_dir / f"{file_stem(distribution)}-{version or read_version()}-py3-none-any.whl"


def sdist_of(dist_dir: Path, distribution: str, version: Optional[str] = None) -> Path:
    """The sdist of ``distribution`` in ``dist_dir``."""
    return dist_dir / f"{file_stem(distribution)}-{version or read_version()}.tar.gz"


def wheel_metadata(wheel: Path) -> Message:
    """The core metadata (``METADATA``) of ``wheel``."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.BytesParser().parsebytes(archive.read(name))


def sdist_members(sdist: Path) -> List[str]:
    """The paths in ``sdist``, without the leading ``name-version/`` folder."""
    with tarfile.open(sdist) as archive:
        return sorted(member.name.split("/", 1)[1] for member in archive.getmembers() if "/" in member.name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build_parser = sub.add_parser("build", help="build every sdist and wheel")
    build_parser.add_argument("out_dir", type=Path)
    build_parser.add_argument("--no-isolation", action="store_true", help="use this environment's hatchling")
    args = parser.parse_args(argv)
    try:
        files = build(args.out_dir, isolation=not args.no_isolation)
    except RuntimeError as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 1
    for path in files:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
