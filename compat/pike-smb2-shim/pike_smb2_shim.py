"""Make ``import pike.transport`` give :mod:`pike_core.compat.pike`, for an unmodified pike-smb2.

``pike_smb2_shim.pth`` calls :func:`install` at interpreter start-up, before anything can
import pike (pike-smb2's pytest plugin imports it while pytest loads plugins, which is too
early for any conftest).  :func:`install` only adds a path hook (see
:class:`PikeFolderFinder`); pike-core itself is imported when, and only if, something
imports ``pike.transport``.  No pike-smb2 file is changed.

Set ``PIKE_SMB2_SHIM=off`` (or ``0``, ``no``, ``false``) to keep pike-smb2's original
transport, for example to compare the two.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module
from importlib.util import spec_from_loader

# Not typing.TYPE_CHECKING: this module is imported at every interpreter start-up, and
# importing typing would more than double its cost; type checkers honour the name alone.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Optional

    from _typeshed.importlib import PathEntryFinderProtocol
else:
    # importlib.abc alone would cost more than the rest of the start-up hook together.
    Loader = object

#: The environment variable that switches the substitution off.
ENV_VAR = "PIKE_SMB2_SHIM"
TARGET = "pike.transport"
REPLACEMENT = "pike_core.compat.pike"
_OFF = frozenset({"0", "off", "no", "false"})


def enabled() -> bool:
    """Whether ``PIKE_SMB2_SHIM`` leaves the substitution on (the default)."""
    return os.environ.get(ENV_VAR, "").strip().lower() not in _OFF


class TransportLoader(Loader):
    """Loads ``pike.transport`` as the very module object ``pike_core.compat.pike``, not a
    copy, so that ``pike.transport.poller = p`` reaches the code that reads it."""

    _own_spec: Optional[ModuleSpec] = None

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        module = import_module(REPLACEMENT)
        self._own_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system has just stamped ``pike.transport``'s spec on the module; put
        # back its own, which says where its code lives (``importlib.reload`` needs it).
        module.__spec__ = self._own_spec


class PikeFolderFinder:
    """The path entry finder of pike-smb2's package folder: ``pike.transport`` comes from
    :class:`TransportLoader`, every other module from the finder that would have served
    the folder anyway.

    A path entry finder, not a ``sys.meta_path`` one, because pytest's assertion
    rewriting puts its own meta path finder first and, for the modules of a pytest plugin
    such as pike-smb2, asks the path machinery directly (which reaches this finder).
    """

    def __init__(self, folder: str, others: PathEntryFinderProtocol) -> None:
        self.folder = folder
        self._others = others
        self._loader = TransportLoader()

    def find_spec(self, fullname: str, target: Optional[ModuleType] = None) -> Optional[ModuleSpec]:
        if fullname == TARGET:
            return spec_from_loader(fullname, self._loader)
        return self._others.find_spec(fullname, target)

    def invalidate_caches(self) -> None:
        # Optional in the path entry finder protocol.
        invalidate = getattr(self._others, "invalidate_caches", None)
        if invalidate is not None:
            invalidate()


def path_hook(entry: str) -> PikeFolderFinder:
    """The ``sys.path_hooks`` entry: claims pike-smb2's package folder, declines the rest."""
    if os.path.basename(entry) != "pike" or not os.path.isfile(os.path.join(entry, "transport.py")):
        raise ImportError(f"{entry!r} is not pike-smb2's package folder")
    for hook in sys.path_hooks:
        if hook is path_hook:
            continue
        try:
            return PikeFolderFinder(entry, hook(entry))
        except ImportError:
            continue
    raise ImportError(f"no other path hook can read {entry!r}")


def install() -> bool:
    """Put :func:`path_hook` first in ``sys.path_hooks``, unless switched off or there.

    :returns: whether the substitution is active.
    """
    if not enabled():
        return False
    if path_hook not in sys.path_hooks:
        sys.path_hooks.insert(0, path_hook)
        # A folder already looked at keeps its cached finder; forget pike's, if any.
        for entry in [e for e in sys.path_importer_cache if os.path.basename(e) == "pike"]:
            del sys.path_importer_cache[entry]
    return True
