"""Many tiles on a Dask cluster, resumable and seamless (``rsseg batch``).

:func:`run_batch` (:mod:`.driver`) plans the job (:mod:`.inputs`, :mod:`.split`),
keeps the manifest (:mod:`.manifest`) and runs tiles on workers (:mod:`.worker`,
:mod:`.cluster`).

Public names are imported on first use (:mod:`rsseg._lazy`).
"""

from rsseg._lazy import lazy_exports

_PUBLIC = {
    "run_batch": ".driver",
    "BatchOptions": ".driver",
    "BatchSummary": ".driver",
}
__all__ = sorted(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
