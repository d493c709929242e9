"""What every test run of this repository shares, whichever folder it starts in.

* The report header says which pike-core is under test (version, and the folder it is
  imported from: a source tree or an installed wheel) and every installed backend, with
  the one the choice rules pick here.
* ``PIKE_TEST_BACKENDS`` (comma-separated) names the backends that must be usable on this
  machine: the session fails at once, saying why, if one cannot run here, and the
  conformance suite runs on those only (as ``--pike-poller`` would say), so a backend
  cannot pass by being skipped.  Unset: every installed backend, those that cannot run
  here reported as skipped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

import pytest

import pike_core
from pike_core import BackendError, available_backends, choose_backend

ENV_VAR = "PIKE_TEST_BACKENDS"


def required_backends() -> List[str]:
    """The names in ``PIKE_TEST_BACKENDS``."""
    return [name.strip() for name in os.environ.get(ENV_VAR, "").split(",") if name.strip()]


def pytest_configure(config: pytest.Config) -> None:
    required = required_backends()
    if not required:
        return
    statuses = {status.name: status for status in available_backends()}
    problems = [
        f"{name!r} is not installed (installed: {', '.join(sorted(statuses)) or 'none'})"
        if name not in statuses
        else f"{name!r} cannot run here: {statuses[name].problem}"
        for name in required
        if name not in statuses or not statuses[name].usable
    ]
    if problems:
        raise pytest.UsageError(f"{ENV_VAR}={','.join(required)}: " + "; ".join(problems))
    if hasattr(config.option, "pike_poller") and not config.option.pike_poller:
        config.option.pike_poller = [",".join(required)]


def pytest_report_header(config: pytest.Config) -> List[str]:
    from importlib import metadata  # noqa: PLC0415 - for the header only

    try:
        version = metadata.version("pike-core")
    except metadata.PackageNotFoundError:
        version = "(no distribution metadata)"
    lines = [f"pike-core {version} from {Path(pike_core.__file__).parent}"]
    for status in available_backends():
        where = f"{status.distribution} {status.version}"
        lines.append(f"  backend {status.name} ({where}): {'usable' if status.usable else status.problem}")
    try:
        choice = choose_backend()
        lines.append(f"  chosen here: {choice.backend.name} -- {choice.reason}")
    except BackendError as exc:
        lines.append(f"  chosen here: none -- {exc}")
    if required_backends():
        lines.append(f"  {ENV_VAR}: only {', '.join(required_backends())}, each of which must run here")
    return lines
