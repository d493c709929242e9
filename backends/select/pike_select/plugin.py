"""Entry point of the select backend: declares it without importing the platform module."""

from __future__ import annotations

from pike_core import BackendSpec, hookimpl


@hookimpl
def pike_poller_backend() -> BackendSpec:
    return BackendSpec(
        name="select",
        backend="pike_select.backend:SelectBackend",
        priority=10,
        capabilities=frozenset(),
        summary="select(2): portable fallback, FD_SETSIZE-limited",
    )
