"""Window grids that cover a raster exactly.

Windows are laid out with a fixed stride (``tile - overlap``); the last window
of a row or column is shifted inward so that it ends exactly at the raster's
edge instead of hanging over it. Only a raster *smaller* than a tile gives
windows that are padded, and only on the side where the raster ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator


def axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Window start offsets along one axis of ``length`` pixels.

    Windows are ``tile`` long (or ``length`` when the axis is shorter than a tile),
    start at 0, step by ``tile - overlap`` and the last one ends at ``length``.
    """
    _check(tile, overlap)
    if length < 1:
        raise ValueError(f"axis length must be >= 1, got {length}")
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)  # the last window, shifted inward
    return starts


def _check(tile: int, overlap: int) -> None:
    if tile < 1:
        raise ValueError(f"tile size must be >= 1, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in 0..tile-1 ({tile - 1}), got {overlap}")


@dataclass(frozen=True)
class Window:
    """One tile: ``row``/``col`` index in the grid, the pixels it reads, the padding it needs.

    ``row_off, col_off, height, width`` is the part inside the raster (never
    outside it); ``pad_bottom``/``pad_right`` are the pixels added to reach the
    tile size when the raster is smaller than a tile.
    """

    row: int
    col: int
    row_off: int
    col_off: int
    height: int
    width: int
    pad_bottom: int = 0
    pad_right: int = 0

    @property
    def slices(self) -> tuple[slice, slice]:
        return (slice(self.row_off, self.row_off + self.height),
                slice(self.col_off, self.col_off + self.width))


@dataclass(frozen=True)
class WindowGrid:
    """All windows of ``tile`` x ``tile`` pixels with ``overlap`` over a ``height`` x ``width`` raster."""

    height: int
    width: int
    tile: int
    overlap: int

    def __post_init__(self):
        _check(self.tile, self.overlap)
        if self.height < 1 or self.width < 1:
            raise ValueError(f"raster shape must be at least 1x1, got {self.height}x{self.width}")

    @property
    def row_starts(self) -> list[int]:
        return axis_starts(self.height, self.tile, self.overlap)

    @property
    def col_starts(self) -> list[int]:
        return axis_starts(self.width, self.tile, self.overlap)

    @property
    def tile_height(self) -> int:
        """Height of the part of each window inside the raster."""
        return min(self.tile, self.height)

    @property
    def tile_width(self) -> int:
        return min(self.tile, self.width)

    @property
    def shape(self) -> tuple[int, int]:
        """Number of window rows and columns."""
        return len(self.row_starts), len(self.col_starts)

    def __len__(self) -> int:
        rows, cols = self.shape
        return rows * cols

    def window(self, row: int, col: int) -> Window:
        r0, c0 = self.row_starts[row], self.col_starts[col]
        h, w = self.tile_height, self.tile_width
        return Window(row, col, r0, c0, h, w, pad_bottom=self.tile - h, pad_right=self.tile - w)

    def __iter__(self) -> Iterator[Window]:
        """Row-major order."""
        rows, cols = self.shape
        for i in range(rows):
            for j in range(cols):
                yield self.window(i, j)
