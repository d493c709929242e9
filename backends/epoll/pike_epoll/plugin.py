"""Entry point of the epoll backend: declares it without importing the platform module."""

from __future__ import annotations

from pike_core import BackendSpec, hookimpl


@hookimpl
def pike_poller_backend() -> BackendSpec:
    return BackendSpec(
        name="epoll",
        backend="pike_epoll.backend:EpollBackend",
        priority=30,
        capabilities=frozenset({"many_fds", "hangup"}),
        summary="epoll(7): Linux, O(1) in idle connections",
    )
