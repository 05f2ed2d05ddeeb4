"""Blend weights for overlapping windows, normalised to sum to 1 at every pixel.

Each window gets a separable weight ``w_row(y) * w_col(x)``. Along one axis a
window is flat (weight 1) except where it overlaps a neighbour: there it ramps
up (left/top side) or down (right/bottom side) over exactly that overlap. Sides
on the raster's border are not tapered, so border pixels are never starved.

The 1-D weights of the windows along an axis are then divided by their sum at
every pixel. Because the windows form a product grid, the 2-D weights
``w_row_i(y) * w_col_j(x)`` of all windows covering a pixel then sum to
``(sum_i w_row_i(y)) * (sum_j w_col_j(x)) = 1`` too: blending is a plain
weighted sum, with no per-pixel weight accumulator.

Modes (``u`` = position inside the overlap, 0..1):

- ``crop``: 0 on the first half of the overlap, 1 after (each pixel comes from the
  window whose centre is nearest; ties, in odd overlaps, are averaged);
- ``mean``: 1 everywhere (plain average of all windows covering a pixel);
- ``linear``: ``u``;
- ``cosine``: ``(1 - cos(pi u)) / 2``, the rising half of a Hann window;
- ``spline``: ``2u^2`` then ``1 - 2(1-u)^2``, a smooth quadratic spline ramp.
"""

from __future__ import annotations

import numpy as np

BLEND_MODES = ("crop", "mean", "linear", "cosine", "spline")


def ramp(n: int, mode: str) -> np.ndarray:
    """Rising weights over an overlap of ``n`` pixels (float64, length ``n``)."""
    if mode not in BLEND_MODES:
        raise ValueError(f"unknown blend mode {mode!r}; choose from {', '.join(BLEND_MODES)}")
    u = (np.arange(n, dtype=np.float64) + 0.5) / max(n, 1)  # never 0 or 1 exactly
    if mode == "mean":
        return np.ones(n)
    if mode == "crop":
        return (np.arange(n) >= n // 2).astype(np.float64)
    if mode == "linear":
        return u
    if mode == "cosine":
        return 0.5 - 0.5 * np.cos(np.pi * u)
    return np.where(u < 0.5, 2 * u * u, 1 - 2 * (1 - u) ** 2)  # spline


def raw_axis_weights(starts: list[int], size: int, mode: str) -> list[np.ndarray]:
    """Un-normalised 1-D weights of windows of ``size`` pixels starting at ``starts``."""
    weights = []
    for k, start in enumerate(starts):
        w = np.ones(size)
        if k > 0:  # overlap with the previous window: ramp up
            n = starts[k - 1] + size - start
            if n > 0:
                w[:n] = np.minimum(w[:n], ramp(n, mode))
        if k + 1 < len(starts):  # overlap with the next window: ramp down
            n = start + size - starts[k + 1]
            if n > 0:
                w[size - n:] = np.minimum(w[size - n:], ramp(n, mode)[::-1])
        weights.append(w)
    return weights


def axis_weights(starts: list[int], size: int, length: int, mode: str) -> list[np.ndarray]:
    """Normalised 1-D weights (float64): at every pixel of the axis they sum to 1."""
    weights = raw_axis_weights(starts, size, mode)
    total = _accumulate(weights, starts, length)
    if np.any(total <= 0):
        # Cropping with very large overlaps can leave a pixel to no window's
        # kept half; fall back to the mean of the windows covering it there.
        holes = total <= 0
        for w, s in zip(weights, starts):
            w[holes[s:s + size]] = 1.0
        total = _accumulate(weights, starts, length)
    return [w / total[s:s + size] for w, s in zip(weights, starts)]


def _accumulate(weights: list[np.ndarray], starts: list[int], length: int) -> np.ndarray:
    total = np.zeros(length)
    for w, s in zip(weights, starts):
        total[s:s + len(w)] += w
    return total


class BlendWeights:
    """Normalised weights of every window of a grid (see :class:`tiling.grid.WindowGrid`).

    ``rows[i]`` and ``cols[j]`` are the 1-D weights of window row ``i`` and
    column ``j`` (float32); ``window(i, j)`` is their outer product.
    """

    def __init__(self, grid, mode: str = "cosine"):
        if mode not in BLEND_MODES:
            raise ValueError(f"unknown blend mode {mode!r}; choose from {', '.join(BLEND_MODES)}")
        self.mode = mode
        self.rows = [w.astype(np.float32) for w in
                     axis_weights(grid.row_starts, grid.tile_height, grid.height, mode)]
        self.cols = [w.astype(np.float32) for w in
                     axis_weights(grid.col_starts, grid.tile_width, grid.width, mode)]

    def window(self, row: int, col: int) -> np.ndarray:
        """2-D weights (float32, tile_height x tile_width) of window ``(row, col)``."""
        return np.outer(self.rows[row], self.cols[col])
