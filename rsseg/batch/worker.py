"""What runs on a Dask worker: one tile, read and written by the worker itself.

Only small descriptions cross the wire (:class:`TileJob`: paths, a region and
the settings); the worker opens the input mosaic, predicts its tile's region,
writes the class raster (and polygons) next to the other outputs and returns a
few numbers. No pixel array goes through the scheduler.

The network is built once per worker process and kept in a module-level cache
keyed by everything that defines it (:func:`cached_predictor`), so the tiles a
worker runs after its first pay nothing for the model.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

_MODEL_CACHE: dict = {}
_MODEL_LOADS = {"count": 0}
_CACHE_LOCK = threading.Lock()
# A worker with T threads runs one tile at a time with T torch threads: T tiles at
# once, each with T threads, would put T*T threads on T cores.
_TILE_LOCK = threading.Lock()


@dataclass(frozen=True)
class ModelSpec:
    """Everything that defines the network a worker builds (hashable: the cache key)."""

    name: str
    weights: str | None  # checkpoint path, "random" or None (bundled)
    weights_fingerprint: str  # size:mtime of the checkpoint, so a rewritten file reloads
    seed: int
    in_channels: int
    device: str
    tta: str = "none"  # test-time augmentation (rsseg.predict.tta)
    zoom: float = 1.0  # what the network sees of each window (rsseg.predict.zoom)


@dataclass(frozen=True)
class TileJob:
    """One tile to predict: read ``region`` of ``source``, write ``output`` (and ``vector``)."""

    key: str  # the input tile's path: its name in the manifest
    source: str  # the input mosaic VRT (or the tile itself when it stands alone)
    region: tuple[int, int, int, int] | None  # (row_off, col_off, height, width) in source
    output: str
    vector: str | None
    model: ModelSpec
    bands: tuple[int, ...] | None = None
    tile: int = 512
    overlap: int = 128
    blend: str = "cosine"
    batch_size: int | str = 1  # "auto": sized to the worker's GPU (1 on a CPU)
    vector_options: dict = field(default_factory=dict)
    band_files: tuple = ()  # rsseg.io.scene.BandFile stacked after the bands, on source's grid
    align: bool = False  # reproject band files on another grid (WarpedVRT), as predict --align
    probs: str | None = None  # confidence raster to write beside ``output``


def worker_threads() -> int:
    """Threads of the Dask worker running this task (1 outside a worker)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return 1
    state = getattr(worker, "state", None)
    return int(getattr(state, "nthreads", None) or getattr(worker, "nthreads", 1) or 1)


def cached_predictor(spec: ModelSpec):
    """The :class:`~rsseg.predict.load.LoadedPredictor` for ``spec``, built once per process."""
    with _CACHE_LOCK:
        hit = _MODEL_CACHE.get(spec)
        if hit is None:
            from rsseg.predict.load import load_predictor

            hit = load_predictor(spec.name, spec.weights, channels=spec.in_channels,
                                 device=spec.device, seed=spec.seed, tta=spec.tta,
                                 zoom=spec.zoom)
            _MODEL_CACHE.clear()  # one network per worker: a new job replaces the old one
            _MODEL_CACHE[spec] = hit
            _MODEL_LOADS["count"] += 1
        return hit


def run_tile(job: TileJob) -> dict:
    """Predict one tile on this worker; returns timings and who ran it.

    Any failure comes back as an :class:`rsseg.errors.RssegError` naming the tile
    (GDAL's detail included), which the driver records in the manifest.
    """
    from rsseg.errors import RssegError

    try:
        with _TILE_LOCK:
            return _predict_tile(job)
    except RssegError as exc:
        if exc.path == job.key:
            kind, message = type(exc), str(exc)
        elif exc.path in {b.path for b in job.band_files}:  # predict's message, and the tile
            kind, message = type(exc), f"{job.key}: {exc}"
        else:  # e.g. a read error surfacing as "cannot write output": name the tile
            kind, message = RssegError, f"{job.key}: {describe_error(exc)}"
    except Exception as exc:  # noqa: BLE001 - reported per tile, the job goes on
        kind, message = RssegError, f"{job.key}: {describe_error(exc)}"
    # Raised outside the handler: a fresh exception without GDAL's chained errors,
    # which do not survive pickling back to the driver.
    raise kind(message)


def describe_error(exc: BaseException) -> str:
    """``Type: message`` with the causes GDAL chains behind "see previous exception"."""
    parts = []
    while exc is not None and len(parts) < 3:
        text = " ".join(str(exc).split())
        parts.append(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(parts)


def _predict_tile(job: TileJob) -> dict:
    import torch

    from rsseg.io.scene import Scene
    from rsseg.predict.engine import predict_scene
    from rsseg.predict.settings import PredictSettings

    t0 = time.perf_counter()
    threads = worker_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    scene = Scene(job.source, bands=list(job.bands) if job.bands else None,
                  band_files=job.band_files, align=job.align)
    predictor = cached_predictor(job.model)
    # One reader thread per worker thread: with one worker process per core, more
    # readers would only compete with the network for the same cores.
    settings = PredictSettings(tile=job.tile, overlap=job.overlap, blend=job.blend,
                               batch_size=job.batch_size, readers=threads, probs=job.probs,
                               overwrite=True, region=job.region)
    result = predict_scene(scene, job.output, predictor, settings)
    if job.vector:
        from rsseg.vectorize.streaming import vectorize_raster

        vectorize_raster(job.output, job.vector, probs=job.probs, overwrite=True,
                         progress="off", **job.vector_options)
    return {"key": job.key, "seconds": round(time.perf_counter() - t0, 3),
            "forward_seconds": round(result.forward_seconds, 3), "windows": result.windows,
            "pid": os.getpid(), "worker": _worker_address(), "threads": threads,
            "model_loads": _MODEL_LOADS["count"]}


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"
