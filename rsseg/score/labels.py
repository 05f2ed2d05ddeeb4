"""Label decoding (shared by ``rsseg score`` and ``rsseg train``) and boundary erosion.

Everything here works on one window at a time and turns a label window into a
uint8 array of class ids in which every pixel that must not be scored or
learnt holds ``ignore_index``; a :class:`rsseg.classes.ClassScheme` says what
the label values or colours mean.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from rsseg.classes import NODATA, ClassScheme

ERODE_SHAPES = ("disc", "square")
MAX_LISTED = 5  # unknown values named in a report


LABEL_FORMATS = ("index", "rgb")  # the options also accept isprs-rgb: resolve_label_format
MAX_TRACKED = 4096  # distinct unknown values/colours counted exactly before lumping the rest
TOP_LISTED = 3  # unknown values named in an error


@dataclass
class UnknownValues:
    """Counts pixels whose label (or prediction) value is not a known class.

    Keeps the total and per-value counts of up to :data:`MAX_TRACKED` distinct
    values (JPEG-damaged RGB masks can hold thousands of colours), so a message
    can name the most frequent ones without memory growing with the scene.
    """

    total: int = 0
    counts: dict = field(default_factory=dict)

    def add(self, values: np.ndarray, counts: np.ndarray) -> None:
        self.total += int(counts.sum())
        for value, count in zip(values.tolist(), counts.tolist()):
            key = tuple(value) if isinstance(value, list) else value
            if key in self.counts or len(self.counts) < MAX_TRACKED:
                self.counts[key] = self.counts.get(key, 0) + count

    def merge(self, other: "UnknownValues") -> None:
        self.total += other.total
        for key, count in other.counts.items():
            if key in self.counts or len(self.counts) < MAX_TRACKED:
                self.counts[key] = self.counts.get(key, 0) + count

    def most_frequent(self, n: int = TOP_LISTED) -> list[tuple]:
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:n]

    @property
    def first(self) -> dict:
        """The most frequent few values with their counts (reports)."""
        return dict(self.most_frequent(MAX_LISTED))

    def describe(self, n: int = TOP_LISTED) -> str:
        top = self.most_frequent(n)
        listed = ", ".join(f"{_fmt(k)} ({c} px)" for k, c in top)
        more = ", ..." if self.total > sum(c for _, c in top) else ""
        return f"{self.total} pixels, most frequent: {listed}{more}"

    def to_dict(self) -> dict:
        return {"pixels": self.total,
                "first_values": [{"value": list(k) if isinstance(k, tuple) else k, "pixels": n}
                                 for k, n in self.most_frequent(MAX_LISTED)]}


def _fmt(key) -> str:
    if isinstance(key, tuple):
        return "#{:02X}{:02X}{:02X} RGB{}".format(*key, key)
    return str(key)


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


def resolve_label_format(label_format: str, classes: str | None) -> tuple[str, str | None]:
    """``isprs-rgb`` is ``--classes isprs --label-format rgb``; returns (format, classes).

    InputError when ``isprs-rgb`` is combined with another scheme.
    """
    from rsseg.errors import InputError

    if label_format != "isprs-rgb":
        return label_format, classes
    if classes not in (None, "isprs"):
        raise InputError(f"--label-format isprs-rgb means --classes isprs; for {classes} "
                         "use --label-format rgb")
    return "rgb", "isprs"


class LabelDecoder:
    """Label windows -> uint8 class ids 0..K-1, ``ignore_index`` where not scored.

    Index labels: a pixel holding a class's ``value`` is that class; a value in
    the scheme's ``ignore`` list, ``ignore_index`` or 255 (nodata) is ignored.
    RGB labels: a pixel whose colour is a class colour is that class; an ignore
    colour is ignored; with ``boundary_black`` (ISPRS ``*_noBoundary`` files)
    black means "eroded boundary" and is ignored too. Anything else is unknown:
    ignored, and counted in the :class:`UnknownValues` passed to :meth:`decode`
    (the caller decides, once a file is read, whether that is an error). Pixels
    in ``missing`` (label nodata) are ignored, never unknown.
    """

    def __init__(self, scheme: ClassScheme, label_format: str, ignore_index: int = NODATA,
                 boundary_black: bool = False):
        if label_format not in LABEL_FORMATS:
            raise ValueError(f"label_format must be one of {LABEL_FORMATS}, not {label_format!r}")
        self.scheme = scheme
        self.rgb = label_format == "rgb"
        self.ignore_index = ignore_index
        if self.rgb:
            self.lookup, self.not_a_class = _colour_lookup(
                scheme.colours, scheme.ignore_colours, ignore_index, boundary_black)
        else:
            self.lookup, self.not_a_class = _value_lookup(
                scheme.label_values, scheme.ignore_values, ignore_index)
            self._wide_ignore = np.array([v for v in scheme.ignore_values
                                          if not 0 <= v <= 255], np.int64)

    @property
    def bands(self) -> int:
        return 3 if self.rgb else 1

    @property
    def identity(self) -> bool:
        """Index labels whose values are the class ids, nothing else ignored (score's fast path)."""
        return (not self.rgb and self.scheme.values is None and not self.scheme.ignore_values)

    def decode(self, raw: np.ndarray, unknown: UnknownValues,
               missing: np.ndarray | None = None) -> np.ndarray:
        """(bands, H, W) or (H, W) label window -> (H, W) uint8 class ids."""
        if self.rgb:
            if raw.ndim != 3 or raw.shape[0] < 3:
                raise ValueError("an RGB label window needs 3 bands")
            code = raw[0].astype(np.uint32)
            code <<= 8
            code |= raw[1]
            code <<= 8
            code |= raw[2]
        else:
            code = raw[0] if raw.ndim == 3 else raw
            if code.dtype.kind == "f":  # fractions and NaN are unknown
                whole = np.isfinite(code) & (code == np.round(code))
                code = np.where(whole, code, -1).astype(np.int64)
        labels, outside = self._look_up(code)
        odd = labels == self.not_a_class
        if outside is not None:
            odd |= outside
        if missing is not None:
            odd &= ~missing
        if odd.any():
            values, counts = np.unique(code[odd], return_counts=True)
            if self.rgb:
                values = np.stack([(values >> 16) & 255, (values >> 8) & 255, values & 255],
                                  axis=1)
            unknown.add(values, counts)
        labels[(labels == self.not_a_class) | (outside if outside is not None else False)] = \
            self.ignore_index
        if missing is not None:
            labels[missing] = self.ignore_index
        return labels

    def _look_up(self, code: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self.rgb or code.dtype == np.uint8:
            return self.lookup[code], None
        inside = (code >= 0) & (code <= 255)
        labels = self.lookup[np.where(inside, code, 0).astype(np.intp)]
        outside = ~inside
        if self._wide_ignore.size:
            skipped = outside & np.isin(code, self._wide_ignore)
            labels[skipped] = self.ignore_index
            outside &= ~skipped
        return labels, outside


def _free_marker(taken: set) -> int:
    free = [v for v in range(255, -1, -1) if v not in taken]
    if not free:
        raise ValueError("255 classes plus an ignore index leave no value to mark unknown labels")
    return free[0]


@functools.lru_cache(maxsize=8)
def _value_lookup(values: tuple, ignore_values: tuple, ignore_index: int):
    """A 256-entry table: label value -> class id, and the value marking "no class"."""
    not_a_class = _free_marker(set(range(len(values))) | {ignore_index})
    lookup = np.full(256, not_a_class, np.uint8)
    for v in (*ignore_values, ignore_index, NODATA):
        if 0 <= v <= 255:
            lookup[v] = ignore_index
    for class_id, v in enumerate(values):
        lookup[v] = class_id
    if ignore_index in values and ignore_index != NODATA:
        lookup[ignore_index] = ignore_index  # an explicit ignore index wins over a class
    lookup.setflags(write=False)
    return lookup, not_a_class


@functools.lru_cache(maxsize=4)
def _colour_lookup(colours: tuple, ignore_colours: tuple, ignore_index: int,
                   boundary_black: bool):
    """A 2**24-entry table: 24-bit colour -> class id, and the value marking "no class".

    16 MiB, built once per class scheme; a table lookup per pixel beats
    comparing every pixel with every class colour.
    """
    not_a_class = _free_marker(set(range(len(colours))) | {ignore_index})
    lookup = np.full(1 << 24, not_a_class, np.uint8)
    ignored = list(ignore_colours) + ([(0, 0, 0)] if boundary_black else [])
    for r, g, b in ignored:
        lookup[(r << 16) | (g << 8) | b] = ignore_index
    for class_id, (r, g, b) in enumerate(colours):
        lookup[(r << 16) | (g << 8) | b] = class_id
    lookup.setflags(write=False)
    return lookup, not_a_class


def read_label(ds, label_format: str, window=None, out_shape=None, resampling=None):
    """A label window as (bands, H, W): 1 band for index labels, 3 (RGB) for colour labels.

    A one-band palette raster (a palette PNG) read as RGB is expanded through its
    colour table, so palette and true-colour masks decode alike.
    """
    from rasterio.enums import Resampling

    resampling = Resampling.nearest if resampling is None else resampling
    if label_format == "index" or ds.count >= 3:
        indexes = [1] if label_format == "index" else [1, 2, 3]
        shape = None if out_shape is None else (len(indexes), *out_shape)
        return ds.read(indexes=indexes, window=window, out_shape=shape, resampling=resampling)
    raw = ds.read(1, window=window, out_shape=out_shape, resampling=resampling)
    return palette_table(ds)[:, raw]


def palette_table(ds) -> np.ndarray:
    """(3, 256) uint8 RGB of a one-band raster's colour table; ValueError without one."""
    cmap = ds.colormap(1)  # ValueError when the band has no colour table
    table = np.zeros((3, 256), np.uint8)
    for value, rgba in cmap.items():
        if 0 <= value < 256:
            table[:, value] = rgba[:3]
    return table


def label_band_problem(ds, label_format: str) -> str | None:
    """Why ``ds`` cannot hold labels of ``label_format``, or None."""
    dtype = ds.dtypes[0]
    if label_format == "index":
        if ds.count >= 3 and dtype == "uint8":
            return (f"label has {ds.count} bands; for colour-coded labels pass "
                    "--label-format rgb (and --classes)")
        if not np.issubdtype(np.dtype(dtype), np.integer):
            return f"label has {dtype} pixels; expected integer class values"
        return None
    if dtype != "uint8":
        return f"--label-format rgb needs uint8 colours, got {dtype}"
    if ds.count >= 3:
        return None
    try:
        palette_table(ds)
    except ValueError:
        return (f"--label-format rgb needs 3 bands (or a palette), got {ds.count} band(s) "
                "without a colour table; class values need --label-format index")
    return None


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
