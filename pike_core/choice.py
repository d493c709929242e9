"""pike-core's own ``pike_choose_backend``: the precedence rules, registered last."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from .backends import BackendStatus, Choice
from .errors import BackendUnavailableError, NoBackendError, UnknownBackendError
from .hookspecs import hookimpl

#: What a user can install, for the message shown when nothing usable is.
DISTRIBUTIONS = (
    "pike-epoll (Linux), pike-kqueue (macOS, BSD), pike-iocp (Windows), "
    "pike-poll (POSIX), pike-select (everywhere)"
)


def _describe(status: BackendStatus) -> str:
    return f"{status.name!r} {'is not usable' if status.broken else 'cannot run here'}: {status.problem}"


@hookimpl(trylast=True)
def pike_choose_backend(
    backends: Sequence[BackendStatus], preference: Sequence[str], source: str
) -> Optional[Choice]:
    by_name: Dict[str, BackendStatus] = {b.name: b for b in backends}
    usable = [b for b in backends if b.usable]
    usable_names = ", ".join(b.name for b in usable) or "none"
    if preference:
        skipped: List[str] = []
        for name in preference:
            status = by_name.get(name)
            if status is None:
                skipped.append(f"{name!r} is not installed")
            elif not status.usable:
                skipped.append(_describe(status))
            else:
                why = f"named by {source}={','.join(preference)}"
                return Choice(status, why + (f" ({'; '.join(skipped)})" if skipped else ""))
        if len(preference) == 1 and preference[0] not in by_name:
            raise UnknownBackendError(preference[0], sorted(by_name), source)
        first = by_name.get(preference[0])
        raise BackendUnavailableError(
            preference[0],
            first.problem or "" if first is not None else "not installed",
            f"{source}={','.join(preference)}: no backend named there can run: "
            f"{'; '.join(skipped)}. Usable here: {usable_names}; set {source} to one of "
            "them, or unset it to choose automatically",
        )
    if not usable:
        if not backends:
            raise NoBackendError(f"no poller backend is installed; install one of {DISTRIBUTIONS}")
        raise NoBackendError(
            "none of the installed poller backends can run here ("
            + "; ".join(_describe(b) for b in backends)
            + f"); install one that can: {DISTRIBUTIONS}"
        )
    best = max(usable, key=lambda b: (b.priority or 0, b.name))
    return Choice(best, f"highest priority ({best.priority}) of the usable backends ({usable_names})")
