"""Entry point of the poll backend: declares it without importing the platform module."""

from __future__ import annotations

from pike_core import BackendSpec, hookimpl


@hookimpl
def pike_poller_backend() -> BackendSpec:
    return BackendSpec(
        name="poll",
        backend="pike_poll.backend:PollBackend",
        priority=20,
        capabilities=frozenset({"many_fds", "hangup"}),
        summary="poll(2): POSIX, no descriptor limit",
    )
