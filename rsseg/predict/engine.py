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

:func:`predict_scene` is the library entry point (``from rsseg import
predict_scene``); ``rsseg predict`` (which the QGIS plugin runs), ``rsseg batch``
and ``rsseg demo`` reach it through :func:`rsseg.predict.run.predict_file`
or directly.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import queue
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path


from rsseg.atomic import atomic_output, temporary_sibling
from rsseg.classes import ISPRS, NODATA, ClassScheme
from rsseg.errors import InputError
from rsseg.io.cog import BLOCK as COG_BLOCK, class_metadata, confidence_metadata, finish_cog
from rsseg.io.normalization import Normalization
from rsseg.io.overviews import (
    fast_mode_levels,
    mode_halve,
    overview_shapes,
    write_mode_overviews,
)
from rsseg.io.vrt import write_raw_vrt
from rsseg.io.scene import Scene, default_normalization
from rsseg.progress import Progress
from rsseg.tiling import BlendWeights, WindowGrid

from .arrays import NUMPY
from .blend import StreamingBlender, window_order
from .runners import resolve_batch_size, window_runner
from .regions import CroppedSink, check_region, region_grid
from .settings import (
    PredictSettings,
    Tiling,
    check_outputs,
    check_plan,
    check_settings,
    resolve_tiling,
)
from .sinks import CONFIDENCE_NODATA, RawBandWriter, RegionSink, ThreadedSink

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
    stages: dict = field(default_factory=dict)  # seconds per stage (see StageClock)
    class_pixels: dict = field(default_factory=dict)  # class name -> pixels, largest first
    tta: str = "none"  # the test-time augmentation used (set by predict_file)
    zoom: float = 1.0  # --zoom (set by predict_file)

    def describe(self) -> str:
        """What was written, for a completion line."""
        written = [self.output.name] + [p.name for p in (self.probs, self.vector, self.stac) if p]
        polygons = f", {self.features} polygons" if self.features is not None else ""
        nodata = f" ({self.skipped} all nodata)" if self.skipped else ""
        seen = f", --tta {self.tta}" if self.tta != "none" else ""  # what the network saw
        seen += f", --zoom {self.zoom:g}" if self.zoom != 1.0 else ""
        return (f"{' + '.join(written)}{polygons} ({self.windows} windows of {self.tile} px, "
                f"overlap {self.overlap}{nodata}{seen}){self._shares()}")

    def _shares(self) -> str:
        """'; land 72.8 %, road 9.3 %, ...': the classes found, by share of the pixels
        with data (at most six named; the rest summed)."""
        total = sum(self.class_pixels.values())
        if not total:
            return ""
        items = list(self.class_pixels.items())
        parts = [f"{name} {100 * n / total:.1f} %" for name, n in items[:6]]
        if len(items) > 6:
            parts.append(f"{len(items) - 6} more {100 * sum(n for _, n in items[6:]) / total:.1f} %")
        return "; " + ", ".join(parts)

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
                           stats["windows"], stats["skipped"], 0.0,
                           stats["stages"].get("forward", 0.0), tiling.tile, tiling.overlap,
                           megapixels=region[2] * region[3] / 1e6, stages=stats["stages"],
                           class_pixels=_named_counts(stats["class_pixels"], classes))
    if settings.vector:
        from rsseg.vectorize.streaming import vectorize_raster

        summary = vectorize_raster(output, settings.vector, probs=settings.probs,
                                   overwrite=settings.overwrite, progress=settings.progress)
        result.vector, result.features = Path(settings.vector), summary.get("features")
    result.seconds = time.perf_counter() - t0
    return result


def _named_counts(counts, classes: ClassScheme) -> dict:
    """Pixels per class present (nodata left out), by class name, largest first."""
    named = {(classes.names[c] if c < classes.num_classes else f"class {c}"): int(counts[c])
             for c in range(NODATA) if counts[c]}
    return dict(sorted(named.items(), key=lambda kv: -kv[1]))


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
    batch_size = resolve_batch_size(settings.batch_size, predictor, tiling.tile, scene.channels)
    clock = StageClock()
    env = rasterio.Env(GDAL_CACHEMAX=gdal_cache_bytes(scene, tiling.tile),
                       GDAL_NUM_THREADS=str(decode_threads(predictor, settings.readers)))
    with env, scene, contextlib.ExitStack() as stack:
        final = stack.enter_context(atomic_output(output, overwrite))
        targets = [(final, "mode", class_metadata(classes), NODATA)]
        if probs:
            final_probs = stack.enter_context(atomic_output(probs, overwrite))
            targets.append((final_probs, "average", confidence_metadata(), CONFIDENCE_NODATA))
        raws = [temporary_sibling(t[0], ".raw") for t in targets]
        stack.callback(_remove, raws + [r.with_suffix(".vrt") for r in raws])
        # The class raster's MODE overviews are computed by rsseg (rsseg.io.overviews)
        # where that is the fast way; their first level even while the stream writes.
        levels = []
        if fast_mode_levels(out_h, out_w, COG_BLOCK):
            levels = _overview_files(raws[0], overview_shapes(out_h, out_w, COG_BLOCK), stack)
        stats = _run(scene, predictor, norm, classes, raws, tiling, region, settings,
                     batch_size, clock, levels[0][0] if levels else None)
        with clock("COG finish"):
            vrts = []
            for raw, (dst, resampling, meta, nodata) in zip(raws, targets):
                vrts.append(raw.with_suffix(".vrt"))
                overviews = []
                if raw == raws[0] and levels:
                    write_mode_overviews(raw, out_h, out_w, COG_BLOCK, nodata,
                                         [path for path, _ in levels],
                                         first_done=stats["halved"])
                    overviews = [vrt for _, vrt in levels]
                write_raw_vrt(vrts[-1], raw, out_w, out_h, scene.crs, out_transform, nodata,
                              overviews=overviews, **meta)
            _finish_cogs([(vrt, t[0], t[1]) for vrt, t in zip(vrts, targets)])
    stats["stages"] = clock.stages()
    return stats


def _overview_files(raw: Path, shapes: list, stack: contextlib.ExitStack) -> list:
    """``(raw file, VRT)`` of each overview level of ``raw`` (VRTs written now; all
    removed with ``raw``)."""
    levels = []
    for level, (h, w) in enumerate(shapes, start=1):
        path = raw.with_suffix(f".ovr{level}")
        levels.append((path, write_raw_vrt(path.with_suffix(path.suffix + ".vrt"), path, w, h,
                                           None, None, NODATA)))
    stack.callback(_remove, [p for level in levels for p in level])
    return levels


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
    """GDAL block cache: a window row plus a block row of the input (at least 16 MB).

    Windows are read in order by one dataset handle (see :func:`_windows`), so a block
    is decoded once when the cache keeps every block the next window row shares with
    this one. A window row touches the block rows it crosses: up to ``tile`` rows plus
    one block row more when windows do not start on block edges (512-px windows at a
    384-px stride on 512-px blocks cross two block rows; 1.25 window rows held 1.25
    block rows, so blocks were decoded again: 1.7 vs 1.3 s of decoding
    for 441 windows of 8192 x 8192; more than this decodes nothing less). It grows with
    the width, like the blender's vertical carry, never with the height.
    """
    override = os.environ.get("RSSEG_GDAL_CACHEMAX_MB")
    if override:
        return int(float(override) * 2**20)
    rows = tile + min(scene.block_height, tile)
    return max(GDAL_CACHE_MIN_BYTES, rows * scene.width * scene.bytes_per_pixel)


def _remove(paths) -> None:
    for p in paths:
        for side in ("", ".aux.xml", ".ovr", ".msk"):
            with contextlib.suppress(OSError):
                os.unlink(f"{p}{side}")


def _run(scene: Scene, predictor, norm: Normalization, classes: ClassScheme, raws: list,
         tiling: Tiling, region: tuple[int, int, int, int], settings: PredictSettings,
         batch_size: int, clock: StageClock, halves: Path | None = None) -> dict:
    """Stream every window through read -> predict -> blend -> write. ``halves``: where
    to write the class raster's first MODE overview level as its regions are written,
    when every region starts on even offsets (``stats["halved"]`` says whether)."""
    grid = WindowGrid(scene.height, scene.width, tiling.tile, tiling.overlap)
    weights = BlendWeights(grid, settings.blend)
    origin = (0, 0)
    if region != (0, 0, scene.height, scene.width):
        grid, weights, origin = region_grid(grid, weights, region)
    order = window_order(grid)
    runner = window_runner(predictor, norm, scene.dtype, tiling.tile)
    writers = []
    stop = threading.Event()
    threaded = None
    try:
        cropped = origin != (0, 0) or (grid.height, grid.width) != region[2:]
        halved = on_band = None
        if halves is not None and not cropped and _even_regions(grid):
            halved = RawBandWriter(halves, region[3] // 2, region[2] // 2)
            writers.append(halved)
            on_band = _halver(halved, clock)
        for k, path in enumerate(raws):
            writers.append(RawBandWriter(path, region[3], region[2], on_band if k == 0 else None))
        outputs = writers[-len(raws):]
        sink = classified = RegionSink(outputs[0], outputs[1] if len(raws) > 1 else None,
                                       settings.on_scores, arrays=runner.arrays, clock=clock)
        if cropped:
            sink = CroppedSink(sink, region[0] - origin[0], region[1] - origin[1], *region[2:])
        num_classes = getattr(predictor, "num_classes", None) or classes.num_classes
        buffers = 2
        if runner.arrays is NUMPY:  # classify and write beside the blend (host scores)
            sink = threaded = ThreadedSink(sink, stop, clock, stopped=_Stop)
            buffers = 3
        blender = StreamingBlender(grid, weights, num_classes, sink, arrays=runner.arrays,
                                   buffers=buffers)
        mpx = grid.width * grid.height / len(order) / 1e6
        with Progress(len(order), "predict", settings.progress, unit="window",
                      mpx_per_unit=mpx) as bar:
            stats = _stream(scene, order, grid, runner, blender, batch_size, bar,
                            origin, clock, stop, threaded)
        if not blender.done:
            raise RuntimeError("internal error: the blender did not receive every window")
    except BaseException:
        stop.set()  # drops what the classifying thread still has queued
        _close(threaded, writers, quietly=True)  # the first error is the one to report
        raise
    _close(threaded, writers, quietly=False)
    stats["class_pixels"] = classified.class_pixels
    stats["halved"] = halved is not None
    return stats


def _close(threaded: ThreadedSink | None, writers: list, quietly: bool) -> None:
    """End the classifying thread, then close the band files (which write their last
    band: the classes' goes to the halved level, so that one closes last); ``quietly``
    keeps errors from hiding the one a failed run raises."""
    steps = ([threaded.shutdown] if threaded is not None else []) + \
        [w.close for w in reversed(writers)]
    first = None
    for step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 (every file is closed first)
            first = first or exc
    if first is not None and not quietly:
        raise first


def _halver(halved: RawBandWriter, clock: StageClock):
    """``on_band`` for the class raster: write each band of rows halved (MODE)."""
    def halve(row_off: int, rows) -> None:
        with clock("overviews"):
            halved.write(row_off // 2, 0, mode_halve(rows, NODATA))
    return halve


def _even_regions(grid: WindowGrid) -> bool:
    """Whether every region the blender emits starts on even rows and columns and has
    even sides (window starts and the grid's sides even), so each can be halved alone."""
    return all(v % 2 == 0 for v in [grid.height, grid.width, *grid.row_starts,
                                    *grid.col_starts])


def _read_window(scene: Scene, window, origin, clock):
    """Read one window (its grid starts at ``origin`` in the scene): ``(data, valid)``.
    Runs on the read thread."""
    with clock("read"):
        return scene.read_raw(window.row_off + origin[0], window.col_off + origin[1],
                              window.height, window.width)


def _prepare_window(runner, window, read, clock):
    """The window read by ``read`` (a future) prepared for ``runner`` (normalised and
    padded on the host, or raw for the device); None data when it is entirely nodata.
    Runs on the prepare thread, so the read thread goes on to the next window."""
    data, valid = read.result()
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
    """Yield loaded windows in ``order``, read ahead (``lookahead`` windows) on one thread
    and prepared (normalised) on another.

    One thread means one dataset handle, so one block cache: a block shared by
    neighbouring windows is decoded once. With a handle per reader thread (and Dask's
    threaded scheduler, as before) each handle decoded the blocks again: measured
    2.7x the decoding CPU time per window. GDAL decodes the blocks of each read on
    its own threads instead (``GDAL_NUM_THREADS``, set from ``readers``).
    """
    from concurrent.futures import ThreadPoolExecutor

    reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rsseg-read")
    prepares = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rsseg-prepare")
    pending: collections.deque = collections.deque()

    def submit(window):
        read = reads.submit(_read_window, scene, window, origin, clock)
        pending.append(prepares.submit(_prepare_window, runner, window, read, clock))

    try:
        todo = iter(order)
        for window in itertools.islice(todo, lookahead):
            submit(window)
        while pending:
            with clock("wait for reads"):
                item = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                submit(nxt)
            yield item
            if stop.is_set():
                return
    finally:
        for f in pending:
            f.cancel()
        prepares.shutdown(wait=True)
        reads.shutdown(wait=True, cancel_futures=True)


def _consume(blender, in_q, stop, errors: list, clock, threaded) -> None:
    """Blend, in window order, on its own thread; classify and write there too, or on
    the ``threaded`` sink's thread (then waited for at the end)."""
    stage = "blend" if threaded is not None else "blend+classify+write"
    try:
        while True:
            with clock("writer idle"):
                item = _get(in_q, stop)
            if item is _DONE:
                if threaded is not None:
                    threaded.close()
                return
            with clock(stage):
                blender.add(*item)
    except _Stop:
        pass
    except BaseException as exc:  # noqa: BLE001
        errors.append(exc)
        stop.set()


def _stream(scene, order, grid, runner, blender, batch_size, bar, origin,
            clock, stop: threading.Event, threaded) -> dict:
    blend_q: queue.Queue = queue.Queue(maxsize=max(2, 2 * batch_size))
    errors: list = []
    consumer = threading.Thread(target=_consume, name="rsseg-write", daemon=True,
                                args=(blender, blend_q, stop, errors, clock, threaded))
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
        blender's own time (its total less the classification and writes it calls, or
        its waits for the classifying thread's buffers)."""
        out = dict(self.seconds)
        out.update({f"cpu {k}": v for k, v in self.cpu.items()})
        for prefix in ("", "cpu "):
            total = out.pop(prefix + "blend+classify+write", None)
            if total is not None:
                out[prefix + "blend"] = (total - out.get(prefix + "classify", 0.0)
                                         - out.get(prefix + "write", 0.0))
            elif prefix + "blend" in out:
                out[prefix + "blend"] -= out.get(prefix + "wait for classify", 0.0)
        return out
