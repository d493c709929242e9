"""Entry point of the IOCP backend: declares it without importing the platform module."""

from __future__ import annotations

from pike_core import BackendSpec, hookimpl


@hookimpl
def pike_poller_backend() -> BackendSpec:
    return BackendSpec(
        name="iocp",
        backend="pike_iocp.backend:IocpBackend",
        priority=40,
        capabilities=frozenset({"many_fds"}),
        summary="I/O completion ports: Windows, readiness through AFD poll, ConnectEx",
    )
