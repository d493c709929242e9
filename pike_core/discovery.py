"""Finding the installed backends (entry points in group ``pike.pollers``, loaded into a
pluggy PluginManager) and choosing one.

Discovery is lazy, at first use, and isolates plugins from each other: a plugin that
fails to import, fails its hook, or returns the wrong thing is listed as broken with its
error, and the others work as if it were not there.  A backend is usable only once it
was constructed and registered a socket: a backend that says :class:`CannotRunHere`
cannot run here; one that fails in any other way (an ``ImportError`` from a typo
included) is broken.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import sys
import threading
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Type

import pluggy

from . import choice as _choice
from . import events, hookspecs
from .backend import Backend
from .backends import BackendSpec, BackendStatus, Choice
from .errors import BackendError, CannotRunHere
from .poller import Poller

if sys.version_info >= (3, 10):
    from importlib.metadata import EntryPoint, entry_points
else:
    from importlib_metadata import EntryPoint, entry_points

ENTRY_POINT_GROUP = "pike.pollers"
ENV_VAR = "PIKE_POLLER"


def parse_preference(value: Optional[str]) -> List[str]:
    """``"epoll, poll"`` -> ``["epoll", "poll"]``; None or blank -> ``[]``."""
    if not value:
        return []
    return [name.strip() for name in value.split(",") if name.strip()]


def _names(preference: Sequence[str], source: str) -> List[str]:
    """``preference`` as a list of names, each stripped of blanks.

    :raises TypeError: it is a string (a list of names is wanted) or holds a non-string.
    """
    if isinstance(preference, str):
        raise TypeError(f"{source}: a list of backend names is wanted, got the string {preference!r}")
    names = []
    for name in preference:
        if not isinstance(name, str):
            raise TypeError(f"{source}: backend names must be strings, got {name!r}")
        names.append(name.strip())
    return names


def _distribution(ep: EntryPoint) -> tuple[Optional[str], Optional[str]]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


#: Added to the error of a hook that calls ``BackendSpec(poller=...)``.
_OLD_SPEC_HINT = (
    " (BackendSpec(poller=...) is the contract of pike-core 0.1; since 0.2 it takes "
    "backend='module:Class' of a pike_core.Backend subclass: see 'Shipping your own poller' "
    "in pike-core's README)"
)


def _opening(backend_class: Type[Backend], fd: int) -> Optional[Tuple[str, bool]]:
    """Construct a backend, register ``fd`` for READ, unregister it and close the backend:
    what choosing it would do first.  None when that works, else the problem and whether
    it is broken (anything but a :class:`CannotRunHere` from the constructor)."""
    try:
        backend = backend_class()
    except CannotRunHere as exc:
        return exc.reason, False
    except Exception as exc:
        return f"opening it failed: {backend_class.__name__}() raised {type(exc).__name__}: {exc}", True
    step = "registering a socket"
    try:
        backend.admit(fd)
        backend.register(fd, events.READ)
        step = "unregistering it"
        backend.unregister(fd)
    except Exception as exc:
        with contextlib.suppress(Exception):
            backend.close()
        return f"opening it failed: {step} raised {type(exc).__name__}: {exc}", True
    try:
        backend.close()
    except Exception as exc:
        return f"opening it failed: closing it raised {type(exc).__name__}: {exc}", True
    return None


class BackendRegistry:
    """The backends of one entry point group.  Thread-safe; discovers once."""

    def __init__(self, group: str = ENTRY_POINT_GROUP) -> None:
        self.group = group
        self._lock = threading.Lock()
        self._pm: Optional[pluggy.PluginManager] = None
        self._statuses: List[BackendStatus] = []

    def _discover(self) -> pluggy.PluginManager:
        with self._lock:
            if self._pm is None:
                pm = pluggy.PluginManager(hookspecs.PROJECT)
                pm.add_hookspecs(hookspecs)
                pm.register(_choice, name="pike_core.choice")
                eps = sorted(entry_points(group=self.group), key=lambda ep: (ep.name, ep.value))
                # One socket for every backend's trial registration.
                a, b = socket.socketpair()
                with a, b:
                    self._statuses = [self._load(pm, ep, a.fileno()) for ep in eps]
                self._pm = pm
            return self._pm

    def _load(self, pm: pluggy.PluginManager, ep: EntryPoint, probe_fd: int) -> BackendStatus:
        dist, version = _distribution(ep)

        def broken(problem: str) -> BackendStatus:
            return BackendStatus(ep.name, dist, version, problem=f"broken plugin: {problem}", broken=True)

        # Plugins are third-party code: anything they raise is caught here, at the
        # boundary, and reported against that plugin alone.
        try:
            plugin = ep.load()
        except Exception as exc:
            return broken(f"importing {ep.value!r} failed: {type(exc).__name__}: {exc}")
        if pm.is_registered(plugin) or pm.has_plugin(ep.name):
            return broken(f"{ep.value!r} is registered already under another name")
        try:
            pm.register(plugin, name=ep.name)
        except Exception as exc:
            return broken(f"{ep.value!r} does not match the pike hooks: {exc}")
        impls = [i for i in pm.hook.pike_poller_backend.get_hookimpls() if i.plugin is plugin]
        if not impls:
            pm.unregister(plugin)
            return broken(f"{ep.value!r} does not implement the pike_poller_backend hook")
        try:
            spec: Any = impls[0].function()
        except Exception as exc:
            pm.unregister(plugin)
            hint = _OLD_SPEC_HINT if isinstance(exc, TypeError) and "'poller'" in str(exc) else ""
            return broken(f"its pike_poller_backend hook raised {type(exc).__name__}: {exc}{hint}")
        if not isinstance(spec, BackendSpec):
            pm.unregister(plugin)
            return broken(f"its pike_poller_backend hook returned {spec!r}, not a pike_core.BackendSpec")
        if spec.name != ep.name:
            pm.unregister(plugin)
            return broken(f"it calls itself {spec.name!r} but its entry point is named {ep.name!r}")
        try:
            backend_class = spec.load()
        except CannotRunHere as exc:
            return BackendStatus(ep.name, dist, version, spec, problem=exc.reason)
        except Exception as exc:
            problem = f"broken plugin: loading {spec.backend!r} raised {type(exc).__name__}: {exc}"
            return BackendStatus(ep.name, dist, version, spec, problem=problem, broken=True)
        verdict = _opening(backend_class, probe_fd)
        if verdict is not None:
            problem, faulty = verdict
            return BackendStatus(ep.name, dist, version, spec, problem=problem, broken=faulty)
        return BackendStatus(ep.name, dist, version, spec, backend_class)

    def backends(self) -> List[BackendStatus]:
        """Every discovered backend, usable or not, sorted by name."""
        self._discover()
        return list(self._statuses)

    def choose(self, preference: Optional[Sequence[str]] = None, source: str = ENV_VAR) -> Choice:
        """Choose a backend: the first usable one of ``preference``, or, without one, the
        ``PIKE_POLLER`` environment variable's, or else the highest-priority usable one.

        :raises UnknownBackendError: a single name asked for is not installed.
        :raises BackendUnavailableError: nothing asked for can run here.
        :raises NoBackendError: no usable backend is installed.
        """
        pm = self._discover()
        if preference is None:
            preference = parse_preference(os.environ.get(ENV_VAR))
            source = ENV_VAR
        else:
            preference = _names(preference, source)
        result: Optional[Choice] = pm.hook.pike_choose_backend(
            backends=list(self._statuses), preference=list(preference), source=source
        )
        if not isinstance(result, Choice):
            raise BackendError(f"the pike_choose_backend hooks chose nothing usable (got {result!r})")
        return result

    def new_backend(self, name: Optional[str] = None) -> Backend:
        """A new backend object: ``name``'s (a name or a comma-separated preference list,
        as ``PIKE_POLLER`` takes), or the one :meth:`choose` picks.

        :raises BackendError: as :meth:`choose`.
        :raises TypeError: ``name`` is neither a string nor None.
        :raises OSError: the backend could not open its OS object.
        """
        if name is not None and not isinstance(name, str):
            raise TypeError(
                f"new_poller(name): name must be a backend name or a comma-separated preference "
                f"list such as 'epoll,poll' (a str), or None to choose by PIKE_POLLER and priority; "
                f"got {name!r}"
            )
        wanted = parse_preference(name)
        chosen = self.choose(wanted, "new_poller(name)") if wanted else self.choose()
        backend_class = chosen.backend.backend_class
        assert backend_class is not None
        return backend_class()

    def new_poller(self, name: Optional[str] = None) -> Poller:
        """A new poller on backend ``name``, or on the one :meth:`choose` picks.

        :raises BackendError: as :meth:`choose`.
        """
        return Poller(self.new_backend(name))


registry = BackendRegistry()
_default: Optional[Poller] = None
_default_lock = threading.Lock()


def available_backends() -> List[BackendStatus]:
    """Every installed backend, usable here or not (see :meth:`BackendRegistry.backends`)."""
    return registry.backends()


def choose_backend(preference: Optional[Iterable[str]] = None) -> Choice:
    """See :meth:`BackendRegistry.choose`."""
    return registry.choose(None if preference is None else list(preference), "preference")


def new_poller(name: Optional[str] = None) -> Poller:
    """See :meth:`BackendRegistry.new_poller`."""
    return registry.new_poller(name)


def default_poller() -> Poller:
    """The process-wide poller that transports use unless given ``alternate_poller``.

    Created at first use by the choice rules (``PIKE_POLLER`` included), and anew after
    it was closed.  A child process after ``fork()`` keeps it: the poller takes a private
    OS object of its own in the child, so the transports the child inherited and the ones
    it makes share one poller, as asyncore's ``socket_map`` is shared (a pre-fork server).
    At interpreter exit it is closed (:func:`atexit`, after the exit handlers registered
    since pike-core was imported), which closes the transports still registered with it.

    :raises BackendError: no backend can be chosen; the message says what to do.
    """
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = new_poller()
        return _default


def set_default_poller(poller: Optional[Poller]) -> None:
    """Make ``poller`` the process default (None: choose one again at next use)."""
    global _default
    with _default_lock:
        _default = poller


def _close_default_poller() -> None:
    # Its wake-up socket pair (and OS object) would otherwise be left to the interpreter's
    # teardown, which reports each socket as a ResourceWarning, or an error under -W error.
    with _default_lock:
        poller = _default
    if poller is not None:
        poller.close()


atexit.register(_close_default_poller)
