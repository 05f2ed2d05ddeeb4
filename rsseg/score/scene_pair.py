"""Raster access for scoring: open, check, align and read (prediction, label) windows.

A :class:`ScenePair` opens one prediction and its label, checks that they can be
compared (integer classes, same grid unless aligned), and hands out windows of
both as uint8 class arrays ready for :func:`rsseg.score.metrics.joint_histogram`:

* prediction: nodata (the raster's nodata value, 255 by default) becomes 255;
* label: every pixel that must not be scored (``ignore_index``, label nodata,
  eroded boundary, unknown colour) holds ``ignore_index``.

Windows are groups of whole blocks of the prediction, about
``window_pixels`` in size, so memory does not depend on the scene size.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rsseg.classes import NODATA, ClassScheme
from rsseg.errors import InputError
from rsseg.score.labels import (LABEL_FORMATS, LabelDecoder, UnknownValues, boundary_mask,
                                label_band_problem, read_label, to_uint8)

DEFAULT_WINDOW_PIXELS = 1 << 22  # ~4 Mpx: a few MB per array, few Python round trips


@dataclass
class ScoreOptions:
    """How labels are read and what is ignored (shared by every scene)."""

    label_format: str = "index"
    # --classes (a scheme, or its file or built-in name): how labels code the classes;
    # None: the prediction's own classes.
    classes: ClassScheme | str | None = None
    ignore_index: int = 255
    eroded: bool = False
    erode_radius: int = 0
    erode_shape: str = "disc"
    ignore_unknown: bool = False
    align: bool = False
    window_pixels: int = DEFAULT_WINDOW_PIXELS

    def __post_init__(self):
        from rsseg.classes import load_scheme
        from rsseg.score.labels import resolve_label_format

        if isinstance(self.classes, ClassScheme):
            given = self.classes
        else:
            given = None
        fmt, name = resolve_label_format(self.label_format, None if given else self.classes)
        self.label_format = fmt
        if given is None and name is not None:
            self.classes = load_scheme(name)
        if self.label_format not in LABEL_FORMATS:
            raise ValueError(f"label_format must be one of {LABEL_FORMATS}")
        if not 0 <= int(self.ignore_index) <= 255:
            raise ValueError("ignore_index must be in 0..255")
        if self.erode_radius < 0:
            raise ValueError("erode_radius must be >= 0")


@dataclass
class ReadCounts:
    """Pixels set aside while reading one scene (besides what the histogram shows)."""

    label_nodata: int = 0
    boundary: int = 0
    ignore_value: int = 0  # label pixels holding the ignore value (black with --eroded RGB)
    unknown_label: UnknownValues = field(default_factory=UnknownValues)


# ---------------------------------------------------------------- opening

def open_raster(path: str | os.PathLike, role: str):
    """rasterio dataset, or an InputError naming the file and the problem."""
    from rsseg.io.scene import open_raster as _open

    return _open(path, role)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _is_integer(dtype: str) -> bool:
    return np.issubdtype(np.dtype(dtype), np.integer)


def _default_scheme() -> ClassScheme:
    from rsseg.classes import load_scheme

    return load_scheme()


# ---------------------------------------------------------------- grids

def grid_mismatch(pred, label) -> str | None:
    """What differs between two rasters' grids (CRS, transform, shape), or None."""
    problems = []
    if pred.crs != label.crs:
        problems.append(f"CRS {_crs_name(pred.crs)} vs {_crs_name(label.crs)}")
    if (pred.height, pred.width) != (label.height, label.width):
        problems.append(f"size {pred.width}x{pred.height} vs {label.width}x{label.height}")
    tp, tl = np.array(tuple(pred.transform)[:6]), np.array(tuple(label.transform)[:6])
    tolerance = 1e-6 * max(abs(pred.transform.a), abs(pred.transform.e), 1e-12)
    if not np.allclose(tp, tl, rtol=0, atol=tolerance):
        problems.append(f"transform {_fmt_transform(pred.transform)} vs "
                        f"{_fmt_transform(label.transform)}")
    return "; ".join(problems) or None


def _crs_name(crs) -> str:
    if crs is None:
        return "none"
    return crs.to_string() if len(crs.to_string()) < 40 else "(custom CRS)"


def _fmt_transform(t) -> str:
    return f"(origin {t.c:.6g}, {t.f:.6g}; pixel {t.a:.6g} x {t.e:.6g})"


def check_overlap(pred, label, label_path, pred_path) -> None:
    """Fail when the label's footprint misses the prediction's (for --align)."""
    from rasterio.warp import transform_bounds

    if label.crs is None or pred.crs is None:
        raise InputError(f"cannot align {label_path} onto {pred_path}: "
                         "both rasters need a CRS")
    try:
        left, bottom, right, top = transform_bounds(label.crs, pred.crs, *label.bounds)
    except Exception as exc:  # noqa: BLE001 - PROJ errors come in several types
        raise InputError(f"cannot reproject {label_path} to the CRS of {pred_path}: "
                         f"{_one_line(exc)}") from exc
    pb = pred.bounds
    if left >= pb.right or right <= pb.left or bottom >= pb.top or top <= pb.bottom:
        raise InputError(f"label {label_path} does not overlap prediction {pred_path}")


# ---------------------------------------------------------------- windows

def processing_windows(width: int, height: int, block_shape: tuple[int, int],
                       window_pixels: int = DEFAULT_WINDOW_PIXELS) -> list:
    """Row-major windows made of whole blocks, each about ``window_pixels`` large."""
    from rasterio.windows import Window

    block_h, block_w = (max(1, int(v)) for v in block_shape)
    side = max(1, int(math.isqrt(max(1, window_pixels))))
    win_w = min(width, block_w * max(1, side // block_w))
    win_h = min(height, block_h * max(1, window_pixels // (win_w * block_h)))
    return [Window(col, row, min(win_w, width - col), min(win_h, height - row))
            for row in range(0, height, win_h) for col in range(0, width, win_w)]


# ---------------------------------------------------------------- one scene

class ScenePair:
    """An open (prediction, label) pair that reads comparable uint8 windows."""

    def __init__(self, pred_path, label_path, options: ScoreOptions):
        self.pred_path, self.label_path = Path(pred_path), Path(label_path)
        self.options = options
        self.counts = ReadCounts()
        self.pred = open_raster(pred_path, "prediction")
        self._datasets = [self.pred]
        try:
            self._check_prediction()
            self.scheme, self.scheme_source = self._class_scheme()
            self.decoder = LabelDecoder(self.scheme, options.label_format,
                                        options.ignore_index, boundary_black=options.eroded)
            self.label_file = open_raster(label_path, "label")
            self._datasets.append(self.label_file)
            self._check_label()
            self.label = self._grid_matched_label()
        except BaseException:
            self.close()
            raise
        nodata = self.pred.nodata
        self.pred_nodata = NODATA if nodata is None else nodata

    # -- checks

    def _class_scheme(self) -> tuple[ClassScheme, str]:
        """--classes, else the prediction's own; both: they must name the same classes."""
        from rsseg.io.classes import read_raster_classes

        given = self.options.classes
        found, source = read_raster_classes(self.pred)
        if given is None:
            return found or _default_scheme(), source
        if found is not None and tuple(n.lower() for n in found.names) != \
                tuple(n.lower() for n in given.names):
            raise InputError(f"prediction classes ({', '.join(found.names)}) differ from "
                             f"--classes {given.name or ''} ({', '.join(given.names)})",
                             self.pred_path)
        return given, f"--classes {given.name}".rstrip()

    def _check_prediction(self) -> None:
        dtype = self.pred.dtypes[0]
        if self.pred.count != 1:
            raise InputError(f"prediction has {self.pred.count} bands; a class raster has one "
                             "band of class ids (is this the image rather than its classes?)",
                             self.pred_path)
        if not _is_integer(dtype):
            raise InputError(f"prediction has {dtype} pixels; expected integer class ids "
                             "(a class raster such as rsseg predict writes)", self.pred_path)

    def _check_label(self) -> None:
        problem = label_band_problem(self.label_file, self.options.label_format)
        if problem:
            raise InputError(problem, self.label_path)

    def _grid_matched_label(self):
        mismatch = grid_mismatch(self.pred, self.label_file)
        if mismatch is None:
            return self.label_file
        if not self.options.align:
            raise InputError(f"grids differ between prediction {self.pred_path} and label "
                             f"{self.label_path}: {mismatch}; pass --align to reproject the "
                             "label onto the prediction grid")
        check_overlap(self.pred, self.label_file, self.label_path, self.pred_path)
        return self._warped_label()

    def _warped_label(self):
        from rasterio.enums import ColorInterp, Resampling
        from rasterio.vrt import WarpedVRT

        src = self.label_file
        # Pixels outside the label's footprint must read as "no label": through
        # the label's own nodata or alpha band if it has one, else an added alpha.
        has_alpha = ColorInterp.alpha in src.colorinterp
        vrt = WarpedVRT(src, crs=self.pred.crs, transform=self.pred.transform,
                        width=self.pred.width, height=self.pred.height,
                        resampling=Resampling.nearest,
                        add_alpha=src.nodata is None and not has_alpha)
        self._datasets.append(vrt)
        return vrt

    # -- reading

    def windows(self) -> list:
        return processing_windows(self.pred.width, self.pred.height,
                                  self.pred.block_shapes[0], self.options.window_pixels)

    def read(self, window) -> tuple[np.ndarray, np.ndarray]:
        """(prediction, label) uint8 arrays of one window."""
        return self.read_prediction(window), self.read_label(window)

    def read_prediction(self, window) -> np.ndarray:
        raw = self.pred.read(1, window=window)
        k = self.scheme.num_classes
        pred, _ = to_uint8(raw, k if k < NODATA else NODATA)
        if self.pred_nodata != NODATA:
            pred[raw == self.pred_nodata] = NODATA
        return pred

    def read_label(self, window) -> np.ndarray:
        radius = self.options.erode_radius
        if radius <= 0:
            return self._decoded_label(window)
        halo = _grow(window, radius, self.pred.width, self.pred.height)
        top, left = window.row_off - halo.row_off, window.col_off - halo.col_off
        core = (slice(top, top + window.height), slice(left, left + window.width))
        labels = self._decoded_label(halo, core)
        on_edge = boundary_mask(labels, self.scheme.num_classes, radius,
                                self.options.erode_shape, self.options.ignore_index)
        labels, on_edge = labels[core].copy(), on_edge[core]
        labels[on_edge] = self.options.ignore_index
        self.counts.boundary += int(np.count_nonzero(on_edge))
        return labels

    def _decoded_label(self, window, core=(slice(None), slice(None))) -> np.ndarray:
        """The label of ``window``, decoded; pixels are counted only inside ``core`` (the
        window without the erosion halo, which the neighbouring window counts)."""
        opts = self.options
        rgb = opts.label_format == "rgb"
        raw = read_label(self.label, opts.label_format, window=window)
        if not rgb:
            raw = raw[0]
        missing = self._label_missing(raw, window)
        if self.decoder.identity and raw.dtype == np.uint8:
            # Unknown uint8 values are read off the joint histogram later
            # (cheaper than a per-window check).
            labels = raw
        else:
            labels = self.decoder.decode(raw, self.counts.unknown_label, missing=missing)
        self._count_ignore_values(raw[(...,) + core], rgb,
                                  None if missing is None else missing[core])
        if missing is not None and missing.any():
            labels[missing] = opts.ignore_index
            self.counts.label_nodata += int(np.count_nonzero(missing[core]))
        return labels

    def _count_ignore_values(self, raw: np.ndarray, rgb: bool, missing) -> None:
        """Pixels the file itself marks as ignored; in eroded files they are the boundary."""
        opts = self.options
        if rgb:
            if not opts.eroded:
                return
            marked = (raw == 0).all(axis=0)  # black: the eroded boundary of *_noBoundary files
        else:
            marked = raw == opts.ignore_index
        if missing is not None:
            marked &= ~missing
        n = int(np.count_nonzero(marked))
        if opts.eroded:
            self.counts.boundary += n
        else:
            self.counts.ignore_value += n

    def _label_missing(self, raw: np.ndarray, window) -> np.ndarray | None:
        """Label pixels without data: label nodata, or outside the label once aligned."""
        if self.options.align:  # the VRT's mask covers both
            return self.label.read_masks(1, window=window) == 0
        nodata = self.label.nodata
        if nodata is None or (raw.ndim == 2 and nodata == self.options.ignore_index):
            return None  # nothing to do: ignored anyway (and counted as label_ignored)
        return np.all(raw == nodata, axis=0) if raw.ndim == 3 else raw == nodata

    def close(self) -> None:
        for ds in reversed(self._datasets):
            ds.close()
        self._datasets = []

    def __enter__(self) -> "ScenePair":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _grow(window, radius: int, width: int, height: int):
    from rasterio.windows import Window

    col0, row0 = max(0, window.col_off - radius), max(0, window.row_off - radius)
    col1 = min(width, window.col_off + window.width + radius)
    row1 = min(height, window.row_off + window.height + radius)
    return Window(col0, row0, col1 - col0, row1 - row0)
