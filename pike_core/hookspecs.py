"""The pluggy hooks of project ``pike``.  A backend distribution's entry point in group
``pike.pollers`` names a module (or object) implementing :func:`pike_poller_backend`;
it may also implement :func:`pike_choose_backend` to change how a backend is chosen."""

from __future__ import annotations

from typing import Optional, Sequence

import pluggy

from .backends import BackendSpec, BackendStatus, Choice

PROJECT = "pike"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def pike_poller_backend() -> BackendSpec:
    """Describe the backend this plugin provides.

    Called once per plugin, at the first discovery in the process.  Must be cheap and
    must not import platform-specific modules: :attr:`BackendSpec.backend` is imported
    later; a :class:`~pike_core.CannotRunHere` from it marks the backend as unable to run
    here, any other exception as broken.

    :returns: a :class:`BackendSpec` whose ``name`` equals the entry point's name.
    """


@hookspec(firstresult=True)
def pike_choose_backend(
    backends: Sequence[BackendStatus], preference: Sequence[str], source: str
) -> Optional[Choice]:
    """Choose the backend a new poller uses.  The first non-None result wins; pike-core's
    own implementation runs last.

    :param backends: every discovered backend, usable or not, sorted by name.
    :param preference: names asked for, most preferred first (empty: no preference).
    :param source: where the preference came from, for messages (``"PIKE_POLLER"``).
    :returns: the choice, or None to leave it to the next implementation.
    :raises BackendError: nothing asked for can run; the message says what to do.
    """
