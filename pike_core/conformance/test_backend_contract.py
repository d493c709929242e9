"""The primitive probes' verdicts, one test per rule of the Backend contract (see
:mod:`pike_core.conformance.probes`).  Every other conformance test of a backend that
breaks one of these rules fails at once, naming it."""

from __future__ import annotations

from typing import Dict

import pytest

from .probes import KEPT, NOT_APPLICABLE, PROBES, Probe, Verdict


@pytest.mark.parametrize("probe", PROBES, ids=[probe.name for probe in PROBES])
def test_backend_keeps_the_rule(pike_contract: Dict[str, Verdict], probe: Probe) -> None:
    verdict = pike_contract[probe.name]
    if verdict.outcome == NOT_APPLICABLE:
        pytest.skip(verdict.detail)
    if verdict.outcome != KEPT:
        pytest.fail(f"{probe.rule}: broken: {verdict.detail}", pytrace=False)
