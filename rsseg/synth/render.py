"""Rasterise the synthetic town for one window: labels, IR/R/G and DSM.

Only features near the window are painted, each only over its bounding box,
so the cost of a window is O(objects nearby). Every per-pixel value is a
function of the pixel's global row and column (see :mod:`rsseg.synth.noise`),
so the result does not depend on how the scene is cut into windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rsseg.synth.features import (
    ASPHALT,
    CAR_BODY,
    CLUTTER_STUFF,
    FOLIAGE,
    GRAVEL,
    LAWN,
    LOW_VEGETATION,
    MARKING,
    NUM_MATERIALS,
    PAVING,
    ROOF_FLAT,
    ROOF_TILE,
    SHADOW_DX,
    SHADOW_DY,
    SIDEWALK,
    WATER,
    Feature,
)
from rsseg.synth.layout import SceneLayout
from rsseg.synth.noise import fractal_noise, pixel_noise, value_noise
from rsseg.synth.shapes import Capsule, Polygon, convex_hull

LABEL_NODATA = 255
GROUND_LEVEL = 245.0      # metres above sea level, about Vaihingen's valley floor
TERRAIN_RELIEF = 8.0      # metres of smooth relief over a few hundred metres
_SUN_NORM = math.hypot(SHADOW_DX, SHADOW_DY)
_SUN = (-SHADOW_DX / _SUN_NORM, -SHADOW_DY / _SUN_NORM)  # unit vector towards the sun
LAWN_COLOUR = (190.0, 118.0, 110.0)


def _material_table(entries: dict[int, tuple]) -> np.ndarray:
    table = np.zeros((NUM_MATERIALS, len(next(iter(entries.values())))), np.float32)
    for material, values in entries.items():
        table[material] = values
    return table


# Brightness texture amplitudes per material: fine (~0.25 m), medium (~1.2 m), coarse (~12 m).
_TEXTURE = _material_table({
    LAWN: (12, 16, 34), FOLIAGE: (48, 38, 12), ASPHALT: (10, 6, 14), SIDEWALK: (9, 6, 10),
    PAVING: (10, 8, 16), MARKING: (6, 4, 4), ROOF_TILE: (16, 6, 10), ROOF_FLAT: (6, 8, 18),
    CAR_BODY: (5, 2, 0), CLUTTER_STUFF: (22, 22, 18), WATER: (3, 5, 8), GRAVEL: (18, 8, 10),
})
# Colour drift with the coarse noise (IR, R, G): dry and lush patches of grass, dirty roofs.
_TINT = _material_table({
    LAWN: (26, -14, -10), FOLIAGE: (14, 0, -4), ROOF_TILE: (-8, 10, 6),
    CLUTTER_STUFF: (30, -25, 25), ROOF_FLAT: (0, 4, 8),
})
# DSM roughness (metres) with the fine noise: grass blades, leafy canopies.
_ROUGHNESS = np.zeros(NUM_MATERIALS, np.float32)
_ROUGHNESS[[LAWN, FOLIAGE, GRAVEL]] = (0.15, 1.4, 0.05)


@dataclass(frozen=True)
class SceneGrid:
    """The pixel grid being synthesised."""

    width: int
    height: int
    pixel_size: float
    seed: int
    nodata_border: int = 0
    # Where the scene's top-left pixel lies in the town's global pixel grid: scenes with
    # different --origin show different parts of one town, and adjacent scenes match.
    row_offset: int = 0
    col_offset: int = 0

    def metres(self, index: np.ndarray) -> np.ndarray:
        """Pixel-centre coordinates, in metres from the scene's top-left corner."""
        return (index.astype(np.float64) + 0.5) * self.pixel_size

    def pixels(self, metres: float) -> int:
        return max(1, int(round(metres / self.pixel_size)))


@dataclass
class Rendered:
    labels: np.ndarray   # (h, w) uint8 class ids, 255 in the nodata collar
    image: np.ndarray    # (3, h, w) uint8 IR, R, G; 0 in the collar, >= 1 elsewhere
    dsm: np.ndarray      # (h, w) float32 metres; NaN in the collar
    valid: np.ndarray    # (h, w) bool, False in the collar


class _Canvas:
    def __init__(self, grid: SceneGrid, row0: int, col0: int, h: int, w: int):
        self.row0, self.col0, self.h, self.w = row0, col0, h, w
        self.rows = np.arange(row0, row0 + h, dtype=np.int64)
        self.cols = np.arange(col0, col0 + w, dtype=np.int64)
        self.y = grid.metres(self.rows)
        self.x = grid.metres(self.cols)
        self.pixel_size = grid.pixel_size
        self.wobble = value_noise(self.rows, self.cols, grid.pixels(0.7), grid.seed, 20)
        self.labels = np.full((h, w), LOW_VEGETATION, np.uint8)
        self.material = np.full((h, w), LAWN, np.uint8)
        self.colour = np.empty((3, h, w), np.float32)
        self.colour[:] = np.asarray(LAWN_COLOUR, np.float32)[:, None, None]
        self.ndsm = np.zeros((h, w), np.float32)
        self.shade = np.ones((h, w), np.float32)
        self.shadow = np.zeros((h, w), bool)

    def region(self, bbox):
        """Slices of the window covering a metre bbox, or None when they do not meet."""
        xmin, ymin, xmax, ymax = bbox
        ps = self.pixel_size
        r0 = max(math.floor(ymin / ps - 0.5), self.row0) - self.row0
        r1 = min(math.ceil(ymax / ps - 0.5) + 1, self.row0 + self.h) - self.row0
        c0 = max(math.floor(xmin / ps - 0.5), self.col0) - self.col0
        c1 = min(math.ceil(xmax / ps - 0.5) + 1, self.col0 + self.w) - self.col0
        if r0 >= r1 or c0 >= c1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def coords(self, rs: slice, cs: slice):
        return self.x[cs][None, :], self.y[rs][:, None]


def _paint(canvas: _Canvas, f: Feature) -> None:
    region = canvas.region(f.bbox())
    if region is None:
        return
    rs, cs = region
    X, Y = canvas.coords(rs, cs)
    inside = f.shape.mask(X, Y, canvas.wobble[rs, cs])
    if f.kind == "marking":
        inside &= _dashes(f.shape, X, Y)
    if not inside.any():
        return
    height = np.float32(f.height)
    shade = np.float32(1.0)
    if f.kind == "building":
        height, shade = _roof_profile(f, X, Y)
    elif f.kind == "car":
        shade = _car_windows(f, X, Y)
    elif f.kind == "tree":
        height, shade = _canopy(f, X, Y)
        height = np.maximum(height, canvas.ndsm[rs, cs])
    _assign(canvas.labels, rs, cs, inside, f.label)
    _assign(canvas.material, rs, cs, inside, f.material)
    _assign(canvas.ndsm, rs, cs, inside, height)
    _assign(canvas.shade, rs, cs, inside, shade)
    for band in range(3):
        canvas.colour[band, rs, cs][inside] = f.colour[band]


def _dashes(line: Capsule, X, Y) -> np.ndarray:
    """A dashed centre line: 3 m of paint, 3 m gap, measured from the line's start."""
    length = math.hypot(line.dx, line.dy)
    return np.mod(line.along(X, Y) * length, 6.0) < 3.0


def _assign(target: np.ndarray, rs: slice, cs: slice, inside: np.ndarray, value) -> None:
    view = target[rs, cs]
    if np.ndim(value):
        view[inside] = np.broadcast_to(value, inside.shape)[inside]
    else:
        view[inside] = value


def _roof_profile(f: Feature, X, Y):
    """Gabled roofs rise towards a ridge along the long axis; the sunny slope is brighter."""
    rect = f.shape
    u, v = rect.local(X, Y)
    if f.ridge <= 0:
        rim = (np.abs(u) > rect.hu - 0.4) | (np.abs(v) > rect.hv - 0.4)  # parapet
        height = np.float32(f.height) + np.where(rim, np.float32(0.5), np.float32(0.0))
        return height.astype(np.float32), np.where(rim, np.float32(1.08), np.float32(1.0))
    slope = 1.0 - np.abs(v) / rect.hv
    height = (f.height + f.ridge * slope).astype(np.float32)
    facing = -rect.sin * _SUN[0] + rect.cos * _SUN[1]  # sun on the +v slope
    shade = np.where(v >= 0, 1.0 + 0.18 * facing, 1.0 - 0.18 * facing).astype(np.float32)
    return height, shade


def _car_windows(f: Feature, X, Y):
    rect = f.shape
    u, _ = rect.local(X, Y)
    windscreen = (u > 0.12 * rect.hu) & (u < 0.45 * rect.hu)
    rear = (u < -0.55 * rect.hu) & (u > -0.78 * rect.hu)
    return np.where(windscreen, np.float32(0.4), np.where(rear, np.float32(0.6), np.float32(1.0)))


def _canopy(f: Feature, X, Y):
    """A rounded crown: highest in the middle, lit from the sun's side."""
    disc = f.shape
    r2 = disc.r * disc.r
    centre = np.sqrt(np.clip(1.0 - disc.dist2(X, Y) / r2, 0.0, 1.0))
    height = (f.height * (0.55 + 0.45 * centre)).astype(np.float32)
    towards_sun = np.clip(((X - disc.cx) * _SUN[0] + (Y - disc.cy) * _SUN[1]) / disc.r, -1.0, 1.0)
    shade = (0.72 + 0.2 * centre + 0.18 * towards_sun).astype(np.float32)
    return height, shade


def _cast_shadow(canvas: _Canvas, f: Feature) -> None:
    top = f.height + f.ridge
    dx, dy = SHADOW_DX * top, SHADOW_DY * top
    if f.kind == "tree":
        disc = f.shape
        swept = Capsule(disc.cx, disc.cy, disc.cx + dx, disc.cy + dy, disc.r * 0.9)
    else:
        corners = f.shape.corners()
        swept = Polygon(convex_hull(corners + [(x + dx, y + dy) for x, y in corners]))
    region = canvas.region(swept.bbox())
    if region is None:
        return
    rs, cs = region
    X, Y = canvas.coords(rs, cs)
    under = canvas.ndsm[rs, cs] < np.float32(min(0.5 * top, 0.9 * f.height))
    canvas.shadow[rs, cs] |= swept.mask(X, Y) & under


def render_window(layout: SceneLayout, grid: SceneGrid, row0: int, col0: int,
                  h: int, w: int) -> Rendered:
    """Labels, image and DSM of the window at (row0, col0) of size h x w."""
    row0, col0 = row0 + grid.row_offset, col0 + grid.col_offset
    canvas = _Canvas(grid, row0, col0, h, w)
    ps = grid.pixel_size
    bbox = (col0 * ps, row0 * ps, (col0 + w) * ps, (row0 + h) * ps)
    features = layout.features_in(bbox)
    for f in features:
        _paint(canvas, f)
    for f in features:
        if f.casts_shadow:
            _cast_shadow(canvas, f)
    image, dsm = _finish(canvas, grid)
    valid = _valid_mask(canvas, grid)
    labels = canvas.labels
    if not valid.all():
        labels[~valid] = LABEL_NODATA
        image[:, ~valid] = 0
        dsm[~valid] = np.nan
    return Rendered(labels, image, dsm, valid)


def _finish(canvas: _Canvas, grid: SceneGrid):
    rows, cols, seed = canvas.rows, canvas.cols, grid.seed
    fine = value_noise(rows, cols, grid.pixels(0.25), seed, 21) - np.float32(0.5)
    medium = value_noise(rows, cols, grid.pixels(1.2), seed, 22) - np.float32(0.5)
    coarse = fractal_noise(rows, cols, grid.pixels(12.0), seed, 23) - np.float32(0.5)
    white = pixel_noise(rows, cols, seed, 24) - np.float32(0.5)
    mat = canvas.material
    # Per-material tables gathered column by column: contiguous (h, w) float32 arrays.
    brightness = _TEXTURE[:, 0][mat] * fine
    brightness += _TEXTURE[:, 1][mat] * medium
    brightness += _TEXTURE[:, 2][mat] * coarse
    light = np.where(canvas.shadow, np.float32(0.6), np.float32(1.0))
    light *= canvas.shade
    image = np.empty((3, canvas.h, canvas.w), np.uint8)
    for band in range(3):
        value = canvas.colour[band] + brightness
        value *= light
        value += _TINT[:, band][mat] * coarse
        value += np.float32(9.0) * white[band]
        np.rint(value, out=value)
        np.clip(value, 1, 255, out=value)
        image[band] = value
    terrain = fractal_noise(rows, cols, grid.pixels(160.0), seed, 25)
    dsm = np.float32(TERRAIN_RELIEF) * terrain
    dsm += np.float32(GROUND_LEVEL)
    dsm += canvas.ndsm
    dsm += _ROUGHNESS[mat] * fine
    dsm += np.float32(0.04) * white[3]
    return image, dsm


def _valid_mask(canvas: _Canvas, grid: SceneGrid) -> np.ndarray:
    b = grid.nodata_border
    if b <= 0:
        return np.ones((canvas.h, canvas.w), bool)
    rows = canvas.rows - grid.row_offset  # the collar is the scene's own border
    cols = canvas.cols - grid.col_offset
    rows_ok = (rows >= b) & (rows < grid.height - b)
    cols_ok = (cols >= b) & (cols < grid.width - b)
    return rows_ok[:, None] & cols_ok[None, :]


__all__ = ["SceneGrid", "Rendered", "render_window", "LABEL_NODATA"]
