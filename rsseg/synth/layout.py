"""The resolution-independent description of a synthetic Vaihingen-style town.

The town is built on a jittered lattice of street nodes (``SPACING`` metres
apart). Lattice lines are streets; every lattice cell is a city block whose
contents (houses, apartment rings, commercial halls with parking, parks) are
generated from a random stream seeded by (seed, cell). A cell also owns the
street segments on its top and left sides and the cars on them. Nothing is
generated for the scene as a whole: a window asks only for the cells around it
(:meth:`SceneLayout.features_in`), so the work and memory per window do not
depend on the scene size, and every window sees exactly the same objects.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from rsseg.synth.blocks import BLOCK_BUILDERS, BlockContext, choose_block_kind
from rsseg.synth.features import (
    ASPHALT,
    IMPERVIOUS,
    LAYER_MARKING,
    LAYER_ROAD,
    LAYER_SIDEWALK,
    MARKING,
    SHADOW_DX,
    SHADOW_DY,
    SIDEWALK,
    Feature,
    car_feature,
)
from rsseg.synth.noise import unit_scalar
from rsseg.synth.shapes import BBox, Capsule, Polygon, line_intersection


class SceneLayout:
    """Streets, blocks and objects for one seed; cells are generated on demand and cached."""

    SPACING = 80.0  # metres between street lattice lines (objects stay within one cell of theirs)
    JITTER = 6.0    # maximum node displacement, metres
    LINE_SHIFT = 12.0  # maximum displacement of a whole street line, metres

    def __init__(self, seed: int, cache_cells: int = 256):
        self.seed = int(seed)
        self.cache_cells = max(16, int(cache_cells))
        self.offset_x = -self.SPACING * unit_scalar(self.seed, 1)
        self.offset_y = -self.SPACING * unit_scalar(self.seed, 2)
        self._cache: OrderedDict[tuple[int, int], list[Feature]] = OrderedDict()

    # -- street lattice -----------------------------------------------------
    def node(self, i: int, j: int) -> tuple[float, float]:
        # A whole street line shifts (blocks of unequal size), each node a little more.
        jx = (2.0 * unit_scalar(self.seed, 3, i, j) - 1.0) * self.JITTER \
            + (2.0 * unit_scalar(self.seed, 13, i) - 1.0) * self.LINE_SHIFT
        jy = (2.0 * unit_scalar(self.seed, 4, i, j) - 1.0) * self.JITTER \
            + (2.0 * unit_scalar(self.seed, 14, j) - 1.0) * self.LINE_SHIFT
        return (self.offset_x + i * self.SPACING + jx, self.offset_y + j * self.SPACING + jy)

    def street(self, vertical: bool, index: int) -> tuple[float, float, bool]:
        """(asphalt width, sidewalk width, is main road) of a lattice line."""
        u = unit_scalar(self.seed, 5 + int(vertical), index)
        main = u < 0.3
        width = 9.0 + 3.0 * u / 0.3 if main else 5.5 + 2.5 * (u - 0.3) / 0.7
        sidewalk = 1.5 + 1.0 * unit_scalar(self.seed, 7 + int(vertical), index)
        return width, sidewalk, main

    def _setback(self, vertical: bool, index: int) -> float:
        width, sidewalk, _ = self.street(vertical, index)
        return width / 2.0 + sidewalk

    def inner_quad(self, i: int, j: int) -> list[tuple[float, float]]:
        """The block inside its four streets' kerbs and sidewalks, corners clockwise from NW."""
        corners = [self.node(i, j), self.node(i + 1, j), self.node(i + 1, j + 1),
                   self.node(i, j + 1)]
        insets = [self._setback(False, j), self._setback(True, i + 1),
                  self._setback(False, j + 1), self._setback(True, i)]
        cx = sum(p[0] for p in corners) / 4.0
        cy = sum(p[1] for p in corners) / 4.0
        lines = []
        for k in range(4):
            a, b = corners[k], corners[(k + 1) % 4]
            d = (b[0] - a[0], b[1] - a[1])
            norm = math.hypot(*d)
            n = (-d[1] / norm, d[0] / norm)
            if (cx - a[0]) * n[0] + (cy - a[1]) * n[1] < 0:
                n = (-n[0], -n[1])
            lines.append(((a[0] + n[0] * insets[k], a[1] + n[1] * insets[k]), d))
        return [line_intersection(*lines[k - 1], *lines[k]) for k in range(4)]

    # -- features -------------------------------------------------------------
    def cell_features(self, i: int, j: int) -> list[Feature]:
        """Everything owned by cell (i, j): its block, its top and left streets, their cars."""
        key = (i, j)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        features = self._street_features(i, j) + self._block_features(i, j)
        for idx, f in enumerate(features):
            f.key = (j, i, idx)
            f.reach = _reach(f)
        self._cache[key] = features
        if len(self._cache) > self.cache_cells:
            self._cache.popitem(last=False)
        return features

    def features_in(self, bbox: BBox, margin: float = 0.0) -> list[Feature]:
        """Features whose footprint (or shadow) may touch ``bbox``, in painting order."""
        xmin, ymin, xmax, ymax = bbox
        i0 = math.floor((xmin - self.offset_x) / self.SPACING) - 1
        i1 = math.floor((xmax - self.offset_x) / self.SPACING) + 1
        j0 = math.floor((ymin - self.offset_y) / self.SPACING) - 1
        j1 = math.floor((ymax - self.offset_y) / self.SPACING) + 1
        out = []
        for j in range(j0, j1 + 1):
            for i in range(i0, i1 + 1):
                for f in self.cell_features(i, j):
                    fx0, fy0, fx1, fy1 = f.reach
                    if fx1 >= xmin - margin and fx0 <= xmax + margin and \
                            fy1 >= ymin - margin and fy0 <= ymax + margin:
                        out.append(f)
        out.sort(key=lambda f: (f.layer, f.key))
        return out

    def _street_features(self, i: int, j: int) -> list[Feature]:
        rng = np.random.default_rng([self.seed, 11, i & 0xFFFFFFFF, j & 0xFFFFFFFF])
        out: list[Feature] = []
        start = self.node(i, j)
        # Top side: horizontal street j from node (i, j) to (i+1, j); left side: vertical street i.
        for vertical, end, line, cross_a, cross_b in (
                (False, self.node(i + 1, j), j, (True, i), (True, i + 1)),
                (True, self.node(i, j + 1), i, (False, j), (False, j + 1))):
            width, sidewalk, main = self.street(vertical, line)
            ax, ay = start
            bx, by = end
            grey = 92.0 + 18.0 * unit_scalar(self.seed, 9 + int(vertical), line)
            kerb_to_kerb = Capsule(ax, ay, bx, by, width / 2 + sidewalk)
            out.append(Feature(LAYER_SIDEWALK, "area", kerb_to_kerb, IMPERVIOUS, SIDEWALK,
                               (140.0, 142.0, 140.0)))
            out.append(Feature(LAYER_ROAD, "area", Capsule(ax, ay, bx, by, width / 2),
                               IMPERVIOUS, ASPHALT, (grey, grey + 4.0, grey + 8.0)))
            margin_a = self._setback(*cross_a) + 3.0
            margin_b = self._setback(*cross_b) + 3.0
            if main:
                centre_line = _shortened(ax, ay, bx, by, margin_a, margin_b, 0.08)
                out.append(Feature(LAYER_MARKING, "marking", centre_line, IMPERVIOUS, MARKING,
                                   (215.0, 220.0, 222.0)))
            out.extend(_street_cars(rng, ax, ay, bx, by, width, margin_a, margin_b))
        return out

    def _block_features(self, i: int, j: int) -> list[Feature]:
        rng = np.random.default_rng([self.seed, 12, i & 0xFFFFFFFF, j & 0xFFFFFFFF])
        quad = self.inner_quad(i, j)
        kind = choose_block_kind(rng)
        ctx = BlockContext(rng=rng, quad=quad, polygon=Polygon(quad))
        return BLOCK_BUILDERS[kind](ctx)


def _reach(f: Feature) -> BBox:
    """Bounding box of a feature and of the shadow it casts (towards north-west)."""
    x0, y0, x1, y1 = f.bbox()
    if f.casts_shadow:
        x0 += SHADOW_DX * (f.height + f.ridge)
        y0 += SHADOW_DY * (f.height + f.ridge)
    return (x0, y0, x1, y1)


def _shortened(ax, ay, bx, by, margin_a, margin_b, half_width) -> Capsule:
    length = math.hypot(bx - ax, by - ay)
    ta = min(margin_a / length, 0.5)
    tb = max(1.0 - margin_b / length, ta)
    return Capsule(ax + (bx - ax) * ta, ay + (by - ay) * ta,
                   ax + (bx - ax) * tb, ay + (by - ay) * tb, half_width)


def _street_cars(rng, ax, ay, bx, by, width, margin_a, margin_b) -> list[Feature]:
    """Cars parked along both kerbs and a few driving in the lanes."""
    length = math.hypot(bx - ax, by - ay)
    dx, dy = (bx - ax) / length, (by - ay) / length
    nx, ny = -dy, dx
    cars = []
    for side in (-1.0, 1.0):
        kerb = side * (width / 2.0 - 1.3)
        lane = side * width / 4.0
        parked = rng.uniform(0.03, 0.22)
        t = margin_a + rng.uniform(0.0, 3.0)
        while t < length - margin_b:
            if rng.random() < parked:
                cars.append(car_feature(rng, ax + dx * t + nx * kerb, ay + dy * t + ny * kerb,
                                        dx, dy))
            t += rng.uniform(5.6, 6.6)
        t = margin_a + rng.uniform(0.0, 60.0)
        while t < length - margin_b:
            cars.append(car_feature(rng, ax + dx * t + nx * lane, ay + dy * t + ny * lane,
                                    side * dx, side * dy))
            t += rng.uniform(30.0, 90.0)
    return cars
