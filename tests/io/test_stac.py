"""`--stac` on predict, vectorize and batch (:mod:`rsseg.io.stac`).

Items and Collections are validated with pystac's validator against the STAC core
schemas that ship with pystac and the extension schemas vendored in
tests/data/stac; any other schema would need the network, which makes the
validation fail: the check is offline by construction.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from pystac.validation.stac_validator import JsonSchemaSTACValidator

from rsseg.classes import ISPRS
from rsseg.cli import run
from rsseg.io.stac import CLASSIFICATION, PROJECTION

SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "stac"
MODEL = "baff_skipnet"  # with --weights random: small and fast


def rsseg(*args) -> int:
    return run([str(a) for a in args])


class OfflineValidator(JsonSchemaSTACValidator):
    """pystac's JSON-schema validator that never downloads a schema."""

    def _get_schema(self, schema_uri: str) -> dict:
        if schema_uri not in self.schema_cache:
            raise AssertionError(f"schema {schema_uri} is not available offline")
        return self.schema_cache[schema_uri]


@pytest.fixture(scope="module")
def validator():
    """Core schemas shipped with pystac plus the vendored extension schemas."""
    v = OfflineValidator()
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        v.schema_cache[schema["$id"].rstrip("#")] = schema
    return v


def validate(path: Path, validator) -> dict:
    data = json.loads(path.read_text())
    checked = pystac.validation.validate_dict(data, validator=validator)
    assert set(data.get("stac_extensions", [])) <= set(checked)  # every extension checked
    return data


@pytest.fixture
def scene(make_geotiff):
    rng = np.random.default_rng(3)
    data = np.repeat(np.repeat(rng.integers(0, 255, (3, 10, 14)), 8, 1), 8, 2).astype(np.uint8)
    path = make_geotiff(data, transform=Affine(0.5, 0, 500000.0, 0, -0.5, 5300000.0))
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(TIFFTAG_DATETIME="2024:06:01 10:30:00")
    return path


def predict(scene, out, *extra) -> int:
    return rsseg("predict", scene, "--model", MODEL, "--weights", "random", "-o", out,
                 "--tile", 64, "--overlap", 16, "--no-progress", *extra)


def test_predict_item_describes_grid_classes_model_and_assets(scene, tmp_path,
                                                              validator):
    out, probs, gpkg = tmp_path / "classes.tif", tmp_path / "conf.tif", tmp_path / "classes.gpkg"
    assert predict(scene, out, "--probs", probs, "--vector", gpkg, "--stac") == 0
    item = validate(tmp_path / "classes.stac.json", validator)
    assert {PROJECTION, CLASSIFICATION} <= set(item["stac_extensions"])
    props = item["properties"]
    with rasterio.open(out) as ds:
        assert props["proj:epsg"] == ds.crs.to_epsg() == 32632
        assert props["proj:shape"] == [ds.height, ds.width] == [80, 112]
        assert props["proj:transform"] == list(ds.transform)[:6]
        assert props["proj:bbox"] == list(ds.bounds)
        # The WGS 84 footprint, checked with an independent transform of the corners.
        from rasterio.warp import transform
        lons, lats = transform(ds.crs, "EPSG:4326", [ds.bounds.left, ds.bounds.right],
                               [ds.bounds.bottom, ds.bounds.top])
    west, south, east, north = item["bbox"]
    assert west == pytest.approx(min(lons), abs=1e-7) and east == pytest.approx(max(lons), abs=1e-7)
    assert south == pytest.approx(min(lats), abs=1e-7) and north == pytest.approx(max(lats), abs=1e-7)
    assert props["datetime"] == "2024-06-01T10:30:00Z"  # the scene's TIFF date
    assert props["rsseg:model"] == MODEL and props["rsseg:weights"] == "random"
    import rsseg as package
    assert props["rsseg:version"] == package.__version__
    assert props["rsseg:source"] == scene.name
    assert "rsseg:tta" not in props  # said only when test-time augmentation was used
    assert "rsseg:zoom" not in props  # likewise --zoom

    assets = item["assets"]
    assert {k: a["href"] for k, a in assets.items()} == {
        "classes": "./classes.tif", "confidence": "./conf.tif", "vector": "./classes.gpkg"}
    assert "cloud-optimized" in assets["classes"]["type"]
    assert assets["vector"]["type"] == "application/geopackage+sqlite3"
    classes = assets["classes"]["classification:classes"]
    expected = [(i, n, "%02X%02X%02X" % c) for i, (n, c) in enumerate(zip(ISPRS.names,
                                                                         ISPRS.colours))]
    assert [(c["value"], c["name"], c["color_hint"]) for c in classes[:-1]] == expected
    assert classes[-1] == {"value": 255, "name": "nodata", "description": "no data",
                           "nodata": True}
    assert assets["vector"]["classification:classes"] == classes
    # pystac reads it back, and every asset resolves to a file GDAL/OGR opens.
    back = pystac.Item.from_file(str(tmp_path / "classes.stac.json"))
    for asset in back.assets.values():
        assert Path(asset.get_absolute_href()).is_file()


def test_vectorize_completes_the_predict_item(scene, tmp_path, validator):
    out = tmp_path / "classes.tif"
    assert predict(scene, out, "--stac", "--tta", "flip", "--zoom", "1.5") == 0
    first = json.loads((tmp_path / "classes.stac.json").read_text())
    assert "vector" not in first["assets"] and first["properties"]["rsseg:tta"] == "flip"
    assert first["properties"]["rsseg:zoom"] == 1.5
    # Same stem: the Item is completed, no --overwrite needed; provenance is kept.
    assert rsseg("vectorize", out, "-o", tmp_path / "classes.gpkg", "--stac",
                 "--no-progress") == 0
    item = validate(tmp_path / "classes.stac.json", validator)
    assert item["assets"]["vector"]["href"] == "./classes.gpkg"
    assert item["properties"]["rsseg:model"] == MODEL
    assert item["properties"]["rsseg:tta"] == "flip"
    assert item["properties"]["rsseg:zoom"] == 1.5
    assert item["properties"]["datetime"] == first["properties"]["datetime"]
    # predicted again without --tta: the replaced Item does not keep the old run's views
    assert predict(scene, out, "--stac", "--overwrite") == 0
    again = json.loads((tmp_path / "classes.stac.json").read_text())
    assert "rsseg:tta" not in again["properties"]
    assert "rsseg:zoom" not in again["properties"]
    # Another name, another folder: its own Item, hrefs relative to it.
    (tmp_path / "vec").mkdir()
    assert rsseg("vectorize", out, "-o", tmp_path / "vec" / "polys.gpkg", "--stac",
                 "--no-progress") == 0
    other = validate(tmp_path / "vec" / "polys.stac.json", validator)
    assert other["assets"]["classes"]["href"] == "../classes.tif"
    assert other["properties"]["rsseg:model"] == MODEL  # lent by the raster's Item


def test_existing_item_is_kept_without_overwrite(scene, tmp_path, capsys):
    (tmp_path / "classes.stac.json").write_text("{}")
    assert predict(scene, tmp_path / "classes.tif", "--stac") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "classes.stac.json" in err[0] and "--overwrite" in err[0]
    assert not (tmp_path / "classes.tif").exists()  # refused before any work
    assert (tmp_path / "classes.stac.json").read_text() == "{}"


def test_batch_writes_items_and_a_collection(tmp_path, validator):
    from rsseg.synth.scene import write_synthetic_scene

    city = tmp_path / "city"
    city.mkdir()
    for c in range(2):
        write_synthetic_scene(city / f"tile_0{c}.tif", 96, 96, seed=10 + c,
                              origin=(496000.0 + c * 96 * 0.09, 5420000.0))
    out = tmp_path / "out"
    assert rsseg("batch", city / "*.tif", "-o", out, "--workers", 1, "--model", "baff_skipnet",
                 "--weights", "random", "--tile", 64, "--overlap", 16, "--vector", "--stac",
                 "--probs", "--tta", "flip", "--zoom", "0.5", "--no-progress") == 0
    items = [validate(out / f"tile_0{c}.stac.json", validator) for c in range(2)]
    assert [i["properties"]["rsseg:tta"] for i in items] == ["flip", "flip"]
    assert [i["properties"]["rsseg:zoom"] for i in items] == [0.5, 0.5]
    assert [i["assets"]["vector"]["href"] for i in items] == ["./tile_00.gpkg", "./tile_01.gpkg"]
    assert items[0]["properties"]["rsseg:source"] == "tile_00.tif"
    assert items[1]["assets"]["confidence"]["href"] == "./confidence/tile_01.tif"
    collection = validate(out / "mosaic.stac.json", validator)
    assert collection["type"] == "Collection"
    links = sorted(link["href"] for link in collection["links"] if link["rel"] == "item")
    assert links == ["./tile_00.stac.json", "./tile_01.stac.json"]
    (west, south, east, north), = collection["extent"]["spatial"]["bbox"]
    assert west == min(i["bbox"][0] for i in items) and east == max(i["bbox"][2] for i in items)
    assert {a["href"] for a in collection["assets"].values()} == {
        "./mosaic.vrt", "./mosaic.gpkg", "./confidence.vrt"}
    assert collection["summaries"]["classification:classes"][0]["name"] == ISPRS.names[0]
