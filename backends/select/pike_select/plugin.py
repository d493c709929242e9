"""Entry point of the select backend: declares it without importing the platform module."""

from __future__ import annotations

import select

from pike_core import BackendSpec, hookimpl


@hookimpl
def pike_poller_backend() -> BackendSpec:
    return BackendSpec(
        name="select",
        backend="pike_select.backend:SelectBackend",
        priority=10,
        # The hang-up is learnt from poll(2), which Python has everywhere but on Windows.
        capabilities=frozenset({"hangup"} if hasattr(select, "poll") else ()),
        summary="select(2): portable fallback, FD_SETSIZE-limited",
    )
