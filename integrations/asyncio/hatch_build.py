"""Hands this distribution's metadata to the repository's shared hook (option ``shared``).

The repository root's ``hatch_build.py`` computes the version, the pins, the classifiers
and the URLs of every pike distribution.  Built from an sdist, hatchling reads those from
PKG-INFO and calls no metadata hook: there this file only has to load, and needs nothing
outside the sdist.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Dict

from hatchling.metadata.plugin.interface import MetadataHookInterface


class SharedMetadataHook(MetadataHookInterface):
    def update(self, metadata: Dict[str, Any]) -> None:
        path = Path(self.root, self.config["shared"]).resolve()
        spec = importlib.util.spec_from_file_location("pike_shared_build", path)
        if spec is None or spec.loader is None or not path.is_file():
            raise FileNotFoundError(f"the shared build hook {path} is missing: build from a full clone")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.PikeMetadataHook(self.root, self.config).update(metadata)
