"""Discovery and choice through real importlib.metadata entry points.

Each test writes real distributions (a ``.dist-info`` with ``entry_points.txt`` and the
plugin's modules) into a temporary folder on ``sys.path``, under an entry point group of
its own so the installed backends stay out of the way.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict

import pytest

from pike_core import (
    ENTRY_POINT_GROUP,
    BackendRegistry,
    BackendUnavailableError,
    NoBackendError,
    UnknownBackendError,
    available_backends,
)

_serial = itertools.count()

GOOD_PLUGIN = """
from pike_core import BackendSpec, hookimpl

@hookimpl
def pike_poller_backend():
    return BackendSpec(name="{name}", backend="{pkg}.poller:Impl", priority={priority})
"""
GOOD_POLLER = """
from pike_select.backend import SelectBackend

class Impl(SelectBackend):
    name = "{name}"
"""
ELSEWHERE_POLLER = """
from pike_core import CannotRunHere
raise CannotRunHere("needs the Plan 9 rio interface, which this platform lacks")
"""
#: A backend that finds out only when constructed that it cannot run here.
TOO_OLD_POLLER = """
from pike_core import CannotRunHere
from pike_select.backend import SelectBackend

class Impl(SelectBackend):
    name = "{name}"

    def __init__(self):
        raise CannotRunHere("needs kernel 9.0 or later for its wait queue; use select")
"""


class Site:
    """A folder on sys.path holding throw-away distributions for one entry point group."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.group = f"pike.test{next(_serial)}"

    def add(
        self, name: str, plugin: str, poller: str = GOOD_POLLER, priority: int = 50, value: str = ""
    ) -> str:
        pkg = f"pikeplug_{name}_{next(_serial)}"
        folder = self.root / pkg
        folder.mkdir()
        fmt: Dict[str, object] = {"name": name, "pkg": pkg, "priority": priority}
        (folder / "__init__.py").write_text("")
        (folder / "plugin.py").write_text(textwrap.dedent(plugin).format(**fmt))
        (folder / "poller.py").write_text(textwrap.dedent(poller).format(**fmt))
        dist_info = self.root / f"{pkg}-1.0.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {pkg}\nVersion: 1.0\n")
        (dist_info / "entry_points.txt").write_text(f"[{self.group}]\n{name} = {value or pkg + '.plugin'}\n")
        return pkg

    def registry(self) -> BackendRegistry:
        return BackendRegistry(self.group)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("PIKE_POLLER", raising=False)
    return Site(tmp_path)


def test_found_through_entry_points_with_distribution_and_version(site: Site) -> None:
    pkg = site.add("alpha", GOOD_PLUGIN)
    [status] = site.registry().backends()
    assert status.name == "alpha"
    assert status.usable
    assert status.distribution == pkg
    assert status.version == "1.0"
    poller = site.registry().new_poller()
    try:
        assert poller.name == "alpha"
    finally:
        poller.close()


def test_highest_priority_usable_wins_by_default(site: Site) -> None:
    site.add("low", GOOD_PLUGIN, priority=1)
    site.add("high", GOOD_PLUGIN, priority=9)
    site.add("higher_elsewhere", GOOD_PLUGIN, ELSEWHERE_POLLER, priority=99)
    choice = site.registry().choose()
    assert choice.backend.name == "high"
    assert "priority" in choice.reason


def test_unknown_name_lists_installed(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    site.add("alpha", GOOD_PLUGIN)
    site.add("beta", GOOD_PLUGIN)
    monkeypatch.setenv("PIKE_POLLER", "gamma")
    with pytest.raises(UnknownBackendError, match=r"'gamma'.*installed: alpha, beta") as info:
        site.registry().choose()
    assert info.value.installed == ("alpha", "beta")


def test_unusable_backend_says_why_and_what_to_do(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    site.add("plan9", GOOD_PLUGIN, ELSEWHERE_POLLER)
    site.add("alpha", GOOD_PLUGIN)
    [_alpha, plan9] = site.registry().backends()
    assert not plan9.usable
    assert not plan9.broken
    assert "Plan 9" in (plan9.problem or "")
    monkeypatch.setenv("PIKE_POLLER", "plan9")
    with pytest.raises(BackendUnavailableError, match=r"Plan 9.*Usable here: alpha"):
        site.registry().choose()


def test_preference_list_falls_back_to_first_usable(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    site.add("plan9", GOOD_PLUGIN, ELSEWHERE_POLLER)
    site.add("alpha", GOOD_PLUGIN, priority=1)
    site.add("beta", GOOD_PLUGIN, priority=2)
    monkeypatch.setenv("PIKE_POLLER", " missing, plan9 ,alpha,beta")
    choice = site.registry().choose()
    assert choice.backend.name == "alpha"
    assert "'missing' is not installed" in choice.reason
    assert "'plan9' cannot run here" in choice.reason


BROKEN_PLUGINS = {
    "import_error": (
        "raise RuntimeError('plugin module crashed on import')",
        "plugin module crashed on import",
    ),
    "failing_hook": (
        "from pike_core import hookimpl\n@hookimpl\ndef pike_poller_backend():\n"
        "    raise OSError('hook failed')\n",
        "hook raised OSError: hook failed",
    ),
    "wrong_type": (
        "from pike_core import hookimpl\n@hookimpl\ndef pike_poller_backend():\n    return {{'name': 'x'}}\n",
        "not a pike_core.BackendSpec",
    ),
    "bad_signature": (
        "from pike_core import hookimpl\n@hookimpl\ndef pike_poller_backend(nonsense):\n    return None\n",
        "does not match the pike hooks",
    ),
    "no_hook": ("VALUE = 1\n", "does not implement the pike_poller_backend hook"),
    "wrong_name": (GOOD_PLUGIN.replace('name="{name}"', 'name="other"'), "calls itself 'other'"),
    "not_a_backend": (GOOD_PLUGIN, "not a pike_core.Backend subclass"),
    # A poller written against pike-core 0.1's contract is told how to move on.
    "old_contract": (GOOD_PLUGIN, "the backend contract of pike-core 0.1; since 0.2 a backend subclasses"),
    "old_spec": (
        GOOD_PLUGIN.replace("backend=", "poller="),
        "unexpected keyword argument 'poller' (BackendSpec(poller=...) is the contract of pike-core 0.1",
    ),
    # An ImportError that is not CannotRunHere is a fault, never "cannot run here".
    "typo_in_module": (GOOD_PLUGIN, "loading 'pikeplug_aaa_broken_"),
    "missing_dependency": (GOOD_PLUGIN, "ModuleNotFoundError: No module named 'no_such_dependency'"),
    # Usable means it opens and watches a socket: else choosing it would fail at once.
    "fails_to_open": (GOOD_PLUGIN, "opening it failed: Impl() raised OSError: [Errno 24] no epoll for you"),
    "fails_to_register": (GOOD_PLUGIN, "opening it failed: registering a socket raised PermissionError"),
}
#: The backend module of the broken plugins that get as far as naming one.
BROKEN_MODULES = {
    "not_a_backend": "class Impl:\n    pass\n",
    "old_contract": "from pike_core import Poller\nclass Impl(Poller):\n    pass\n",
    "typo_in_module": "from pike_select.backend import SelectBackand as Impl\n",
    "missing_dependency": "import no_such_dependency\n",
    "fails_to_open": (
        "from pike_select.backend import SelectBackend\nclass Impl(SelectBackend):\n"
        "    def __init__(self):\n        raise OSError(24, 'no epoll for you')\n"
    ),
    "fails_to_register": (
        "from pike_select.backend import SelectBackend\nclass Impl(SelectBackend):\n"
        "    def register(self, fd, mask):\n        raise PermissionError('denied')\n"
    ),
}
#: Words each broken plugin's problem must hold, beside its own.
BROKEN_ALSO = {"typo_in_module": "cannot import name 'SelectBackand'"}


@pytest.mark.parametrize("kind", sorted(BROKEN_PLUGINS))
def test_broken_plugin_is_listed_and_others_work(site: Site, kind: str) -> None:
    plugin, expected = BROKEN_PLUGINS[kind]
    site.add("aaa_broken", plugin, BROKEN_MODULES.get(kind, GOOD_POLLER), priority=100)
    site.add("good", GOOD_PLUGIN)
    registry = site.registry()
    broken, good = registry.backends()
    assert broken.broken
    assert not broken.usable
    assert expected in (broken.problem or "")
    assert BROKEN_ALSO.get(kind, "") in (broken.problem or "")
    assert good.usable
    assert registry.choose().backend.name == "good"


def test_backend_that_cannot_run_says_so_from_its_constructor(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.add("future", GOOD_PLUGIN, TOO_OLD_POLLER)
    [future] = site.registry().backends()
    assert not future.usable
    assert not future.broken
    assert future.problem == "needs kernel 9.0 or later for its wait queue; use select"
    monkeypatch.setenv("PIKE_POLLER", "future")
    with pytest.raises(BackendUnavailableError, match=r"'future' cannot run here: needs kernel 9\.0"):
        site.registry().choose()


def test_unusable_broken_backend_is_named_as_such_when_asked_for(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.add("shaky", GOOD_PLUGIN, BROKEN_MODULES["fails_to_open"])
    monkeypatch.setenv("PIKE_POLLER", "shaky")
    with pytest.raises(BackendUnavailableError, match=r"'shaky' is not usable: opening it failed: Impl\(\)"):
        site.registry().choose()


def test_missing_entry_point_target_is_broken_not_fatal(site: Site) -> None:
    site.add("ghost", GOOD_PLUGIN, value="no_such_module_anywhere.plugin")
    site.add("good", GOOD_PLUGIN)
    ghost, good = site.registry().backends()
    assert ghost.broken
    assert "no_such_module_anywhere" in (ghost.problem or "")
    assert good.usable


def test_no_backend_installed_names_the_distributions(site: Site) -> None:
    with pytest.raises(NoBackendError, match=r"pike-epoll.*pike-select"):
        site.registry().choose()


def test_only_unusable_backends_says_why_and_what_to_install(site: Site) -> None:
    site.add("plan9", GOOD_PLUGIN, ELSEWHERE_POLLER)
    with pytest.raises(NoBackendError, match=r"Plan 9.*install one that can"):
        site.registry().choose()


def test_environment_cannot_import_arbitrary_modules(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    site.add("alpha", GOOD_PLUGIN)
    monkeypatch.setenv("PIKE_POLLER", "os:system")
    before = set(sys.modules)
    with pytest.raises(UnknownBackendError):
        site.registry().choose()
    assert not {m for m in set(sys.modules) - before if m.startswith("os")}


def test_discovery_is_lazy(site: Site) -> None:
    pkg = site.add("alpha", GOOD_PLUGIN)
    registry = site.registry()
    assert f"{pkg}.plugin" not in sys.modules
    registry.backends()
    assert f"{pkg}.plugin" in sys.modules


def _cli(*args: str, env_poller: str) -> subprocess.CompletedProcess[str]:
    import os

    env = dict(os.environ, PIKE_POLLER=env_poller)
    return subprocess.run(
        [sys.executable, "-m", "pike_core", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_lists_broken_and_unopenable_backends_as_such(tmp_path: Path) -> None:
    import os

    site = Site(tmp_path)
    site.group = ENTRY_POINT_GROUP
    site.add("typo", GOOD_PLUGIN, BROKEN_MODULES["typo_in_module"])
    site.add("shaky", GOOD_PLUGIN, BROKEN_MODULES["fails_to_open"])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    env.pop("PIKE_POLLER", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pike_core", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)

    listing = cli("list")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0].lstrip("*"): line for line in listing.stdout.splitlines() if line.strip()}
    assert "no: broken plugin: loading" in rows["typo"]
    assert "ImportError: cannot import name 'SelectBackand'" in rows["typo"]
    assert "no: opening it failed: Impl() raised OSError: [Errno 24] no epoll for you" in rows["shaky"]
    # Asked for by name, it is refused with the reason, not run into a traceback.
    named = cli("list", "--poller", "shaky")
    assert named.returncode == 2
    assert "'shaky' is not usable: opening it failed: Impl() raised OSError" in named.stderr
    assert "Traceback" not in named.stderr + named.stdout


def test_cli_with_unknown_poller_exits_nonzero_listing_installed() -> None:
    result = _cli("demo", env_poller="nonsense")
    assert result.returncode != 0
    assert "'nonsense'" in result.stderr
    installed = ", ".join(sorted(status.name for status in available_backends()))
    assert f"installed: {installed})" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_lists_backends_and_choice() -> None:
    result = _cli("list", env_poller="poll")
    assert result.returncode == 0, result.stderr
    assert "*poll" in result.stdout
    assert "named by PIKE_POLLER=poll" in result.stdout
