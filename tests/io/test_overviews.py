"""rsseg's MODE overviews against GDAL's own (issue 14).

The engine hands the COG driver overviews it computed itself, so every level must be
exactly what GDAL's ``MODE`` resampling gives, for any raster size: the reference is
GDAL, run here on the same pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
import rasterio
import rasterio.shutil

from rsseg.io.overviews import (
    fast_mode_levels,
    mode_halve,
    mode_rows,
    overview_shapes,
    write_mode_overviews,
)

NODATA = 255


def gdal_mode_overviews(tmp_path, classes: np.ndarray, block: int) -> list[np.ndarray]:
    """Every overview level GDAL's COG driver writes for ``classes`` with MODE."""
    h, w = classes.shape
    src, cog = tmp_path / "src.tif", tmp_path / "cog.tif"
    with rasterio.open(src, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(1.0, 0.0, 500000.0, 0.0, -1.0, 0.0),
                       nodata=NODATA) as dst:
        dst.write(classes, 1)
    rasterio.shutil.copy(src, cog, driver="COG", BLOCKSIZE=block, RESAMPLING="MODE",
                         OVERVIEWS="AUTO")
    with rasterio.open(cog) as ds:
        count = len(ds.overviews(1))
    levels = []
    for level in range(count):
        with rasterio.open(cog, overview_level=level) as ds:
            levels.append(ds.read(1))
    return levels


def map_like(h: int, w: int, seed: int, classes: int = 5, nodata_share: float = 0.15):
    """Class noise (many ties) with a nodata sprinkle and a uniform patch."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, classes, (h, w)).astype(np.uint8)
    a[rng.random((h, w)) < nodata_share] = NODATA
    a[: h // 3, : w // 3] = rng.integers(0, 2, (h // 3, w // 3))
    a[h // 2:, w // 2:][: h // 8, : w // 8] = NODATA  # an all-nodata corner
    return a


@pytest.mark.parametrize("h, w, block", [
    (64, 64, 16), (101, 67, 16), (67, 101, 16), (129, 33, 16), (200, 255, 16),
    (5, 1000, 16), (1, 300, 16), (33, 2, 16), (3, 17, 16), (999, 1001, 64), (1000, 1002, 64),
])
def test_every_level_equals_gdal_mode(tmp_path, h, w, block):
    classes = map_like(h, w, seed=h * 7 + w)
    expected = gdal_mode_overviews(tmp_path, classes, block)
    shapes = overview_shapes(h, w, block)
    assert shapes == [level.shape for level in expected]
    src = classes
    for (oh, ow), want in zip(shapes, expected):
        # in bands of 7 output rows, as the engine streams them
        got = np.concatenate([mode_rows(src, oh, ow, NODATA, j, min(oh, j + 7))
                              for j in range(0, oh, 7)])
        np.testing.assert_array_equal(got, want)
        src = got


def test_raw_files_in_and_out_and_the_first_level_halved_block_by_block(tmp_path):
    h, w, block = 512, 768, 64
    classes = map_like(h, w, seed=3, classes=6)
    expected = gdal_mode_overviews(tmp_path, classes, block)
    raw = tmp_path / "classes.raw"
    classes.tofile(raw)
    assert fast_mode_levels(h, w, block)
    paths = [tmp_path / f"level{k}.raw" for k in range(len(expected))]
    shapes = write_mode_overviews(raw, h, w, block, NODATA, paths)
    for path, (oh, ow), want in zip(paths, shapes, expected):
        np.testing.assert_array_equal(np.fromfile(path, np.uint8).reshape(oh, ow), want)
    # The engine halves each band of rows as it is written (even offsets and sides),
    # then computes the smaller levels from that file: the same levels.
    halved = np.concatenate([mode_halve(classes[r:r + 96], NODATA) for r in range(0, h, 96)])
    np.testing.assert_array_equal(halved, expected[0])
    halved.tofile(paths[0])
    for path in paths[1:]:
        path.unlink()
    write_mode_overviews(raw, h, w, block, NODATA, paths, first_done=True)
    for path, (oh, ow), want in zip(paths, shapes, expected):
        np.testing.assert_array_equal(np.fromfile(path, np.uint8).reshape(oh, ow), want)


def test_fast_path_only_where_every_large_level_halves_exactly():
    assert fast_mode_levels(8192, 6000, 512)
    assert fast_mode_levels(10000, 10000, 512)  # 625 -> 312 at the end: small
    assert not fast_mode_levels(8191, 6000, 512)  # first level not an exact halving
    assert not fast_mode_levels(20002, 20002, 512)  # 10001 -> 5000: large and odd
    assert fast_mode_levels(1001, 999, 512)  # odd but small: cheap with any window
    assert not fast_mode_levels(512, 512, 512)  # no overviews at all
