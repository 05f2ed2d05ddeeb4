"""Overviews of a class raster, computed as GDAL's ``MODE`` resampling computes them.

GDAL's COG driver spends most of a class raster's conversion on its ``MODE``
overviews (8192 x 8192: 1.6 CPU-s with them, 0.6 without; docs/benchmarks/predict.md),
computed pixel by pixel with a histogram. The same values come out of a handful of
whole-array NumPy operations (0.25 CPU-s there), so the engine
computes them here, streaming (row bands in, row bands out, a raw file per level),
and hands them to the COG driver as the source's overviews, which it copies.

What is reproduced, checked against GDAL on random rasters of odd and even sizes
(``tests/io/test_overviews.py``):

- the levels: halve each side (rounding down, never below 1) while either side
  exceeds the COG block;
- each level from the previous one (a cascade, not from full resolution);
- the source window of output pixel ``i`` on an axis of ratio ``r = n / m``:
  ``floor(i r + 1e-8)`` up to ``ceil((i + 1) r - 1e-8)`` (2 pixels when a side halves
  exactly, up to 4 otherwise);
- the mode: the value seen most often in the window, nodata left out; of values
  seen equally often, the one that reached that count first in row-major order
  (all nodata: nodata).

Exact halving is the fast path (four strided views). Windows of any other size (an
odd side: mostly 3 x 3, overlapping) are gathered position by position and compared
pairwise, several times GDAL's cost per pixel, so :func:`fast_mode_levels` says
whether a raster is worth it: every level made from more than ``LARGE_LEVEL`` pixels
must halve exactly; smaller ones may be of any size.
"""

from __future__ import annotations

import numpy as np

BAND_ROWS = 64  # output rows per band (~128 source rows): bands of a wide raster stay small
LARGE_LEVEL = 4_000_000  # source pixels above which a level must halve exactly


def overview_shapes(height: int, width: int, block: int) -> list[tuple[int, int]]:
    """The overview sizes GDAL's COG driver creates for a ``height x width`` raster."""
    shapes = []
    while height > block or width > block:
        height, width = max(1, height // 2), max(1, width // 2)
        shapes.append((height, width))
    return shapes


def fast_mode_levels(height: int, width: int, block: int) -> bool:
    """Whether :func:`write_mode_overviews` is the fast way for this raster: it has
    overviews, and every level made from more than ``LARGE_LEVEL`` pixels halves both
    sides exactly (the others are small enough for any window size)."""
    shapes = overview_shapes(height, width, block)
    sources = [(height, width)] + shapes[:-1]
    return bool(shapes) and all(h * w <= LARGE_LEVEL or (h, w) == (2 * oh, 2 * ow)
                                for (h, w), (oh, ow) in zip(sources, shapes))


def axis_windows(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and width of the source window of every output pixel, ``n`` -> ``m`` pixels."""
    ratio = n / m
    i = np.arange(m, dtype=np.float64)
    start = np.floor(i * ratio + 1e-8).astype(np.int64)
    stop = np.minimum(np.ceil((i + 1) * ratio - 1e-8).astype(np.int64), n)
    return start, np.maximum(stop - start, 1)


def mode_rows(src, out_h: int, out_w: int, nodata: int, j0: int, j1: int) -> np.ndarray:
    """Output rows ``j0:j1`` of the mode overview (``out_h x out_w``) of ``src`` (any
    array-like of ``(H, W)`` uint8 with slicing: an array or a memory map)."""
    src_h, src_w = src.shape
    y0, hy = axis_windows(src_h, out_h)
    x0, wx = axis_windows(src_w, out_w)
    y0, hy = y0[j0:j1], hy[j0:j1]
    top, bottom = int(y0[0]), int((y0 + hy).max())
    band = np.asarray(src[top:bottom])
    if src_h == 2 * out_h and src_w == 2 * out_w:
        return mode_halve(band, nodata)
    values, inside = [], []
    for dy in range(int(hy.max())):
        r = np.minimum(y0 - top + dy, band.shape[0] - 1)
        row_in = (dy < hy)[:, None]
        picked = band[r]
        for dx in range(int(wx.max())):
            c = np.minimum(x0 + dx, src_w - 1)
            values.append(picked[:, c])
            inside.append(row_in & (dx < wx)[None, :])
    return _first_most_frequent(values, inside, nodata)


def mode_halve(block: np.ndarray, nodata: int) -> np.ndarray:
    """The exact-halving mode of an even-sized block (four strided views): what GDAL
    computes for the pixels of a raster of even sides whose block starts on even
    offsets, so blocks can be halved one by one as they are written."""
    views = [block[dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)]
    return _first_most_frequent(views, None, nodata)


def _first_most_frequent(values: list[np.ndarray], inside: list[np.ndarray] | None,
                         nodata: int) -> np.ndarray:
    """Per pixel, of ``values`` (in scan order; ``inside`` masks positions outside a
    window), the valid value seen most often, ties to the one that got there first."""
    best = np.full(values[0].shape, nodata, np.uint8)
    best_count = np.zeros(values[0].shape, np.uint8)
    count = np.empty(values[0].shape, np.uint8)
    same = np.empty(values[0].shape, bool)
    for k, v in enumerate(values):
        count.fill(1)  # v's count so far: itself and the equal values before it
        for m in range(k):
            np.equal(values[m], v, out=same)
            if inside is not None:
                same &= inside[m]
            count += same.view(np.uint8)
        counted = v != nodata  # nodata (or outside the window) counts for nothing
        if inside is not None:
            counted &= inside[k]
        count *= counted.view(np.uint8)
        better = np.greater(count, best_count, out=same)
        np.copyto(best, v, where=better)
        np.maximum(best_count, count, out=best_count)
    return best


def write_mode_overviews(raw_path, height: int, width: int, block: int, nodata: int,
                         paths: list, first_done: bool = False) -> list[tuple[int, int]]:
    """Compute every overview level of the raw row-major uint8 raster ``raw_path``
    (``height x width``) into the raw files ``paths`` (one per level, as many as
    :func:`overview_shapes` gives) and return their shapes. ``first_done``: the first
    level is already in ``paths[0]`` (halved block by block while the raster was
    written). Memory: one band of rows at a time."""
    shapes = overview_shapes(height, width, block)
    src_path, src_shape = raw_path, (height, width)
    for level, ((out_h, out_w), path) in enumerate(zip(shapes, paths)):
        if not (first_done and level == 0):
            src = np.memmap(src_path, np.uint8, "r", shape=src_shape)
            with open(path, "wb") as out:
                for j0 in range(0, out_h, BAND_ROWS):
                    j1 = min(out_h, j0 + BAND_ROWS)
                    out.write(mode_rows(src, out_h, out_w, nodata, j0, j1).tobytes())
            del src
        src_path, src_shape = path, (out_h, out_w)
    return shapes[:len(paths)]
