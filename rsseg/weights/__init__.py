"""Weights shipped inside the package, and what ``rsseg models`` reports.

Public names are imported on first use (:mod:`rsseg._lazy`).
"""

from rsseg._lazy import lazy_exports

_PUBLIC = {
    "bundled_weights": ".bundled",
    "list_bundled": ".bundled",
    "describe_models": ".catalog",
}
__all__ = sorted(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
