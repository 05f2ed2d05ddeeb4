"""Polygonize one block of a class raster and find its links across block seams.

A block task reads its window plus a one-pixel halo, polygonizes it in pixel
coordinates and reports which polygons hold a *link* (a same-class pixel pair
facing each other across an interior seam). Tasks are independent, so they run
in the calling process or in a pool of worker processes; the results are
consumed in row-major order by :func:`rsseg.vectorize.streaming._stream_blocks`.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from rsseg.vectorize.seams import Pieces, link_keys


@dataclass(frozen=True)
class BlockTask:
    """Everything a worker needs to process one block (picklable)."""

    class_path: str
    probs_path: str | None
    bounds: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels
    nodata: int
    connectivity: int
    keep: frozenset[int] | None


@dataclass
class BlockResult:
    """Complete polygons, and continuing ones with their link keys (``owner`` indexes ``deferred``)."""

    complete: Pieces
    deferred: Pieces
    keys: np.ndarray
    owner: np.ndarray


def run_block(task: BlockTask) -> BlockResult:
    """Read, polygonize and split one block (opens its own datasets: safe in any process).

    Datasets are opened per block on purpose: GDAL keeps every decoded tile of an
    open dataset in its block cache (up to 5 % of RAM), which would otherwise grow
    with the scene.
    """
    import rasterio
    from rasterio.windows import Window

    x0, y0, x1, y1 = task.bounds
    with rasterio.open(task.class_path) as src:
        width, height = src.width, src.height
        hx0, hy0 = max(x0 - 1, 0), max(y0 - 1, 0)  # one pixel of halo across each seam
        hx1, hy1 = min(x1 + 1, width), min(y1 + 1, height)
        padded = src.read(1, window=Window(hx0, hy0, hx1 - hx0, hy1 - hy0))
    core = (slice(y0 - hy0, y1 - hy0), slice(x0 - hx0, x1 - hx0))
    probs = None
    if task.probs_path is not None:
        with rasterio.open(task.probs_path) as conf:
            probs = conf.read(1, window=Window(x0, y0, x1 - x0, y1 - y0))
    pieces = _polygonize_block(padded[core], probs, x0, y0, task.nodata, task.connectivity,
                               task.keep)
    empty = np.empty(0, dtype=np.int64)
    if not len(pieces):
        return BlockResult(pieces, Pieces(), empty, empty)
    rows_in, cols_in, rows_out, cols_out = seam_links(padded, core, x0, y0, task.connectivity)
    owner = piece_of_pixels(pieces.geoms, rows_in, cols_in)
    held = owner >= 0  # pairs of nodata/masked pixels have no polygon
    keys = link_keys(rows_in[held], cols_in[held], rows_out[held], cols_out[held], width)
    # A corner pair is seen from two edges of the block; count each link once per side.
    keys, first = np.unique(keys, return_index=True)
    owner = owner[held][first]
    continues = np.zeros(len(pieces), dtype=bool)
    continues[owner] = True
    renumber = np.cumsum(continues) - 1
    return BlockResult(pieces.select(~continues), pieces.select(continues), keys,
                       renumber[owner])


def run_blocks(tasks, workers: int, executor=None):
    """Yield :func:`run_block` results in task order, in-process or from ``workers`` processes.

    ``executor`` (optional): where the blocks run instead, anything with
    ``submit(fn, task)`` returning futures (a ``concurrent.futures`` executor or a
    ``dask.distributed.Client``, so that ``rsseg batch`` spreads a mosaic's blocks
    over its cluster); ``workers`` is then how many it runs at once.
    At most ``2 * workers`` tasks are in flight, so finished-but-unconsumed results
    (and memory) stay bounded however many blocks there are.
    """
    if executor is not None:
        yield from _bounded(executor, tasks, max(1, workers))
        return
    if workers <= 1:
        for task in tasks:
            yield run_block(task)
        return
    # "spawn": workers start clean instead of inheriting GDAL state by fork.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from _bounded(pool, tasks, workers)


def _bounded(executor, tasks, workers: int):
    pending: deque = deque()
    try:
        for task in tasks:
            pending.append(executor.submit(run_block, task))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def _polygonize_block(classes: np.ndarray, probs: np.ndarray | None, x0: int, y0: int,
                      nodata: int, connectivity: int, keep: set[int] | None
                      ) -> Pieces:
    """Polygons of one block in pixel coordinates, with per-polygon confidence sums."""
    import shapely
    from affine import Affine
    from rasterio.features import rasterize, shapes

    mask = classes != nodata
    if keep is not None:
        mask &= np.isin(classes, list(keep))
    if not mask.any():
        return Pieces()
    to_pixels = Affine.translation(x0, y0)
    features = list(shapes(classes, mask=mask, connectivity=connectivity, transform=to_pixels))
    geoms, values = polygons_from_shapes(features)
    if connectivity == 8:
        # 8-connected regions come back as rings touching themselves at corners; the
        # valid form of such a region is a MultiPolygon of its edge-connected parts.
        invalid = ~shapely.is_valid(geoms)
        if invalid.any():
            geoms[invalid] = shapely.make_valid(geoms[invalid], method="structure")
    sums = np.zeros(len(geoms))
    if probs is not None:
        # rasterio converts GeoJSON dicts faster than shapely objects.
        ids = rasterize(((f[0], i) for i, f in enumerate(features, 1)), out_shape=classes.shape,
                        transform=to_pixels, fill=0, dtype="int32")
        sums = np.bincount(ids.ravel(), weights=probs.ravel().astype(np.float64),
                           minlength=len(geoms) + 1)[1:]
    return Pieces(geoms, values, sums)


def polygons_from_shapes(features) -> tuple[np.ndarray, np.ndarray]:
    """Shapely polygons and values from ``rasterio.features.shapes`` output, built in bulk.

    Building each polygon from its GeoJSON dict is dominated by per-vertex Python
    work; gathering every ring into one coordinate array and letting shapely build
    rings and polygons vectorized is several times faster.
    """
    import shapely

    points: list = []  # (x, y) tuples of every ring, flattened once below
    ring_sizes: list[int] = []
    rings_per_polygon: list[int] = []
    values: list = []
    for geom, value in features:
        rings = geom["coordinates"]
        for ring in rings:
            points.extend(ring)
            ring_sizes.append(len(ring))
        rings_per_polygon.append(len(rings))
        values.append(value)
    if not values:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
    coords = np.fromiter(itertools.chain.from_iterable(points), dtype=np.float64,
                         count=2 * len(points)).reshape(-1, 2)
    rings = shapely.linearrings(coords, indices=np.repeat(np.arange(len(ring_sizes)), ring_sizes))
    polys = shapely.polygons(rings, indices=np.repeat(np.arange(len(values)), rings_per_polygon))
    return np.asarray(polys, dtype=object), np.asarray(values, dtype=np.int64)


def piece_of_pixels(geoms: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Index of the polygon (pixel coordinates) holding each pixel centre; -1 if none."""
    import shapely

    if not len(rows):
        return np.full(0, -1, dtype=np.int64)
    # One point per distinct pixel (with 8-connectivity a pixel has up to three links).
    pixel = rows.astype(np.int64) * (int(cols.max()) + 1) + cols
    unique, first, inverse = np.unique(pixel, return_index=True, return_inverse=True)
    centres = np.column_stack([cols[first] + 0.5, rows[first] + 0.5])
    # Query polygons against a tree of the points so that each polygon is prepared once.
    tree = shapely.STRtree(shapely.points(centres))
    poly, point = tree.query(geoms, predicate="contains")
    owner = np.full(len(unique), -1, dtype=np.int64)
    owner[point] = poly
    return owner[inverse.ravel()]


def seam_links(padded: np.ndarray, core: tuple[slice, slice], x0: int, y0: int,
               connectivity: int) -> tuple[np.ndarray, ...]:
    """Pixel pairs of the same value facing each other across the block's interior seams.

    ``padded`` is the block with a one-pixel halo where a neighbouring block exists;
    ``core`` locates the block in it and (x0, y0) is the block's origin in the raster.
    With 8-connectivity diagonal pairs count too, including the corner pixel of a
    diagonal block. Returns global (rows_in, cols_in, rows_out, cols_out); pairs of
    nodata or masked classes are filtered out later (no polygon holds them).
    """
    ys, xs = core
    block = padded[core]
    h, w = block.shape
    oy, ox = y0 - ys.start, x0 - xs.start  # padded index -> global pixel
    shifts = (0,) if connectivity == 4 else (-1, 0, 1)
    out = []
    sides = []
    if xs.start > 0:
        sides.append((block[:, 0], padded[:, xs.start - 1], ys.start, True, 0, xs.start - 1))
    if xs.stop < padded.shape[1]:
        sides.append((block[:, -1], padded[:, xs.stop], ys.start, True, w - 1, xs.stop))
    if ys.start > 0:
        sides.append((block[0, :], padded[ys.start - 1, :], xs.start, False, 0, ys.start - 1))
    if ys.stop < padded.shape[0]:
        sides.append((block[-1, :], padded[ys.stop, :], xs.start, False, h - 1, ys.stop))
    for inside, across, offset, vertical, fixed_in, fixed_out in sides:
        i, j = _edge_links(inside, across, offset, shifts)
        if vertical:  # i: block row, j: padded row
            out.append((i + y0, np.full_like(i, fixed_in + x0), j + oy, np.full_like(j, fixed_out + ox)))
        else:
            out.append((np.full_like(i, fixed_in + y0), i + x0, np.full_like(j, fixed_out + oy), j + ox))
    if not out:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty, empty
    return tuple(np.concatenate(parts) for parts in zip(*out))


def _edge_links(inside: np.ndarray, across: np.ndarray, offset: int,
                shifts) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j) with ``inside[i] == across[j]`` where ``inside[i]`` faces ``across[i + offset]``.

    Shifts of -1/+1 add the diagonal neighbours.
    """
    index = np.arange(len(inside), dtype=np.int64)
    pairs_i, pairs_j = [], []
    for shift in shifts:
        other = index + offset + shift
        ok = (other >= 0) & (other < len(across))
        i, j = index[ok], other[ok]
        same = inside[i] == across[j]
        pairs_i.append(i[same])
        pairs_j.append(j[same])
    return np.concatenate(pairs_i), np.concatenate(pairs_j)


