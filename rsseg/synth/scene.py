"""Synthetic Vaihingen-style scenes: IR/R/G orthophoto, DSM and ISPRS labels.

The scene is a small town (streets, houses, apartment blocks, commercial lots
with parked cars, parks, building sites) described in metres by
:mod:`rsseg.synth.layout` and rasterised window by window by
:mod:`rsseg.synth.render`. Memory therefore stays flat whatever the scene
size, and the same seed gives byte-identical files.

Files written (all tiled 512 x 512, deflate-compressed GeoTIFFs):

- the scene: bands IR, R, G (uint8 values) and DSM (metres). With a separate
  ``dsm_path`` the scene is 3-band uint8 and the DSM a 1-band float32 file;
  otherwise the DSM is band 4 and the whole file is float32 (IR, R, G then hold
  integral values 0-255).
- ``labels_path``: uint8 class ids in GeoSeg order with the ISPRS colour table.
- ``labels_rgb_path``: the ISPRS colour code as 3-band uint8 RGB.

With ``nodata_border`` > 0 a collar of that many pixels is nodata: 0 in a
uint8 scene, -9999 in float32 files (set as the dataset nodata), 255 in the
class labels, black (0, 0, 0) in the RGB labels.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path

import numpy as np

from rsseg.atomic import atomic_output, check_output_path
from rsseg.classes import ISPRS
from rsseg.synth.layout import SceneLayout
from rsseg.synth.render import LABEL_NODATA, SceneGrid, render_window

DEFAULT_ORIGIN = (496000.0, 5420000.0)  # top-left corner, UTM 32N, near Vaihingen an der Enz
DEFAULT_CRS = "EPSG:32632"
DEFAULT_PIXEL_SIZE = 0.09
FLOAT_NODATA = -9999.0
UINT8_NODATA = 0
TILE = 512
BAND_NAMES = ("IR", "R", "G", "DSM")
_CACHE_BYTES = 64 * 1024 * 1024  # GDAL block cache while writing: bounds memory on huge scenes


def write_synthetic_scene(path, width, height, seed=0, labels_path=None, labels_rgb_path=None,
                          dsm_path=None, nodata_border=0, crs=DEFAULT_CRS,
                          pixel_size=DEFAULT_PIXEL_SIZE, origin=None, *, overwrite=True,
                          progress="off", block_size=TILE) -> dict:
    """Write a synthetic scene (and optionally its labels and a separate DSM).

    ``origin`` is the (x, y) of the top-left corner in ``crs`` units (default
    near Vaihingen in UTM 32N). ``progress`` is a :class:`rsseg.progress.Progress`
    mode ("bar", "json" or "off"). ``block_size`` (16-512) is the side of the
    windows rendered at a time; it changes memory use and speed, never a byte
    of the output.
    Invalid arguments raise ``ValueError``; outputs that cannot be written raise
    :class:`rsseg.errors.OutputError` and leave nothing at any output path.

    Returns a summary: paths, shape, dtype, bands, CRS, transform and the
    pixel count of each class (``class_counts``, by class name).
    """
    import rasterio
    from affine import Affine

    width, height, nodata_border, block_size = _check_sizes(width, height, nodata_border,
                                                            block_size)
    seed = _check_seed(seed)
    pixel_size = float(pixel_size)
    if not np.isfinite(pixel_size) or pixel_size <= 0:
        raise ValueError(f"pixel size must be a positive number of CRS units, not {pixel_size}")
    crs = _check_crs(crs)
    x0, y0 = DEFAULT_ORIGIN if origin is None else (float(origin[0]), float(origin[1]))
    transform = Affine(pixel_size, 0.0, x0, 0.0, -pixel_size, y0)
    outputs = {"scene": path, "labels": labels_path, "labels_rgb": labels_rgb_path,
               "dsm": dsm_path}
    outputs = {k: Path(v) for k, v in outputs.items() if v is not None}
    _check_distinct(outputs)
    for out in outputs.values():
        check_output_path(out, overwrite)

    grid = SceneGrid(width, height, pixel_size, seed, nodata_border,
                     row_offset=round((DEFAULT_ORIGIN[1] - y0) / pixel_size),
                     col_offset=round((x0 - DEFAULT_ORIGIN[0]) / pixel_size))
    base = dict(driver="GTiff", width=width, height=height, crs=crs, transform=transform,
                tiled=True, blockxsize=TILE, blockysize=TILE, compress="deflate",
                BIGTIFF="IF_SAFER")
    profiles = _profiles(base, outputs, nodata_border > 0)
    started = time.perf_counter()
    counts = np.zeros(256, np.int64)
    with contextlib.ExitStack() as stack:
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=_CACHE_BYTES))
        datasets = {}
        for name, out in outputs.items():
            tmp = stack.enter_context(atomic_output(out, overwrite=overwrite))
            datasets[name] = stack.enter_context(rasterio.open(tmp, "w", **profiles[name]))
        _describe(datasets, seed)
        layout = SceneLayout(seed, cache_cells=_cache_cells(grid))
        _render_all(datasets, grid, layout, block_size, counts, progress)
    return _summary(outputs, grid, crs, transform, counts, time.perf_counter() - started)


def _render_all(datasets, grid: SceneGrid, layout: SceneLayout, block_size: int,
                counts: np.ndarray, progress: str) -> None:
    """Render and write tile by tile, in row-major tile order.

    Writes are always whole 512 x 512 tiles in the same order, so the bytes of
    the files do not depend on ``block_size`` (the side of the windows
    rendered at a time inside a tile).
    """
    from rasterio.windows import Window

    from rsseg.progress import Progress

    tiles = [(r, c, min(TILE, grid.height - r), min(TILE, grid.width - c))
             for r in range(0, grid.height, TILE) for c in range(0, grid.width, TILE)]
    mean_tile_mpx = grid.width * grid.height / len(tiles) / 1e6  # edge tiles are smaller
    with Progress(len(tiles), "synth", mode=progress, unit="tile",
                  mpx_per_unit=mean_tile_mpx) as bar:
        for row, col, h, w in tiles:
            labels, image, dsm, valid = _render_tile(layout, grid, row, col, h, w, block_size)
            counts += np.bincount(labels.ravel(), minlength=256)
            _write_tile(datasets, Window(col, row, w, h), labels, image, dsm, valid)
            bar.update()


def _cache_cells(grid: SceneGrid) -> int:
    """Lattice cells to keep generated: a few rows of cells across the scene's width.

    Tiles are rendered row by row, so a tile row needs at most about four rows of
    cells; keeping five means each cell is generated once, and memory grows with
    the scene's width only (about 50 kB per cell), not its area.
    """
    cells_across = math.ceil(grid.width * grid.pixel_size / SceneLayout.SPACING) + 4
    return 5 * cells_across


def _render_tile(layout, grid, row, col, h, w, block_size):
    if block_size >= max(h, w):
        out = render_window(layout, grid, row, col, h, w)
        return out.labels, out.image, out.dsm, out.valid
    labels = np.empty((h, w), np.uint8)
    image = np.empty((3, h, w), np.uint8)
    dsm = np.empty((h, w), np.float32)
    valid = np.empty((h, w), bool)
    for r in range(0, h, block_size):
        for c in range(0, w, block_size):
            bh, bw = min(block_size, h - r), min(block_size, w - c)
            out = render_window(layout, grid, row + r, col + c, bh, bw)
            labels[r:r + bh, c:c + bw] = out.labels
            image[:, r:r + bh, c:c + bw] = out.image
            dsm[r:r + bh, c:c + bw] = out.dsm
            valid[r:r + bh, c:c + bw] = out.valid
    return labels, image, dsm, valid


def _write_tile(datasets, window, labels, image, dsm, valid) -> None:
    scene = datasets["scene"]
    if scene.dtypes[0] == "float32":
        stack = np.concatenate([image.astype(np.float32), dsm[None]])
        stack[:, ~valid] = FLOAT_NODATA
        scene.write(stack, window=window)
    else:
        scene.write(image, window=window)
    if "dsm" in datasets:
        datasets["dsm"].write(np.where(valid, dsm, np.float32(FLOAT_NODATA))[None], window=window)
    if "labels" in datasets:
        datasets["labels"].write(labels[None], window=window)
    if "labels_rgb" in datasets:
        datasets["labels_rgb"].write(labels_to_rgb(labels), window=window)


def labels_to_rgb(labels: np.ndarray) -> np.ndarray:
    """(h, w) class ids -> (3, h, w) ISPRS colour code; nodata and unknown ids black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:ISPRS.num_classes] = ISPRS.colours
    return np.moveaxis(lut[labels], -1, 0)


def _profiles(base: dict, outputs: dict, has_nodata: bool) -> dict:
    separate_dsm = "dsm" in outputs
    # ZLEVEL 1: float rasters compress 3x faster than at the default level, ~5 % larger.
    float_profile = dict(base, dtype="float32", predictor=3, zlevel=1,
                         nodata=FLOAT_NODATA if has_nodata else None)
    profiles = {
        "scene": dict(base, count=3, dtype="uint8", predictor=2, zlevel=1, photometric="RGB",
                      nodata=UINT8_NODATA if has_nodata else None) if separate_dsm
        else dict(float_profile, count=4),
        "dsm": dict(float_profile, count=1),
        "labels": dict(base, count=1, dtype="uint8", nodata=LABEL_NODATA),
        "labels_rgb": dict(base, count=3, dtype="uint8", predictor=2, photometric="RGB"),
    }
    return {k: profiles[k] for k in outputs}


def _describe(datasets: dict, seed: int) -> None:
    """Band names, units, colour table and class names, so the files explain themselves."""
    common = {"SYNTH_GENERATOR": "rsseg synth", "SYNTH_SEED": str(seed)}
    scene = datasets["scene"]
    for band in range(scene.count):
        scene.set_band_description(band + 1, BAND_NAMES[band])
    if scene.count == 4:
        scene.set_band_unit(4, "metre")
    scene.update_tags(**common, BANDS=",".join(BAND_NAMES[:scene.count]))
    if "dsm" in datasets:
        datasets["dsm"].set_band_description(1, "DSM")
        datasets["dsm"].set_band_unit(1, "metre")
        datasets["dsm"].update_tags(**common)
    class_tags = {f"CLASS_{i}": name for i, name in enumerate(ISPRS.names)}
    if "labels" in datasets:
        labels = datasets["labels"]
        labels.set_band_description(1, "class")
        labels.write_colormap(1, ISPRS.colormap())
        labels.update_tags(**common, CLASSES=",".join(ISPRS.names))
        labels.update_tags(1, **class_tags)
    if "labels_rgb" in datasets:
        rgb = datasets["labels_rgb"]
        for band, name in enumerate(("red", "green", "blue")):
            rgb.set_band_description(band + 1, name)
        rgb.update_tags(**common, CLASSES=",".join(ISPRS.names),
                        COLOURS=";".join(",".join(map(str, c)) for c in ISPRS.colours))


def _summary(outputs, grid: SceneGrid, crs, transform, counts, seconds) -> dict:
    valid = int(counts[:ISPRS.num_classes].sum())
    class_counts = {name: int(counts[i]) for i, name in enumerate(ISPRS.names)}
    return {
        "path": str(outputs["scene"]),
        "labels_path": str(outputs["labels"]) if "labels" in outputs else None,
        "labels_rgb_path": str(outputs["labels_rgb"]) if "labels_rgb" in outputs else None,
        "dsm_path": str(outputs["dsm"]) if "dsm" in outputs else None,
        "width": grid.width,
        "height": grid.height,
        "shape": (grid.height, grid.width),
        "bands": list(BAND_NAMES[:3] if "dsm" in outputs else BAND_NAMES),
        "dtype": "uint8" if "dsm" in outputs else "float32",
        "nodata": (UINT8_NODATA if "dsm" in outputs else FLOAT_NODATA)
        if grid.nodata_border > 0 else None,
        "crs": crs.to_string(),
        "transform": tuple(transform)[:6],
        "pixel_size": grid.pixel_size,
        "seed": grid.seed,
        "nodata_border": grid.nodata_border,
        "class_counts": class_counts,
        "class_fractions": {k: (v / valid if valid else 0.0) for k, v in class_counts.items()},
        "nodata_pixels": int(counts[LABEL_NODATA]),
        "seconds": round(seconds, 3),
    }


def _check_sizes(width, height, border, block_size):
    width, height, border, block_size = int(width), int(height), int(border), int(block_size)
    if width < 1 or height < 1:
        raise ValueError(f"scene size must be at least 1x1 pixels, not {width}x{height}")
    if border < 0:
        raise ValueError(f"nodata border must be >= 0 pixels, not {border}")
    if 2 * border >= min(width, height):
        raise ValueError(f"a nodata border of {border} px leaves no data in a "
                         f"{width}x{height} scene")
    if not 16 <= block_size <= TILE:
        raise ValueError(f"block size must be 16 to {TILE} pixels, not {block_size}")
    return width, height, border, block_size


def _check_seed(seed) -> int:
    seed = int(seed)
    if not 0 <= seed < 2 ** 63:
        raise ValueError(f"seed must be a non-negative integer below 2**63, not {seed}")
    return seed


def _check_crs(crs):
    import rasterio
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        with rasterio.Env():  # routes GDAL's own error print to logging
            parsed = CRS.from_user_input(crs)
    except CRSError as exc:
        raise ValueError(f"invalid CRS {crs!r}: {exc}") from None
    return parsed


def _check_distinct(outputs: dict) -> None:
    seen = {}
    for name, out in outputs.items():
        key = os.path.abspath(out)
        if key in seen:
            raise ValueError(f"the {seen[key]} and {name} outputs are the same file: {out}")
        seen[key] = name
