"""Keep every worker busy when a job has fewer tiles than workers: row bands of big tiles.

One task per tile leaves workers idle when there are fewer tiles to do than
workers (one huge orthophoto on a 2-worker cluster). Such tiles are then cut
into row bands, each predicted by its own task as a region of the tile's mosaic
(:func:`rsseg.predict_scene` with ``PredictSettings(region=...)``, so a band's pixels are the
whole tile's prediction cut to the band), and a last task on a worker stitches
the bands into the tile's COG (and polygons). The result is the same file, pixel
for pixel, as one task would write.

A band is at least :data:`MIN_BAND_WINDOWS` windows tall: the windows that
straddle a band border are run by both bands, so thin bands would cost more
than the idle worker they save (with 4 windows per band the extra work is at
most a sixth, against a speed-up of up to the number of bands).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from pathlib import Path

MIN_BAND_WINDOWS = 4
PARTS_DIR = "parts"  # under OUT_DIR/.rsseg


def band_count(tiles_to_do: int, workers: int, height: int, window: int) -> int:
    """Bands per tile: enough for every worker to get one, none thinner than the minimum."""
    if tiles_to_do >= workers or tiles_to_do == 0:
        return 1
    wanted = math.ceil(workers / tiles_to_do)
    return max(1, min(wanted, height // (MIN_BAND_WINDOWS * window)))


def split_job(job, bands: int, tile_height: int, tile_width: int, parts_dir: Path,
              attempt: int) -> list:
    """``bands`` TileJobs covering ``job``'s tile in row bands, each writing a part file."""
    # A tile standing alone is read from its own file: its region is the whole file.
    row0, col0, height, width = job.region or (0, 0, tile_height, tile_width)
    stem = Path(job.output).stem
    edges = [round(k * height / bands) for k in range(bands + 1)]
    return [dataclasses.replace(
        job, region=(row0 + top, col0, bottom - top, width), vector=None,
        output=str(parts_dir / f"{stem}.{attempt}.band{k}.tif"),
        probs=str(parts_dir / f"{stem}.{attempt}.band{k}.conf.tif") if job.probs else None)
        for k, (top, bottom) in enumerate(zip(edges, edges[1:]))]


def merge_parts(job, parts: list, *results: dict) -> dict:
    """Stitch the band files of ``parts`` into ``job.output`` (a COG), polygonize, clean up.

    Runs on a worker after every band task finished (``results`` are theirs). A
    failure comes back as an :class:`rsseg.errors.RssegError` naming the tile.
    """
    from rsseg.batch.worker import describe_error
    from rsseg.errors import RssegError

    try:
        _merge(job, parts)
    except Exception as exc:  # noqa: BLE001 - reported per tile, the job goes on
        message = f"{job.key}: {describe_error(exc)}"
    else:
        return merged_result(job, results)
    raise RssegError(message)  # outside the handler: GDAL's chained errors do not pickle


def _merge(job, parts: list) -> None:
    from rsseg.classes import NODATA
    from rsseg.io.cog import class_metadata, confidence_metadata, read_classes
    from rsseg.predict.sinks import CONFIDENCE_NODATA

    paths = [p.output for p in parts] + [p.probs for p in parts if p.probs]
    try:
        classes = read_classes(parts[0].output)
        meta = class_metadata(classes) if classes else {
            "description": "class", "colormap": None, "tags": {}, "band_tags": {}}
        _stitch(parts, [p.output for p in parts], job.output, meta, NODATA, "mode")
        if job.probs:
            _stitch(parts, [p.probs for p in parts], job.probs, confidence_metadata(),
                    CONFIDENCE_NODATA, "average")
        if job.vector:
            from rsseg.vectorize.streaming import vectorize_raster

            vectorize_raster(job.output, job.vector, probs=job.probs, overwrite=True,
                             progress="off", **job.vector_options)
    finally:
        for path in paths:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _stitch(parts: list, paths: list[str], output: str, meta: dict, nodata: int,
            resampling: str) -> None:
    """The band files ``paths`` (one per part, top to bottom) as one COG at ``output``."""
    import rasterio

    from rsseg.atomic import atomic_output
    from rsseg.io.cog import finish_cog
    from rsseg.io.vrt import VrtBand, VrtSource, write_mosaic_vrt

    with rasterio.open(paths[0]) as first:
        crs, transform, width = first.crs, first.transform, first.width
    top = parts[0].region[0]
    sources = [VrtSource(path, 0, p.region[0] - top, p.region[3], p.region[2])
               for p, path in zip(parts, paths)]
    height = sum(p.region[2] for p in parts)
    band = VrtBand("uint8", nodata, meta["description"], meta["colormap"], meta["band_tags"])
    vrt = Path(paths[0]).with_suffix(".vrt")
    try:
        write_mosaic_vrt(vrt, sources, width, height, crs, transform, [band], tags=meta["tags"])
        with atomic_output(output, overwrite=True) as tmp:
            finish_cog(vrt, tmp, resampling=resampling)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(vrt)


def merged_result(job, results) -> dict:
    """The job database row of a tile run as bands (see rsseg.batch.worker.run_tile)."""
    # seconds: worker time spent on the tile, all bands together (as for a tile in one task)
    return {"key": job.key, "seconds": round(sum(r["seconds"] for r in results), 3),
            "forward_seconds": round(sum(r["forward_seconds"] for r in results), 3),
            "windows": sum(r["windows"] for r in results), "pid": results[0]["pid"],
            "worker": results[0]["worker"], "threads": results[0]["threads"],
            "model_loads": max(r["model_loads"] for r in results),
            "bands": [{"pid": r["pid"], "worker": r["worker"], "seconds": r["seconds"],
                       "windows": r["windows"]} for r in results]}
