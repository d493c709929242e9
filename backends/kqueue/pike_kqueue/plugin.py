"""Entry point of the kqueue backend: declares it without importing the platform module."""

from __future__ import annotations

from pike_core import BackendSpec, hookimpl


@hookimpl
def pike_poller_backend() -> BackendSpec:
    # The same priority as epoll: the two never exist on one platform.
    return BackendSpec(
        name="kqueue",
        backend="pike_kqueue.backend:KqueueBackend",
        priority=30,
        capabilities=frozenset({"many_fds"}),
        summary="kqueue(2): macOS and the BSDs, O(1) in idle connections",
    )
