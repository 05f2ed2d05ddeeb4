"""Lazy public names for package ``__init__`` modules.

Each subpackage lists its public names and the module defining each; the module is
imported on first use, so importing a package (``rsseg --help`` imports
``rsseg.cli.options``, which imports ``rsseg.predict.settings``) never pulls in torch,
rasterio or GDAL before a command needs them.
"""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, public: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``public[name]`` (relative to ``package``)."""

    def __getattr__(name: str):
        module = public.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, package), name)

    return __getattr__
