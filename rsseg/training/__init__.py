"""Training segmentation networks on scene/label GeoTIFF pairs (``rsseg train``).

``train(TrainConfig(...))`` starts a run, ``resume(run_dir)`` continues one.
See docs/training.md.

Public names are imported on first use (:mod:`rsseg._lazy`).
"""

from rsseg._lazy import lazy_exports

_PUBLIC = {
    "TrainConfig": ".config",
    "TrainResult": ".trainer",
    "train": ".trainer",
    "resume": ".trainer",
}
__all__ = sorted(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
