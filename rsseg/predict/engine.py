"""The predict engine: scene -> Dask-scheduled window reads -> batched inference ->
streaming blend -> raw band writes -> COG.

Three stages overlap: Dask's threaded scheduler reads and normalises the next
windows while torch runs on the current batch, and a writer thread blends the
scores and writes every finished region at once. Queues between the stages are short,
and the blender keeps only one overlap of rows (see
:mod:`rsseg.predict.blend`), so memory does not grow with the scene's height
and grows only by that overlap band with its width.

:func:`predict_scene` is the library entry point used by ``rsseg predict``,
the batch command and the QGIS plugin.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from rsseg.atomic import atomic_output, check_output_path, temporary_sibling
from rsseg.checkpoint import Normalization
from rsseg.classes import ISPRS, NODATA, ClassScheme
from rsseg.errors import InputError, OutputError
from rsseg.predict.blend import StreamingBlender, window_order
from rsseg.io.cog import class_metadata, confidence_metadata, finish_cog
from rsseg.io.vrt import write_raw_vrt
from rsseg.predict.sinks import CONFIDENCE_NODATA, RawBandWriter, RegionSink
from rsseg.progress import Progress
from rsseg.io.scene import Scene, default_normalization
from rsseg.tiling import BLEND_MODES, BlendWeights, WindowGrid

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


def predict_scene(input, output, predictor, normalization: Normalization | None = None, *,
                  classes: ClassScheme = ISPRS, bands: list[int] | None = None, dsm=None,
                  align: bool = False, band_files=(), tile: int = 512, overlap: int = 128,
                  blend: str = "cosine", batch_size: int = 1, probs=None,
                  overwrite: bool = False, progress: str = "off", readers: int = 2,
                  on_scores: Callable | None = None, scene: Scene | None = None,
                  region: tuple[int, int, int, int] | None = None) -> PredictResult:
    """Predict a class raster (COG) for the scene ``input``.

    ``predictor`` maps normalised ``(N, C, H, W)`` float32 batches to class
    probabilities ``(N, K, H, W)`` (see :mod:`rsseg.predict.predictor`); ``normalization``
    is applied to the bands read (None: per-dtype defaults, see
    :func:`rsseg.io.scene.default_normalization`). ``probs`` optionally names a
    second COG of confidences (max probability * 255). ``on_scores(row_off,
    col_off, scores, valid)`` receives every blended region (tests, diagnostics).
    ``scene`` is an already opened :class:`~rsseg.io.scene.Scene` (else ``input``
    is opened with ``bands``/``band_files``/``dsm``/``align``).

    ``region`` ``(row_off, col_off, height, width)`` predicts only that part of
    the scene: the output has the region's shape and georeferencing, and its
    pixels equal the whole-scene prediction cut to the region (the windows and
    blend weights are those of the whole scene's grid; only the windows touching
    the region are run). ``rsseg batch`` uses it to predict each tile of a mosaic
    with context from its neighbours (see :func:`region_grid`).
    """
    _check_settings(tile, overlap, blend, batch_size)
    check_output_path(output, overwrite)
    if probs is not None:
        check_output_path(probs, overwrite)
        if Path(probs).resolve() == Path(output).resolve():
            raise OutputError("--probs must differ from the output path", probs)
    if scene is None:
        scene = Scene(input, bands=bands, dsm=dsm, align=align, band_files=band_files)
    norm = normalization or default_normalization(scene)
    if norm.num_bands != scene.channels:
        raise InputError(f"the input provides {scene.channels} band(s) but the normalisation "
                         f"has {norm.num_bands} ({', '.join(norm.names)})", scene.path)
    region = _check_region(region, scene)
    out_h, out_w = region[2], region[3]
    out_transform = scene.transform
    if scene.transform is not None and (region[0] or region[1]):
        from affine import Affine

        out_transform = scene.transform @ Affine.translation(region[1], region[0])
    import rasterio

    t0 = time.perf_counter()
    with rasterio.Env(GDAL_CACHEMAX=gdal_cache_bytes(scene, tile)), scene, contextlib.ExitStack() as stack:
        final = stack.enter_context(atomic_output(output, overwrite))
        final_probs = stack.enter_context(atomic_output(probs, overwrite)) if probs else None
        targets = [(final, "mode", class_metadata(classes), NODATA)]
        if probs:
            targets.append((final_probs, "average", confidence_metadata(), CONFIDENCE_NODATA))
        raws = [temporary_sibling(t[0], ".raw") for t in targets]
        stack.callback(_remove, raws + [r.with_suffix(".vrt") for r in raws])
        stats = _run(scene, predictor, norm, classes, raws, tile, overlap, blend, batch_size,
                     progress, readers, on_scores, region)
        for raw, (dst, resampling, meta, nodata) in zip(raws, targets):
            vrt = raw.with_suffix(".vrt")
            write_raw_vrt(vrt, raw, out_w, out_h, scene.crs, out_transform, nodata, **meta)
            finish_cog(vrt, dst, resampling=resampling)
    return PredictResult(Path(output), Path(probs) if probs else None, stats["windows"],
                         stats["skipped"], time.perf_counter() - t0, stats["forward"])


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


def _check_settings(tile: int, overlap: int, blend: str, batch_size: int) -> None:
    if tile < 16:
        raise InputError(f"tile size must be at least 16, got {tile}")
    if not 0 <= overlap < tile:
        raise InputError(f"overlap must be between 0 and tile-1 ({tile - 1}), got {overlap}")
    if blend not in BLEND_MODES:
        raise InputError(f"unknown blend mode {blend!r}; choose from {', '.join(BLEND_MODES)}")
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")


def _check_region(region, scene: Scene) -> tuple[int, int, int, int]:
    """The whole scene when ``region`` is None; else the region, checked to lie inside it."""
    if region is None:
        return (0, 0, scene.height, scene.width)
    row_off, col_off, height, width = (int(v) for v in region)
    if (row_off < 0 or col_off < 0 or height < 1 or width < 1
            or row_off + height > scene.height or col_off + width > scene.width):
        raise InputError(f"region (row {row_off}, col {col_off}, {height}x{width}) is not inside "
                         f"the {scene.height}x{scene.width} scene", scene.path)
    return (row_off, col_off, height, width)


class _ShiftedWeights:
    """The blend weights of a sub-grid: those of the same windows in the whole grid."""

    def __init__(self, weights: BlendWeights, row0: int, col0: int):
        self.weights, self.row0, self.col0 = weights, row0, col0

    def window(self, row: int, col: int) -> np.ndarray:
        return self.weights.window(row + self.row0, col + self.col0)


def region_grid(grid: WindowGrid, weights: BlendWeights, region: tuple[int, int, int, int]):
    """The windows of ``grid`` that touch ``region``, as a grid of their own.

    Returns ``(sub_grid, sub_weights, (row_off, col_off))``: a :class:`WindowGrid`
    over the extent of those windows (starting at ``(row_off, col_off)`` in the
    scene), whose windows are exactly the whole grid's, shifted, and whose
    weights are the whole grid's. Every pixel of the region is covered by the
    same windows with the same weights, blended in the same order, so the region
    comes out identical to a whole-scene prediction.
    """
    r0, c0, h, w = region
    rows = _touching(grid.row_starts, grid.tile_height, r0, r0 + h)
    cols = _touching(grid.col_starts, grid.tile_width, c0, c0 + w)
    top, left = grid.row_starts[rows[0]], grid.col_starts[cols[0]]
    bottom = grid.row_starts[rows[-1]] + grid.tile_height
    right = grid.col_starts[cols[-1]] + grid.tile_width
    sub = WindowGrid(bottom - top, right - left, grid.tile, grid.overlap)
    if (sub.row_starts != [s - top for s in grid.row_starts[rows[0]:rows[-1] + 1]]
            or sub.col_starts != [s - left for s in grid.col_starts[cols[0]:cols[-1] + 1]]):
        raise RuntimeError("internal error: the region's windows do not form a sub-grid")
    return sub, _ShiftedWeights(weights, rows[0], cols[0]), (top, left)


def _touching(starts: list[int], size: int, lo: int, hi: int) -> list[int]:
    """Indices of the windows ``[start, start + size)`` that intersect ``[lo, hi)``."""
    return [k for k, s in enumerate(starts) if s < hi and s + size > lo]


class _CroppedSink:
    """Pass on only the part of each blended region inside ``region`` (in its own coordinates)."""

    def __init__(self, sink, row_off: int, col_off: int, height: int, width: int):
        self.sink, self.r0, self.c0, self.h, self.w = sink, row_off, col_off, height, width

    def __call__(self, row_off: int, col_off: int, scores: np.ndarray, valid: np.ndarray) -> None:
        h, w = valid.shape
        top, left = max(row_off, self.r0), max(col_off, self.c0)
        bottom, right = min(row_off + h, self.r0 + self.h), min(col_off + w, self.c0 + self.w)
        if bottom <= top or right <= left:
            return
        rows = slice(top - row_off, bottom - row_off)
        cols = slice(left - col_off, right - col_off)
        self.sink(top - self.r0, left - self.c0, scores[:, rows, cols], valid[rows, cols])


def _remove(paths) -> None:
    for p in paths:
        for side in ("", ".aux.xml", ".ovr", ".msk"):
            with contextlib.suppress(OSError):
                os.unlink(f"{p}{side}")


def _run(scene: Scene, predictor, norm: Normalization, classes: ClassScheme, raws: list,
         tile: int, overlap: int, blend: str, batch_size: int, progress: str, readers: int,
         on_scores, region: tuple[int, int, int, int]) -> dict:
    """Stream every window through read -> predict -> blend -> write."""
    grid = WindowGrid(scene.height, scene.width, tile, overlap)
    weights = BlendWeights(grid, blend)
    origin = (0, 0)
    if region != (0, 0, scene.height, scene.width):
        grid, weights, origin = region_grid(grid, weights, region)
    order = window_order(grid)
    writers = []
    try:
        for path in raws:
            writers.append(RawBandWriter(path, region[3], region[2]))
        sink = RegionSink(writers[0], writers[1] if len(writers) > 1 else None, on_scores)
        if origin != (0, 0) or (grid.height, grid.width) != region[2:]:
            sink = _CroppedSink(sink, region[0] - origin[0], region[1] - origin[1], *region[2:])
        num_classes = getattr(predictor, "num_classes", None) or classes.num_classes
        blender = StreamingBlender(grid, weights, num_classes, sink)
        mpx = grid.width * grid.height / len(order) / 1e6
        with Progress(len(order), "predict", progress, unit="window", mpx_per_unit=mpx) as bar:
            stats = _stream(scene, order, grid, predictor, norm, blender, batch_size, readers, bar,
                            origin)
        if not blender.done:
            raise RuntimeError("internal error: the blender did not receive every window")
    finally:
        for w in writers:
            w.close()
    return stats


def _load_window(scene: Scene, norm: Normalization, tile: int, window, origin=(0, 0)):
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


def _produce(scene, norm, grid, order, chunk, readers, out_q, stop, origin=(0, 0)) -> None:
    """Dask reads the windows ``chunk`` at a time on its threaded scheduler."""
    import dask

    try:
        load = dask.delayed(_load_window, pure=False)
        for k in range(0, len(order), chunk):
            tasks = [load(scene, norm, grid.tile, w, origin) for w in order[k:k + chunk]]
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
                                args=(scene, norm, grid, order, chunk, readers, read_q, stop,
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
