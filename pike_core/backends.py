"""What a backend plugin declares, and what discovery found out about it."""

from __future__ import annotations

import dataclasses
import importlib
from typing import FrozenSet, Optional, Type

from .poller import Poller


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    """A poller backend, as its plugin's ``pike_poller_backend`` hook describes it.

    :param name: the name users pass in ``PIKE_POLLER``; equal to the entry point's name.
    :param poller: ``"module:ClassName"`` of the :class:`~pike_core.Poller` subclass.
        The module is imported only when the backend is checked or used, and raises
        ``ImportError`` (with a message saying why) where it cannot run.
    :param priority: the higher, the more preferred when nothing was asked for.
    :param capabilities: optional features (``"af_unix"``, ``"many_fds"``, ...).
    :param summary: one line for listings.
    """

    name: str
    poller: str
    priority: int
    capabilities: FrozenSet[str] = frozenset()
    summary: str = ""

    def load(self) -> Type[Poller]:
        """Import the poller class.

        :raises ImportError: the backend cannot run on this platform (the message says
            why), or ``poller`` names a module or class that does not exist.
        :raises TypeError: ``poller`` names something that is not a Poller subclass.
        """
        module_name, sep, attr = self.poller.partition(":")
        if not sep or not module_name or not attr:
            raise TypeError(f"backend {self.name!r}: poller must be 'module:ClassName', got {self.poller!r}")
        module = importlib.import_module(module_name)
        try:
            cls = getattr(module, attr)
        except AttributeError:
            raise ImportError(f"backend {self.name!r}: module {module_name!r} has no {attr!r}") from None
        if not (isinstance(cls, type) and issubclass(cls, Poller)):
            raise TypeError(
                f"backend {self.name!r}: {self.poller!r} is {cls!r}, not a pike_core.Poller subclass"
            )
        return cls


@dataclasses.dataclass(frozen=True)
class BackendStatus:
    """A discovered backend.  ``usable`` says whether it can run here; if not,
    ``problem`` says why, and ``broken`` whether the plugin itself is faulty."""

    name: str
    distribution: Optional[str]
    version: Optional[str]
    spec: Optional[BackendSpec] = None
    poller_class: Optional[Type[Poller]] = None
    problem: Optional[str] = None
    broken: bool = False

    @property
    def usable(self) -> bool:
        return self.poller_class is not None

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
