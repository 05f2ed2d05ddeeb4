"""Training scenes: an image, its label raster and optional extra bands (DSM) on one grid.

Everything here reads windows; no function loads a whole scene. Problems with the
inputs (missing files, grids that do not match, band counts that differ between
scenes, labels with unknown values or colours) raise :class:`rsseg.errors.InputError`
naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from rsseg.classes import NODATA, ClassScheme
from rsseg.errors import InputError
from rsseg.io.scene import pixel_size_m
from rsseg.score.labels import (LABEL_FORMATS, LabelDecoder, UnknownValues, label_band_problem,
                                read_label)


@dataclass(frozen=True)
class ScenePaths:
    """Paths of one training or validation scene."""

    image: str
    label: str
    dsm: str | None = None


@dataclass(frozen=True)
class SceneInfo:
    """What was learnt about a scene when it was checked (cheap to pickle to workers)."""

    paths: ScenePaths
    width: int
    height: int
    image_bands: int
    band_names: tuple[str, ...]
    gsd_m: float | None = None  # pixel size in metres (projected CRS in metres only)

    @property
    def num_bands(self) -> int:
        return len(self.band_names)


def pair_scenes(images: Sequence[str], labels: Sequence[str],
                dsms: Sequence[str] | None = None, what: str = "training") -> list[ScenePaths]:
    """Pair image, label (and DSM) paths in the order given; counts must agree."""
    images, labels, dsms = list(images), list(labels), list(dsms or [])
    if not images:
        raise InputError(f"no {what} images given")
    if len(images) != len(labels):
        raise InputError(f"{len(images)} {what} images but {len(labels)} label files; "
                         "give one label raster per image, in the same order")
    if dsms and len(dsms) != len(images):
        raise InputError(f"{len(images)} {what} images but {len(dsms)} DSM files; "
                         "give one DSM per image, in the same order")
    return [ScenePaths(str(i), str(l), str(dsms[k]) if dsms else None)
            for k, (i, l) in enumerate(zip(images, labels))]


def _open(path: str):
    from rsseg.io.scene import open_raster

    return open_raster(path, "training input")


def _same_grid(a, b) -> bool:
    from rsseg.io.scene import same_grid

    # Labels made by other tools often carry a transform rounded in its last digits.
    return same_grid(a, b, tolerance=1e-6 * max(abs(a.transform.a), 1e-9))


def _grid_text(ds) -> str:
    t = ds.transform
    return f"{ds.width}x{ds.height} px, origin ({t.c:.3f}, {t.f:.3f}), pixel {t.a:g} m"


def _grid_problem(what: str, other, img, image_path: str) -> str | None:
    """Why ``other`` (label, DSM) does not fit the image (naming the image); None if it does."""
    if (other.width, other.height) != (img.width, img.height):
        return (f"{what} is {other.width}x{other.height} px but its image "
                f"{image_path} is {img.width}x{img.height} px")
    if not _same_grid(img, other):
        return (f"{what} grid ({_grid_text(other)}) does not match the image "
                f"{image_path} ({_grid_text(img)})")
    return None


def _band_names(ds, prefix: str) -> list[str]:
    return [d if d else f"{prefix}{i + 1}" for i, d in enumerate(ds.descriptions)]


def inspect_scene(paths: ScenePaths, label_format: str) -> SceneInfo:
    """Open the rasters of one scene and check that they fit together."""
    with _open(paths.image) as img, _open(paths.label) as lab:
        problem = _grid_problem("label", lab, img, paths.image)
        if problem:
            raise InputError(problem, paths.label)
        problem = label_band_problem(lab, label_format)
        if problem:
            raise InputError(problem, paths.label)
        names = _band_names(img, "B")
        if paths.dsm:
            with _open(paths.dsm) as dsm:
                problem = _grid_problem("DSM", dsm, img, paths.image)
                if problem:
                    raise InputError(problem, paths.dsm)
                names += ["DSM"] if dsm.count == 1 else [f"DSM{i + 1}" for i in range(dsm.count)]
        return SceneInfo(paths, img.width, img.height, img.count, tuple(names),
                         pixel_size_m(img.crs, img.transform))


def common_gsd_m(infos: Sequence[SceneInfo]) -> float | None:
    """The scenes' shared GSD (within 1 %), recorded in checkpoints for `rsseg export`."""
    values = [info.gsd_m for info in infos]
    if not values or any(v is None for v in values):
        return None
    if max(values) > 1.01 * min(values):
        return None
    return float(np.median(values))


def inspect_scenes(scenes: Sequence[ScenePaths], label_format: str,
                   expect_bands: int | None = None, what: str = "training") -> list[SceneInfo]:
    """Inspect every scene; all must have the same number of bands."""
    if label_format not in LABEL_FORMATS:
        raise InputError(f"unknown label format {label_format!r}; use one of {LABEL_FORMATS}")
    infos = [inspect_scene(s, label_format) for s in scenes]
    first = expect_bands if expect_bands is not None else infos[0].num_bands
    for info in infos:
        if info.num_bands != first:
            src = info.paths.image + (f" + {info.paths.dsm}" if info.paths.dsm else "")
            raise InputError(f"{what} scene has {info.num_bands} band(s) but the model input "
                             f"has {first}; every scene needs the same bands", src)
    return infos


class SceneReader:
    """Windowed, optionally resampled reads of one scene's bands and labels.

    File handles are opened on first use, so a reader can be pickled to
    DataLoader workers before it has opened anything. Label values or colours
    that are neither a class nor ignored become NODATA and are counted in
    ``unknown``: :func:`rsseg.training.normalisation.scan_scenes` reads every
    label once before training and turns them into an error (unless
    ``--ignore-unknown``).
    """

    def __init__(self, info: SceneInfo, label_format: str, classes: ClassScheme):
        self.info = info
        self.label_format = label_format
        self.classes = classes
        self.decoder = LabelDecoder(classes, label_format, NODATA)
        self.unknown = UnknownValues()
        self._handles = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handles"] = None
        return state

    def _open_all(self):
        if self._handles is None:
            p = self.info.paths
            self._handles = (_open(p.image), _open(p.label), _open(p.dsm) if p.dsm else None)
        return self._handles

    def close(self) -> None:
        if self._handles is not None:
            for h in self._handles:
                if h is not None:
                    h.close()
            self._handles = None

    def read(self, col: int, row: int, width: int, height: int,
             out_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Bands (C, h, w) float32 and labels (h, w) uint8 of a window inside the scene.

        With ``out_size`` = (h, w) the window is resampled: bilinear for the
        bands, nearest for the labels (class ids must not be averaged).
        """
        from rasterio.enums import Resampling
        from rasterio.windows import Window

        img, lab, dsm = self._open_all()
        win = Window(col, row, width, height)
        shape = None if out_size is None else tuple(out_size)
        bands = [self._read(img, win, shape, Resampling.bilinear)]
        if dsm is not None:
            bands.append(self._read(dsm, win, shape, Resampling.bilinear))
        x = np.concatenate(bands, axis=0)
        raw = read_label(lab, self.label_format, window=win, out_shape=shape,
                         resampling=Resampling.nearest)
        y = self.decoder.decode(raw, self.unknown)
        valid = self._valid_mask(img, win, shape)
        if valid is not None:
            y = np.where(valid, y, NODATA).astype(np.uint8)
        return x, y

    def read_labels(self, col: int, row: int, width: int, height: int) -> np.ndarray:
        """Labels (h, w) uint8 of a window, NODATA where the image has no data."""
        from rasterio.windows import Window

        img, lab, _ = self._open_all()
        win = Window(col, row, width, height)
        y = self.decoder.decode(read_label(lab, self.label_format, window=win), self.unknown)
        valid = self._valid_mask(img, win, None)
        return y if valid is None else np.where(valid, y, NODATA).astype(np.uint8)

    @staticmethod
    def _read(ds, win, shape, resampling) -> np.ndarray:
        out_shape = None if shape is None else (ds.count, *shape)
        return ds.read(window=win, out_shape=out_shape, resampling=resampling,
                       out_dtype="float32")

    @staticmethod
    def _valid_mask(ds, win, shape) -> np.ndarray | None:
        """Where the image has data; None when every pixel is valid (the common case)."""
        from rasterio.enums import MaskFlags, Resampling

        if all(MaskFlags.all_valid in flags for flags in ds.mask_flag_enums):
            return None
        out_shape = None if shape is None else shape
        m = ds.dataset_mask(window=win, out_shape=out_shape, resampling=Resampling.nearest)
        return m > 0


def scene_blocks(width: int, height: int, block: int = 1024):
    """Windows (col, row, w, h) tiling a width x height grid, row by row."""
    for row in range(0, height, block):
        for col in range(0, width, block):
            yield col, row, min(block, width - col), min(block, height - row)

