"""``rsseg predict --vector``: the class raster and its polygons in one run."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch.nn as nn

from rsseg.cli import run

MODEL = "tiny_vector_net"


@pytest.fixture
def tiny_model(register_test_model):
    def build(in_channels=3, num_classes=6):
        return nn.Sequential(nn.Conv2d(in_channels, 8, 5, padding=2), nn.ReLU(),
                             nn.Conv2d(8, num_classes, 1))

    return register_test_model(MODEL, build)


def test_predict_with_vector_writes_polygons_that_cover_the_classes(tiny_model, make_geotiff,
                                                                    tmp_path):
    rng = np.random.default_rng(3)
    data = np.repeat(np.repeat(rng.integers(0, 255, (3, 12, 16)), 8, 1), 8, 2).astype(np.uint8)
    scene = make_geotiff(data)
    out, probs, gpkg = tmp_path / "c.tif", tmp_path / "p.tif", tmp_path / "c.gpkg"
    assert run([str(a) for a in ("predict", scene, "--model", MODEL, "--weights", "random",
                                 "-o", out, "--probs", probs, "--vector", gpkg, "--tile", 48,
                                 "--overlap", 12, "--no-progress")]) == 0
    with rasterio.open(out) as ds:
        classes = ds.read(1)
        pixel_area = abs(ds.transform.a * ds.transform.e)
        crs = ds.crs
    polys = gpd.read_file(gpkg, layer="classes")
    assert polys.crs == crs
    assert {"class_id", "class_name", "area_m2", "perimeter_m", "mean_confidence"} <= set(polys)
    for cid, count in zip(*np.unique(classes[classes != 255], return_counts=True)):
        area = polys.loc[polys.class_id == cid].geometry.area.sum()
        assert area == pytest.approx(count * pixel_area, rel=1e-9)
    assert polys.mean_confidence.between(0, 1).all()


def test_predict_vector_existing_output_is_refused_before_work(tiny_model, make_geotiff,
                                                               tmp_path, capsys):
    scene = make_geotiff(np.zeros((3, 20, 20), np.uint8))
    gpkg = tmp_path / "c.gpkg"
    gpkg.write_text("old")
    out = tmp_path / "c.tif"
    assert run([str(a) for a in ("predict", scene, "--model", MODEL, "--weights", "random",
                                 "-o", out, "--vector", gpkg, "--no-progress")]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert not out.exists() and gpkg.read_text() == "old"


def test_predict_vector_existing_style_sidecar_is_refused_before_work(tiny_model, make_geotiff,
                                                                      tmp_path, capsys):
    scene = make_geotiff(np.zeros((3, 20, 20), np.uint8))
    (tmp_path / "c.qml").write_text("my style")
    out = tmp_path / "c.tif"
    assert run([str(a) for a in ("predict", scene, "--model", MODEL, "--weights", "random",
                                 "-o", out, "--vector", tmp_path / "c.gpkg",
                                 "--no-progress")]) == 1
    assert "c.qml" in capsys.readouterr().err
    assert not out.exists() and (tmp_path / "c.qml").read_text() == "my style"
