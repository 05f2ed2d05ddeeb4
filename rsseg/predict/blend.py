"""Streaming blend of overlapping window scores with memory bounded by the tile size.

Windows are processed in *row groups* (normally one window row; the last row,
shifted inward, joins the row before it so that the rows carried over stay one
overlap high), column by column. For every column of a group the scores of its
windows are summed (weighted, see :mod:`rsseg.tiling.weights`) into a small
accumulator; two carries hold what later windows will still add to:

- the horizontal carry: the columns shared with the next window column;
- the vertical carry: the rows shared with the next row group, one overlap high
  and the scene's width (the only buffer that grows with the scene, and only
  with its width).

As soon as a column of a group is complete, the pixels no later window touches
are handed to ``emit(row_off, col_off, scores, valid)``. ``emit`` may work on them
on another thread: it then returns a token whose ``wait()`` says the views are no
longer read, and the blender waits on it before it reuses that column buffer.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from rsseg.predict.arrays import NUMPY
from rsseg.tiling import BlendWeights, Window, WindowGrid

Emit = Callable[[int, int, np.ndarray, np.ndarray], None]


def row_groups(grid: WindowGrid) -> list[tuple[int, int]]:
    """Inclusive ranges of window rows processed together."""
    starts = grid.row_starts
    stride = grid.tile - grid.overlap
    groups = [(i, i) for i in range(len(starts))]
    if len(starts) >= 2 and starts[-1] - starts[-2] < stride:
        groups[-2:] = [(len(starts) - 2, len(starts) - 1)]
    return groups


def window_order(grid: WindowGrid) -> list[Window]:
    """The order in which :class:`StreamingBlender` expects windows."""
    order = []
    for i0, i1 in row_groups(grid):
        for j in range(len(grid.col_starts)):
            order.extend(grid.window(i, j) for i in range(i0, i1 + 1))
    return order


class StreamingBlender:
    """Sum weighted window scores and emit every region once it is final.

    Call :meth:`add` with the windows in :func:`window_order` order, each with
    its scores ``(K, h, w)`` (``None`` for a skipped, all-nodata window) and its
    validity mask ``(h, w)``, both cropped to the part inside the scene. The
    arrays handed to ``emit`` are views of reused buffers: valid during the call.

    ``arrays`` is the backend (:mod:`rsseg.predict.arrays`): NumPy by default,
    torch to blend where the scores are (a GPU). Blending works in place: two
    column buffers take turns (the horizontal carry is the previous one's right
    part), the product ``scores * weights`` goes through a scratch buffer, and the
    window weights are built once per distinct pattern (border, inner) and cached.
    ``buffers`` column buffers (at least two) are used in turn: more let an ``emit``
    running on another thread work on a column while the next ones are blended.
    """

    def __init__(self, grid: WindowGrid, weights: BlendWeights, num_classes: int, emit: Emit,
                 arrays=NUMPY, buffers: int = 2):
        self.grid, self.weights, self.k, self.emit = grid, weights, num_classes, emit
        self.arrays = arrays
        self.rows, self.cols = grid.row_starts, grid.col_starts
        self.th, self.tw = grid.tile_height, grid.tile_width
        self.groups = row_groups(grid)
        carry_h = max([self._group_end(g) - self._next_start(g)
                       for g in range(len(self.groups) - 1)] or [0])
        # One buffer serves as the incoming and the outgoing vertical carry: a column
        # range is always read (by the window that overlaps it) before it is rewritten.
        self.vcarry = arrays.zeros((num_classes, carry_h, grid.width))
        self.vvalid = arrays.zeros((carry_h, grid.width), "bool")
        height = max(self._group_end(g) - self._group_start(g) for g in range(len(self.groups)))
        self.buffers = [(arrays.empty((num_classes, height, self.tw)),
                         arrays.empty((height, self.tw), "bool")) for _ in range(max(2, buffers))]
        self.busy = [None] * len(self.buffers)  # per buffer: the token of its pending emit
        self.scratch = arrays.scratch((num_classes, self.th, self.tw))
        self._weights: dict = {}  # column pattern -> 2-D weights, for one row pattern
        self._weights_row = None
        self.vcarry_h = 0  # rows of the incoming carry (0 for the first group)
        self.group = 0
        self.col = -1
        self.pending = 0  # windows of the current column still to come
        self.acc = self.valid = None
        self.hcarry = 0  # columns carried from the previous column's buffer
        self.current = 0  # which buffer holds the current column
        self.vtaken = 0  # columns of the incoming vertical carry already consumed

    # ---- geometry ------------------------------------------------------------------------

    def _group_start(self, g: int) -> int:
        return self.rows[self.groups[g][0]]

    def _group_end(self, g: int) -> int:
        return self.rows[self.groups[g][1]] + self.th

    def _next_start(self, g: int) -> int:
        return self._group_start(g + 1) if g + 1 < len(self.groups) else self.grid.height

    def _col_end(self, j: int) -> int:
        return self.cols[j + 1] if j + 1 < len(self.cols) else self.grid.width

    def _window_weights(self, row: int, col: int):
        """The 2-D weights of window ``(row, col)``, built once per distinct column pattern
        (first, inner, last) while the row pattern stays the same: a handful of
        tile-sized arrays at a time, whatever the scene."""
        row_key = self.weights.rows[row].tobytes()
        if row_key != self._weights_row:
            self._weights, self._weights_row = {}, row_key
        key = self.weights.cols[col].tobytes()
        w = self._weights.get(key)
        if w is None:
            w = self._weights[key] = self.arrays.asarray(self.weights.window(row, col))
        return w

    # ---- streaming -----------------------------------------------------------------------

    def add(self, window: Window, scores, valid) -> None:
        if self.pending == 0:
            self._start_column(window)
        g0 = self._group_start(self.group)
        r = window.row_off - g0
        if scores is not None:
            self.arrays.add_product(self.acc[:, r:r + self.th], scores,
                                    self._window_weights(window.row, window.col), self.scratch)
        self.valid[r:r + self.th] = self.arrays.asarray(valid)
        self.pending -= 1
        if self.pending == 0:
            self._finish_column()

    def _start_column(self, window: Window) -> None:
        i0, i1 = self.groups[self.group]
        self.col += 1
        if self.col == len(self.cols):  # next row group
            self.group, self.col = self.group + 1, 0
            self.vcarry_h = self._group_end(self.group - 1) - self._group_start(self.group)
            self.vtaken = 0
            self.hcarry = 0
            i0, i1 = self.groups[self.group]
        if (window.row, window.col) != (i0, self.col):
            raise ValueError(f"window ({window.row}, {window.col}) out of order; "
                             f"expected ({i0}, {self.col})")
        self.pending = i1 - i0 + 1
        height = self._group_end(self.group) - self._group_start(self.group)
        previous, previous_valid = self.buffers[self.current]
        self.current = (self.current + 1) % len(self.buffers)
        if self.busy[self.current] is not None:  # still read by an emit on another thread
            self.busy[self.current].wait()
            self.busy[self.current] = None
        acc, valid = (b[..., :height, :] for b in self.buffers[self.current])
        n = self.hcarry
        if n:  # what the previous column's windows left on this one's left columns
            acc[:, :, :n] = previous[:, :height, self.tw - n:]
            valid[:, :n] = previous_valid[:height, self.tw - n:]
        acc[:, :, n:] = 0.0
        valid[:, n:] = False
        self.acc, self.valid = acc, valid
        c0 = self.cols[self.col]
        if self.vcarry_h:
            start, stop = max(self.vtaken, c0), c0 + self.tw
            if stop > start:
                vh = self.vcarry_h
                self.acc[:, :vh, start - c0:] += self.vcarry[:, :vh, start:stop]
                self.valid[:vh, start - c0:] |= self.vvalid[:vh, start:stop]
                self.vtaken = stop

    def _finish_column(self) -> None:
        g, j = self.group, self.col
        g0, c0 = self._group_start(g), self.cols[j]
        final_h = self._next_start(g) - g0
        final_w = self._col_end(j) - c0
        self.busy[self.current] = self.emit(g0, c0, self.acc[:, :final_h, :final_w],
                                            self.valid[:final_h, :final_w])
        if g + 1 < len(self.groups):
            rest = self.acc.shape[1] - final_h
            self.vcarry[:, :rest, c0:c0 + final_w] = self.acc[:, final_h:, :final_w]
            self.vvalid[:rest, c0:c0 + final_w] = self.valid[final_h:, :final_w]
        self.hcarry = self.tw - final_w if j + 1 < len(self.cols) else 0
        self.acc = self.valid = None

    @property
    def done(self) -> bool:
        return (self.group == len(self.groups) - 1 and self.col == len(self.cols) - 1
                and self.pending == 0)
