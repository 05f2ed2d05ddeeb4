"""Class COGs are DEFLATE at rsseg's level (issue 14): other bytes than GDAL's default
level, the same pixels at every overview level, and the bytes GDAL writes at that level."""

from __future__ import annotations

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.crs import CRS

from rsseg.classes import ISPRS, NODATA
from rsseg.io.cog import BLOCK, DEFLATE_LEVEL, class_metadata, finish_cog, validate_cog
from rsseg.io.vrt import write_raw_vrt


def class_vrt(tmp_path, shape=(1300, 1100)):
    """A VRT over a raw class raster: 16-px class patches with boundary noise, some nodata."""
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 6, (shape[0] // 16 + 1, shape[1] // 16 + 1)).repeat(16, 0).repeat(16, 1)
    ids = ids[:shape[0], :shape[1]].astype(np.uint8)
    ids[rng.random(shape) < 0.03] = rng.integers(0, 6)
    ids[:40, :70] = NODATA
    raw = tmp_path / "classes.raw"
    ids.tofile(raw)
    return write_raw_vrt(tmp_path / "classes.vrt", raw, shape[1], shape[0], CRS.from_epsg(32632),
                         rasterio.Affine(0.5, 0, 500000, 0, -0.5, 5300000), NODATA,
                         **class_metadata(ISPRS)), ids


def gdal_cog(vrt, dst, **level):
    rasterio.shutil.copy(str(vrt), str(dst), driver="COG", COMPRESS="DEFLATE", PREDICTOR="NO",
                         BLOCKSIZE=BLOCK, RESAMPLING="MODE", OVERVIEWS="AUTO",
                         BIGTIFF="IF_SAFER", **level)
    return dst


def levels(path):
    """The pixels of the full resolution and of every overview."""
    with rasterio.open(path) as ds:
        out = [ds.read(1)]
        for f in ds.overviews(1):
            out.append(ds.read(1, out_shape=(ds.height // f, ds.width // f)))
    return out


def test_class_cog_is_deflate_at_rsseg_level_with_gdal_default_pixels(tmp_path):
    vrt, ids = class_vrt(tmp_path)
    ours = tmp_path / "ours.tif"
    finish_cog(vrt, ours, resampling="mode")
    default = gdal_cog(vrt, tmp_path / "default.tif")
    at_level = gdal_cog(vrt, tmp_path / "level.tif", LEVEL=str(DEFLATE_LEVEL))

    assert DEFLATE_LEVEL != 6 and validate_cog(ours) == []
    assert ours.read_bytes() == at_level.read_bytes()
    assert ours.read_bytes() != default.read_bytes()  # the level is in effect
    ours_levels, default_levels = levels(ours), levels(default)
    assert len(ours_levels) == len(default_levels) > 1
    np.testing.assert_array_equal(ours_levels[0], ids)
    for a, b in zip(ours_levels, default_levels):
        np.testing.assert_array_equal(a, b)
    with rasterio.open(ours) as ds:
        assert ds.compression.name.lower() == "deflate"
