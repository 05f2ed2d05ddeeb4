"""City-block generators: what fills the space between four streets.

Each builder gets the block's inner quadrilateral (inside the sidewalks) and
its own random stream, and returns features in a deterministic order. Blocks
never look at their neighbours, so any block can be generated alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rsseg.synth.features import (
    BUILDING,
    CLUTTER,
    CLUTTER_STUFF,
    FOLIAGE,
    GRAVEL,
    IMPERVIOUS,
    LAWN,
    LAYER_BUILDING,
    LAYER_CLUTTER,
    LAYER_GROUND,
    LAYER_MARKING,
    LAYER_TREE,
    LOW_VEGETATION,
    MARKING,
    PAVING,
    ROOF_FLAT,
    ROOF_TILE,
    TREE,
    WATER,
    Feature,
    car_feature,
)
from rsseg.synth.shapes import Capsule, Disc, Polygon, Rect

CLUTTER_COLOURS = (  # odd colours: tarps, containers, play areas, building sites
    (70.0, 170.0, 205.0), (205.0, 60.0, 175.0), (235.0, 215.0, 70.0), (120.0, 150.0, 40.0),
    (60.0, 110.0, 160.0), (190.0, 120.0, 60.0), (240.0, 235.0, 230.0), (100.0, 60.0, 40.0),
)
WATER_COLOUR = (28.0, 48.0, 72.0)


@dataclass
class BlockContext:
    rng: np.random.Generator
    quad: list[tuple[float, float]]
    polygon: Polygon
    features: list[Feature] = field(default_factory=list)
    obstacles: list[Rect] = field(default_factory=list)   # buildings, for placement tests
    trees: list[tuple[float, float, float]] = field(default_factory=list)
    pools: list[tuple[float, float, float]] = field(default_factory=list)

    def edge(self, k: int):
        """Start point, unit direction, inward normal and length of inner edge k."""
        a, b = self.quad[k], self.quad[(k + 1) % 4]
        length = math.hypot(b[0] - a[0], b[1] - a[1])
        d = ((b[0] - a[0]) / length, (b[1] - a[1]) / length)
        n = (-d[1], d[0])
        cx, cy = self.centroid()
        if (cx - a[0]) * n[0] + (cy - a[1]) * n[1] < 0:
            n = (-n[0], -n[1])
        return a, d, n, length

    def centroid(self) -> tuple[float, float]:
        return (sum(p[0] for p in self.quad) / 4.0, sum(p[1] for p in self.quad) / 4.0)

    def area(self) -> float:
        q = self.quad
        return 0.5 * abs(sum(q[k][0] * q[(k + 1) % 4][1] - q[(k + 1) % 4][0] * q[k][1]
                             for k in range(4)))

    def random_point(self) -> tuple[float, float]:
        s, t = self.rng.random(), self.rng.random()
        q0, q1, q2, q3 = self.quad
        top = (q0[0] + (q1[0] - q0[0]) * s, q0[1] + (q1[1] - q0[1]) * s)
        bottom = (q3[0] + (q2[0] - q3[0]) * s, q3[1] + (q2[1] - q3[1]) * s)
        return (top[0] + (bottom[0] - top[0]) * t, top[1] + (bottom[1] - top[1]) * t)

    def fits(self, rect: Rect, margin: float, inside_margin: float = 0.3) -> bool:
        """Inside the block and clear of every building by ``margin`` metres."""
        if not all(self.polygon.contains(x, y, inside_margin) for x, y in rect.corners()):
            return False
        return not any(rect.overlaps(o, margin) for o in self.obstacles)

    def clear_of_buildings(self, x: float, y: float, radius: float) -> bool:
        return all(o.distance(x, y) > radius for o in self.obstacles)

    def add_building(self, rect: Rect, colour, material: int, height: float, ridge: float):
        self.obstacles.append(rect)
        self.features.append(Feature(LAYER_BUILDING, "building", rect, BUILDING, material,
                                     colour, height=height, ridge=ridge))

    def add_tree(self, x: float, y: float, r: float) -> None:
        rng = self.rng
        height = min(15.0, max(3.0, 1.0 + r * rng.uniform(1.6, 2.9)))
        tone = rng.uniform(0.85, 1.12)
        colour = (165.0 * tone + rng.uniform(-8, 8), 78.0 * tone + rng.uniform(-6, 6),
                  84.0 * tone + rng.uniform(-6, 6))
        self.trees.append((x, y, r))
        self.features.append(Feature(LAYER_TREE, "tree", Disc(x, y, r, roughness=0.3), TREE,
                                     FOLIAGE, colour, height=height))

    def scatter_trees(self, count: int, r_range=(1.8, 4.5), spacing: float = 0.6,
                      around=None, spread: float = 8.0) -> None:
        """Place up to ``count`` trees clear of buildings, pools and each other."""
        for _ in range(count):
            for _attempt in range(6):
                r = self.rng.uniform(*r_range)
                if around is None:
                    x, y = self.random_point()
                else:
                    x = around[0] + self.rng.normal(0.0, spread)
                    y = around[1] + self.rng.normal(0.0, spread)
                    if not self.polygon.contains(x, y, 0.0):
                        continue
                if not self.clear_of_buildings(x, y, 0.85 * r):
                    continue
                if any(math.hypot(x - px, y - py) < pr + 0.5 * r for px, py, pr in self.pools):
                    continue
                if any(math.hypot(x - tx, y - ty) < spacing * (r + tr)
                       for tx, ty, tr in self.trees):
                    continue
                self.add_tree(x, y, r)
                break

    def add_clutter(self, shape, colour=None, material: int = CLUTTER_STUFF,
                    height: float | None = None) -> None:
        if colour is None:
            colour = CLUTTER_COLOURS[int(self.rng.integers(len(CLUTTER_COLOURS)))]
        if height is None:
            height = 0.0 if material == WATER else self.rng.uniform(0.3, 2.5)
        self.features.append(Feature(LAYER_CLUTTER, "area", shape, CLUTTER, material, colour,
                                     height=height))

    def paving(self, shape, colour=None, material: int = PAVING) -> None:
        if colour is None:
            g = self.rng.uniform(135.0, 165.0)
            colour = (g - 4.0, g, g + 2.0)
        self.features.append(Feature(LAYER_GROUND, "area", shape, IMPERVIOUS, material, colour))


def _roof(rng: np.random.Generator, tile_share: float):
    """(material, colour) of a roof."""
    if rng.random() < tile_share:
        tone = rng.uniform(0.8, 1.15)
        return ROOF_TILE, (150.0 * tone + rng.uniform(-12, 12), 132.0 * tone + rng.uniform(-12, 12),
                           96.0 * tone + rng.uniform(-8, 8))
    g = rng.uniform(85.0, 175.0)
    return ROOF_FLAT, (g - rng.uniform(0, 10), g, g + rng.uniform(0, 10))


def _along(a, d, n, t, offset):
    return (a[0] + d[0] * t + n[0] * offset, a[1] + d[1] * t + n[1] * offset)


def build_residential(ctx: BlockContext) -> list[Feature]:
    """Detached and terraced houses along the streets, gardens with trees behind them."""
    rng = ctx.rng
    tile_share = rng.uniform(0.55, 0.95)
    for k in range(4):
        a, d, n, length = ctx.edge(k)
        t = rng.uniform(0.5, 5.0)
        while True:
            width, depth, setback = rng.uniform(10, 22), rng.uniform(11, 17), rng.uniform(1.5, 5.0)
            gap = rng.uniform(1.5, 6.0)
            if t + width > length:
                break
            centre = _along(a, d, n, t + width / 2, setback + depth / 2)
            house = Rect(*centre, width / 2, depth / 2, *d)
            if ctx.fits(house, 1.5):
                _add_house(ctx, house, a, d, n, t, width, depth, setback, gap, tile_share)
            t += width + gap
        if rng.random() < 0.5:  # a row of street trees on the sidewalk
            for s in np.arange(rng.uniform(3, 8), length - 3, rng.uniform(9, 14)):
                x, y = _along(a, d, n, s, -1.2)
                ctx.add_tree(x, y, rng.uniform(2.0, 3.5))
    _garden_clutter(ctx)
    ctx.scatter_trees(int(ctx.area() / 55 * rng.uniform(0.6, 1.4)), r_range=(2.0, 5.0))
    return ctx.features


def _garden_clutter(ctx: BlockContext) -> None:
    """Pools, sheds with odd roofs, storage yards."""
    rng = ctx.rng
    if rng.random() < 0.8:
        for _attempt in range(12):
            x, y = ctx.random_point()
            yard = Rect(x, y, rng.uniform(5, 10), rng.uniform(3, 6), *ctx.edge(0)[1])
            if ctx.fits(yard, 1.0):
                ctx.add_clutter(yard)
                ctx.pools.append((x, y, math.hypot(yard.hu, yard.hv) * 0.8))
                break
    for _ in range(int(rng.integers(1, 5))):
        x, y = ctx.random_point()
        if rng.random() < 0.3:
            shape = Rect(x, y, rng.uniform(2, 4), rng.uniform(1.5, 2.5), *ctx.edge(0)[1])
            if ctx.clear_of_buildings(x, y, 5.0):
                ctx.add_clutter(shape, WATER_COLOUR, WATER)  # garden pool
        else:
            shape = Rect(x, y, rng.uniform(1.0, 3.0), rng.uniform(1.0, 2.5), *ctx.edge(0)[1])
            if ctx.clear_of_buildings(x, y, 3.5):
                ctx.add_clutter(shape)


def _add_house(ctx, house, a, d, n, t, width, depth, setback, gap, tile_share):
    rng = ctx.rng
    material, colour = _roof(rng, tile_share)
    eave = rng.uniform(3.5, 8.0)
    ridge = rng.uniform(2.0, 4.5) if material == ROOF_TILE else 0.0
    ctx.add_building(house, colour, material, eave, ridge)
    if rng.random() < 0.3:  # an L-shaped wing reaching into the garden
        wing_w, wing_len = rng.uniform(5.0, 8.0), rng.uniform(4.0, 9.0)
        at = t + wing_w / 2 if rng.random() < 0.5 else t + width - wing_w / 2
        centre = _along(a, d, n, at, setback + depth + wing_len / 2 - 0.5)
        wing = Rect(*centre, wing_len / 2 + 0.5, wing_w / 2, *n)
        others = ctx.obstacles[:-1]  # the wing touches its own house by design
        if all(ctx.polygon.contains(x, y, 0.3) for x, y in wing.corners()) and \
                not any(wing.overlaps(o, 1.0) for o in others):
            ctx.add_building(wing, colour, material, eave, ridge * 0.8)
    if gap >= 4.0 and rng.random() < 0.7:  # driveway beside the house, sometimes a car on it
        along = t + width + gap / 2
        drive_len = setback + depth * 0.7
        centre = _along(a, d, n, along, drive_len / 2)
        ctx.paving(Rect(*centre, drive_len / 2, 1.5, *n))
        if rng.random() < 0.45:
            parked_at = _along(a, d, n, along, rng.uniform(2.8, 4.0))
            ctx.features.append(car_feature(rng, *parked_at, *n))


def build_apartments(ctx: BlockContext) -> list[Feature]:
    """A perimeter block: long buildings along the streets around a green courtyard."""
    rng = ctx.rng
    depth, setback = rng.uniform(12.0, 16.0), rng.uniform(0.5, 3.0)
    material, colour = _roof(rng, 0.5)
    eave = rng.uniform(9.0, 17.0)
    ridge = rng.uniform(3.0, 5.0) if material == ROOF_TILE else 0.0
    open_side = int(rng.integers(0, 4)) if rng.random() < 0.4 else -1
    for k in range(4):
        if k == open_side:
            continue
        a, d, n, length = ctx.edge(k)
        centre = _along(a, d, n, length / 2, setback + depth / 2)
        ctx.add_building(Rect(*centre, length / 2, depth / 2, *d), colour, material, eave, ridge)
    cx, cy = ctx.centroid()
    a, d, n, length = ctx.edge(0)
    inner = max(length - 2 * (setback + depth), 4.0)
    ctx.paving(Rect(cx, cy, inner * rng.uniform(0.15, 0.3), inner * rng.uniform(0.1, 0.3), *d))
    ctx.scatter_trees(int(rng.integers(6, 16)), r_range=(2.5, 5.5))
    if rng.random() < 0.6:
        ctx.add_clutter(Rect(cx + rng.normal(0, 5), cy + rng.normal(0, 5), rng.uniform(1.5, 3.0),
                             rng.uniform(1.0, 2.0), *d))
    return ctx.features


def build_commercial(ctx: BlockContext) -> list[Feature]:
    """Flat-roofed halls on a paved lot with parked cars and a few containers."""
    rng = ctx.rng
    ctx.paving(ctx.polygon, colour=(118.0, 122.0, 126.0) if rng.random() < 0.5 else None)
    a0, d0, n0, _ = ctx.edge(0)
    for _ in range(int(rng.integers(1, 3))):
        for _attempt in range(30):
            x, y = ctx.random_point()
            hall = Rect(x, y, rng.uniform(10, 24), rng.uniform(8, 16), *d0)
            if ctx.fits(hall, 8.0, inside_margin=6.0):
                _, colour = _roof(rng, 0.0)
                ctx.add_building(hall, colour, ROOF_FLAT, rng.uniform(5.0, 14.0), 0.0)
                break
    for k in range(4):
        a, d, n, length = ctx.edge(k)
        occupancy = rng.uniform(0.2, 0.6)
        for row_offset in (3.0, 13.5):
            for t in np.arange(3.0, length - 3.0, 2.7):
                slot = Rect(*_along(a, d, n, t, row_offset), 2.5, 1.3, *n)
                if not ctx.fits(slot, 1.0, inside_margin=0.5):
                    continue
                line = Rect(*_along(a, d, n, t + 1.35, row_offset), 2.4, 0.07, *n)
                ctx.features.append(Feature(LAYER_MARKING, "area", line, IMPERVIOUS, MARKING,
                                            (210.0, 214.0, 214.0)))
                if rng.random() < occupancy:
                    heading = n if rng.random() < 0.5 else (-n[0], -n[1])
                    ctx.features.append(car_feature(rng, slot.cx, slot.cy, *heading))
    for _ in range(int(rng.integers(2, 9))):
        x, y = ctx.random_point()
        box = Rect(x, y, rng.uniform(2.5, 6.5), rng.uniform(1.2, 2.5), *d0)
        if ctx.fits(box, 1.0):
            ctx.add_clutter(box)
    for k in range(4):
        a, d, n, length = ctx.edge(k)
        if rng.random() < 0.5:
            for s in np.arange(rng.uniform(2, 6), length - 2, rng.uniform(8, 12)):
                x, y = _along(a, d, n, s, 0.8)
                if ctx.clear_of_buildings(x, y, 3.0):
                    ctx.add_tree(x, y, rng.uniform(2.0, 3.5))
    return ctx.features


def build_park(ctx: BlockContext) -> list[Feature]:
    """Lawn, clumps of trees, gravel paths, sometimes a pond or a play area."""
    rng = ctx.rng
    tone = rng.uniform(0.9, 1.08)
    ctx.features.append(Feature(LAYER_GROUND, "area", ctx.polygon, LOW_VEGETATION, LAWN,
                                (188.0 * tone, 112.0, 106.0)))
    cx, cy = ctx.centroid()
    gravel = (175.0, 170.0, 150.0)
    for k in (0, 1):
        a, d, n, length = ctx.edge(k)
        b, e, m, length_b = ctx.edge(k + 2)
        start = _along(a, d, n, rng.uniform(0.2, 0.8) * length, -0.5)
        end = _along(b, e, m, rng.uniform(0.2, 0.8) * length_b, -0.5)
        mid = (cx + rng.normal(0, 6), cy + rng.normal(0, 6))
        half = rng.uniform(1.1, 1.8)
        ctx.paving(Capsule(*start, *mid, half), gravel, GRAVEL)
        ctx.paving(Capsule(*mid, *end, half), gravel, GRAVEL)
    if rng.random() < 0.45:
        x, y = ctx.random_point()
        r = rng.uniform(5.0, 11.0)
        ctx.pools.append((x, y, r))
        ctx.add_clutter(Disc(x, y, r, roughness=0.25), WATER_COLOUR, WATER)
    if rng.random() < 0.4:
        x, y = ctx.random_point()
        ctx.add_clutter(Rect(x, y, rng.uniform(4, 8), rng.uniform(3, 6), *ctx.edge(0)[1]),
                        (225.0, 205.0, 160.0))
    for _ in range(int(rng.integers(3, 6))):
        ctx.scatter_trees(int(rng.integers(8, 16)), r_range=(2.5, 6.0), spacing=0.5,
                          around=ctx.random_point(), spread=9.0)
    return ctx.features


def build_yard(ctx: BlockContext) -> list[Feature]:
    """A building site or storage yard: bare soil and heaps (clutter), huts, containers."""
    rng = ctx.rng
    soil = (rng.uniform(120, 170), rng.uniform(110, 150), rng.uniform(85, 110))
    ctx.add_clutter(ctx.polygon, soil, height=rng.uniform(0.0, 0.5))
    a0, d0, n0, length0 = ctx.edge(0)
    ctx.paving(Rect(*_along(a0, d0, n0, length0 / 2, 3.0), length0 / 2, 3.0, *d0))
    for _ in range(int(rng.integers(1, 4))):
        x, y = ctx.random_point()
        hut = Rect(x, y, rng.uniform(3, 7), rng.uniform(2, 4), *d0)
        if ctx.fits(hut, 2.0):
            _, colour = _roof(rng, 0.0)
            ctx.add_building(hut, colour, ROOF_FLAT, rng.uniform(2.5, 4.0), 0.0)
    for _ in range(int(rng.integers(3, 10))):
        x, y = ctx.random_point()
        box = Rect(x, y, rng.uniform(2.5, 6.5), rng.uniform(1.2, 2.5), *d0)
        if ctx.fits(box, 1.0):
            ctx.add_clutter(box)
    for t in np.arange(rng.uniform(3, 8), length0 - 3, rng.uniform(6, 20)):
        ctx.features.append(car_feature(rng, *_along(a0, d0, n0, t, 1.5), *d0))
    ctx.scatter_trees(int(rng.integers(0, 6)))
    return ctx.features


BLOCK_BUILDERS = {
    "residential": build_residential,
    "apartments": build_apartments,
    "commercial": build_commercial,
    "park": build_park,
    "yard": build_yard,
}
_BLOCK_WEIGHTS = (("residential", 0.48), ("apartments", 0.2), ("commercial", 0.13), ("park", 0.15),
                  ("yard", 0.04))


def choose_block_kind(rng: np.random.Generator) -> str:
    u = rng.random()
    for name, weight in _BLOCK_WEIGHTS:
        if u < weight:
            return name
        u -= weight
    return _BLOCK_WEIGHTS[-1][0]
