"""The stateful machine's rules stay enabled whatever real sockets and clocks did.

Hypothesis stops with ``FlakyStrategyDefinition`` when the rules enabled after the same
choices differ between two examples.  A CI run of the machine stopped so: its
preconditions asked real sockets and clocks, which answered differently in two examples.
``applies`` guards a rule inside its body instead, which these tests pin.
"""

from __future__ import annotations

import itertools
from typing import Iterator

import pytest

pytest.importorskip("hypothesis", reason="the stateful machine needs hypothesis: pip install hypothesis")
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyStrategyDefinition
from hypothesis.stateful import (
    RULE_MARKER,
    RuleBasedStateMachine,
    precondition,
    rule,
    run_state_machine_as_test,
)

from pike_core.conformance.test_stateful import TransportMachine, applies

RUN = settings(
    max_examples=50,
    stateful_step_count=10,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[p for p in Phase if p is not Phase.shrink],
)


def _world() -> Iterator[bool]:
    """Stands for sockets and clocks: the answer changes from one asking to the next."""
    return (n % 3 == 0 for n in itertools.count())


def test_a_precondition_on_the_outside_world_stops_hypothesis() -> None:
    world = _world()

    class Machine(RuleBasedStateMachine):
        @rule(n=st.integers(0, 3))
        def always(self, n: int) -> None:
            pass

        @precondition(lambda self: next(world))
        @rule(n=st.integers(0, 3))
        def sometimes(self, n: int) -> None:
            pass

    with pytest.raises(FlakyStrategyDefinition):
        run_state_machine_as_test(Machine, settings=RUN)


def test_applies_runs_the_rule_only_when_it_holds_and_keeps_hypothesis_going() -> None:
    world = _world()
    ran: list[int] = []
    asked = 0

    def ready(machine: object) -> bool:
        nonlocal asked
        asked += 1
        return next(world)

    class Machine(RuleBasedStateMachine):
        @rule(n=st.integers(0, 3))
        def always(self, n: int) -> None:
            pass

        @rule(n=st.integers(0, 3))
        @applies(ready)
        def sometimes(self, n: int) -> None:
            ran.append(n)

    run_state_machine_as_test(Machine, settings=RUN)
    assert 0 < len(ran) < asked


def test_no_rule_of_the_machine_has_a_precondition() -> None:
    rules = [
        getattr(value, RULE_MARKER)
        for value in vars(TransportMachine).values()
        if hasattr(value, RULE_MARKER)
    ]
    assert len(rules) >= 10
    assert [r.function.__name__ for r in rules if r.preconditions] == []
