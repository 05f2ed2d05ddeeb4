"""Label decoding and boundary erosion for scoring (pure NumPy + scipy.ndimage).

Everything here works on one window at a time and turns a label window into a
uint8 array of class ids in which every pixel that must not be scored holds
``ignore_index``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

ERODE_SHAPES = ("disc", "square")
MAX_LISTED = 5  # unknown values named in a report


@dataclass
class UnknownValues:
    """Counts pixels whose label (or prediction) value is not a known class.

    Keeps the total and the first few distinct values met, with their counts,
    so a report can say *what* was found without remembering every value.
    """

    total: int = 0
    first: dict = field(default_factory=dict)

    def add(self, values: np.ndarray, counts: np.ndarray) -> None:
        self.total += int(counts.sum())
        for value, count in zip(values.tolist(), counts.tolist()):
            key = tuple(value) if isinstance(value, list) else value
            if key in self.first:
                self.first[key] += count
            elif len(self.first) < MAX_LISTED:
                self.first[key] = count

    def merge(self, other: "UnknownValues") -> None:
        self.total += other.total
        for key, count in other.first.items():
            if key in self.first:
                self.first[key] += count
            elif len(self.first) < MAX_LISTED:
                self.first[key] = count

    def describe(self) -> str:
        listed = ", ".join(f"{_fmt(k)} ({n} px)" for k, n in self.first.items())
        more = ", ..." if self.total > sum(self.first.values()) else ""
        return f"{self.total} pixels, e.g. {listed}{more}"

    def to_dict(self) -> dict:
        return {"pixels": self.total,
                "first_values": [{"value": list(k) if isinstance(k, tuple) else k, "pixels": n}
                                 for k, n in self.first.items()]}


def _fmt(key) -> str:
    return f"RGB{key}" if isinstance(key, tuple) else str(key)


def to_uint8(values: np.ndarray, outside: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Integer array -> uint8; values outside 0..255 become ``outside``.

    Returns the uint8 array and a boolean mask of the replaced pixels (None
    when the input is already uint8).
    """
    if values.dtype == np.uint8:
        return values, None
    bad = (values < 0) | (values > 255)
    out = values.astype(np.uint8)
    out[bad] = outside
    return out, bad


def decode_index(raw: np.ndarray, num_classes: int, ignore_index: int,
                 unknown: UnknownValues, missing: np.ndarray | None = None) -> np.ndarray:
    """Class-index label window -> uint8 class ids, unknown values tracked.

    A value is unknown when it is neither a class id nor ``ignore_index``; such
    pixels become ``ignore_index`` and are recorded in ``unknown`` (the caller
    decides, once the scene is read, whether that is an error). Pixels in
    ``missing`` (label nodata) are never unknown.
    """
    bad = (raw < 0) | (raw >= num_classes)
    bad &= raw != ignore_index
    if missing is not None:
        bad &= ~missing
    if bad.any():
        values, counts = np.unique(raw[bad], return_counts=True)
        unknown.add(values, counts)
    labels, _ = to_uint8(raw, ignore_index)
    if bad.any():
        labels = labels.copy() if labels is raw else labels
        labels[bad] = ignore_index
    return labels


def decode_rgb(rgb: np.ndarray, colours, ignore_index: int, unknown: UnknownValues,
               boundary_black: bool, missing: np.ndarray | None = None) -> np.ndarray:
    """(3, H, W) uint8 colour-coded label window -> (H, W) uint8 class ids.

    Pixels whose colour is not a class colour become ``ignore_index`` and are
    recorded in ``unknown``; with ``boundary_black`` (ISPRS ``*_noBoundary``
    files) black (0, 0, 0) means "eroded boundary": ignored, not unknown.
    Pixels in ``missing`` (label nodata) are ignored, never unknown.
    """
    if rgb.shape[0] < 3:
        raise ValueError("an RGB label window needs 3 bands")
    code = rgb[0].astype(np.uint32)
    code <<= 8
    code |= rgb[1]
    code <<= 8
    code |= rgb[2]
    lookup, not_a_class = _colour_lookup(tuple(map(tuple, colours)), ignore_index,
                                         boundary_black)
    labels = lookup[code]
    odd = labels == not_a_class
    if missing is not None:
        odd &= ~missing
    if odd.any():
        values, counts = np.unique(code[odd], return_counts=True)
        triples = np.stack([(values >> 16) & 255, (values >> 8) & 255, values & 255], axis=1)
        unknown.add(triples, counts)
    labels[labels == not_a_class] = ignore_index
    return labels


@functools.lru_cache(maxsize=4)
def _colour_lookup(colours: tuple, ignore_index: int, boundary_black: bool):
    """A 2**24-entry table: 24-bit colour -> class id, and the value marking "no class".

    16 MiB, built once per class scheme; a table lookup per pixel beats
    comparing every pixel with every class colour.
    """
    taken = set(range(len(colours))) | {ignore_index}
    free = [v for v in range(255, -1, -1) if v not in taken]
    if not free:
        raise ValueError("255 classes plus an ignore index leave no value to mark unknown colours")
    not_a_class = free[0]
    lookup = np.full(1 << 24, not_a_class, np.uint8)
    if boundary_black:
        lookup[0] = ignore_index
    for class_id, (r, g, b) in enumerate(colours):
        lookup[(r << 16) | (g << 8) | b] = class_id
    lookup.setflags(write=False)
    return lookup, not_a_class


def disc_footprint(radius: int, shape: str = "disc") -> np.ndarray:
    """Neighbourhood of erosion radius R.

    ``disc``: offsets (dy, dx) with dy^2 + dx^2 <= R^2 (Euclidean distance,
    as ISPRS eroded its reference labels with a circular disc);
    ``square``: max(|dy|, |dx|) <= R (Chebyshev distance).
    """
    if shape not in ERODE_SHAPES:
        raise ValueError(f"erode shape must be one of {ERODE_SHAPES}")
    offsets = np.arange(-radius, radius + 1)
    if shape == "square":
        return np.ones((offsets.size, offsets.size), bool)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius * radius


def boundary_mask(labels: np.ndarray, num_classes: int, radius: int,
                  shape: str = "disc", ignore_index: int = 255) -> np.ndarray:
    """Pixels within ``radius`` of a pixel of another class.

    A pixel with class c is on a boundary when some pixel of the footprint
    centred on it (see :func:`disc_footprint`) holds a different class id.
    Only class ids (0..K-1) take part: ignored pixels and pixels outside the
    array neither are boundaries nor create them, so reading a window with a
    halo of ``radius`` pixels gives exactly the whole-raster answer for the
    window's core.
    """
    valid = (labels < num_classes) & (labels != ignore_index)
    if radius <= 0:
        return np.zeros(labels.shape, bool)
    # A neighbour of another class shows up as a larger maximum or a smaller
    # minimum. Class c is stored as c + 1 so that 0 (for the maximum) and 255
    # (for the minimum) can stand for "no class" without meeting a real one.
    shifted = labels.astype(np.uint8) + np.uint8(1)
    high = np.where(valid, shifted, np.uint8(0))
    low = np.where(valid, shifted, np.uint8(255))
    biggest = neighbourhood_extreme(high, radius, shape, np.maximum, 0)
    smallest = neighbourhood_extreme(low, radius, shape, np.minimum, 255)
    return valid & ((biggest > shifted) | (smallest < shifted))


def neighbourhood_extreme(values: np.ndarray, radius: int, shape: str, pick, outside: int):
    """Maximum (``pick=np.maximum``) or minimum over the footprint of every pixel.

    The footprint is cut into one horizontal run per row offset dy, of
    half-width floor(sqrt(R^2 - dy^2)) for the disc or R for the square:
    running extremes along rows for each half-width (scipy's 1-D filters,
    linear time), then combined over the 2R + 1 row offsets. Pixels beyond the
    array read as ``outside``.
    """
    from scipy import ndimage  # only erosion needs it; keeps `rsseg score` start-up short

    filter1d = ndimage.maximum_filter1d if pick is np.maximum else ndimage.minimum_filter1d
    footprint = disc_footprint(radius, shape)
    half_widths = footprint.sum(axis=1) // 2  # per row offset dy = -R..R
    along_rows = {int(w): filter1d(values, 2 * int(w) + 1, axis=1, mode="constant", cval=outside)
                  for w in set(half_widths.tolist())}
    height = values.shape[0]
    result = np.full_like(values, outside)
    for dy, w in zip(range(-radius, radius + 1), half_widths.tolist()):
        # result[y] = pick(result[y], along_rows[w][y + dy]) where y + dy is inside
        src = along_rows[int(w)][max(dy, 0):height + min(dy, 0)]
        dst = result[max(-dy, 0):height + min(-dy, 0)]
        pick(dst, src, out=dst)
    return result
