"""Score class rasters against reference labels (``rsseg score``).

:func:`score_rasters` / :func:`score_many` (:mod:`.rasters`) stream pairs of rasters
(:mod:`.scene_pair`, paired by name in :mod:`.pairing`) into confusion matrices
(:mod:`.metrics`); labels are decoded by :mod:`.labels` (shared with training);
:mod:`.report` writes tables, CSV, JSON and plots.

Public names are imported on first use (:mod:`rsseg._lazy`).
"""

from rsseg._lazy import lazy_exports

_PUBLIC = {
    "score_rasters": ".rasters",
    "score_many": ".rasters",
    "confusion_matrix": ".metrics",
    "scores_from_confusion": ".metrics",
    "format_table": ".report",
    "write_reports": ".report",
}
__all__ = sorted(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
