"""The conformance suite's primitive probes (pike_core.conformance.probes), against
backends broken on purpose in ways the example poller's faults (tests/test_example_poller.py)
do not cover: each probe names its rule, and a hung backend cannot hang the probes."""

from __future__ import annotations

import os
import select
import time
from typing import Collection, Dict, List, Optional, Tuple, Type

import pytest
from pike_select.backend import SelectBackend

from pike_core import Backend
from pike_core.conformance.probes import BROKEN, KEPT, NOT_CHECKED, PROBES, Verdict, check


def _by_name(verdicts: List[Verdict]) -> Dict[str, Verdict]:
    return {verdict.probe.name: verdict for verdict in verdicts}


def _only_broken(backend_class: Type[Backend], probe: str, guard: float = 5.0) -> Verdict:
    """The verdict of ``probe``, after checking that it is the one rule found broken."""
    verdicts = _by_name(check(backend_class, guard))
    assert verdicts[probe].outcome == BROKEN, verdicts[probe]
    others = {name: v.outcome for name, v in verdicts.items() if name != probe}
    assert set(others.values()) <= {KEPT, NOT_CHECKED}, others
    return verdicts[probe]


class ReturnsAtOnce(SelectBackend):
    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        return super().wait(0)


class TwelveTimesTooLong(SelectBackend):
    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        return super().wait(None if timeout is None else timeout * 12)


class ModifyAdds(SelectBackend):
    """modify() ORs the new interest into the old one."""

    def modify(self, fd: int, mask: int) -> None:
        super().modify(fd, mask | self._masks.get(fd, 0))


class MasksByInterest(Backend):
    """On poll(2), but reports only the bits it was asked for: ERROR and HANGUP are lost."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self._asked: Dict[int, int] = {}

    def register(self, fd: int, mask: int) -> None:
        self._poll.register(fd, mask)
        self._asked[fd] = mask

    def modify(self, fd: int, mask: int) -> None:
        self._poll.modify(fd, mask)
        self._asked[fd] = mask

    def unregister(self, fd: int) -> None:
        if self._asked.pop(fd, None) is not None:
            self._poll.unregister(fd)

    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        answer = self._poll.poll(None if timeout is None else timeout * 1000)
        masked = [(fd, mask & self._asked.get(fd, 0)) for fd, mask in answer]
        return [(fd, mask) for fd, mask in masked if mask]

    def close(self) -> None:
        self._asked.clear()


class UnregisterRefusesClosed(SelectBackend):
    def unregister(self, fd: int) -> None:
        os.fstat(fd)  # OSError (EBADF) for a closed descriptor
        super().unregister(fd)


class WaitRaises(SelectBackend):
    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        raise RuntimeError("the mechanism fell over")


class RegisterHangs(SelectBackend):
    def register(self, fd: int, mask: int) -> None:
        time.sleep(30)


def test_a_wait_that_returns_at_once_is_told_it_makes_the_loop_spin() -> None:
    verdict = _only_broken(ReturnsAtOnce, "timeout_unit")
    assert "must block until its timeout (in seconds) has passed" in verdict.detail
    assert "idle loop spin" in verdict.detail


def test_a_wait_that_takes_far_longer_than_its_timeout_is_asked_about_the_unit() -> None:
    verdict = _only_broken(TwelveTimesTooLong, "timeout_unit")
    assert "the timeout is in seconds" in verdict.detail
    assert "milliseconds" in verdict.detail


def test_modify_must_replace_the_interest() -> None:
    verdict = _only_broken(ModifyAdds, "modify")
    assert "after modify(fd, READ) of a socket registered for WRITE, wait() still reported WRITE" in (
        verdict.detail
    )


@pytest.mark.skipif(not hasattr(select, "poll"), reason="the faulty backend is built on poll(2)")
def test_errors_must_be_reported_unasked() -> None:
    verdict = _only_broken(MasksByInterest, "error_unasked")
    assert "registered for READ alone that has a pending error (SO_ERROR ECONNREFUSED" in verdict.detail
    assert "reported whether asked for or not" in verdict.detail


def test_unregister_must_accept_a_closed_descriptor() -> None:
    verdict = _only_broken(UnregisterRefusesClosed, "unregister")
    assert "raised FileNotFoundError" in verdict.detail or "raised OSError" in verdict.detail
    assert "closed without being unregistered" in verdict.detail


def test_an_exception_from_the_backend_names_the_call() -> None:
    verdicts = _by_name(check(WaitRaises))
    assert verdicts["timeout_unit"].outcome == BROKEN
    assert verdicts["timeout_unit"].detail == "wait(0.05) raised RuntimeError: the mechanism fell over"


def test_a_hung_call_fails_its_probe_within_the_guard_and_stops_the_rest() -> None:
    start = time.monotonic()
    verdicts = check(RegisterHangs, guard=0.5)
    took = time.monotonic() - start
    first, *rest = verdicts
    assert first.outcome == BROKEN
    assert first.hung
    assert first.detail.startswith("register(")
    assert first.detail.endswith(", READ) had not returned after 0.5 s")
    assert [v.outcome for v in rest] == [NOT_CHECKED] * len(rest)
    assert all("left blocked by the timeout_unit probe" in v.detail for v in rest)
    assert took < 3


@pytest.mark.parametrize("name", ["select", "poll", "epoll"])
def test_the_backends_here_keep_every_rule(name: str) -> None:
    from pike_core import available_backends

    status = next(s for s in available_backends() if s.name == name)
    if not status.usable:
        pytest.skip(f"{name} cannot run here: {status.problem}")
    assert status.backend_class is not None
    verdicts = check(status.backend_class)
    assert [v.probe.name for v in verdicts] == [p.name for p in PROBES]
    assert {v.probe.name: v.outcome for v in verdicts} == {p.name: KEPT for p in PROBES}


class AnswersWithAGenerator(SelectBackend):
    def wait(self, timeout: Optional[float]) -> Collection[Tuple[int, int]]:
        return (pair for pair in super().wait(timeout))  # type: ignore[return-value]


def test_an_answer_that_is_not_a_collection_of_pairs_is_named() -> None:
    verdict = _by_name(check(AnswersWithAGenerator))["timeout_unit"]
    assert verdict.outcome == BROKEN
    assert verdict.detail.startswith("wait(0.05) returned <generator object")
    assert "must return a sized collection (list, tuple, dict.items()) of (fd, mask) pairs" in verdict.detail
