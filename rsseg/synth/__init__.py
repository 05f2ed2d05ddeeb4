"""Synthetic orthophotos with exact labels, rendered block by block (``rsseg synth``).

Public names are imported on first use (:mod:`rsseg._lazy`).
"""

from rsseg._lazy import lazy_exports

_PUBLIC = {
    "write_synthetic_scene": ".scene",
    "labels_to_rgb": ".scene",
}
__all__ = sorted(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
