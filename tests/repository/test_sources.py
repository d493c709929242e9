"""The repository's sources agree with themselves: one version, one licence text, one build
hook, one list of supported Pythons; and dev.py greets an unsupported Python in one line."""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List

import pytest

from tools import devtasks, release

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = release.ROOT
FOLDERS = list(release.DISTRIBUTIONS.values())


def pyproject(folder: Path) -> Dict[str, Any]:
    with open(folder / "pyproject.toml", "rb") as f:
        data: Dict[str, Any] = tomllib.load(f)
    return data


def test_every_distribution_folder_has_the_same_licence_and_hook() -> None:
    licence = (ROOT / "LICENSE").read_bytes()
    stub = (ROOT / "bench" / "hatch_build.py").read_bytes()
    for folder in FOLDERS:
        assert (folder / "LICENSE").read_bytes() == licence, folder
        if folder != ROOT:
            assert (folder / "hatch_build.py").read_bytes() == stub, folder


@pytest.mark.parametrize("folder", FOLDERS, ids=list(release.DISTRIBUTIONS))
def test_every_distribution_takes_its_version_and_pins_from_the_shared_hook(folder: Path) -> None:
    project = pyproject(folder)["project"]
    assert "version" not in project
    assert "dependencies" not in project
    assert set(project["dynamic"]) == {"version", "dependencies", "classifiers", "urls"}
    assert project["license"] == "BSD-2-Clause"
    assert project["license-files"] == ["LICENSE"]
    hook = pyproject(folder)["tool"]["hatch"]["metadata"]["hooks"]["custom"]
    if folder != ROOT:
        assert (folder / hook["shared"]).resolve() == ROOT / "hatch_build.py"


def shared_hook() -> ModuleType:
    pytest.importorskip("hatchling", reason="hatchling (requirements/tools.txt) loads the build hook")
    spec = importlib.util.spec_from_file_location("pike_shared_build", ROOT / "hatch_build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("folder", FOLDERS, ids=list(release.DISTRIBUTIONS))
def test_bumping_the_version_is_one_edit(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = shared_hook()
    bumped = tmp_path / "VERSION"
    bumped.write_text("1.4.0\n")
    monkeypatch.setattr(hook, "VERSION_FILE", bumped)
    config = pyproject(folder)["tool"]["hatch"]["metadata"]["hooks"]["custom"]
    metadata: Dict[str, Any] = {"name": "x", "dynamic": ["version", "dependencies", "classifiers", "urls"]}
    hook.PikeMetadataHook(str(folder), config).update(metadata)
    assert metadata["version"] == "1.4.0"
    for requirement in metadata["dependencies"]:
        name = re.match(r"[a-z0-9-]+", requirement)
        assert name is not None
        if name.group(0) in release.DISTRIBUTIONS:
            assert requirement.startswith(f"{name.group(0)}>=1.4,<1.5"), requirement


def test_the_supported_pythons_are_one_list() -> None:
    hook_source = (ROOT / "hatch_build.py").read_text()
    listed = re.search(r"PYTHON_VERSIONS = \(([^)]*)\)", hook_source)
    assert listed is not None
    assert tuple(re.findall(r'"([\d.]+)"', listed.group(1))) == devtasks.SUPPORTED_PYTHONS
    ci = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert f'python: ["{devtasks.SUPPORTED_PYTHONS[0]}", "{devtasks.SUPPORTED_PYTHONS[-1]}"]' in ci
    for folder in FOLDERS:
        assert pyproject(folder)["project"]["requires-python"] == f">={devtasks.SUPPORTED_PYTHONS[0]}"


def _older_python() -> List[str]:
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(f"{pyenv}/versions/3.[5-8].*/bin/python3"))
    return found[-1:]


@pytest.mark.parametrize(
    "python",
    _older_python()
    or [pytest.param("", marks=pytest.mark.skip(reason="no Python older than 3.9 under pyenv"))],
)
def test_dev_py_on_an_unsupported_python_says_which_in_one_line(python: str, tmp_path: Path) -> None:
    # dev.py alone: if it went past its check, it would set up the clone's .venv with it.
    (tmp_path / "dev.py").write_bytes((ROOT / "dev.py").read_bytes())
    result = subprocess.run(
        [python, "dev.py", "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "pike-core supports Python 3.9 or newer" in lines[0]


def test_the_release_workflow_builds_checks_installs_and_publishes() -> None:
    workflow = (ROOT / ".github" / "workflows" / "release.yml").read_text()
    assert re.search(r"tags:\s*\[\"v\*\"\]", workflow)
    assert "python tools/release.py build dist" in workflow
    assert "twine check --strict dist/*" in workflow
    assert "pike-core list" in workflow
    assert "--pyargs pike_core.conformance" in workflow
    assert "pypa/gh-action-pypi-publish" in workflow
    assert "id-token: write" in workflow
    # The tag must be the version being published.
    assert "VERSION" in workflow
