"""A griffe extension for the documentation site: Sphinx roles in docstrings as code.

The docstrings are written for Sphinx (``:meth:`send```, ``:class:`~pike_core.Poller```);
mkdocstrings renders their fields but leaves inline roles as they are.  This shows each
as code, with the target's last part only where the role says so (``~``).  mkdocs.yml
loads it (``extensions`` of the python handler).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:meth|func|class|mod|attr|data|exc|obj|const|ref):`(~?)([^`]+)`")


def _as_code(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def plain(text: str) -> str:
    """``text`` with every Sphinx cross-reference role shown as code."""
    return _ROLE.sub(_as_code, text)


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
