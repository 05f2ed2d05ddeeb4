"""The class COG's overviews, computed by rsseg (issue 14), are GDAL's to the byte.

The engine computes the MODE overviews itself (the first level while the stream
writes, when every blended region starts on even offsets) and the COG driver copies
them. The reference here is the file GDAL writes when it computes them itself from
the same class raster and the same metadata: the two files must be identical.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from rsseg.classes import ISPRS, NODATA
from rsseg.io import overviews
from rsseg.io.cog import class_metadata, finish_cog, validate_cog
from rsseg.io.vrt import write_raw_vrt
from rsseg.predict import engine
from test_pipeline import OneHot, predict, unit_norm
from rsseg.predict.predictor import TorchPredictor


def gdal_made_cog(tmp_path, classes_cog):
    """The COG GDAL writes (computing MODE itself) from the classes of ``classes_cog``."""
    with rasterio.open(classes_cog) as ds:
        classes, crs, transform = ds.read(1), ds.crs, ds.transform
    h, w = classes.shape
    raw, vrt, ref = tmp_path / "ref.raw", tmp_path / "ref.vrt", tmp_path / "ref.tif"
    classes.tofile(raw)
    write_raw_vrt(vrt, raw, w, h, crs, transform, NODATA, **class_metadata(ISPRS))
    finish_cog(vrt, ref, resampling="mode")
    return ref


@pytest.mark.parametrize("shape, tile, overlap, region, halved, large", [
    # even sides, even window starts: the first level halved in the stream
    ((1200, 1100), 256, 64, None, True, overviews.LARGE_LEVEL),
    # odd window starts: every level after the stream
    ((1200, 1100), 250, 63, None, False, overviews.LARGE_LEVEL),
    # an odd side: after the stream, 3 x 3 windows (a small raster)...
    ((1201, 1100), 256, 64, None, False, overviews.LARGE_LEVEL),
    # ... or, were it large, GDAL computes MODE itself
    ((1201, 1100), 256, 64, None, False, 1000),
    # a region: after the stream
    ((1200, 1100), 256, 64, (100, 200, 900, 800), False, overviews.LARGE_LEVEL),
])
def test_class_cog_is_byte_identical_to_gdal_mode(make_geotiff, tmp_path, monkeypatch, shape,
                                                  tile, overlap, region, halved, large):
    monkeypatch.setattr(overviews, "LARGE_LEVEL", large)
    rng = np.random.default_rng(sum(shape) + tile)
    ids = rng.integers(0, 6, (shape[0] // 8 + 1, shape[1] // 8 + 1)).repeat(8, 0).repeat(8, 1)
    ids = ids[:shape[0], :shape[1]].astype(np.uint8)
    ids[rng.random(shape) < 0.2] = rng.integers(0, 6)  # noise: ties in 2 x 2 windows
    data = np.where(rng.random(shape) < 0.05, 255, ids).astype(np.uint16)  # some nodata
    scene = make_geotiff(data, nodata=255)
    runs, computed = [], []
    real_run, real_levels = engine._run, engine.write_mode_overviews

    def spy(*args, **kwargs):
        stats = real_run(*args, **kwargs)
        runs.append(stats["halved"])
        return stats

    def spy_levels(*args, **kwargs):
        computed.append(True)
        return real_levels(*args, **kwargs)

    monkeypatch.setattr(engine, "_run", spy)
    monkeypatch.setattr(engine, "write_mode_overviews", spy_levels)
    out = tmp_path / "classes.tif"
    predict(scene, out, TorchPredictor(OneHot(), "cpu"), unit_norm(1), tile=tile,
            overlap=overlap, region=region)
    assert runs == [halved]
    assert computed == ([True] if large > 1000 else [])  # by rsseg, or by GDAL
    assert validate_cog(out) == []
    with rasterio.open(out) as ds:
        assert len(ds.overviews(1)) >= 1
    assert out.read_bytes() == gdal_made_cog(tmp_path, out).read_bytes()
