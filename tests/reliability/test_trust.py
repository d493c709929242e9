"""The trust model: only distributions registered through ``pike.pollers`` entry points
are ever imported as pollers; ``PIKE_POLLER`` names one of them and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_readme_documents_the_trust_model() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "**Trust model.**" in readme
    section = readme.split("**Trust model.**", 1)[1].split("\n\n", 1)[0]
    assert "pike.pollers" in section
    assert "entry point" in section


@pytest.mark.parametrize("value", ["planted", "planted:Poller", "planted.Poller", "./planted.py"])
def test_pike_poller_never_imports_a_module_by_name(tmp_path: Path, value: str) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "planted.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Poller: pass\n", encoding="utf-8"
    )
    code = (
        "from pike_core import default_poller, UnknownBackendError\n"
        "try:\n    default_poller()\nexcept UnknownBackendError as exc:\n    print('refused:', exc)\n"
    )
    env = dict(os.environ, PIKE_POLLER=value, PYTHONPATH=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused:"), result.stdout
    assert "installed:" in result.stdout
    assert not marker.exists(), f"PIKE_POLLER={value!r} imported a module that is not a registered backend"
