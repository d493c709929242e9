"""The built sdists and wheels (``PIKE_DIST_DIR``), as PyPI and pip will see them.

Each test names the defect it guards against: a licence missing from a file, metadata
that disagrees between distributions, a development pin published, a core wheel that
carries the benchmark, a core sdist that cannot run its own tests, a long description
whose links break on PyPI, a ``pip install pike-core`` that brings no backend.
"""

from __future__ import annotations

import os
import re
import subprocess
import tarfile
import zipfile
from email.message import Message
from pathlib import Path
from typing import Dict, List, Set, cast

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tools import devtasks, release

ROOT = release.ROOT
DIST_DIR = Path(os.environ.get("PIKE_DIST_DIR", ROOT / ".cache" / "dist"))
VERSION = release.read_version()
NAMES = list(release.DISTRIBUTIONS)
LICENSE = (ROOT / "LICENSE").read_bytes()
#: The documentation site, as hatch_build.py gives it to every distribution's metadata.
DOCS = re.search(r'DOCUMENTATION = "([^"]+)"', (ROOT / "hatch_build.py").read_text()).group(1)  # type: ignore[union-attr]
#: The operating systems each distribution is for.
SYSTEMS: Dict[str, Set[str]] = {
    "pike-select": {"Operating System :: OS Independent"},
    "pike-poll": {"Operating System :: POSIX"},
    "pike-epoll": {"Operating System :: POSIX :: Linux"},
    "pike-kqueue": {"Operating System :: MacOS", "Operating System :: POSIX :: BSD"},
    "pike-iocp": {"Operating System :: Microsoft :: Windows"},
}


def metadata(name: str) -> Message:
    return release.wheel_metadata(release.wheel_of(DIST_DIR, name))


def requirements(name: str) -> List[Requirement]:
    return [Requirement(text) for text in metadata(name).get_all("Requires-Dist", [])]


def wheel_names(name: str) -> List[str]:
    with zipfile.ZipFile(release.wheel_of(DIST_DIR, name)) as archive:
        return archive.namelist()


def tracked(*paths: str) -> List[str]:
    out = subprocess.run(
        ["git", "ls-files", "--", *paths], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def test_every_distribution_is_built_once_as_sdist_and_wheel() -> None:
    expected = {release.wheel_of(DIST_DIR, n).name for n in NAMES} | {
        release.sdist_of(DIST_DIR, n).name for n in NAMES
    }
    assert {path.name for path in DIST_DIR.iterdir()} == expected


@pytest.mark.parametrize("name", NAMES)
def test_the_licence_travels_in_sdist_and_wheel(name: str) -> None:
    stem = release.file_stem(name)
    with zipfile.ZipFile(release.wheel_of(DIST_DIR, name)) as archive:
        assert archive.read(f"{stem}-{VERSION}.dist-info/licenses/LICENSE") == LICENSE
    with tarfile.open(release.sdist_of(DIST_DIR, name)) as archive:
        member = archive.extractfile(f"{stem}-{VERSION}/LICENSE")
        assert member is not None
        assert member.read() == LICENSE
    meta = metadata(name)
    assert meta["License-Expression"] == "BSD-2-Clause"
    assert meta.get_all("License-File") == ["LICENSE"]
    # The deprecated forms: a free-text License field, licence classifiers.
    assert meta["License"] is None
    assert not [c for c in meta.get_all("Classifier", []) if c.startswith("License ::")]


@pytest.mark.parametrize("name", NAMES)
def test_one_version_and_every_pike_pin_on_its_series(name: str) -> None:
    assert metadata(name)["Version"] == VERSION
    major, minor, _ = VERSION.split(".")
    series = SpecifierSet(f">={major}.{minor},<{major}.{int(minor) + 1}")
    ours = [r for r in requirements(name) if r.name in release.DISTRIBUTIONS]
    if name != "pike-core":
        assert "pike-core" in {r.name for r in ours}, f"{name} does not depend on pike-core"
    for requirement in ours:
        assert requirement.specifier == series, f"{name}: {requirement}"


@pytest.mark.parametrize("name", NAMES)
def test_classifiers_say_pythons_status_systems_and_typing(name: str) -> None:
    classifiers = set(metadata(name).get_all("Classifier", []))
    pythons = {
        c.rsplit(" ", 1)[-1]
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert pythons == set(devtasks.SUPPORTED_PYTHONS)
    assert metadata(name)["Requires-Python"] == f">={devtasks.SUPPORTED_PYTHONS[0]}"
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    systems = {c for c in classifiers if c.startswith("Operating System :: ")}
    assert systems == SYSTEMS.get(name, {"Operating System :: OS Independent"})
    typed = any(n.endswith("/py.typed") for n in wheel_names(name))
    assert ("Typing :: Typed" in classifiers) == typed


@pytest.mark.parametrize("name", NAMES)
def test_project_urls(name: str) -> None:
    urls = dict(entry.split(", ", 1) for entry in metadata(name).get_all("Project-URL", []))
    assert set(urls) == {"Homepage", "Documentation", "Source", "Issues", "Changelog"}
    assert all(url.startswith("https://") for url in urls.values())


@pytest.mark.parametrize("name", NAMES)
def test_extras_publish_no_development_pins(name: str) -> None:
    meta = metadata(name)
    assert "dev" not in meta.get_all("Provides-Extra", [])
    for requirement in requirements(name):
        assert not any(spec.operator in ("==", "===") for spec in requirement.specifier), requirement


def test_the_core_publishes_the_conformance_suites_extra_only() -> None:
    assert metadata("pike-core").get_all("Provides-Extra") == ["test"]


def test_the_pike_smb2_shim_requires_pike_smb2() -> None:
    assert "pike-smb2" in {r.name for r in requirements("pike-smb2-shim")}


@pytest.mark.parametrize("platform", ["linux", "darwin", "win32", "freebsd14", "openbsd7"])
def test_pip_install_pike_core_brings_the_platforms_backends(platform: str) -> None:
    environment = cast(Dict[str, str], {**default_environment(), "sys_platform": platform})
    wanted = [
        r.name
        for r in requirements("pike-core")
        if r.name in release.DISTRIBUTIONS and (r.marker is None or r.marker.evaluate(environment))
    ]
    assert sorted(wanted) == sorted(release.platform_backends(platform))


def test_the_core_wheel_holds_the_core_package_and_nothing_else() -> None:
    files = {n for n in wheel_names("pike-core") if not n.startswith(f"pike_core-{VERSION}.dist-info/")}
    sources = {n for n in tracked("pike_core") if not n.endswith(".pyc")}
    assert files == sources
    assert not [n for n in files if "bench" in n or "demo" in n or n.endswith(".c")]


def test_pike_bench_holds_the_benchmark_and_the_demo() -> None:
    files = set(wheel_names("pike-bench"))
    for source in (
        "pike_bench/demo.py",
        "pike_bench/runner.py",
        "pike_bench/loadgen.c",
        "pike_bench/echo_server.c",
    ):
        assert source in files


def test_the_core_sdist_holds_its_test_suite_and_documentation() -> None:
    members = set(release.sdist_members(release.sdist_of(DIST_DIR, "pike-core")))
    needed = {
        n for n in tracked("tests", "docs", "pike_core", "examples") if not n.startswith("tests/repository/")
    }
    needed |= {
        "conftest.py",
        "pyproject.toml",
        "hatch_build.py",
        "VERSION",
        "LICENSE",
        "README.md",
        "mkdocs.yml",
    }
    needed |= {"CHANGELOG.md", "tools/samba.py", "tools/docstring_roles.py", "requirements/test.txt"}
    assert needed - members == set()
    others = [m for m in members if m.split("/")[0] in ("backends", "bench", "compat", "tests/repository")]
    assert others == []


def _links(text: str) -> List[str]:
    return re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"<(https?://[^>]+)>", text)


def _site_pages() -> Set[str]:
    """The pages of the documentation site, as URLs (from mkdocs.yml's nav)."""
    config = (ROOT / "mkdocs.yml").read_text()
    assert f"site_url: {DOCS}\n" in config, "mkdocs.yml's site_url is not hatch_build.DOCUMENTATION"
    pages = re.findall(r":\s*([\w-]+)\.md\s*$", config, re.MULTILINE)
    return {DOCS + ("" if page == "index" else f"{page}/") for page in pages}


@pytest.mark.parametrize("name", NAMES)
def test_long_descriptions_are_short_and_link_absolutely(name: str) -> None:
    meta = metadata(name)
    assert meta["Description-Content-Type"] == "text/markdown"
    text = meta.get_payload()
    assert isinstance(text, str)
    assert 300 < len(text) < 3000, f"{name}: {len(text)} characters"
    assert "dev.py" not in text
    links = _links(text)
    assert links, f"{name} links nowhere"
    for link in links:
        assert link.startswith("https://"), f"{name}: relative link {link!r} breaks on PyPI"
        if link.startswith(DOCS):
            assert link in _site_pages(), f"{name}: {link} is no page of the documentation site"
