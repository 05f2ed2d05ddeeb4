"""``rsseg batch``: many tiles (a city mosaic) on a Dask cluster, resumable, seamless.

The driver (this module, in the ``rsseg batch`` process) plans the job, keeps
the job database (:mod:`rsseg.batch.jobdb`) and gathers results; Dask workers do the work, one tile per task
(:func:`rsseg.batch.worker.run_tile`), reading their input and writing their
outputs themselves, so only paths and small dicts travel through the scheduler.

Plan:

1. resolve the inputs (:mod:`rsseg.batch.inputs`) and group touching tiles on
   one pixel grid into mosaics; a tile is predicted as a *region* of its mosaic
   (:func:`rsseg.predict_scene` with ``PredictSettings(region=...)``), so its border
   windows see the neighbours and the result equals predicting the whole
   mosaic. The worker reads it through a VRT of the mosaic's size that lists
   only the tile's context tiles (``out/.rsseg/inputs/<tile>.vrt``, written just
   before the tile is submitted and removed once it is recorded): opening it
   costs the same in a mosaic of 10 tiles or of 100,000;
   Grouping and finding each tile's context tiles use an R-tree of pixel
   boxes, so planning is n log n in the tile count (100,000 tiles: see
   ``benchmarks/batch_scale.py``); ``--dry-run`` stops here and prints the plan;
2. skip the tiles the database records as done from the same inputs and
   settings (``--resume``);
3. run the others on the cluster, at most a few tasks per worker in flight at
   once (the scheduler and the driver hold thousands of futures, not one per
   tile); a failed tile is retried once, then recorded as failed with its error
   while the rest go on;
4. write ``out/mosaic.vrt`` over all class rasters and, with ``--vector``,
   ``out/mosaic.gpkg`` with polygons dissolved across tile borders.
"""

from __future__ import annotations

import bisect
import os
import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from rsseg.batch.bandfiles import TileExtras
from rsseg.batch.inputs import (Mosaic, Tile, context_tiles, group_mosaics, is_virtual,
                                open_tiles, resolve_inputs)
from rsseg.batch.mosaics import CONFIDENCE_DIR, vector_options, write_mosaics
from rsseg.batch.submit import run_tiles
from rsseg.batch.jobdb import LEGACY_NAME, NAME as DB_NAME, JobDB, digest, fingerprint, now
from rsseg.batch.split import PARTS_DIR
from rsseg.batch.worker import ModelSpec, TileJob
from rsseg.atomic import check_folder_creatable, make_folders
from rsseg.errors import InputError, OutputError
from rsseg.progress import Progress

RESERVED = {"mosaic", "manifest"}
INTERNAL_DIR = ".rsseg"
INPUTS_DIR = "inputs"


@dataclass
class BatchOptions:
    model: str | None = None  # None: the checkpoint's network, else bafnet (load_predictor)
    weights: str | None = None
    seed: int = 0
    bands: tuple[int, ...] | None = None
    band_files: tuple = ()  # rsseg.io.scene.BandFile, a path may hold {stem}; --dsm is last
    align: bool = False
    probs: bool = False
    tile: int | None = None
    overlap: int | None = None
    blend: str = "cosine"
    tta: str = "none"
    zoom: float | str = 1.0  # a factor, or "auto": the tiles' pixel size over the training one
    batch_size: int | str = "auto"  # 1 on CPU workers, by free memory on GPU ones
    device: str = "cpu"
    vector: bool = False
    simplify: float | None = None
    min_area: float | None = None
    workers: int = 2
    threads: int = 1
    scheduler: str | None = None
    connect_timeout: float = 10.0
    resume: bool = False
    overwrite: bool = False
    progress: str = "off"
    dry_run: bool = False


@dataclass
class BatchSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    mosaic: Path | None = None
    vector: Path | None = None
    seconds: float = 0.0
    run_id: str = ""
    notes: list[str] = field(default_factory=list)  # what the weights are (load_predictor)
    model: str = ""  # the network that ran
    zoom: float = 1.0  # the zoom it ran at (--zoom auto resolved)
    plan: list[str] | None = None  # --dry-run: the plan, nothing was run

    def lines(self) -> list[str]:
        if self.plan is not None:
            return self.plan
        head = (f"batch: {len(self.done)} tile(s) predicted, {len(self.skipped)} already done, "
                f"{len(self.failed)} failed ({self.seconds:.1f} s)")
        return self.notes + [head] + [f"failed: {error}" for error in self.failed.values()]


@dataclass
class _Planned:
    tile: Tile
    job: TileJob
    checksum: str
    inputs: dict
    outputs: dict
    windows: int
    context: list[Tile]  # the tiles whose pixels its prediction reads (itself included)


def run_batch(inputs: str, out_dir, options: BatchOptions) -> BatchSummary:
    """Run a batch job; returns what was done, skipped and what failed (and why).

    With ``options.dry_run`` nothing is written: the summary holds the plan.
    """
    t0 = time.perf_counter()
    out = _check_out_dir(out_dir)
    summary = BatchSummary(run_id=uuid.uuid4().hex[:12])
    tiles = open_tiles(resolve_inputs(inputs), known=_known_grids(out, options))
    _check_names(tiles, out)
    if not options.dry_run:
        _check_existing(tiles, out, options)
    extras = TileExtras(options.band_files, options.bands, options.align, tiles)
    mosaics = group_mosaics(tiles)
    extras.check_mosaics(mosaics, out / INTERNAL_DIR, out / INTERNAL_DIR / INPUTS_DIR)
    settings, summary.notes = _settings(tiles, options, extras)
    summary.model, summary.zoom = settings["model"], settings.get("zoom", 1.0)
    if options.dry_run:
        return _dry_run(tiles, mosaics, extras, settings, out, options, summary, t0)
    if options.scheduler:  # a wrong address fails here, within the timeout, leaving nothing
        from rsseg.batch.cluster import probe_scheduler, scheduler_address

        probe_scheduler(scheduler_address(options.scheduler), options.connect_timeout)
    _prepare_out_dir(out)  # only now: bad inputs or weights leave no directory behind
    if options.probs:
        (out / CONFIDENCE_DIR).mkdir(exist_ok=True)
    plans = _plan(tiles, mosaics, out, options, settings, extras)
    if options.overwrite:
        _remove_job_state(out)
    db = JobDB.open(out)
    try:
        _run(db, tiles, mosaics, extras, plans, out, options, settings, summary, t0)
    finally:
        db.close()
    return summary


def _run(db: JobDB, tiles, mosaics, extras: TileExtras, plans, out: Path,
         options: BatchOptions, settings: dict, summary: BatchSummary, t0: float) -> None:
    from rsseg.batch.cluster import ClusterStarter

    timings: dict[str, float] = {}
    stems = {t.stem for t in tiles} | RESERVED
    todo = [p for p in plans if options.overwrite or not db.is_done(p.tile.path, p.checksum, out)]
    queued = {id(p) for p in todo}
    summary.skipped = [p.tile.path for p in plans if id(p) not in queued]
    # Workers start (and import torch) on a thread while the driver prepares the run.
    starter = ClusterStarter(options.workers, options.threads, options.scheduler, options.device,
                             options.connect_timeout) if todo else None
    try:
        _remove_partials(out, stems)
        for folder in (PARTS_DIR, INPUTS_DIR):  # what a killed run left
            shutil.rmtree(out / INTERNAL_DIR / folder, ignore_errors=True)
            (out / INTERNAL_DIR / folder).mkdir()
        extras.write_vrts()
        run = {"id": summary.run_id, "started": now(), "pid": os.getpid(),
               # an outside cluster's size is recorded once it is known
               "workers": None if options.scheduler else options.workers,
               "threads": options.threads,
               "scheduler": options.scheduler or "local", "tiles": len(todo)}
        db.save_grids(tiles)
        db.start_run(run, settings, [{"key": p.tile.path, "checksum": p.checksum,
                                      "inputs": p.inputs, "outputs": p.outputs} for p in todo])
        timings["plan"] = round(time.perf_counter() - t0, 3)
        total = len(todo) + (1 if options.vector else 0)
        with Progress(total, "batch", options.progress, unit="tile") as bar:
            cluster = None
            if todo:
                cluster = starter.get()
                db.set_run_workers(summary.run_id, cluster.workers)
                timings["cluster_ready"] = round(time.perf_counter() - t0, 3)
                bar.log(f"rsseg: {cluster.describe()}")
                run_tiles(cluster.client, todo, db, summary, bar, out / INTERNAL_DIR / PARTS_DIR,
                          cluster.workers,
                           _ContextVrts(mosaics, extras))
                timings["tiles_done"] = round(time.perf_counter() - t0, 3)
            write_mosaics(plans, db, summary, out, options, cluster, bar)
            timings["mosaics_done"] = round(time.perf_counter() - t0, 3)
    finally:
        if starter is not None:
            starter.stop()
        _remove_partials(out, stems)
        for folder in (PARTS_DIR, INPUTS_DIR):
            shutil.rmtree(out / INTERNAL_DIR / folder, ignore_errors=True)
    summary.seconds = time.perf_counter() - t0
    timings["closed"] = round(summary.seconds, 3)
    db.finish_run(summary.run_id, timings)


def _dry_run(tiles: list[Tile], mosaics, extras: TileExtras, settings: dict, out: Path,
             options: BatchOptions, summary: BatchSummary, t0: float) -> BatchSummary:
    """Plan as a run would, write nothing, and describe the plan in ``summary.plan``."""
    plans = _plan(tiles, mosaics, out, options, settings, extras)
    db = JobDB.read(out) if out.is_dir() else None
    done, failed_before, per_window = set(), set(), None
    if db is not None:
        try:
            if not options.overwrite:
                done = {p.tile.path for p in plans if db.is_done(p.tile.path, p.checksum, out)}
            failed_before = set(db.tiles("failed"))
            per_window = db.seconds_per_window()
        finally:
            db.close()
    todo = [p for p in plans if p.tile.path not in done]
    lines = _plan_lines(tiles, mosaics, todo, len(done),
                        len(failed_before & {p.tile.path for p in todo}), settings, options, out)
    if per_window:
        from rsseg.batch.status import duration_text

        windows = sum(p.windows for p in todo)
        lines.insert(3, f"plan: about {duration_text(windows * per_window)} of worker time at "
                        f"the {per_window * 1000:.1f} ms per window earlier runs took")
    lines += [f"plan: {note}" for note in summary.notes]  # e.g. what --zoom auto chose
    lines.append(f"plan: planned in {time.perf_counter() - t0:.1f} s; nothing was run "
                 "(--dry-run)")
    summary.plan = lines
    return summary


def _plan_lines(tiles, mosaics, todo, done: int, failed_before: int, settings: dict,
                options: BatchOptions, out: Path) -> list[str]:
    unreadable = [t for t in tiles if not t.ok]
    grids = {(m.tiles[0].crs, m.tiles[0].transform.a, m.tiles[0].transform.e) for m in mosaics}
    largest = max(mosaics, key=lambda m: len(m.tiles))
    vector = options.vector
    lines = [
        f"plan: {len(tiles)} input tile(s), {len(unreadable)} unreadable (they will be "
        "reported as failed)",
        f"plan: {len(mosaics)} mosaic(s) on {len(grids)} grid(s); the largest has "
        f"{len(largest.tiles)} tile(s), {largest.width} x {largest.height} px",
        f"plan: {len(todo)} tile(s) to predict ({failed_before} failed before), {done} already "
        f"done; {sum(p.windows for p in todo)} window(s) of {settings['tile']} px, overlap "
        f"{settings['overlap']}, model {settings['model']}"
        + (f", zoom {settings['zoom']:.3g}" if "zoom" in settings else ""),
        f"plan: outputs in {out}: one class raster per tile" + (" and GeoPackage" if vector else "")
        + ", mosaic.vrt" + (", mosaic.gpkg" if vector else "") + f", {DB_NAME}",
    ]
    state = None if options.resume or options.overwrite else _job_state_file(out)
    if state is not None:
        lines.append(f"plan: {state} records an earlier run: pass --resume or --overwrite")
    lines += [f"plan: unreadable: {t.error}" for t in unreadable[:10]]
    if len(unreadable) > 10:
        lines.append(f"plan: ... and {len(unreadable) - 10} more unreadable")
    return lines


def _remove_partials(out: Path, stems: set[str]) -> None:
    remove_partials(out, stems)
    if (out / CONFIDENCE_DIR).is_dir():
        remove_partials(out / CONFIDENCE_DIR, stems)


def _known_grids(out: Path, options: BatchOptions) -> dict:
    """The input grids an earlier run of this job read (none with --overwrite)."""
    if options.overwrite or not (out / DB_NAME).is_file():
        return {}
    try:
        db = JobDB.read(out)
    except OutputError:
        return {}  # reported when the run opens the database
    try:
        return db.grids()
    except sqlite3.Error:
        return {}
    finally:
        db.close()


def _remove_job_state(out: Path) -> None:
    """--overwrite: the job starts again from nothing (its history included)."""
    for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", LEGACY_NAME):
        try:
            (out / name).unlink()
        except FileNotFoundError:
            pass


class _ContextVrts:
    """Writes and removes the per-tile input VRTs (a mosaic's grid, the tile's context),
    of its pixels and of its per-tile extra band files."""

    def __init__(self, mosaics: list[Mosaic], extras: TileExtras):
        self.mosaics, self.extras = mosaics, extras
        self.masks: dict[int, bool] = {}  # per mosaic: does it need a coverage mask
        self.written: dict[int, list[str]] = {}  # id(plan) -> VRTs to remove

    def write(self, plan: "_Planned") -> None:
        from rsseg.io.vrt import input_mosaic_vrt, needs_mask

        if plan.job.region is None:  # a tile alone is read directly
            return
        mosaic = self.mosaics[plan.tile.mosaic]
        if mosaic.index not in self.masks:
            self.masks[mosaic.index] = needs_mask(mosaic)
        input_mosaic_vrt(plan.job.source, mosaic, plan.context, self.masks[mosaic.index])
        self.written[id(plan)] = [plan.job.source] + self.extras.write_tile_vrts(
            plan.tile, plan.context)

    def remove(self, plan: "_Planned") -> None:
        for path in self.written.pop(id(plan), ()):
            try:
                os.unlink(path)
            except OSError:
                pass


# ---- planning -------------------------------------------------------------------------------

def _check_out_dir(out_dir) -> Path:
    """Checks that create nothing (the directory is made once the inputs are known good)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError("output must be a directory", out)
    check_folder_creatable(out, out)
    return out


def _prepare_out_dir(out_dir) -> Path:
    out = _check_out_dir(out_dir)
    make_folders(out / INTERNAL_DIR)
    if not os.access(out, os.W_OK):
        raise OutputError("output directory is not writable", out)
    return out


def _check_names(tiles: list[Tile], out: Path) -> None:
    """Outputs are named after the tiles: names must be distinct and never an input."""
    seen: dict[str, str] = {}
    out_real = os.path.realpath(out)
    real_dirs: dict[str, str] = {}  # one realpath per input folder, not per tile
    for tile in tiles:
        stem = tile.stem
        if stem in RESERVED:
            raise InputError(f"a tile may not be named {stem!r} (reserved for the batch outputs)",
                             tile.path)
        if stem in seen:
            raise InputError(f"two tiles would write out/{stem}.tif (also {seen[stem]}); "
                             "rename one", tile.path)
        seen[stem] = tile.path
        folder = os.path.dirname(tile.path)
        if folder not in real_dirs:
            real_dirs[folder] = os.path.realpath(folder)
        if real_dirs[folder] == out_real and os.path.basename(tile.path) == f"{stem}.tif":
            raise OutputError("the output directory holds the inputs: the class raster would "
                              "replace its tile; choose another -o", tile.path)


def _settings(tiles: list[Tile], options: BatchOptions, extras: TileExtras):
    """Resolve the model once here (bad names or weights fail before any cluster starts)."""
    from rsseg.predict.load import load_predictor, weights_file
    from rsseg.predict.runners import resolve_batch_size
    from rsseg.predict.settings import AUTO, check_plan, resolve_tiling

    readable = [t for t in tiles if t.ok]
    if not readable:
        raise InputError(f"no input tile can be read; first problem: {tiles[0].error}")
    in_channels = (len(options.bands) if options.bands else readable[0].count) + extras.channels
    # The driver only checks the weights (on the CPU); the workers run the network on
    # options.device (checked up front by the command for a local cluster).
    auto = options.zoom == AUTO
    resolved = load_predictor(options.model, options.weights, channels=in_channels,
                              device="cpu", seed=options.seed, tta=options.tta,
                              zoom=1.0 if auto else options.zoom)
    zoom, zoom_notes = options.zoom, []
    if auto:
        zoom, line = _auto_zoom(readable, resolved.gsd_m)
        zoom_notes.append(line)
    tiling = resolve_tiling(options.tile, options.overlap, resolved.tile_hint)
    tile, overlap = tiling.tile, tiling.overlap
    # --batch-size auto for CPU workers is settled here, by the predictor they will load
    # (1: a CPU job keeps the settings it had when 1 was the default); GPU workers each
    # size it to their own GPU.
    batch_size = options.batch_size
    if options.device == "cpu":
        batch_size = resolve_batch_size(batch_size, resolved, tile, in_channels)
    for t in readable:
        check_plan(t.height, t.width, tiling, t.path)
    weights = options.weights
    if weights not in (None, "random"):
        weights = os.path.abspath(weights)
    checkpoint = weights_file(options.model, weights)
    weights_fp = fingerprint(checkpoint) if checkpoint else ""
    from rsseg import __version__

    settings = {"rsseg": __version__, "model": resolved.model_name, "weights": weights,
                "weights_fingerprint": weights_fp, "seed": options.seed,
                "in_channels": in_channels, "bands": list(options.bands or []),
                "tile": tile, "overlap": overlap, "blend": options.blend,
                "batch_size": batch_size, "device": options.device,
                "vector": vector_options(options) if options.vector else None,
                **extras.settings(), **({"probs": True} if options.probs else {}),
                **({"tta": options.tta} if options.tta != "none" else {}),
                **({"zoom": zoom} if zoom != 1.0 else {})}
    # The checkpoint's own note (e.g. trained on synthetic scenes only) is worth repeating
    # in the summary; random-weights remarks are the user's own choice.
    return settings, zoom_notes + [line for line in resolved.notes if line.startswith("note: ")]


def _auto_zoom(readable: list[Tile], training_gsd_m: float | None) -> tuple[float, str]:
    """``--zoom auto`` for the whole batch (one network per run): the tiles' pixel size
    over the weights' training one; tiles of different pixel sizes are an error."""
    from rsseg.io.scene import pixel_size_m
    from rsseg.predict.zoom import auto_zoom

    firsts: dict[int, Tile] = {}  # the tiles of a mosaic share its grid
    for t in readable:
        firsts.setdefault(t.mosaic, t)
    sizes: dict = {}
    for t in firsts.values():
        size = pixel_size_m(t.crs, t.transform)
        sizes.setdefault(None if size is None else round(size, 9), t.path)
    if len(sizes) > 1:
        (a, path_a), (b, path_b) = list(sizes.items())[:2]
        raise InputError(f"--zoom auto needs one pixel size for the whole batch: {_metres(a)} "
                         f"here, {_metres(b)} in {path_b}; give --zoom a factor, or run each "
                         "pixel size apart", path_a)
    try:
        return auto_zoom(next(iter(sizes)), training_gsd_m)
    except ValueError as exc:
        raise InputError(str(exc), readable[0].path) from None


def _metres(size: float | None) -> str:
    return "not in metres" if size is None else f"{size:g} m"


def _input_vrt(out: Path, stem: str) -> str:
    return os.path.join(out, INTERNAL_DIR, INPUTS_DIR, f"{stem}.vrt")


def _plan(tiles, mosaics, out: Path, options: BatchOptions, settings,
          extras: TileExtras) -> list[_Planned]:
    spec = ModelSpec(settings["model"], settings["weights"], settings["weights_fingerprint"],
                     options.seed, settings["in_channels"], options.device, options.tta,
                     settings.get("zoom", 1.0))
    size, overlap = settings["tile"], settings["overlap"]
    settings_hash = digest(settings)
    fingerprints = _Fingerprints((t.path, t.fingerprint) for t in tiles if t.fingerprint)
    contexts = {}
    for mosaic in mosaics:
        if len(mosaic.tiles) > 1:
            contexts.update(zip(map(id, mosaic.tiles), context_tiles(mosaic, size)))
    plans = []
    for tile in tiles:
        stem = tile.stem
        source, region, context = tile.path, None, [tile]
        if id(tile) in contexts:
            source = _input_vrt(out, stem)
            region = (tile.row, tile.col, tile.height, tile.width)
            context = contexts[id(tile)]
        outputs = {"classes": f"{stem}.tif"}
        if options.vector:
            outputs["vector"] = f"{stem}.gpkg"
        if options.probs:
            outputs["confidence"] = f"{CONFIDENCE_DIR}/{stem}.tif"
        job = TileJob(key=tile.path, source=source, region=region,
                      output=os.path.join(out, outputs["classes"]),
                      vector=os.path.join(out, outputs["vector"]) if options.vector else None,
                      model=spec, bands=options.bands, tile=size, overlap=overlap,
                      blend=options.blend, batch_size=settings["batch_size"],
                      vector_options=vector_options(options),
                      band_files=extras.for_tile(tile), align=options.align,
                      probs=os.path.join(out, outputs["confidence"]) if options.probs else None)
        inputs = {p: fingerprints(p) for p in [t.path for t in context] + extras.files(context)}
        checksum = digest({"settings": settings_hash, "inputs": inputs, "region": region,
                           "outputs": outputs})
        windows = _window_count(tile, mosaics[tile.mosaic] if tile.ok else None, size, overlap)
        plans.append(_Planned(tile, job, checksum, inputs, outputs, windows, context))
    return plans


class _Fingerprints(dict):
    """``size:mtime_ns`` of each file, taken once (a tile is the context of up to 8 others)."""

    def __call__(self, path: str) -> str:
        value = self.get(path)
        if value is None:
            try:
                value = fingerprint(path)
            except OSError:  # a GDAL virtual path (/vsis3/...) has no local stat
                value = "virtual" if is_virtual(path) else "missing"
            self[path] = value
        return value


def _window_count(tile: Tile, mosaic: Mosaic | None, size: int, overlap: int) -> int:
    """Windows the engine runs for ``tile``: those of its mosaic's grid that touch it."""
    from rsseg.tiling.grid import axis_starts

    if mosaic is None:
        return 0
    count = 1
    for start, length, whole in ((tile.row, tile.height, mosaic.height),
                                 (tile.col, tile.width, mosaic.width)):
        starts = _axis_starts_cached(whole, size, overlap, axis_starts)
        window = min(size, whole)
        first = bisect.bisect_right(starts, start - window)  # first window ending after start
        last = bisect.bisect_left(starts, start + length)  # first window starting after the end
        count *= max(last - first, 0)
    return count


_STARTS: dict = {}


def _axis_starts_cached(length: int, size: int, overlap: int, axis_starts) -> list[int]:
    key = (length, size, overlap)
    if key not in _STARTS:
        _STARTS[key] = axis_starts(length, size, overlap)
    return _STARTS[key]


def _check_existing(tiles: list[Tile], out: Path, options: BatchOptions) -> None:
    """Without --resume or --overwrite, an output directory holding a batch is refused."""
    if options.resume or options.overwrite:
        return
    candidates = [out / name for t in tiles
                  for name in (f"{t.stem}.tif", f"{t.stem}.gpkg", f"{CONFIDENCE_DIR}/{t.stem}.tif")]
    state = _job_state_file(out)
    if state is not None:
        candidates.insert(0, state)
    existing = next((p for p in candidates if p.exists()), None)
    if existing is not None:
        raise OutputError("the output directory already holds a batch; pass --resume to finish "
                          "it or --overwrite to redo it", existing)


def _job_state_file(out: Path) -> Path | None:
    """The job database (or old manifest) in ``out`` if it records a finished tile.

    A run that stopped before its first tile (a scheduler that could not be reached,
    Ctrl-C while workers started) or whose tiles all failed (e.g. no GPU on the workers)
    left nothing to protect, and must not make the next run ask for --resume.
    """
    try:
        db = JobDB.read(out) if out.is_dir() else None
    except OutputError:  # unreadable: never overwritten silently
        return out / (DB_NAME if (out / DB_NAME).exists() else LEGACY_NAME)
    if db is None:
        return None
    try:
        return db.path if db.records_tiles() else None
    finally:
        db.close()


def remove_partials(out: Path, stems: set[str]) -> list[Path]:
    """Delete temporary files a killed run left in ``out`` (never a final output).

    Temporary outputs are hidden ``.<stem>.<random>.part...`` files (see
    :mod:`rsseg.atomic`).
    """
    removed = []
    for entry in os.scandir(out):
        name = entry.name
        if not name.startswith(".") or ".part" not in name or not entry.is_file():
            continue
        bare = name.lstrip(".")
        prefixes = {bare[:k] for k in range(len(bare)) if bare[k] == "."}
        if prefixes & stems:
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


# ---- running ---------------------------------------------------------------------------------
