"""On Python 3.12+, make ``import asyncore`` give :mod:`pike_core.compat.asyncore`.

Imported at interpreter start-up by ``pike_asyncore_shim.pth``, on 3.12+ only, so it
imports nothing that start-up has not imported already: an interpreter that never
imports ``asyncore`` pays a fraction of a millisecond for it.  It puts a finder at the
front of ``sys.meta_path`` so that it wins over any ``asyncore`` on ``sys.path``, including
the PyPI ``pyasyncore`` copy that ``pyasynchat`` pulls in as a dependency.  On 3.11 and
older it does nothing: the stdlib module stays what ``import asyncore`` finds.

``import asyncore`` and ``import pike_core.compat.asyncore`` give the same module object, so
there is one ``socket_map``.  Nothing of pike-core is imported until ``asyncore`` is.
"""

import sys

# Neither typing.TYPE_CHECKING nor `from __future__ import annotations` (hence the quoted
# annotations): importing typing or __future__ at every start-up would cost more than the
# rest of this module; type checkers honour the name alone.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Optional

MODULE = "asyncore"
TARGET = "pike_core.compat.asyncore"


class _AliasLoader:
    """Loads ``asyncore`` as the already-imported target module."""

    def __init__(self) -> None:
        self._target_spec: Optional[ModuleSpec] = None

    def create_module(self, spec: "ModuleSpec") -> "ModuleType":
        from importlib import import_module  # noqa: PLC0415 - only once asyncore is imported

        module = import_module(TARGET)
        self._target_spec = module.__spec__
        return module

    def exec_module(self, module: "ModuleType") -> None:
        # The import system set __spec__ to the alias's; the target keeps its own, so
        # that importlib.reload() and pickling by module name still find it.
        module.__spec__ = self._target_spec
        # Its classes take the alias's name, which repr() and log lines show, as the
        # stdlib's asyncore.dispatcher did.
        module._imported_as(MODULE)


class AsyncoreFinder:
    """A meta path finder that answers for ``asyncore`` alone."""

    def find_spec(
        self, fullname: str, path: "Optional[Sequence[str]]", target: "Optional[ModuleType]" = None
    ) -> "Optional[ModuleSpec]":
        if fullname != MODULE:
            return None
        from importlib.machinery import ModuleSpec  # noqa: PLC0415 - only once asyncore is imported

        return ModuleSpec(MODULE, _AliasLoader())  # type: ignore[arg-type]


def install() -> bool:
    """Put the finder in place where the stdlib has no ``asyncore`` (Python 3.12+).

    :returns: whether it is in place.
    """
    if sys.version_info < (3, 12):
        return False
    if not any(isinstance(finder, AsyncoreFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, AsyncoreFinder())
    return True
