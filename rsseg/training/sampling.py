"""Class-balanced window placement: where each class is, on a coarse grid.

Rare classes (cars, clutter: about 1 % of the pixels) are seen in few random
windows. With class balancing a share of the windows is centred on a pixel of a
class drawn uniformly among the classes present, found through a per-scene
grid of class counts per cell (one streamed pass over the labels; the grid is
capped at 512 x 512 cells so it stays small for any scene size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from rsseg.classes import NODATA, ClassScheme
from rsseg.training.scenes import SceneInfo, SceneReader, scene_blocks

MIN_CELL = 32
MAX_CELLS = 512


@dataclass
class ClassGrid:
    """Pixels of each class per ``cell`` x ``cell`` square of one scene: (rows, cols, K)."""

    cell: int
    counts: np.ndarray


def cell_size(width: int, height: int) -> int:
    return max(MIN_CELL, -(-max(width, height) // MAX_CELLS))


def class_grid(info: SceneInfo, label_format: str, classes: ClassScheme) -> ClassGrid:
    """Count the classes per cell, reading the labels in blocks aligned to the cells."""
    cell = cell_size(info.width, info.height)
    rows, cols = -(-info.height // cell), -(-info.width // cell)
    k = classes.num_classes
    counts = np.zeros((rows, cols, k), np.int64)
    block = cell * max(1, 1024 // cell)
    reader = SceneReader(info, label_format, classes)
    try:
        for col, row, w, h in scene_blocks(info.width, info.height, block):
            labels = reader.read_labels(col, row, w, h)
            r_idx = (np.arange(h) // cell)[:, None] + row // cell
            c_idx = (np.arange(w) // cell)[None, :] + col // cell
            valid = labels != NODATA
            flat = (np.broadcast_to(r_idx, labels.shape)[valid] * cols
                    + np.broadcast_to(c_idx, labels.shape)[valid]) * k + labels[valid]
            counts += np.bincount(flat, minlength=rows * cols * k).reshape(rows, cols, k)
    finally:
        reader.close()
    return ClassGrid(cell, counts)


class ClassSampler:
    """Draw (scene index, row, col) centres of windows around a chosen class."""

    def __init__(self, grids: Sequence[ClassGrid]):
        self.grids = list(grids)
        totals = np.stack([g.counts.sum(axis=(0, 1)) for g in self.grids])  # (scenes, K)
        self.present = np.flatnonzero(totals.sum(axis=0) > 0)
        # Per class: cumulative weights over every (scene, cell) that holds it.
        self._cells = {}
        for c in self.present:
            weights = np.concatenate([g.counts[..., c].ravel() for g in self.grids])
            self._cells[int(c)] = np.cumsum(weights, dtype=np.float64)
        self._offsets = np.cumsum([0] + [g.counts[..., 0].size for g in self.grids])

    def draw(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """A centre near a pixel of a class drawn uniformly among the classes present."""
        return self.draw_class(int(self.present[rng.integers(len(self.present))]), rng)

    def draw_class(self, c: int, rng: np.random.Generator) -> tuple[int, int, int]:
        """(scene, row, col) inside a cell that holds class ``c`` (cells weighted by its count)."""
        cum = self._cells[c]
        flat = int(np.searchsorted(cum, rng.uniform(0, cum[-1]), side="right"))
        flat = min(flat, len(cum) - 1)
        scene = int(np.searchsorted(self._offsets, flat, side="right") - 1)
        grid = self.grids[scene]
        local = flat - self._offsets[scene]
        r, col = divmod(local, grid.counts.shape[1])
        # Anywhere inside the cell: the class is there somewhere, the window is larger.
        return (scene, int(r * grid.cell + rng.integers(grid.cell)),
                int(col * grid.cell + rng.integers(grid.cell)))
