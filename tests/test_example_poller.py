"""The worked example of "Shipping your own poller" (examples/selectors-poller), built
and installed as its author would do it, outside this clone:

* its dependency admits the pike-core it is tested with (pip would refuse it otherwise);
* its CI line (from its workflow file) runs the conformance suite against it, green;
* with each fault of issue 13's table injected through its switch
  (``SELECTORS_POLLER_FAULT``), the same suite exits non-zero within a minute, and its
  first failure names the broken rule.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from packaging.requirements import Requirement

from pike_core.conformance.probes import PROBES

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "selectors-poller"
WORKFLOW = EXAMPLE / ".github" / "workflows" / "conformance.yml"
#: Seconds the suite may take with a fault injected (issue 13: "under 60 s").
LIMIT = 60.0
#: Words the first failure must hold, for each fault of the example's switch.
FAULTS: Dict[str, str] = {
    "import": (
        "backend 'selectors' is broken: broken plugin: loading 'selectors_poller.faulty:FaultyBackend' "
        "raised ImportError: cannot import name 'DefaultSelecter'"
    ),
    "hook": "its pike_poller_backend hook returned {'name': 'selectors'",
    "name": "it calls itself 'selector' but its entry point is named 'selectors'",
    "write": "wait() never reported WRITE",
    "eof": "wait() reported neither READ nor HANGUP for a socket whose peer closed the connection",
    "unregister": "a descriptor must never be reported once it was unregistered",
    "twice": "it must report each descriptor at most once per wait",
    "ms": "the timeout is in seconds",
}
#: A failure's section header in pytest's report: "____ test_x[selectors] ____".
SECTION = re.compile(r"^_{3,} (.+) _{3,}$")


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example, built from a copy of its sources and installed into a folder of its
    own (put on PYTHONPATH, it is an installed distribution there and nowhere else)."""
    work = tmp_path_factory.mktemp("selectors-poller")
    source = work / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = work / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # Its build backend comes from requirements/test.txt, not from a package index.
    built = subprocess.run(
        [*pip, "--no-deps", "--no-build-isolation", "--target", str(site), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, f"building and installing the example failed:\n{built.stderr}"
    assert (site / "selectors_poller" / "backend.py").is_file()
    return site


def ci_line() -> List[str]:
    """The example's CI line that runs the suite, as a command for this Python."""
    [line] = [line for line in WORKFLOW.read_text().splitlines() if "run: pytest " in line]
    words = shlex.split(line.split("run: ", 1)[1])
    return [sys.executable, "-m", *words]


def run_suite(site: Path, fault: str, folder: Path) -> Tuple[int, str, float]:
    """The example's CI line in ``folder``, with ``fault`` injected: exit status, output
    (stderr first: a usage error is there), seconds."""
    env = dict(
        os.environ, COLUMNS="300", PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    )
    env.pop("PIKE_POLLER", None)
    env.pop("SELECTORS_POLLER_FAULT", None)
    if fault:
        env["SELECTORS_POLLER_FAULT"] = fault
    command = [*ci_line(), "-p", "no:cacheprovider", "-rfEp"]
    start = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, env=env, timeout=LIMIT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"the suite with fault {fault!r} ran past {LIMIT:g} s: {' '.join(command)}\n{exc.stdout!r}"
        )
    return done.returncode, done.stderr + done.stdout, time.monotonic() - start


def first_failure(output: str) -> str:
    """The first failure the suite reports: a usage error, else the first section of
    its errors and failures."""
    lines = output.splitlines()
    usage = [line for line in lines if line.startswith("ERROR: ")]
    if usage:
        return usage[0]
    starts = [i for i, line in enumerate(lines) if SECTION.match(line)]
    assert starts, f"no failure reported:\n{output}"
    end = starts[1] if len(starts) > 1 else len(lines)
    return "\n".join(lines[starts[0] : end])


def test_the_example_requires_the_pike_core_it_is_tested_with() -> None:
    with open(EXAMPLE / "pyproject.toml", "rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    [core] = [r for r in map(Requirement, dependencies) if r.name == "pike-core"]
    tested = version("pike-core")
    assert core.specifier.contains(tested), f"the example requires {core}; this is pike-core {tested}"


def test_the_example_passes_the_suite_by_its_own_ci_line(example_site: Path, tmp_path: Path) -> None:
    status, output, _ = run_suite(example_site, "", tmp_path)
    assert status == 0, output
    # Every rule was checked against it, not skipped.
    for probe in PROBES:
        assert (
            f"PASSED test_backend_contract.py::test_backend_keeps_the_rule[selectors-{probe.name}]" in output
        )
    summary = output.strip().splitlines()[-1]
    assert "failed" not in summary
    assert "error" not in summary


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_fails_the_suite_fast_naming_the_rule(
    example_site: Path, tmp_path: Path, fault: str
) -> None:
    status, output, seconds = run_suite(example_site, fault, tmp_path)
    assert status != 0, output
    assert seconds < LIMIT
    first = first_failure(output)
    assert FAULTS[fault] in first, f"the first failure does not name the rule:\n{first}"
