"""Predicting part of a scene exactly as the whole: sub-grids of the scene's window grid.

``rsseg batch`` predicts each tile of a mosaic as a *region* of the mosaic, so a
tile's border windows see its neighbours. The region's windows and blend weights
are those of the whole scene's grid (:func:`region_grid`), and only the part of
each blended region inside the region is written (:class:`CroppedSink`): the
result equals the whole-scene prediction cut to the region.
"""

from __future__ import annotations

import numpy as np

from rsseg.errors import InputError
from rsseg.tiling import BlendWeights, WindowGrid


def check_region(region, scene) -> tuple[int, int, int, int]:
    """The whole scene when ``region`` is None; else the region, checked to lie inside it."""
    if region is None:
        return (0, 0, scene.height, scene.width)
    row_off, col_off, height, width = (int(v) for v in region)
    if (row_off < 0 or col_off < 0 or height < 1 or width < 1
            or row_off + height > scene.height or col_off + width > scene.width):
        raise InputError(f"region (row {row_off}, col {col_off}, {height}x{width}) is not inside "
                         f"the {scene.height}x{scene.width} scene", scene.path)
    return (row_off, col_off, height, width)


class ShiftedWeights:
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
    return sub, ShiftedWeights(weights, rows[0], cols[0]), (top, left)


def _touching(starts: list[int], size: int, lo: int, hi: int) -> list[int]:
    """Indices of the windows ``[start, start + size)`` that intersect ``[lo, hi)``."""
    return [k for k, s in enumerate(starts) if s < hi and s + size > lo]


class CroppedSink:
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
