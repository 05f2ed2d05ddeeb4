"""The predict engine: scene -> window reads -> batched inference -> streaming blend ->
raw band writes -> COG.

Three stages overlap: a read thread reads (GDAL decoding on ``readers`` threads) and
prepares the next windows while the predictor runs on the current batch, and a writer
thread blends the scores and writes every finished region at once. Queues between the
stages are short, and the blender keeps only one overlap of rows (see
:mod:`rsseg.predict.blend`), so memory does not grow with the scene's height
and grows only by that overlap band with its width.

Where the work happens depends on the window runner (:mod:`rsseg.predict.runners`):
on the host for any predictor callable, or on the GPU for a torch network on CUDA
(:mod:`rsseg.predict.device`), where scores never leave the device. Every run times
its stages (:class:`StageClock`, in :attr:`PredictResult.stages`).

:func:`predict_scene` is the library entry point used by ``rsseg predict``,
the batch command and the QGIS plugin.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from rsseg.atomic import atomic_output, check_output_path, temporary_sibling
from rsseg.checkpoint import Normalization
from rsseg.classes import ISPRS, NODATA, ClassScheme
from rsseg.errors import InputError, OutputError
from rsseg.predict.blend import StreamingBlender, window_order
from rsseg.predict.runners import resolve_batch_size, window_runner
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
    stages: dict = field(default_factory=dict)  # seconds per stage (see StageClock)


def predict_scene(input, output, predictor, normalization: Normalization | None = None, *,
                  classes: ClassScheme = ISPRS, bands: list[int] | None = None, dsm=None,
                  align: bool = False, band_files=(), tile: int = 512, overlap: int = 128,
                  blend: str = "cosine", batch_size: int | str = 1, probs=None,
                  overwrite: bool = False, progress: str = "off", readers: int = 2,
                  on_scores: Callable | None = None, scene: Scene | None = None,
                  region: tuple[int, int, int, int] | None = None) -> PredictResult:
    """Predict a class raster (COG) for the scene ``input``.

    ``predictor`` maps normalised ``(N, C, H, W)`` float32 batches to class
    probabilities ``(N, K, H, W)`` (see :mod:`rsseg.predict.predictor`); ``normalization``
    is applied to the bands read (None: per-dtype defaults, see
    :func:`rsseg.io.scene.default_normalization`). ``probs`` optionally names a
    second COG of confidences (max probability * 255). ``on_scores(row_off,
    col_off, scores, valid)`` receives every blended region (tests, diagnostics;
    NumPy views valid during the call). ``batch_size`` is a number or ``"auto"``
    (see :func:`rsseg.predict.runners.resolve_batch_size`); ``readers`` is the number
    of threads GDAL decodes on. ``scene`` is an already opened :class:`~rsseg.io.scene.Scene` (else ``input``
    is opened with ``bands``/``band_files``/``dsm``/``align``).

    ``region`` ``(row_off, col_off, height, width)`` predicts only that part of
    the scene: the output has the region's shape and georeferencing, and its
    pixels equal the whole-scene prediction cut to the region (the windows and
    blend weights are those of the whole scene's grid; only the windows touching
    the region are run). ``rsseg batch`` uses it to predict each tile of a mosaic
    with context from its neighbours (see :func:`region_grid`).
    """
    _check_settings(tile, overlap, blend)
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
    batch_size = resolve_batch_size(batch_size, predictor, tile, scene.channels)
    out_h, out_w = region[2], region[3]
    out_transform = scene.transform
    if scene.transform is not None and (region[0] or region[1]):
        from affine import Affine

        out_transform = scene.transform @ Affine.translation(region[1], region[0])
    import rasterio

    t0 = time.perf_counter()
    clock = StageClock()
    env = rasterio.Env(GDAL_CACHEMAX=gdal_cache_bytes(scene, tile),
                       GDAL_NUM_THREADS=str(decode_threads(predictor, readers)))
    with env, scene, contextlib.ExitStack() as stack:
        final = stack.enter_context(atomic_output(output, overwrite))
        final_probs = stack.enter_context(atomic_output(probs, overwrite)) if probs else None
        targets = [(final, "mode", class_metadata(classes), NODATA)]
        if probs:
            targets.append((final_probs, "average", confidence_metadata(), CONFIDENCE_NODATA))
        raws = [temporary_sibling(t[0], ".raw") for t in targets]
        stack.callback(_remove, raws + [r.with_suffix(".vrt") for r in raws])
        stats = _run(scene, predictor, norm, classes, raws, tile, overlap, blend, batch_size,
                     progress, on_scores, region, clock)
        with clock("COG finish"):
            vrts = []
            for raw, (dst, resampling, meta, nodata) in zip(raws, targets):
                vrts.append(raw.with_suffix(".vrt"))
                write_raw_vrt(vrts[-1], raw, out_w, out_h, scene.crs, out_transform, nodata,
                              **meta)
            _finish_cogs([(vrt, t[0], t[1]) for vrt, t in zip(vrts, targets)])
    stages = clock.stages()
    return PredictResult(Path(output), Path(probs) if probs else None, stats["windows"],
                         stats["skipped"], time.perf_counter() - t0, stages.get("forward", 0.0),
                         stages)


def _finish_cogs(jobs: list) -> None:
    """Convert ``(vrt, destination, resampling)`` jobs to COGs, the classes and the
    confidences at the same time (GDAL releases the GIL while it compresses)."""
    if len(jobs) == 1:
        finish_cog(jobs[0][0], jobs[0][1], resampling=jobs[0][2])
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        for done in [pool.submit(finish_cog, vrt, dst, resampling=resampling)
                     for vrt, dst, resampling in jobs]:
            done.result()


def decode_threads(predictor, readers: int) -> int:
    """GDAL's decoding threads: ``readers``, or every core when the network runs on a GPU
    (the device path), where the host's cores have nothing else to do and decoding
    must keep up with 40-100 Mpx/s."""
    if getattr(predictor, "device_path", False) and getattr(predictor, "cuda", False):
        return max(readers, os.cpu_count() or 1)
    return readers


def gdal_cache_bytes(scene: Scene, tile: int) -> int:
    """GDAL block cache: 1.25 window rows of the input (at least 16 MB).

    Windows are read in order by one dataset handle (see :func:`_windows`), so a block
    is decoded once when the cache keeps the blocks the next window row shares with
    this one (one block row of a tiled input, the strips of a window row of a striped
    one) plus the few being read. It grows with the width, like the blender's vertical
    carry, never with the height. (Two window rows: 551 MB peak at 16384 x 16384,
    ratio 1.20 to 2048 x 2048.)
    """
    override = os.environ.get("RSSEG_GDAL_CACHEMAX_MB")
    if override:
        return int(float(override) * 2**20)
    return max(GDAL_CACHE_MIN_BYTES, int(1.25 * tile * scene.width * scene.bytes_per_pixel))


def _check_settings(tile: int, overlap: int, blend: str) -> None:
    if tile < 16:
        raise InputError(f"tile size must be at least 16, got {tile}")
    if not 0 <= overlap < tile:
        raise InputError(f"overlap must be between 0 and tile-1 ({tile - 1}), got {overlap}")
    if blend not in BLEND_MODES:
        raise InputError(f"unknown blend mode {blend!r}; choose from {', '.join(BLEND_MODES)}")


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
        self.rows, self.cols = weights.rows[row0:], weights.cols[col0:]  # 1-D, as BlendWeights

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
         tile: int, overlap: int, blend: str, batch_size: int, progress: str, on_scores,
         region: tuple[int, int, int, int], clock: StageClock) -> dict:
    """Stream every window through read -> predict -> blend -> write."""
    grid = WindowGrid(scene.height, scene.width, tile, overlap)
    weights = BlendWeights(grid, blend)
    origin = (0, 0)
    if region != (0, 0, scene.height, scene.width):
        grid, weights, origin = region_grid(grid, weights, region)
    order = window_order(grid)
    runner = window_runner(predictor, norm, scene.dtype, tile)
    writers = []
    try:
        for path in raws:
            writers.append(RawBandWriter(path, region[3], region[2]))
        sink = RegionSink(writers[0], writers[1] if len(writers) > 1 else None, on_scores,
                          arrays=runner.arrays, clock=clock)
        if origin != (0, 0) or (grid.height, grid.width) != region[2:]:
            sink = _CroppedSink(sink, region[0] - origin[0], region[1] - origin[1], *region[2:])
        num_classes = getattr(predictor, "num_classes", None) or classes.num_classes
        blender = StreamingBlender(grid, weights, num_classes, sink, arrays=runner.arrays)
        mpx = grid.width * grid.height / len(order) / 1e6
        with Progress(len(order), "predict", progress, unit="window", mpx_per_unit=mpx) as bar:
            stats = _stream(scene, order, grid, runner, blender, batch_size, bar,
                            origin, clock)
        if not blender.done:
            raise RuntimeError("internal error: the blender did not receive every window")
    finally:
        for w in writers:
            w.close()
    return stats


def _load_window(scene: Scene, runner, window, origin=(0, 0), clock=None):
    """Read one window (its grid starts at ``origin`` in the scene) and prepare it for
    ``runner`` (normalised and padded on the host, or raw for the device); None data when
    it is entirely nodata. Runs on the reader threads."""
    clock = clock or StageClock()
    with clock("read"):
        data, valid = scene.read_raw(window.row_off + origin[0], window.col_off + origin[1],
                                     window.height, window.width)
    if not valid.any():
        return window, None, valid
    with clock("normalize"):
        return window, runner.prepare(data, valid), valid


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


def _windows(scene, runner, order, lookahead, stop, origin, clock):
    """Yield loaded windows in ``order``, read ahead (``lookahead`` windows) on one thread.

    One thread means one dataset handle, so one block cache: a block shared by
    neighbouring windows is decoded once. With a handle per reader thread (and Dask's
    threaded scheduler, as before) each handle decoded the blocks again: measured
    2.7x the decoding CPU time per window. GDAL decodes the blocks of each read on
    its own threads instead (``GDAL_NUM_THREADS``, set from ``readers``).
    """
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rsseg-read")
    pending: collections.deque = collections.deque()
    try:
        todo = iter(order)
        for window in itertools.islice(todo, lookahead):
            pending.append(pool.submit(_load_window, scene, runner, window, origin, clock))
        while pending:
            with clock("wait for reads"):
                item = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(_load_window, scene, runner, nxt, origin, clock))
            yield item
            if stop.is_set():
                return
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True)


def _consume(blender, in_q, stop, errors: list, clock) -> None:
    """Blend and write, in window order, on its own thread."""
    try:
        while True:
            with clock("writer idle"):
                item = _get(in_q, stop)
            if item is _DONE:
                return
            with clock("blend+classify+write"):
                blender.add(*item)
    except _Stop:
        pass
    except BaseException as exc:  # noqa: BLE001
        errors.append(exc)
        stop.set()


def _stream(scene, order, grid, runner, blender, batch_size, bar, origin,
            clock) -> dict:
    stop = threading.Event()
    blend_q: queue.Queue = queue.Queue(maxsize=max(2, 2 * batch_size))
    errors: list = []
    consumer = threading.Thread(target=_consume, name="rsseg-write", daemon=True,
                                args=(blender, blend_q, stop, errors, clock))
    consumer.start()
    skipped = 0
    lookahead = max(4, batch_size + 2)
    windows = _windows(scene, runner, order, lookahead, stop, origin, clock)
    try:
        for batch in _batches(windows, batch_size):
            todo = [k for k, (_, data, _) in enumerate(batch) if data is not None]
            scores = [None] * len(batch)
            if todo:
                for k, s in zip(todo, runner([batch[k][1] for k in todo], clock)):
                    scores[k] = s[:, :grid.tile_height, :grid.tile_width]
            skipped += len(batch) - len(todo)
            with clock("wait for writer"):
                for (window, _, valid), s in zip(batch, scores):
                    _put(blend_q, (window, s, valid), stop)
            bar.update(len(batch))
        _put(blend_q, _DONE, stop)
        while consumer.is_alive():
            consumer.join(timeout=0.1)
    except _Stop:
        pass
    finally:
        if consumer.is_alive():
            stop.set()
        windows.close()
        consumer.join()
    if errors:
        raise errors[0]
    return {"windows": len(order), "skipped": skipped}


def _batches(items, size: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class StageClock:
    """Seconds spent per stage, summed over all threads (thread-safe).

    ``with clock("read"): ...`` adds the block's wall time to ``seconds["read"]`` and
    the CPU time of the thread running it to ``cpu["read"]`` (on a busy machine the
    CPU seconds show the cost, the wall seconds include waiting for a core). Stages
    run on different threads at once, so their sum exceeds the wall time; the
    benchmark (``benchmarks/pipeline_ceiling.py``) prints them beside it.
    """

    def __init__(self):
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.cpu: dict[str, float] = collections.defaultdict(float)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def __call__(self, stage: str):
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            dt, dc = time.perf_counter() - t0, time.thread_time() - c0
            with self._lock:
                self.seconds[stage] += dt
                self.cpu[stage] += dc

    def stages(self) -> dict[str, float]:
        """Wall seconds per stage, and ``cpu <stage>`` CPU seconds. ``blend`` is the
        blender's own time (its total less the classification and writes it calls)."""
        out = dict(self.seconds)
        out.update({f"cpu {k}": v for k, v in self.cpu.items()})
        for prefix in ("", "cpu "):
            total = out.pop(prefix + "blend+classify+write", None)
            if total is not None:
                out[prefix + "blend"] = (total - out.get(prefix + "classify", 0.0)
                                         - out.get(prefix + "write", 0.0))
        return out
