"""What every pike distribution of this repository shares, for hatchling to build with.

Each distribution (pike-core here, the backends, pike-bench and the shims in their folders)
names this hook in its ``pyproject.toml`` and leaves ``version``, ``dependencies``,
``classifiers`` and ``urls`` to it:

* ``version`` is the one line of ``VERSION``: bumping every distribution is one edit;
* each ``pike-*`` requirement written without a version (``"pike-core"``) is pinned to
  that release series (``pike-core>=0.2,<0.3`` for 0.2.x), so the distributions of one
  release always install together; any other requirement is taken as written;
* the classifiers shared by all (Python versions, status, audience) come first, then the
  distribution's own (operating systems, typing);
* the project URLs are the same for all.

A distribution in a sub-folder reaches this file through the small ``hatch_build.py``
beside its ``pyproject.toml``.  An sdist needs neither: its PKG-INFO holds the computed
fields, and hatchling builds the wheel from those.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List

from hatchling.metadata.plugin.interface import MetadataHookInterface

VERSION_FILE = Path(__file__).resolve().parent / "VERSION"
#: The Python versions every distribution supports and CI tests (keep ``requires-python``,
#: the CI matrix and dev.py's edge Pythons in step: tests/packaging checks them).
PYTHON_VERSIONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
#: Where the project lives.  Every distribution's metadata and long description link here.
REPOSITORY = "https://github.com/pike-core/pike-core"
DOCUMENTATION = "https://pike-core.github.io/pike-core/"
URLS = {
    "Homepage": DOCUMENTATION,
    "Documentation": DOCUMENTATION,
    "Source": REPOSITORY,
    "Issues": f"{REPOSITORY}/issues",
    "Changelog": f"{DOCUMENTATION}changelog/",
}
CLASSIFIERS = [
    "Development Status :: 3 - Alpha",
    "Intended Audience :: Developers",
    "Programming Language :: Python :: 3",
    "Programming Language :: Python :: 3 :: Only",
    *(f"Programming Language :: Python :: {version}" for version in PYTHON_VERSIONS),
    "Programming Language :: Python :: Implementation :: CPython",
    "Topic :: Software Development :: Libraries",
    "Topic :: System :: Networking",
]
#: A requirement of one of ours: ``pike-`` and a name, nothing after it.
_UNPINNED_PIKE = re.compile(r"^(pike-[a-z0-9-]+)\s*(;.*)?$")


def read_version(path: Path) -> str:
    """The release version: the one line of ``VERSION``.

    :raises ValueError: the file does not hold a ``MAJOR.MINOR.PATCH`` version.
    """
    text = path.read_text(encoding="utf-8").strip()
    if not re.fullmatch(r"\d+\.\d+\.\d+", text):
        raise ValueError(f"{path}: expected one line MAJOR.MINOR.PATCH (like 0.2.0), got {text!r}")
    return text


def series(version: str) -> str:
    """The specifier that admits every release of ``version``'s series: ``>=0.2,<0.3``."""
    major, minor, _ = (int(part) for part in version.split("."))
    return f">={major}.{minor},<{major}.{minor + 1}"


def pin(requirement: str, version: str) -> str:
    """``requirement`` with the release series of ``version`` if it is an unpinned
    ``pike-*`` requirement (``"pike-epoll; sys_platform == 'linux'"``), else unchanged."""
    match = _UNPINNED_PIKE.match(requirement.strip())
    if match is None:
        return requirement
    name, marker = match.groups()
    return name + series(version) + (marker or "")


class PikeMetadataHook(MetadataHookInterface):
    """Fills the dynamic fields from ``VERSION`` and the hook's options ``dependencies``
    and ``classifiers`` (``[tool.hatch.metadata.hooks.custom]``)."""

    def update(self, metadata: Dict[str, Any]) -> None:
        version = read_version(VERSION_FILE)
        wanted: Dict[str, Any] = {
            "version": version,
            "dependencies": [pin(r, version) for r in self._option("dependencies")],
            "classifiers": CLASSIFIERS + self._option("classifiers"),
            "urls": dict(URLS),
        }
        dynamic = set(metadata.get("dynamic", []))
        if dynamic != set(wanted):
            raise ValueError(
                f"{metadata.get('name')}: pyproject.toml must declare "
                f"dynamic = {sorted(wanted)} (the shared hatch_build.py fills them), not {sorted(dynamic)}"
            )
        metadata.update(wanted)

    def _option(self, key: str) -> List[str]:
        value = self.config.get(key, [])
        if not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
            raise TypeError(f"[tool.hatch.metadata.hooks.custom] {key} must be a list of strings")
        return value
