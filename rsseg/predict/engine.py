"""The predict engine: scene -> Dask-scheduled window reads -> batched inference ->
streaming blend -> raw band writes -> COG.

Three stages overlap: Dask's threaded scheduler reads and normalises the next
windows while torch runs on the current batch, and a writer thread blends the
scores and writes every finished region at once. Queues between the stages are short,
and the blender keeps only one overlap of rows (see
:mod:`rsseg.predict.blend`), so memory does not grow with the scene's height
and grows only by that overlap band with its width.

:func:`predict_scene` is the library entry point (``from rsseg import
predict_scene``); ``rsseg predict`` (which the QGIS plugin runs), ``rsseg batch``
and ``rsseg demo`` reach it through :func:`rsseg.predict.run.predict_file`
or directly.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsseg.atomic import atomic_output, temporary_sibling
from rsseg.classes import ISPRS, NODATA, ClassScheme
from rsseg.errors import InputError
from rsseg.io.cog import class_metadata, confidence_metadata, finish_cog
from rsseg.io.normalization import Normalization
from rsseg.io.vrt import write_raw_vrt
from rsseg.io.scene import Scene, default_normalization
from rsseg.progress import Progress
from rsseg.tiling import BlendWeights, WindowGrid

from .blend import StreamingBlender, window_order
from .regions import CroppedSink, check_region, region_grid
from .settings import (
    PredictSettings,
    Tiling,
    check_outputs,
    check_plan,
    check_settings,
    resolve_tiling,
)
from .sinks import CONFIDENCE_NODATA, RawBandWriter, RegionSink

# GDAL's block cache defaults to 5 % of RAM and would grow with the scene; rasterio
# takes GDAL_CACHEMAX in bytes (512 would mean 512 bytes). RSSEG_GDAL_CACHEMAX_MB
# overrides the size chosen by gdal_cache_bytes().
GDAL_CACHE_MIN_BYTES = 16 * 2**20
_DONE = object()


@dataclass
class PredictResult:
    output: Path
    probs: Path | None
    windows: int
    skipped: int
    seconds: float
    forward_seconds: float
    tile: int = 0
    overlap: int = 0
    vector: Path | None = None
    features: int | None = None
    megapixels: float = 0.0
    stac: Path | None = None

    def describe(self) -> str:
        """What was written, for a completion line."""
        written = [self.output.name] + [p.name for p in (self.probs, self.vector, self.stac) if p]
        polygons = f", {self.features} polygons" if self.features is not None else ""
        nodata = f" ({self.skipped} all nodata)" if self.skipped else ""
        return (f"{' + '.join(written)}{polygons} ({self.windows} windows of {self.tile} px, "
                f"overlap {self.overlap}{nodata})")

    def summary(self) -> dict:
        """The result as plain JSON values (the ``--progress-json`` result event)."""
        return {key: str(value) if isinstance(value, Path) else value
                for key, value in vars(self).items()}


def predict_scene(scene, output, predictor, settings: PredictSettings | None = None
                  ) -> PredictResult:
    """Predict a class raster (COG) for ``scene`` (a path, or an opened
    :class:`~rsseg.io.scene.Scene` for band selection and stacked files).

    ``predictor`` is any callable mapping a normalised float32 batch ``(N, C, H, W)``
    to class probabilities ``(N, K, H, W)``, with a ``num_classes`` attribute (see
    :mod:`rsseg.predict.predictor`). What it may carry besides is used:
    ``normalization`` (applied to the bands read; else per-dtype scaling, see
    :func:`rsseg.io.scene.default_normalization`), ``classes`` (the class scheme
    written into the output; else ISPRS) and ``tile_hint`` (the tile and overlap it
    was trained with) -- :func:`rsseg.predict.load.load_predictor` returns such a
    predictor. ``settings`` (:class:`~rsseg.predict.settings.PredictSettings`) says
    how: tiling, blend, batch and the other outputs.

    Every output path is checked before anything is read, and each is written
    under a temporary name and renamed into place when complete.
    """
    settings = settings or PredictSettings()
    check_settings(settings)
    scene = scene if isinstance(scene, Scene) else Scene(scene)
    check_outputs(output, settings, inputs=[source.path for source in scene.sources])
    return run_checked(scene, output, predictor, settings)


def run_checked(scene: Scene, output, predictor, settings: PredictSettings) -> PredictResult:
    """:func:`predict_scene` once its settings and output paths have been checked."""
    tiling = resolve_tiling(settings.tile, settings.overlap, getattr(predictor, "tile_hint", None))
    check_plan(scene.height, scene.width, tiling, scene.path)
    if hasattr(predictor, "check_tile"):
        predictor.check_tile(tiling.tile)
    norm = getattr(predictor, "normalization", None) or default_normalization(scene)
    if norm.num_bands != scene.channels:
        raise InputError(f"the input provides {scene.channels} band(s) but the normalisation "
                         f"has {norm.num_bands} ({', '.join(norm.names)})", scene.path)
    classes = getattr(predictor, "classes", None) or ISPRS
    region = check_region(settings.region, scene)
    t0 = time.perf_counter()
    stats = _write_rasters(scene, output, predictor, norm, classes, tiling, region, settings)
    if stats["windows"] and stats["skipped"] == stats["windows"]:
        warnings.warn(f"{scene.path}: every pixel read is nodata; the output is all nodata "
                      f"({NODATA})", stacklevel=2)
    result = PredictResult(Path(output), Path(settings.probs) if settings.probs else None,
                           stats["windows"], stats["skipped"], 0.0, stats["forward"],
                           tiling.tile, tiling.overlap, megapixels=region[2] * region[3] / 1e6)
    if settings.vector:
        from rsseg.vectorize.streaming import vectorize_raster

        summary = vectorize_raster(output, settings.vector, probs=settings.probs,
                                   overwrite=settings.overwrite, progress=settings.progress)
        result.vector, result.features = Path(settings.vector), summary.get("features")
    result.seconds = time.perf_counter() - t0
    return result


def _write_rasters(scene: Scene, output, predictor, norm: Normalization, classes: ClassScheme,
                   tiling: Tiling, region, settings: PredictSettings) -> dict:
    """The class raster (and the confidence raster) of ``region``, each written atomically."""
    import rasterio

    out_h, out_w = region[2], region[3]
    out_transform = scene.transform
    if scene.transform is not None and (region[0] or region[1]):
        from affine import Affine

        out_transform = scene.transform @ Affine.translation(region[1], region[0])
    probs, overwrite = settings.probs, settings.overwrite
    cache = gdal_cache_bytes(scene, tiling.tile)
    with rasterio.Env(GDAL_CACHEMAX=cache), scene, contextlib.ExitStack() as stack:
        final = stack.enter_context(atomic_output(output, overwrite))
        targets = [(final, "mode", class_metadata(classes), NODATA)]
        if probs:
            final_probs = stack.enter_context(atomic_output(probs, overwrite))
            targets.append((final_probs, "average", confidence_metadata(), CONFIDENCE_NODATA))
        raws = [temporary_sibling(t[0], ".raw") for t in targets]
        stack.callback(_remove, raws + [r.with_suffix(".vrt") for r in raws])
        stats = _run(scene, predictor, norm, classes, raws, tiling, region, settings)
        for raw, (dst, resampling, meta, nodata) in zip(raws, targets):
            vrt = raw.with_suffix(".vrt")
            write_raw_vrt(vrt, raw, out_w, out_h, scene.crs, out_transform, nodata, **meta)
            finish_cog(vrt, dst, resampling=resampling)
    return stats


def gdal_cache_bytes(scene: Scene, tile: int) -> int:
    """GDAL block cache: 16 MB, or enough for one window row of an untiled (striped) input.

    Windows read tiled inputs block by block, so a small cache suffices. A striped
    input is read in full-width strips: the cache must hold a window row of them,
    or every window would decompress its strips again.
    """
    override = os.environ.get("RSSEG_GDAL_CACHEMAX_MB")
    if override:
        return int(float(override) * 2**20)
    if scene.tiled:
        return GDAL_CACHE_MIN_BYTES
    return max(GDAL_CACHE_MIN_BYTES, int(1.25 * tile * scene.width * scene.bytes_per_pixel))


def _remove(paths) -> None:
    for p in paths:
        for side in ("", ".aux.xml", ".ovr", ".msk"):
            with contextlib.suppress(OSError):
                os.unlink(f"{p}{side}")


def _run(scene: Scene, predictor, norm: Normalization, classes: ClassScheme, raws: list,
         tiling: Tiling, region: tuple[int, int, int, int], settings: PredictSettings) -> dict:
    """Stream every window through read -> predict -> blend -> write."""
    grid = WindowGrid(scene.height, scene.width, tiling.tile, tiling.overlap)
    weights = BlendWeights(grid, settings.blend)
    origin = (0, 0)
    if region != (0, 0, scene.height, scene.width):
        grid, weights, origin = region_grid(grid, weights, region)
    order = window_order(grid)
    writers = []
    try:
        for path in raws:
            writers.append(RawBandWriter(path, region[3], region[2]))
        sink = RegionSink(writers[0], writers[1] if len(writers) > 1 else None,
                          settings.on_scores)
        if origin != (0, 0) or (grid.height, grid.width) != region[2:]:
            sink = CroppedSink(sink, region[0] - origin[0], region[1] - origin[1], *region[2:])
        num_classes = getattr(predictor, "num_classes", None) or classes.num_classes
        blender = StreamingBlender(grid, weights, num_classes, sink)
        mpx = grid.width * grid.height / len(order) / 1e6
        with Progress(len(order), "predict", settings.progress, unit="window",
                      mpx_per_unit=mpx) as bar:
            stats = _stream(scene, order, grid, predictor, norm, blender, settings.batch_size,
                            settings.readers, bar, origin)
        if not blender.done:
            raise RuntimeError("internal error: the blender did not receive every window")
    finally:
        for w in writers:
            w.close()
    return stats


def _load_window(scene: Scene, norm: Normalization, window, origin=(0, 0)):
    """Read, normalise and pad one window (its grid starts at ``origin`` in the scene);
    None data when it is entirely nodata."""
    data, valid = scene.read(window.row_off + origin[0], window.col_off + origin[1],
                             window.height, window.width)
    if not valid.any():
        return window, None, valid
    data = norm.apply(data)
    data[:, ~valid] = 0.0  # nodata pixels at the band mean: no extreme values in the context
    np.nan_to_num(data, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    if window.pad_bottom or window.pad_right:
        data = np.pad(data, ((0, 0), (0, window.pad_bottom), (0, window.pad_right)),
                      mode="symmetric")
    return window, data, valid


class _Stop(Exception):
    pass


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop()
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        if stop.is_set():
            raise _Stop()
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


def _produce(scene, norm, order, chunk, readers, out_q, stop, origin=(0, 0)) -> None:
    """Dask reads the windows ``chunk`` at a time on its threaded scheduler."""
    import dask

    try:
        load = dask.delayed(_load_window, pure=False)
        for k in range(0, len(order), chunk):
            tasks = [load(scene, norm, w, origin) for w in order[k:k + chunk]]
            for item in dask.compute(*tasks, scheduler="threads", num_workers=readers):
                _put(out_q, item, stop)
        _put(out_q, _DONE, stop)
    except _Stop:
        pass
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread
        with contextlib.suppress(_Stop):
            _put(out_q, exc, stop)


def _consume(blender, in_q, stop, errors: list) -> None:
    """Blend and write, in window order, on its own thread."""
    try:
        while True:
            item = _get(in_q, stop)
            if item is _DONE:
                return
            blender.add(*item)
    except _Stop:
        pass
    except BaseException as exc:  # noqa: BLE001
        errors.append(exc)
        stop.set()


def _stream(scene, order, grid, predictor, norm, blender, batch_size, readers, bar,
            origin=(0, 0)) -> dict:
    stop = threading.Event()
    read_q: queue.Queue = queue.Queue(maxsize=max(2, 2 * batch_size))
    blend_q: queue.Queue = queue.Queue(maxsize=max(2, 2 * batch_size))
    errors: list = []
    chunk = max(batch_size, readers)
    producer = threading.Thread(target=_produce, name="rsseg-read", daemon=True,
                                args=(scene, norm, order, chunk, readers, read_q, stop,
                                      origin))
    consumer = threading.Thread(target=_consume, name="rsseg-write", daemon=True,
                                args=(blender, blend_q, stop, errors))
    producer.start()
    consumer.start()
    forward = 0.0
    skipped = 0
    th, tw = grid.tile_height, grid.tile_width
    try:
        finished = False
        while not finished:
            batch = []
            while len(batch) < batch_size:
                item = _get(read_q, stop)
                if item is _DONE:
                    finished = True
                    break
                if isinstance(item, BaseException):
                    raise item
                batch.append(item)
            todo = [k for k, (_, data, _) in enumerate(batch) if data is not None]
            scores = [None] * len(batch)
            if todo:
                t = time.perf_counter()
                out = predictor(np.stack([batch[k][1] for k in todo]))
                forward += time.perf_counter() - t
                for n, k in enumerate(todo):
                    scores[k] = out[n, :, :th, :tw]
            skipped += len(batch) - len(todo)
            for (window, _, valid), s in zip(batch, scores):
                _put(blend_q, (window, s, valid), stop)
            bar.update(len(batch))
        _put(blend_q, _DONE, stop)
        while consumer.is_alive():
            consumer.join(timeout=0.1)
    except _Stop:
        pass
    finally:
        if consumer.is_alive() or producer.is_alive():
            stop.set()
        producer.join()
        consumer.join()
    if errors:
        raise errors[0]
    return {"windows": len(order), "skipped": skipped, "forward": forward}
