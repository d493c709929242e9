"""What a backend plugin declares, and what discovery found out about it."""

from __future__ import annotations

import dataclasses
import importlib
from typing import FrozenSet, Optional, Type

from .backend import Backend
from .poller import Poller


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    """A poller backend, as its plugin's ``pike_poller_backend`` hook describes it.

    :param name: the name users pass in ``PIKE_POLLER``; equal to the entry point's name.
    :param backend: ``"module:ClassName"`` of the :class:`~pike_core.Backend` subclass.
        The module is imported only when the backend is checked or used, and raises
        :class:`~pike_core.CannotRunHere` (with the reason) where it cannot run; any
        other exception from it marks the backend broken.
    :param priority: the higher, the more preferred when nothing was asked for.
    :param capabilities: optional features: ``"many_fds"`` (no limit on descriptor
        numbers or counts short of the process's), ``"hangup"`` (``HANGUP`` and
        ``ERROR`` are reported as ``poll()`` reports them, also alongside ``READ``; a
        backend without it may report a hang-up as ``READ`` alone), others of the
        plugin's own.
    :param summary: one line for listings.
    """

    name: str
    backend: str
    priority: int
    capabilities: FrozenSet[str] = frozenset()
    summary: str = ""

    def load(self) -> Type[Backend]:
        """Import the backend class.

        :raises CannotRunHere: the backend's module says it cannot run on this
            platform (the reason says why).
        :raises ImportError: ``backend`` names a module or class that does not exist, or
            importing the module failed (a typo, a missing dependency): the backend is
            broken.
        :raises TypeError: ``backend`` names something that is not a Backend subclass
            (a Poller subclass is the contract of pike-core 0.1: the message says how to
            move to this one).
        """
        module_name, sep, attr = self.backend.partition(":")
        if not sep or not module_name or not attr:
            raise TypeError(
                f"backend {self.name!r}: backend must be 'module:ClassName', got {self.backend!r}"
            )
        module = importlib.import_module(module_name)
        try:
            cls = getattr(module, attr)
        except AttributeError:
            raise ImportError(f"backend {self.name!r}: module {module_name!r} has no {attr!r}") from None
        if isinstance(cls, type) and issubclass(cls, Poller):
            raise TypeError(
                f"backend {self.name!r}: {self.backend!r} is a pike_core.Poller subclass, the "
                "backend contract of pike-core 0.1; since 0.2 a backend subclasses "
                "pike_core.Backend (see 'Shipping your own poller' in pike-core's README)"
            )
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise TypeError(
                f"backend {self.name!r}: {self.backend!r} is {cls!r}, not a pike_core.Backend subclass"
            )
        return cls


@dataclasses.dataclass(frozen=True)
class BackendStatus:
    """A discovered backend.  ``usable`` says whether it can run here; if not,
    ``problem`` says why, and ``broken`` whether that is a fault to fix rather than a
    declared :class:`~pike_core.CannotRunHere`: the plugin or its module failed to load,
    or the backend could not be constructed or register a socket.  The conformance suite
    skips a backend that cannot run here (unless it was named) and fails a broken one."""

    name: str
    distribution: Optional[str]
    version: Optional[str]
    spec: Optional[BackendSpec] = None
    backend_class: Optional[Type[Backend]] = None
    problem: Optional[str] = None
    broken: bool = False

    @property
    def usable(self) -> bool:
        return self.backend_class is not None

    @property
    def priority(self) -> Optional[int]:
        return None if self.spec is None else self.spec.priority

    @property
    def capabilities(self) -> FrozenSet[str]:
        return frozenset() if self.spec is None else self.spec.capabilities


@dataclasses.dataclass(frozen=True)
class Choice:
    """The backend chosen, and a sentence saying why."""

    backend: BackendStatus
    reason: str
