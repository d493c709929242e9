"""Faults to inject, one at a time, through an environment switch: off by default, and
not part of the example proper.

pike-core's own tests set ``SELECTORS_POLLER_FAULT`` to each name of :data:`FAULTS` to
prove that the conformance suite fails fast on that fault and names the broken rule.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Final

from pike_core import BackendSpec

SWITCH: Final = "SELECTORS_POLLER_FAULT"
#: Each fault, by the name the switch takes.
FAULTS: Final[Dict[str, str]] = {
    "import": "a typo in an import of the backend's module",
    "hook": "the hook returns a dict instead of a BackendSpec",
    "name": "the spec's name differs from the entry point's",
    "write": "wait() never reports WRITE",
    "eof": "wait() swallows end of stream",
    "unregister": "unregister() does nothing",
    "twice": "wait() reports a descriptor once per event, so twice",
    "ms": "wait() reads its timeout as milliseconds",
}


def chosen() -> str:
    """The fault the switch names, or "" when it is off.

    :raises ValueError: the switch names no fault of :data:`FAULTS`.
    """
    fault = os.environ.get(SWITCH, "")
    if fault and fault not in FAULTS:
        raise ValueError(f"{SWITCH}={fault!r} names no fault; known: {', '.join(FAULTS)}")
    return fault


def inject(spec: BackendSpec) -> BackendSpec:
    """``spec`` with the chosen fault, or as it is when the switch is off."""
    fault = chosen()
    if not fault:
        return spec
    if fault == "hook":
        wrong: object = {"name": spec.name, "backend": spec.backend}
        return wrong  # type: ignore[return-value]
    if fault == "name":
        return dataclasses.replace(spec, name=spec.name.rstrip("s"))
    return dataclasses.replace(spec, backend="selectors_poller.faulty:FaultyBackend")
