"""``rsseg batch``: many tiles (a city mosaic) on a Dask cluster, resumable, seamless.

The driver (this module, in the ``rsseg batch`` process) plans the job, keeps
the manifest and gathers results; Dask workers do the work, one tile per task
(:func:`rsseg.batch.worker.run_tile`), reading their input and writing their
outputs themselves, so only paths and small dicts travel through the scheduler.

Plan:

1. resolve the inputs (:mod:`rsseg.batch.inputs`) and group touching tiles on
   one pixel grid into mosaics, each read through a VRT of its tiles
   (``out/.rsseg/inputs-<k>.vrt``); a tile is predicted as a *region* of its
   mosaic (:func:`rsseg.predict_scene` with ``PredictSettings(region=...)``), so its border
   windows see the neighbours and the result equals predicting the whole mosaic;
2. skip the tiles the manifest records as done from the same inputs and
   settings (``--resume``);
3. run the others on the cluster; a failed tile is retried once, then recorded
   as failed with its error while the rest go on;
4. write ``out/mosaic.vrt`` over all class rasters and, with ``--vector``,
   ``out/mosaic.gpkg`` with polygons dissolved across tile borders.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from rsseg.batch.bandfiles import TileExtras
from rsseg.batch.inputs import Tile, aligned, context_tiles, group_mosaics, layout, open_tiles, resolve_inputs
from rsseg.batch.manifest import Manifest, digest, fingerprint, now
from rsseg.batch.split import PARTS_DIR, band_count, merge_parts, split_job
from rsseg.batch.worker import ModelSpec, TileJob
from rsseg.atomic import check_folder_creatable, make_folders
from rsseg.errors import InputError, OutputError
from rsseg.progress import Progress

RESERVED = {"mosaic", "manifest"}
INTERNAL_DIR = ".rsseg"
CONFIDENCE_DIR = "confidence"  # --probs: out/confidence/<stem>.tif and out/confidence.vrt
MAX_ATTEMPTS = 2  # a failing tile is retried once


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
    batch_size: int = 1
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

    def lines(self) -> list[str]:
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


def run_batch(inputs: str, out_dir, options: BatchOptions) -> BatchSummary:
    """Run a batch job; returns what was done, skipped and what failed (and why)."""
    from rsseg.batch.cluster import ClusterStarter

    t0 = time.perf_counter()
    out = _check_out_dir(out_dir)
    summary = BatchSummary(run_id=uuid.uuid4().hex[:12])
    timings: dict[str, float] = {}
    tiles = open_tiles(resolve_inputs(inputs))
    _check_names(tiles, out)
    _check_existing(tiles, out, options)
    extras = TileExtras(options.band_files, options.bands, options.align, tiles)
    stems = {t.stem for t in tiles} | RESERVED
    mosaics = group_mosaics(tiles)
    extras.check_mosaics(mosaics, out / INTERNAL_DIR)
    settings, summary.notes = _settings(tiles, options, extras)
    summary.model = settings["model"]
    if options.scheduler:  # a wrong address fails here, within the timeout, leaving nothing
        from rsseg.batch.cluster import probe_scheduler, scheduler_address

        probe_scheduler(scheduler_address(options.scheduler), options.connect_timeout)
    _prepare_out_dir(out)  # only now: bad inputs or weights leave no directory behind
    if options.probs:
        (out / CONFIDENCE_DIR).mkdir(exist_ok=True)
    plans = _plan(tiles, mosaics, out, options, settings, extras)
    manifest = Manifest.load(out, settings)
    todo = [p for p in plans
            if options.overwrite or not manifest.is_done(p.tile.path, p.checksum, out)]
    queued = {id(p) for p in todo}
    summary.skipped = [p.tile.path for p in plans if id(p) not in queued]
    # Workers start (and import torch) on a thread while the driver prepares the run.
    starter = ClusterStarter(options.workers, options.threads, options.scheduler, options.device,
                             options.connect_timeout) if todo else None
    try:
        _remove_partials(out, stems)
        shutil.rmtree(out / INTERNAL_DIR / PARTS_DIR, ignore_errors=True)  # a killed run's
        (out / INTERNAL_DIR / PARTS_DIR).mkdir()
        _write_input_vrts(mosaics, out)
        extras.write_vrts()
        run = {"id": summary.run_id, "started": now(), "pid": os.getpid(),
               "workers": options.workers, "threads": options.threads,
               "scheduler": options.scheduler or "local", "tiles": len(todo),
               "timings": timings}
        manifest.start_run(run)
        timings["plan"] = round(time.perf_counter() - t0, 3)
        total = len(todo) + (1 if options.vector else 0)
        with Progress(total, "batch", options.progress, unit="tile") as bar:
            cluster = None
            if todo:
                cluster = starter.get()
                timings["cluster_ready"] = round(time.perf_counter() - t0, 3)
                bar.log(f"rsseg: {cluster.describe()}")
                _run_tiles(cluster.client, todo, manifest, summary, bar, out, cluster.workers)
                timings["tiles_done"] = round(time.perf_counter() - t0, 3)
            _write_mosaics(plans, manifest, summary, out, options, cluster, bar)
            timings["mosaics_done"] = round(time.perf_counter() - t0, 3)
    finally:
        if starter is not None:
            starter.stop()
        _remove_partials(out, stems)
        shutil.rmtree(out / INTERNAL_DIR / PARTS_DIR, ignore_errors=True)
    summary.seconds = time.perf_counter() - t0
    timings["closed"] = round(summary.seconds, 3)
    manifest.save()
    return summary


def _remove_partials(out: Path, stems: set[str]) -> None:
    remove_partials(out, stems)
    if (out / CONFIDENCE_DIR).is_dir():
        remove_partials(out / CONFIDENCE_DIR, stems)


def _write_input_vrts(mosaics, out: Path) -> None:
    from rsseg.io.vrt import input_mosaic_vrt

    for mosaic in mosaics:
        if len(mosaic.tiles) > 1:
            input_mosaic_vrt(_input_vrt(out, mosaic.index), mosaic)


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
    for tile in tiles:
        stem = tile.stem
        if stem in RESERVED:
            raise InputError(f"a tile may not be named {stem!r} (reserved for the batch outputs)",
                             tile.path)
        if stem in seen:
            raise InputError(f"two tiles would write out/{stem}.tif (also {seen[stem]}); "
                             "rename one", tile.path)
        seen[stem] = tile.path
        if (out / f"{stem}.tif").resolve() == Path(tile.path).resolve():
            raise OutputError("the output directory holds the inputs: the class raster would "
                              "replace its tile; choose another -o", tile.path)


def _settings(tiles: list[Tile], options: BatchOptions, extras: TileExtras):
    """Resolve the model once here (bad names or weights fail before any cluster starts)."""
    from rsseg.predict.load import load_predictor, weights_file
    from rsseg.predict.settings import check_plan, resolve_tiling

    readable = [t for t in tiles if t.ok]
    if not readable:
        raise InputError(f"no input tile can be read; first problem: {tiles[0].error}")
    in_channels = (len(options.bands) if options.bands else readable[0].count) + extras.channels
    # The driver only checks the weights (on the CPU); the workers run the network on
    # options.device (checked up front by the command for a local cluster).
    resolved = load_predictor(options.model, options.weights, channels=in_channels,
                              device="cpu", seed=options.seed)
    tiling = resolve_tiling(options.tile, options.overlap, resolved.tile_hint)
    tile, overlap = tiling.tile, tiling.overlap
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
                "batch_size": options.batch_size, "device": options.device,
                "vector": _vector_options(options) if options.vector else None,
                **extras.settings(), **({"probs": True} if options.probs else {})}
    # The checkpoint's own note (e.g. trained on synthetic scenes only) is worth repeating
    # in the summary; random-weights remarks are the user's own choice.
    return settings, [line for line in resolved.notes if line.startswith("note: ")]


def _vector_options(options: BatchOptions) -> dict:
    return {"simplify": options.simplify, "min_area": options.min_area}


def _input_vrt(out: Path, index: int) -> Path:
    return out / INTERNAL_DIR / f"inputs-{index}.vrt"


def _plan(tiles, mosaics, out: Path, options: BatchOptions, settings,
          extras: TileExtras) -> list[_Planned]:
    spec = ModelSpec(settings["model"], settings["weights"], settings["weights_fingerprint"],
                     options.seed, settings["in_channels"], options.device)
    plans = []
    for tile in tiles:
        source, region, context = tile.path, None, [tile]
        if tile.ok:
            mosaic = mosaics[tile.mosaic]
            if len(mosaic.tiles) > 1:
                source = str(_input_vrt(out, mosaic.index))
                region = (tile.row, tile.col, tile.height, tile.width)
                context = context_tiles(tile, mosaic, settings["tile"])
        outputs = {"classes": f"{tile.stem}.tif"}
        if options.vector:
            outputs["vector"] = f"{tile.stem}.gpkg"
        if options.probs:
            outputs["confidence"] = f"{CONFIDENCE_DIR}/{tile.stem}.tif"
        job = TileJob(key=tile.path, source=source, region=region,
                      output=str(out / outputs["classes"]),
                      vector=str(out / outputs["vector"]) if options.vector else None,
                      model=spec, bands=options.bands, tile=settings["tile"],
                      overlap=settings["overlap"], blend=options.blend,
                      batch_size=options.batch_size,
                      vector_options=_vector_options(options),
                      band_files=extras.for_tile(tile), align=options.align,
                      probs=str(out / outputs["confidence"]) if options.probs else None)
        inputs = {p: _safe_fingerprint(p) for p in [t.path for t in context] + extras.files(context)}
        checksum = digest({"settings": digest(settings), "inputs": inputs, "region": region,
                           "outputs": outputs})
        plans.append(_Planned(tile, job, checksum, inputs, outputs))
    return plans


def _safe_fingerprint(path: str) -> str:
    try:
        return fingerprint(path)
    except OSError:
        return "missing"


def _check_existing(tiles: list[Tile], out: Path, options: BatchOptions) -> None:
    """Without --resume or --overwrite, an output directory holding a batch is refused."""
    if options.resume or options.overwrite:
        return
    from rsseg.batch.manifest import NAME

    candidates = [out / name for t in tiles
                  for name in (f"{t.stem}.tif", f"{t.stem}.gpkg", f"{CONFIDENCE_DIR}/{t.stem}.tif")]
    if _records_tiles(out / NAME):
        candidates.insert(0, out / NAME)
    existing = [p for p in candidates if p.exists()]
    if existing:
        raise OutputError("the output directory already holds a batch; pass --resume to finish "
                          "it or --overwrite to redo it", existing[0])


def _records_tiles(manifest: Path) -> bool:
    """Does ``manifest`` record any finished tile? A run that stopped before its first
    tile (a scheduler that could not be reached, Ctrl-C while workers started) or whose
    tiles all failed (e.g. no GPU on the workers) left nothing to protect, and must not
    make the next run ask for --resume."""
    import json

    if not manifest.is_file():
        return False
    try:
        tiles = json.loads(manifest.read_text(encoding="utf-8")).get("tiles") or {}
        return any(entry.get("status") == "done" for entry in tiles.values())
    except (OSError, ValueError, AttributeError):
        return True  # unreadable: let Manifest.load report it, never overwrite it silently


def remove_partials(out: Path, stems: set[str]) -> list[Path]:
    """Delete temporary files a killed run left in ``out`` (never a final output).

    Temporary outputs are hidden ``.<stem>.<random>.part...`` files (see
    :mod:`rsseg.atomic`), the manifest's ``.manifest.json.<pid>.part``.
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

def _run_tiles(client, todo: list[_Planned], manifest: Manifest, summary: BatchSummary, bar,
               out: Path, workers: int) -> None:
    """Submit every tile, gather results as they finish, retry failures once.

    With fewer tiles than workers, big tiles run as row bands on several workers
    (:mod:`rsseg.batch.split`).
    """
    from distributed import as_completed

    attempts = {p.tile.path: 1 for p in todo}
    by_key = {p.tile.path: p for p in todo}
    bands = {p.tile.path: band_count(len(todo), workers, p.tile.height, p.job.tile)
             for p in todo}
    submit = _Submitter(client, summary.run_id, out / INTERNAL_DIR / PARTS_DIR)
    futures = {}
    for p in todo:
        futures[submit(p, 1, bands[p.tile.path])] = p.tile.path
    pending = as_completed(list(futures))
    try:
        for future in pending:
            key = futures.pop(future)
            plan = by_key[key]
            if future.status == "finished":
                result = future.result()
                manifest.record(key, _done_entry(plan, result, attempts[key], summary.run_id))
                summary.done.append(key)
                bar.update(1)
                continue
            error = _error_text(future)
            if attempts[key] < MAX_ATTEMPTS:
                attempts[key] += 1
                bar.log(f"rsseg: retrying {key}: {error}")
                retry = submit(plan, attempts[key], bands[key])
                futures[retry] = key
                pending.add(retry)
                continue
            manifest.record(key, {"status": "failed", "checksum": plan.checksum,
                                  "inputs": plan.inputs, "outputs": {}, "error": error,
                                  "run_id": summary.run_id, "finished": now(),
                                  "attempts": attempts[key]})
            summary.failed[key] = error
            bar.update(1)
    finally:
        if futures:  # interrupted: stop what is still queued or running
            client.cancel(list(futures) + submit.band_futures, force=True)


class _Submitter:
    """Submits a tile as one task, or as band tasks and the task that stitches them."""

    def __init__(self, client, run_id: str, parts_dir: Path):
        self.client, self.run_id, self.parts_dir = client, run_id, parts_dir
        self.band_futures: list = []

    def __call__(self, plan: _Planned, attempt: int, bands: int):
        from rsseg.batch.worker import run_tile

        key = f"rsseg-tile-{plan.tile.stem}-{self.run_id}-{attempt}"
        if bands <= 1:
            return self.client.submit(run_tile, plan.job, key=key, pure=False)
        parts = split_job(plan.job, bands, plan.tile.height, plan.tile.width, self.parts_dir,
                          attempt)
        futures = [self.client.submit(run_tile, part, key=f"{key}-band{k}", pure=False)
                   for k, part in enumerate(parts)]
        self.band_futures.extend(futures)
        # A band's failure is the stitching task's failure: the tile is retried whole.
        return self.client.submit(merge_parts, plan.job, parts, *futures, key=key, pure=False)


def _error_text(future) -> str:
    try:
        exc = future.exception()
    except Exception as outer:  # noqa: BLE001 - e.g. the future was cancelled
        exc = outer
    from rsseg.errors import RssegError

    text = " ".join(str(exc).split())
    if isinstance(exc, RssegError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _done_entry(plan: _Planned, result: dict, attempts: int, run_id: str) -> dict:
    return {"status": "done", "checksum": plan.checksum, "inputs": plan.inputs,
            "outputs": plan.outputs, "run_id": run_id, "finished": now(),
            "seconds": result["seconds"], "forward_seconds": result["forward_seconds"],
            "windows": result["windows"], "attempts": attempts, "worker": result["worker"],
            "pid": result["pid"], "threads": result["threads"],
            "model_loads": result["model_loads"],
            **({"bands": result["bands"]} if "bands" in result else {})}


# ---- mosaics ---------------------------------------------------------------------------------

def _write_mosaics(plans, manifest: Manifest, summary: BatchSummary, out: Path,
                   options: BatchOptions, cluster, bar) -> None:
    """``mosaic.vrt`` over every finished class raster, and the merged GeoPackage."""
    vector_opts = _vector_options(options)
    done = [p for p in plans if manifest.is_done(p.tile.path, p.checksum, out)]
    if not done:
        return
    base = done[0].tile
    members = [p for p in done if aligned(base, p.tile)]
    for p in done:
        if p not in members:
            bar.log(f"rsseg: warning: {p.tile.path} is on another grid than {base.path}; "
                    "its class raster is left out of mosaic.vrt")
    checksum = digest({"tiles": sorted((p.tile.path, p.checksum) for p in members),
                       "vector": vector_opts if options.vector else None})
    previous = manifest.data.get("mosaic", {})
    vrt, gpkg, conf = out / "mosaic.vrt", out / "mosaic.gpkg", out / f"{CONFIDENCE_DIR}.vrt"
    up_to_date = previous.get("checksum") == checksum and vrt.is_file() and (
        not options.vector or gpkg.is_file()) and (not options.probs or conf.is_file())
    summary.mosaic = vrt
    summary.vector = gpkg if options.vector else None
    if up_to_date:
        if options.vector:
            bar.update(1)
        return
    _class_vrt(vrt, [p.tile for p in members], out)
    if options.probs:
        _confidence_vrt(conf, [p.tile for p in members], out)
        vector_opts = dict(vector_opts, probs=str(conf))
    if options.vector:
        from rsseg.batch.worker import vectorize_mosaic

        if cluster is not None:
            cluster.client.submit(vectorize_mosaic, str(vrt), str(gpkg), vector_opts,
                                  pure=False).result()
        else:
            vectorize_mosaic(str(vrt), str(gpkg), vector_opts)
        bar.update(1)
    manifest.data["mosaic"] = {"vrt": vrt.name, "vector": gpkg.name if options.vector else None,
                               "confidence": conf.name if options.probs else None,
                               "tiles": len(members), "checksum": checksum,
                               "run_id": summary.run_id, "finished": now()}
    manifest.save()


def _confidence_vrt(path: Path, tiles: list[Tile], out: Path) -> None:
    from rsseg.io.cog import confidence_metadata
    from rsseg.io.vrt import VrtBand, VrtSource, write_mosaic_vrt
    from rsseg.predict.sinks import CONFIDENCE_NODATA

    offsets, width, height, transform = layout(tiles)
    sources = [VrtSource(str(out / CONFIDENCE_DIR / f"{t.stem}.tif"), col, row, t.width, t.height)
               for t, (col, row) in zip(tiles, offsets)]
    meta = confidence_metadata()
    band = VrtBand("uint8", CONFIDENCE_NODATA, meta["description"], None, meta["band_tags"])
    write_mosaic_vrt(path, sources, width, height, tiles[0].crs, transform, [band],
                     tags=meta["tags"], relative=True)


def _class_vrt(path: Path, tiles: list[Tile], out: Path) -> None:
    from rsseg.io.vrt import VrtBand, VrtSource, write_mosaic_vrt
    from rsseg.classes import NODATA
    from rsseg.io.cog import class_metadata, read_classes

    offsets, width, height, transform = layout(tiles)
    sources = [VrtSource(str(out / f"{t.stem}.tif"), col, row, t.width, t.height)
               for t, (col, row) in zip(tiles, offsets)]
    classes = read_classes(sources[0].path)
    meta = class_metadata(classes) if classes else {"description": "class", "colormap": None,
                                                    "tags": {}, "band_tags": {}}
    band = VrtBand("uint8", NODATA, meta["description"], meta["colormap"], meta["band_tags"])
    write_mosaic_vrt(path, sources, width, height, tiles[0].crs, transform, [band],
                     tags=meta["tags"], relative=True)
