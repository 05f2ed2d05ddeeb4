"""Streaming vectorization of a class raster to a styled GeoPackage.

The raster is read in square blocks. Each block is polygonized on its own
(:mod:`rsseg.vectorize.blocks`, in this process or in worker processes); polygons
that do not continue across a block seam are written at once, the others are
joined with their continuation by :class:`rsseg.vectorize.seams.SeamMerger` after
each row of blocks. The result is the same set of polygons as polygonizing the
whole raster at once, while memory holds a block per worker plus the polygons
crossing the current row of blocks.

``simplify`` and ``min_area`` need every neighbour of a polygon; when either is
asked for, the polygons are collected (vector data only) and cleaned up as one
coverage before writing (see :mod:`rsseg.vectorize.coverage`).
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path

import numpy as np

from rsseg.atomic import atomic_output, check_output_path
from rsseg.classes import NODATA, ClassScheme
from rsseg.errors import InputError
from rsseg.progress import Mode, Progress
from rsseg.io.scene import NoCRSWarning, open_raster
from rsseg.vectorize.blocks import BlockTask, run_blocks
from rsseg.vectorize.seams import Pieces, SeamMerger

DEFAULT_BLOCK_SIZE = 1024
#: Integer types rasterio.features.shapes accepts (class ids must be integers).
CLASS_DTYPES = ("uint8", "uint16", "int16", "int32")


def vectorize_raster(class_raster, output_gpkg, layer: str = "classes", probs=None,
                     simplify: float | None = None, min_area: float | None = None,
                     classes=None, connectivity: int = 4,
                     block_size: int = DEFAULT_BLOCK_SIZE, overwrite: bool = False,
                     progress: Mode = "bar", workers: int = 1, executor=None) -> dict:
    """Polygonize ``class_raster`` into layer ``layer`` of the GeoPackage ``output_gpkg``.

    Parameters
    ----------
    class_raster: single-band integer raster of class ids (nodata 255), e.g. from ``rsseg predict``.
    probs: optional uint8 confidence raster (0-255) on the same grid; adds ``mean_confidence``.
    simplify: coverage simplification tolerance in map units (shared edges stay shared).
    min_area: polygons smaller than this (m²) are merged into their longest-border neighbour.
    classes: class names or ids to keep (others are left out of the output).
    connectivity: 4 (GDAL's default) or 8 pixel connectivity.
    block_size: side of the square processing blocks in pixels.
    workers: processes polygonizing blocks in parallel (1: in this process; 0: automatic,
        see :func:`auto_workers`). The output does not depend on it.
    executor: run the blocks there instead (``concurrent.futures`` executor or
        ``dask.distributed.Client``), ``workers`` at a time; the seams are joined and
        the GeoPackage written here. The output does not depend on it either.

    Returns a summary dict (output, layer, features, per_class counts, blocks, seconds, ...).
    """
    t0 = time.perf_counter()
    _check_arguments(connectivity, block_size, simplify, min_area)
    output = check_output_path(output_gpkg, overwrite)
    # The style sidecar is an output too: never replace someone's .qml without --overwrite.
    check_output_path(qml_sidecar_path(output), overwrite)
    with _open_class_raster(class_raster) as src, _open_probs(probs, src) as conf:
        from rsseg.vectorize.gpkg import GpkgWriter, Measurer, read_class_scheme
        from rsseg.vectorize import qgis_style as qgis_style

        scheme = read_class_scheme(src)
        megapixels = src.width * src.height / 1e6
        keep = _resolve_classes(classes, scheme, class_raster)
        crs_wkt = src.crs.to_wkt() if src.crs is not None else None
        measurer = Measurer(src.transform, crs_wkt)
        post = bool(simplify) or bool(min_area)
        # Dates in the GeoPackage come from the input, not the clock: reruns are byte-identical.
        stamp = qgis_style.gpkg_timestamp(class_raster)
        with atomic_output(output, overwrite=overwrite, suffix=".gpkg") as tmp, \
                qgis_style.gpkg_dates(stamp):
            writer = GpkgWriter(tmp, layer, crs_wkt, scheme, measurer,
                                multi=connectivity == 8, with_confidence=conf is not None)
            collected: list[Pieces] = []

            def emit(pieces: Pieces) -> None:
                if post:
                    collected.append(pieces)
                else:
                    _write(writer, measurer, pieces, conf is not None)

            # Without clean-up, other classes can be masked out already while polygonizing.
            stream_keep = None if post else keep
            if workers == 0:
                workers = auto_workers(src.width, src.height)
            blocks = _stream_blocks(src, conf, emit, connectivity, block_size, stream_keep,
                                    progress, workers, executor)
            extra = {}
            if post:
                extra = _clean_up(Pieces.concat(collected), writer, measurer, simplify,
                                  min_area, keep, conf is not None, progress)
            writer.close()
            qgis_style.embed_style(tmp, layer, scheme, timestamp=stamp)
        sidecar = qgis_style.write_qml_sidecar(output, scheme)
    per_class = {_class_name(scheme, c): n for c, n in sorted(writer.per_class.items())}
    return {"output": str(output), "layer": layer, "style": str(sidecar),
            "features": writer.count, "per_class": per_class, "blocks": blocks,
            "connectivity": connectivity, "block_size": block_size, "workers": workers,
            "megapixels": megapixels,
            "seconds": round(time.perf_counter() - t0, 3), **extra}


def qml_sidecar_path(output) -> Path:
    """Where the QGIS style sidecar of ``output`` goes (``out.gpkg`` -> ``out.qml``)."""
    return Path(output).with_suffix(".qml")


def _check_arguments(connectivity, block_size, simplify, min_area) -> None:
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, not {connectivity}")
    if int(block_size) < 2:
        raise ValueError("block_size must be at least 2 pixels")
    if simplify is not None and simplify < 0:
        raise ValueError("simplify tolerance must not be negative")
    if min_area is not None and min_area < 0:
        raise ValueError("min_area must not be negative")


def _open_class_raster(path):
    src = open_raster(path, "class raster")
    problem = None
    if src.count != 1:
        problem = f"has {src.count} bands; a class raster has exactly one"
    elif src.dtypes[0] not in CLASS_DTYPES:
        problem = (f"band 1 is {src.dtypes[0]}; a class raster holds integer class ids "
                   "(uint8, nodata 255)")
    elif _is_confidence_raster(src):
        problem = ("is a confidence raster (maximum class probability), not a class raster; "
                   "vectorize the class raster and give this one with --probs")
    if problem:
        src.close()
        raise InputError(problem, path)
    if src.crs is None:
        # As predict does: keep the grid. A photo or PNG mask has no geotransform, so the
        # polygons come out in pixel coordinates (x = column, y = row) and areas in pixels.
        grid = "pixel coordinates" if src.transform.is_identity else "its unreferenced coordinates"
        warnings.warn(f"{path}: no CRS; polygons are in {grid} and area_m2/perimeter_m in "
                      "those units (pixels), not metres", NoCRSWarning)
    return src


def _is_confidence_raster(src) -> bool:
    """What ``rsseg predict --probs`` writes (:func:`rsseg.io.cog.confidence_metadata`)."""
    return "CONFIDENCE" in src.tags() or (src.descriptions[0] or "").lower() == "confidence"


def _open_probs(path, classes_src):
    if path is None:
        return contextlib.nullcontext()
    src = open_raster(path, "confidence raster")
    problem = None
    if src.count != 1:
        problem = f"has {src.count} bands; a confidence raster has one (uint8, 0-255)"
    elif src.dtypes[0] != "uint8":
        problem = f"band 1 is {src.dtypes[0]}; confidence must be uint8 (0-255)"
    elif src.crs != classes_src.crs:
        problem = (f"has CRS {src.crs.to_string() if src.crs else 'none'} but the class raster "
                   f"has {classes_src.crs.to_string()}")
    elif (src.width, src.height) != (classes_src.width, classes_src.height):
        problem = (f"is {src.width}x{src.height} pixels but the class raster is "
                   f"{classes_src.width}x{classes_src.height}")
    elif not src.transform.almost_equals(classes_src.transform):
        problem = "is not on the class raster's grid (different geotransform)"
    if problem:
        src.close()
        raise InputError(problem, path)
    return src


def _resolve_classes(classes, scheme: ClassScheme, raster) -> set[int] | None:
    """Class ids to keep from names/ids (list or 'building,car'); None keeps all."""
    if classes is None:
        return None
    if isinstance(classes, str):
        classes = [c for c in classes.split(",") if c.strip()]
    keep = set()
    for c in classes:
        try:
            keep.add(scheme.index(c.strip() if isinstance(c, str) else int(c)))
        except KeyError as exc:
            raise InputError(f"unknown class {c!r}; this raster's classes are: "
                             f"{', '.join(scheme.names)}", raster) from exc
    return keep


def _stream_blocks(src, conf, emit, connectivity: int, block_size: int,
                   keep: set[int] | None, progress: Mode, workers: int, executor=None) -> int:
    """Polygonize block by block; hand complete polygons (pixel coordinates) to ``emit``."""
    width, height = src.width, src.height
    nodata = int(src.nodata) if src.nodata is not None else NODATA
    n_cols = -(-width // block_size)
    n_rows = -(-height // block_size)
    keep = None if keep is None else frozenset(keep)
    tasks = (BlockTask(src.name, None if conf is None else conf.name,
                       (col * block_size, row * block_size, min((col + 1) * block_size, width),
                        min((row + 1) * block_size, height)), nodata, connectivity, keep)
             for row in range(n_rows) for col in range(n_cols))
    merger = SeamMerger(connectivity)
    with Progress(n_rows * n_cols, "vectorize", progress, unit="block") as bar:
        for index, result in enumerate(run_blocks(tasks, workers, executor)):
            emit(result.complete)
            merger.defer(result.deferred, result.keys, result.owner)
            bar.update()
            row, col = divmod(index, n_cols)
            if col == n_cols - 1:  # a band of blocks is complete: join across its seams
                emit(merger.finish_band(last=row == n_rows - 1))
    return n_rows * n_cols


def auto_workers(width: int, height: int) -> int:
    """Worker processes for ``workers=0``.

    One (this process) below 16 Mpx, where starting workers costs more than it
    saves; else the CPUs not already busy (CPU count minus the 1-minute load
    average), between 1 and 4. On a loaded machine extra processes only compete.
    """
    if width * height < 16_000_000:
        return 1
    try:
        busy = os.getloadavg()[0]
    except OSError:  # not available on this platform
        busy = 0.0
    idle = (os.cpu_count() or 1) - busy
    return int(max(1, min(4, idle)))


def _write(writer, measurer, pieces: Pieces, with_confidence: bool) -> None:
    """Transform pixel polygons to map coordinates and queue them for the GeoPackage."""
    import shapely

    if not len(pieces):
        return
    confidence = None
    if with_confidence:
        confidence = pieces.conf_sums / (255.0 * shapely.area(pieces.geoms))
    writer.add(measurer.to_map(pieces.geoms), pieces.class_ids, confidence)


def _clean_up(pieces: Pieces, writer, measurer, simplify, min_area, keep,
              with_confidence: bool, progress: Mode) -> dict:
    """Min-area merging and coverage simplification on the collected coverage, then write."""
    import shapely

    from rsseg.vectorize.coverage import merge_small, simplify_coverage

    extra = {}
    steps = 1 + bool(min_area) + bool(simplify)
    with Progress(steps, "vectorize clean-up", progress, unit="step") as bar:
        pixel_area = shapely.area(pieces.geoms)
        if min_area and len(pieces):
            area_m2, _ = measurer.measure(measurer.to_map(pieces.geoms))
            before = len(pieces)
            pieces, isolated = merge_small(pieces, area_m2, float(min_area))
            pixel_area = shapely.area(pieces.geoms)
            extra.update(merged_small=before - len(pieces) - isolated, removed_isolated=isolated)
            bar.update()
        map_geoms = measurer.to_map(pieces.geoms)
        if simplify:
            map_geoms = simplify_coverage(map_geoms, float(simplify))
            bar.update()
        confidence = pieces.conf_sums / (255.0 * pixel_area) if with_confidence else None
        selected = ~shapely.is_empty(map_geoms)
        if keep is not None:
            selected &= np.isin(pieces.class_ids, list(keep))
        writer.add(map_geoms[selected], pieces.class_ids[selected],
                   None if confidence is None else confidence[selected])
        bar.update()
    return extra


def _class_name(scheme: ClassScheme, class_id: int) -> str:
    return scheme.names[class_id] if 0 <= class_id < scheme.num_classes else f"class_{class_id}"
