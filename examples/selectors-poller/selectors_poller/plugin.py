"""The entry point.  Discovery imports it for every installed backend, so it only
describes the backend: ``backend.py`` is imported when the backend is checked or used."""

from __future__ import annotations

import selectors

from pike_core import BackendSpec, hookimpl

from . import faults


@hookimpl
def pike_poller_backend() -> BackendSpec:
    limited = issubclass(selectors.DefaultSelector, selectors.SelectSelector)
    spec = BackendSpec(
        name="selectors",  # the entry point's name in pyproject.toml
        backend="selectors_poller.backend:SelectorsBackend",
        # Below every backend pike-core ships (select is 10): used only when named.
        priority=5,
        capabilities=frozenset() if limited else frozenset({"many_fds"}),
        summary="the standard library's selectors.DefaultSelector",
    )
    return faults.inject(spec)
