"""What the synthetic scene is made of: classes, materials, layers and features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rsseg.synth.shapes import BBox, Rect

# Classes (GeoSeg order, see rsseg.classes).
IMPERVIOUS, BUILDING, LOW_VEGETATION, TREE, CAR, CLUTTER = range(6)

# Materials decide texture; a feature's colour is its own.
LAWN, FOLIAGE, ASPHALT, SIDEWALK, PAVING, MARKING, ROOF_TILE, ROOF_FLAT, CAR_BODY, \
    CLUTTER_STUFF, WATER, GRAVEL = range(12)
NUM_MATERIALS = 12

# Painting order: later layers cover earlier ones.
LAYER_GROUND, LAYER_SIDEWALK, LAYER_ROAD, LAYER_MARKING, LAYER_CLUTTER, LAYER_BUILDING, \
    LAYER_CAR, LAYER_TREE = range(8)

# Shadow displacement per metre of object height (towards north-west: the sun
# stands in the south-east, y grows southwards).
SHADOW_DX, SHADOW_DY = -0.3, -0.38


@dataclass(slots=True)
class Feature:
    """One object to paint: a shape plus what it is, looks like and how high it stands."""

    layer: int
    kind: str            # "area", "building", "car", "tree", "marking"
    shape: object
    label: int
    material: int
    colour: tuple[float, float, float]  # IR, R, G before shading and texture
    height: float = 0.0  # metres above ground (eaves for gabled roofs)
    ridge: float = 0.0   # extra height at a gable ridge (along the rectangle's u axis)
    key: tuple = ()      # global painting order within a layer
    reach: BBox = (0.0, 0.0, 0.0, 0.0)  # bbox of footprint and shadow, set by the layout

    def bbox(self) -> BBox:
        return self.shape.bbox()

    @property
    def casts_shadow(self) -> bool:
        return self.kind in ("building", "tree") and self.height > 0


CAR_COLOURS = (  # IR, R, G of common car paints in a false-colour IRRG image
    (215.0, 218.0, 222.0), (42.0, 44.0, 50.0), (150.0, 156.0, 162.0), (95.0, 175.0, 55.0),
    (55.0, 45.0, 85.0), (75.0, 78.0, 80.0), (200.0, 190.0, 70.0), (120.0, 60.0, 110.0),
)


def car_feature(rng: np.random.Generator, cx: float, cy: float, dx: float, dy: float) -> Feature:
    """A car centred at (cx, cy), heading along (dx, dy)."""
    length = rng.uniform(4.0, 5.0)
    width = rng.uniform(1.75, 2.0)
    colour = CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))]
    shade = rng.uniform(0.9, 1.1)
    return Feature(LAYER_CAR, "car", Rect(cx, cy, length / 2, width / 2, dx, dy), CAR, CAR_BODY,
                   tuple(c * shade for c in colour), height=rng.uniform(1.4, 1.7))
