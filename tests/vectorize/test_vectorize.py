"""rsseg vectorize: streamed block polygonization equals whole-raster polygonization.

Every test writes real GeoTIFFs with rasterio and reads the real GeoPackage back
(pyogrio / geopandas / sqlite3 / ogrinfo). The reference is
``rasterio.features.shapes`` run on the whole array at once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.features import shapes
from scipy import ndimage

from rsseg.classes import ISPRS
from rsseg.cli import run

from conftest import require_tool
from rsseg.errors import InputError, OutputError
from rsseg.vectorize.streaming import vectorize_raster

PIXEL = 0.5
TRANSFORM = Affine(PIXEL, 0.0, 500000.0, 0.0, -PIXEL, 5300000.0)
CRS = "EPSG:32632"


# ---- helpers ---------------------------------------------------------------------------------

def write_classes(path, arr, *, crs=CRS, transform=TRANSFORM, nodata=255, dtype="uint8",
                  tags=None, colormap=None) -> Path:
    h, w = arr.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype=dtype,
                       crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(arr.astype(dtype), 1)
        if tags:
            ds.update_tags(**tags)
        if colormap:
            ds.write_colormap(1, colormap)
    return Path(path)


def blobby(shape, seed, n_classes=6, scale=6.0, nodata_fraction=0.0) -> np.ndarray:
    """Plausible class map: argmax of smooth random fields, plus speckle and a nodata patch."""
    rng = np.random.default_rng(seed)
    fields = ndimage.gaussian_filter(rng.random((n_classes, *shape)), sigma=(0, scale, scale))
    arr = fields.argmax(0).astype(np.uint8)
    speckle = rng.random(shape) < 0.02  # isolated pixels: diagonal contacts across seams
    arr[speckle] = rng.integers(0, n_classes, speckle.sum())
    if nodata_fraction:
        h, w = shape
        ph, pw = int(h * nodata_fraction), int(w * nodata_fraction)
        arr[h // 3:h // 3 + ph, w // 4:w // 4 + pw] = 255
    return arr


def reference(arr, connectivity=4):
    """(class id, polygon) of a whole-array polygonization in map coordinates."""
    out = []
    for geom, value in shapes(arr, mask=arr != 255, connectivity=connectivity,
                              transform=TRANSFORM):
        g = shapely.geometry.shape(geom)
        if connectivity == 8 and not g.is_valid:
            g = shapely.make_valid(g)
        out.append((int(value), g))
    return out


def read_layer(path, layer="classes"):
    import geopandas as gpd

    return gpd.read_file(path, layer=layer)


def signature(geom) -> tuple:
    """Area and bounds rounded: identifies a polygon independent of its vertex order."""
    return tuple(np.round([geom.area, *geom.bounds], 6))


def assert_same_polygons(gdf, ref):
    """Same polygons per class as the reference: counts, areas (1e-6) and exact shapes."""
    for cid in sorted({c for c, _ in ref} | set(gdf.class_id)):
        ref_geoms = sorted((g for c, g in ref if c == cid), key=signature)
        out_geoms = sorted(gdf.geometry[gdf.class_id == cid], key=signature)
        assert len(out_geoms) == len(ref_geoms), f"class {cid}: polygon count differs"
        ref_area = np.array([g.area for g in ref_geoms])
        out_area = np.array([g.area for g in out_geoms])
        np.testing.assert_allclose(out_area, ref_area, rtol=1e-6)
        for o, r in zip(out_geoms, ref_geoms):
            assert o.equals(r), f"class {cid}: polygon differs from whole-raster polygon"


# ---- streamed == whole raster ------------------------------------------------------------------

@pytest.mark.parametrize("shape,block,seed", [
    ((97, 131), 16, 1),
    ((64, 64), 16, 2),      # block edges on the raster edge
    ((50, 203), 17, 3),
    ((120, 90), 41, 4),
])
@pytest.mark.parametrize("connectivity", [4, 8])
def test_streamed_equals_whole_raster(tmp_path, shape, block, seed, connectivity):
    arr = blobby(shape, seed, nodata_fraction=0.2)
    src = write_classes(tmp_path / "classes.tif", arr)
    out = tmp_path / "out.gpkg"
    summary = vectorize_raster(src, out, block_size=block, connectivity=connectivity,
                               progress="off")
    gdf = read_layer(out)
    ref = reference(arr, connectivity)
    assert summary["features"] == len(gdf) == len(ref)
    assert_same_polygons(gdf, ref)
    # Total area per class is its pixel count times the pixel area; nodata has no polygon.
    for cid in range(6):
        got = gdf.area_m2[gdf.class_id == cid].sum()
        assert got == pytest.approx((arr == cid).sum() * PIXEL * PIXEL, rel=1e-9)
    assert 255 not in set(gdf.class_id)
    np.testing.assert_allclose(gdf.area_m2, gdf.geometry.area, rtol=1e-12)
    np.testing.assert_allclose(gdf.perimeter_m, gdf.geometry.length, rtol=1e-12)
    assert gdf.geometry.is_valid.all()
    assert list(gdf.class_name) == [ISPRS.names[c] for c in gdf.class_id]


def test_all_nodata_gives_an_empty_styled_layer(tmp_path):
    src = write_classes(tmp_path / "empty.tif", np.full((40, 40), 255, np.uint8))
    out = tmp_path / "empty.gpkg"
    summary = vectorize_raster(src, out, block_size=16, progress="off")
    assert summary["features"] == 0
    import pyogrio

    info = pyogrio.read_info(out, layer="classes")
    assert info["features"] == 0 and info["geometry_type"] == "Polygon"
    assert list(info["fields"]) == ["class_id", "class_name", "area_m2", "perimeter_m"]
    with sqlite3.connect(out) as con:
        assert con.execute("SELECT count(*) FROM layer_styles").fetchone() == (1,)


def test_diagonal_contacts_across_seam_corners(tmp_path):
    """Pixels touching only at a block corner: separate with 4, one polygon with 8."""
    arr = np.zeros((8, 8), dtype=np.uint8)
    arr[3, 3] = arr[4, 4] = 1          # diagonal across the corner of four 4x4 blocks
    arr[3, 4] = arr[4, 3] = 2          # the other diagonal
    arr[0, 3] = arr[1, 4] = 3          # diagonal across a vertical seam only
    src = write_classes(tmp_path / "c.tif", arr)
    for connectivity, expected in ((4, {1: 2, 2: 2, 3: 2}), (8, {1: 1, 2: 1, 3: 1})):
        out = tmp_path / f"c{connectivity}.gpkg"
        vectorize_raster(src, out, block_size=4, connectivity=connectivity, progress="off")
        gdf = read_layer(out)
        counts = gdf.class_id.value_counts().to_dict()
        assert {k: counts[k] for k in expected} == expected
        assert_same_polygons(gdf, reference(arr, connectivity))


def test_rectangles_crossing_seams_are_single_polygons(tmp_path):
    """No polygon boundary along a seam: each rectangle over many blocks is one exact box."""
    arr = np.zeros((100, 120), dtype=np.uint8)
    rects = {1: (5, 7, 93, 41), 2: (48, 12, 97, 115), 3: (10, 60, 40, 110)}  # r0, c0, r1, c1
    for cid, (r0, c0, r1, c1) in rects.items():
        arr[r0:r1, c0:c1] = cid
    src = write_classes(tmp_path / "rects.tif", arr)
    out = tmp_path / "rects.gpkg"
    vectorize_raster(src, out, block_size=16, progress="off")
    gdf = read_layer(out)
    for cid, (r0, c0, r1, c1) in rects.items():
        polys = gdf.geometry[gdf.class_id == cid]
        assert len(polys) == 1, f"rectangle {cid} cut into {len(polys)} pieces"
        x0, y0 = TRANSFORM @ (c0, r1)
        x1, y1 = TRANSFORM @ (c1, r0)
        box = shapely.box(x0, y0, x1, y1)
        overlap = (arr == cid).sum() * PIXEL ** 2
        assert polys.iloc[0].area == pytest.approx(overlap)
        if cid == 3:  # not overlapped by another rectangle: exactly the box, 4 corners only
            assert polys.iloc[0].equals(box)
            assert len(polys.iloc[0].exterior.coords) == 5
    background = gdf[gdf.class_id == 0]
    assert len(background) == 1 and len(background.geometry.iloc[0].interiors) == 2
    assert_same_polygons(gdf, reference(arr))


# ---- attributes, confidence, class selection --------------------------------------------------

def test_mean_confidence_matches_pixels(tmp_path):
    arr = blobby((60, 70), 7, scale=4)
    probs = np.random.default_rng(8).integers(0, 256, arr.shape).astype(np.uint8)
    src = write_classes(tmp_path / "c.tif", arr)
    conf = write_classes(tmp_path / "p.tif", probs, nodata=None)
    out = tmp_path / "o.gpkg"
    vectorize_raster(src, out, probs=conf, block_size=16, progress="off")
    gdf = read_layer(out)
    assert "mean_confidence" in gdf.columns
    from rasterio.features import geometry_mask

    for geom, value in zip(gdf.geometry, gdf.mean_confidence):
        inside = geometry_mask([geom], arr.shape, TRANSFORM, invert=True)
        assert value == pytest.approx(probs[inside].mean() / 255.0, rel=1e-9)
    assert ((gdf.mean_confidence >= 0) & (gdf.mean_confidence <= 1)).all()


def test_probs_on_another_grid_is_rejected(tmp_path):
    src = write_classes(tmp_path / "c.tif", blobby((40, 40), 1))
    conf = write_classes(tmp_path / "p.tif", np.zeros((30, 40), np.uint8), nodata=None)
    with pytest.raises(InputError, match="p.tif"):
        vectorize_raster(src, tmp_path / "o.gpkg", probs=conf, progress="off")
    assert not (tmp_path / "o.gpkg").exists()


def test_probs_with_another_crs_or_several_bands_is_rejected(tmp_path):
    src = write_classes(tmp_path / "c.tif", blobby((40, 40), 1))
    other_crs = write_classes(tmp_path / "crs.tif", np.zeros((40, 40), np.uint8), nodata=None,
                              crs="EPSG:32633")
    with pytest.raises(InputError, match="crs.tif: has CRS EPSG:32633"):
        vectorize_raster(src, tmp_path / "o.gpkg", probs=other_crs, progress="off")
    bands = tmp_path / "bands.tif"
    with rasterio.open(bands, "w", driver="GTiff", width=40, height=40, count=6, dtype="uint8",
                       crs=CRS, transform=TRANSFORM) as ds:
        ds.write(np.zeros((6, 40, 40), np.uint8))
    with pytest.raises(InputError, match="bands.tif: has 6 bands"):
        vectorize_raster(src, tmp_path / "o.gpkg", probs=bands, progress="off")
    assert not (tmp_path / "o.gpkg").exists() and not (tmp_path / "o.qml").exists()


def test_existing_style_sidecar_is_not_replaced_without_overwrite(tmp_path, capsys):
    src = write_classes(tmp_path / "c.tif", blobby((20, 20), 1))
    (tmp_path / "o.qml").write_text("my own style")
    rc, err = _cli([src, "-o", tmp_path / "o.gpkg"], capsys)
    assert rc == 1 and "o.qml" in err[0] and "--overwrite" in err[0]
    assert (tmp_path / "o.qml").read_text() == "my own style"
    assert not (tmp_path / "o.gpkg").exists()
    rc, _ = _cli([src, "-o", tmp_path / "o.gpkg", "--overwrite"], capsys)
    assert rc == 0 and "categorizedSymbol" in (tmp_path / "o.qml").read_text()


def test_classes_filter_and_names_from_predict_tags(tmp_path):
    arr = blobby((70, 80), 5, n_classes=3)
    names = ["water", "field", "building"]
    colours = [[0, 0, 200], [200, 200, 0], [200, 0, 0]]
    src = write_classes(tmp_path / "c.tif", arr,
                        tags={"CLASS_NAMES": ",".join(names), "CLASS_COLOURS": json.dumps(colours)})
    out = tmp_path / "o.gpkg"
    summary = vectorize_raster(src, out, classes="building,0", block_size=16, progress="off")
    gdf = read_layer(out)
    assert set(gdf.class_name) == {"water", "building"}
    ref = [(c, g) for c, g in reference(arr) if c in (0, 2)]
    assert_same_polygons(gdf, ref)
    assert summary["per_class"] == {"water": sum(c == 0 for c, _ in ref),
                                    "building": sum(c == 2 for c, _ in ref)}
    qml = (tmp_path / "o.qml").read_text()
    for name in names:
        assert f'label="{name}"' in qml
    assert 'value="200,0,0,255"' in qml
    with pytest.raises(InputError, match="unknown class 'roads'"):
        vectorize_raster(src, tmp_path / "x.gpkg", classes=["roads"], progress="off")


def test_geographic_crs_uses_geodesic_measures(tmp_path):
    transform = Affine(1e-4, 0, 10.0, 0, -1e-4, 0.001)  # ~11 m pixels at the equator
    arr = np.zeros((10, 10), np.uint8)
    src = write_classes(tmp_path / "g.tif", arr, crs="EPSG:4326", transform=transform)
    out = tmp_path / "g.gpkg"
    vectorize_raster(src, out, progress="off")
    gdf = read_layer(out)
    from pyproj import Geod

    area, perim = Geod(ellps="WGS84").geometry_area_perimeter(gdf.geometry.iloc[0])
    assert gdf.area_m2.iloc[0] == pytest.approx(abs(area))
    assert gdf.area_m2.iloc[0] == pytest.approx((10 * 11.13) ** 2, rel=0.02)
    assert gdf.perimeter_m.iloc[0] == pytest.approx(perim)


# ---- coverage clean-up ------------------------------------------------------------------------

def pairwise_overlap_area(geoms) -> float:
    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms, predicate="intersects")
    keep = a < b
    return float(shapely.area(shapely.intersection(geoms[a[keep]], geoms[b[keep]])).sum())


def assert_hole_free_coverage(gdf):
    """Valid polygons, no overlaps, and a union that is one polygon without holes."""
    geoms = np.asarray(gdf.geometry)
    assert shapely.is_valid(geoms).all()
    assert pairwise_overlap_area(geoms) == pytest.approx(0.0, abs=1e-6)
    union = shapely.union_all(geoms)
    assert union.geom_type == "Polygon" and len(union.interiors) == 0
    return geoms, union


def test_simplify_keeps_a_gapless_coverage(tmp_path):
    arr = blobby((90, 110), 11)
    arr[30:50, 40:70] = 255  # one nodata hole the coverage must keep (and no other)
    src = write_classes(tmp_path / "c.tif", arr)
    out = tmp_path / "s.gpkg"
    vectorize_raster(src, out, simplify=1.0, block_size=32, progress="off")
    gdf = read_layer(out)
    raw = reference(arr)
    geoms = np.asarray(gdf.geometry)
    assert shapely.is_valid(geoms).all()
    assert len(gdf) == len(raw)
    assert shapely.get_num_coordinates(geoms).sum() < sum(
        shapely.get_num_coordinates(g) for _, g in raw)
    assert pairwise_overlap_area(geoms) == pytest.approx(0.0, abs=1e-6)
    union = shapely.union_all(geoms)
    assert union.geom_type == "Polygon"
    assert len(union.interiors) == 1  # only the nodata hole
    extent = arr.shape[0] * arr.shape[1] * PIXEL ** 2
    hole = 20 * 30 * PIXEL ** 2
    assert union.area == pytest.approx(extent - hole, rel=0.02)
    assert shapely.Polygon(union.exterior).area == pytest.approx(extent, rel=1e-9)


def test_min_area_merges_small_polygons_into_neighbours(tmp_path):
    arr = blobby((80, 100), 12)  # speckle gives plenty of one-pixel polygons
    src = write_classes(tmp_path / "c.tif", arr)
    out = tmp_path / "m.gpkg"
    min_area = 6.0  # m²: 24 pixels
    summary = vectorize_raster(src, out, min_area=min_area, block_size=32, progress="off")
    gdf = read_layer(out)
    raw = reference(arr)
    assert len(gdf) < len(raw) and sum(g.area < min_area for _, g in raw) > 10
    assert gdf.area_m2.min() >= min_area
    geoms = np.asarray(gdf.geometry)
    assert shapely.is_valid(geoms).all()
    assert pairwise_overlap_area(geoms) == pytest.approx(0.0, abs=1e-9)
    assert shapely.union_all(geoms).area == pytest.approx(arr.size * PIXEL ** 2, rel=1e-12)
    assert gdf.area_m2.sum() == pytest.approx(arr.size * PIXEL ** 2, rel=1e-12)
    assert summary["removed_isolated"] == 0


def test_clean_up_of_8_connected_multipolygons_keeps_the_coverage(tmp_path):
    arr = blobby((64, 80), 14)
    src = write_classes(tmp_path / "c.tif", arr)
    for options in ({"simplify": 1.0}, {"min_area": 3.0}):
        out = tmp_path / f"{next(iter(options))}.gpkg"
        vectorize_raster(src, out, connectivity=8, block_size=16, progress="off", **options)
        gdf = read_layer(out)
        _, union = assert_hole_free_coverage(gdf)
        assert union.area == pytest.approx(arr.size * PIXEL ** 2, rel=1e-9)
        if "min_area" in options:
            assert gdf.area_m2.min() >= 3.0
            assert len(gdf) < len(reference(arr, 8))


def test_cli_simplify_and_min_area_together(tmp_path):
    arr = blobby((64, 96), 13)
    src = write_classes(tmp_path / "c.tif", arr)
    out = tmp_path / "b.gpkg"
    rc = run(["vectorize", str(src), "-o", str(out), "--simplify", "0.25", "--min-area", "2",
              "--block-size", "16", "--no-progress"])
    assert rc == 0
    geoms, _ = assert_hole_free_coverage(read_layer(out))
    assert (shapely.area(geoms) >= 2.0 * 0.9).all()  # simplify moves edges a little


# ---- the GeoPackage: GDAL, geopandas, QGIS style ----------------------------------------------

def test_geopackage_is_readable_and_styled(tmp_path):
    arr = blobby((48, 64), 21, nodata_fraction=0.1)
    src = write_classes(tmp_path / "c.tif", arr)
    out = tmp_path / "styled.gpkg"
    vectorize_raster(src, out, layer="landcover", block_size=16, progress="off")
    gdf = read_layer(out, "landcover")
    with rasterio.open(src) as ds:
        assert gdf.crs.equals(ds.crs)
    assert list(gdf.columns) == ["class_id", "class_name", "area_m2", "perimeter_m", "geometry"]
    assert sorted(os.listdir(tmp_path)) == ["c.tif", "styled.gpkg", "styled.qml"]

    res = subprocess.run([require_tool("ogrinfo"), "-so", str(out), "landcover"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "Warning" not in res.stderr and "ERROR" not in res.stderr, res.stderr
    assert f"Feature Count: {len(gdf)}" in res.stdout
    assert "Geometry: Polygon" in res.stdout

    with sqlite3.connect(out) as con:
        rows = con.execute("SELECT f_table_catalog, f_table_schema, f_table_name, "
                           "f_geometry_column, styleName, styleQML, styleSLD, useAsDefault "
                           "FROM layer_styles").fetchall()
        contents = con.execute("SELECT data_type FROM gpkg_contents "
                               "WHERE table_name = 'layer_styles'").fetchone()
    assert contents == ("attributes",)
    assert len(rows) == 1
    catalog, schema, table, geom_col, _, qml, sld, default = rows[0]
    assert (catalog, schema, table, geom_col, default) == ("", "", "landcover", "geom", 1)
    root = ET.fromstring(qml.split("\n", 1)[1])  # skip the DOCTYPE line
    renderer = root.find("renderer-v2")
    assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == "class_id"
    categories = renderer.findall("categories/category")
    assert [c.get("label") for c in categories] == list(ISPRS.names)
    assert [c.get("value") for c in categories] == [str(i) for i in range(6)]
    for cat in categories:
        symbol = renderer.find(f"symbols/symbol[@name='{cat.get('symbol')}']")
        colour = symbol.find("layer/Option/Option[@name='color']").get("value")
        assert colour == ",".join(map(str, ISPRS.colours[int(cat.get("value"))])) + ",255"
    ET.fromstring(sld)
    assert (tmp_path / "styled.qml").read_text() == qml


@pytest.mark.qgis
def test_qgis_opens_the_layer_styled(tmp_path):
    qgis_python = "/usr/bin/python3"
    probe = subprocess.run([qgis_python, "-c", "import qgis.core"], capture_output=True) \
        if os.path.exists(qgis_python) else None
    if probe is None or probe.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("PyQGIS (/usr/bin/python3 -c 'import qgis.core') must work under CI")
        pytest.skip("PyQGIS not installed")
    src = write_classes(tmp_path / "c.tif", blobby((32, 32), 3))
    out = tmp_path / "q.gpkg"
    vectorize_raster(src, out, block_size=16, progress="off")
    os.remove(tmp_path / "q.qml")  # prove the embedded style is what QGIS applies
    script = (
        "import os, sys\n"
        "os.environ['QT_QPA_PLATFORM']='offscreen'\n"
        "from qgis.core import QgsApplication, QgsVectorLayer\n"
        "app = QgsApplication([], False); app.initQgis()\n"
        f"layer = QgsVectorLayer({str(out)!r} + '|layername=classes', 'c', 'ogr')\n"
        "assert layer.isValid()\n"
        "r = layer.renderer()\n"
        "print(r.type(), r.classAttribute(), ';'.join(c.label() + '=' + "
        "c.symbol().color().name() for c in r.categories()))\n")
    home = tmp_path / "qgis-home"  # QGIS writes its profile and caches here, not in ~
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR"):
        (home / var).mkdir(parents=True, mode=0o700)
        env[var] = str(home / var)
    res = subprocess.run([qgis_python, "-c", script], capture_output=True, text=True,
                         timeout=120, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    rtype, attr, cats = res.stdout.strip().splitlines()[-1].split(" ")
    assert (rtype, attr) == ("categorizedSymbol", "class_id")
    expected = ";".join(f"{n}=#{r:02x}{g:02x}{b:02x}"
                        for n, (r, g, b) in zip(ISPRS.names, ISPRS.colours))
    assert cats == expected


# ---- bad input: one clear line, no output ------------------------------------------------------

def _cli(args, capsys):
    rc = run(["vectorize", *map(str, args), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


@pytest.mark.parametrize("case", ["missing", "not_raster", "float", "multiband", "confidence"])
def test_bad_inputs_fail_cleanly(tmp_path, capsys, case):
    path = tmp_path / "in.tif"
    if case == "not_raster":
        path.write_text("this is not a raster\n")
    elif case == "float":
        write_classes(path, np.zeros((8, 8)), dtype="float32", nodata=None)
    elif case == "multiband":
        with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint8",
                           crs=CRS, transform=TRANSFORM) as ds:
            ds.write(np.zeros((3, 8, 8), np.uint8))
    elif case == "confidence":  # what `rsseg predict --probs` writes: uint8, one band
        from rsseg.io.cog import confidence_metadata

        write_classes(path, np.arange(64, dtype=np.uint8).reshape(8, 8), nodata=0)
        with rasterio.open(path, "r+") as ds:
            ds.update_tags(**confidence_metadata()["tags"])
    out = tmp_path / "out.gpkg"
    rc, err = _cli([path, "-o", out], capsys)
    assert rc == 1
    assert len(err) == 1 and err[0].startswith("rsseg: error:") and "in.tif" in err[0]
    assert "Traceback" not in err[0]
    if case == "confidence":
        assert "confidence raster" in err[0] and "--probs" in err[0]
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ([] if case == "missing" else ["in.tif"])


def test_raster_without_crs_gives_polygons_in_pixel_coordinates(tmp_path, capsys):
    """A prediction of a PNG or JPEG photo: no CRS, identity geotransform (issue 13)."""
    arr = np.zeros((8, 10), np.uint8)
    arr[2:5, 1:4] = 1  # a 3x3 block: x 1..4, y 2..5 in pixel coordinates
    arr[6:8, 5:10] = 2
    path = write_classes(tmp_path / "photo_classes.tif", arr, crs=None,
                         transform=Affine.identity())
    out = tmp_path / "out.gpkg"
    rc, err = _cli([path, "-o", out], capsys)
    assert rc == 0
    assert sum("no CRS" in line and "pixel coordinates" in line for line in err) == 1
    layer = read_layer(out)
    assert layer.crs is None
    block = layer[layer.class_id == 1].geometry.iloc[0]
    assert block.equals(shapely.box(1, 2, 4, 5))
    by_class = layer.groupby("class_id").area_m2.sum()  # in pixels here
    assert {int(k): v for k, v in by_class.items()} == {
        c: float((arr == c).sum()) for c in (0, 1, 2)}


def test_existing_output_needs_overwrite(tmp_path, capsys):
    src = write_classes(tmp_path / "c.tif", blobby((20, 20), 1))
    out = tmp_path / "o.gpkg"
    out.write_bytes(b"keep me")
    rc, err = _cli([src, "-o", out], capsys)
    assert rc == 1 and "--overwrite" in err[0] and out.read_bytes() == b"keep me"
    rc, err = _cli([src, "-o", out, "--overwrite"], capsys)
    assert rc == 0 and len(read_layer(out)) > 0
    with pytest.raises(OutputError):
        vectorize_raster(src, out, progress="off")


def test_usage_errors_exit_2(tmp_path, capsys):
    src = write_classes(tmp_path / "c.tif", blobby((20, 20), 1))
    assert run(["vectorize", str(src), "-o", str(tmp_path / "o.gpkg"),
                "--connectivity", "6"]) == 2
    assert run(["vectorize", str(src)]) == 2  # -o missing
    assert not (tmp_path / "o.gpkg").exists()


def test_progress_json_lines(tmp_path, capsys):
    src = write_classes(tmp_path / "c.tif", blobby((40, 40), 2))
    rc = run(["vectorize", str(src), "-o", str(tmp_path / "o.gpkg"), "--block-size", "16",
              "--progress-json"])
    assert rc == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0] == {"event": "start", "task": "vectorize", "total": 9, "unit": "block"}
    assert events[-2]["event"] == "end" and events[-2]["done"] == 9
    assert events[-1]["event"] == "result" and events[-1]["features"] > 0


def test_memory_does_not_grow_with_scene_height(tmp_path, monkeypatch):
    """Python-side peak (numpy arrays, polygons) for a 4x taller scene stays about the same."""
    import tracemalloc

    import rsseg.vectorize.gpkg

    # Write batches this small so that these small scenes already stream to disk.
    monkeypatch.setattr(rsseg.vectorize.gpkg, "FLUSH_EVERY", 50)

    rasters = {}
    for height in (128, 512):
        arr = np.tile(blobby((128, 160), 31, scale=4), (height // 128, 1))
        rasters[height] = write_classes(tmp_path / f"t{height}.tif", arr)
    vectorize_raster(rasters[128], tmp_path / "warm.gpkg", block_size=32, progress="off")
    peaks = []
    for height, src in rasters.items():  # imports done above: only the work is traced
        tracemalloc.start()
        vectorize_raster(src, tmp_path / f"t{height}.gpkg", block_size=32, progress="off")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.5 * peaks[0], peaks


def test_worker_processes_give_the_same_polygons(tmp_path):
    arr = blobby((96, 120), 41, nodata_fraction=0.15)
    src = write_classes(tmp_path / "c.tif", arr)
    conf = write_classes(tmp_path / "p.tif",
                         np.random.default_rng(2).integers(0, 256, arr.shape).astype(np.uint8),
                         nodata=None)
    single = read_layer(vectorize_raster(src, tmp_path / "one.gpkg", probs=conf, block_size=24,
                                         progress="off", workers=1)["output"])
    summary = vectorize_raster(src, tmp_path / "two.gpkg", probs=conf, block_size=24,
                               progress="off", workers=2)
    assert summary["workers"] == 2
    pooled = read_layer(summary["output"])
    assert_same_polygons(pooled, reference(arr))
    key = ["class_id", "area_m2", "mean_confidence"]
    a = single.sort_values(key).reset_index(drop=True)
    b = pooled.sort_values(key).reset_index(drop=True)
    np.testing.assert_array_equal(a[key].to_numpy(), b[key].to_numpy())


def test_blocks_on_a_dask_cluster_give_the_same_polygons(tmp_path):
    """``executor=`` (what ``rsseg batch --vector`` passes: its Dask client) polygonizes
    the blocks on the cluster; the seams are joined here: the same polygons."""
    from distributed import Client, LocalCluster, get_task_stream

    arr = blobby((96, 120), 43, nodata_fraction=0.1)
    src = write_classes(tmp_path / "c.tif", arr)
    single = read_layer(vectorize_raster(src, tmp_path / "one.gpkg", block_size=24,
                                         progress="off", workers=1)["output"])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client, \
            get_task_stream(client) as stream:
        summary = vectorize_raster(src, tmp_path / "dask.gpkg", block_size=24, progress="off",
                                   executor=client, workers=2)
    ran = [t["key"] for t in stream.data if str(t["key"]).startswith("run_block")]
    assert summary["blocks"] == 20 and len(ran) == 20  # 4 x 5 blocks, each on the cluster
    on_cluster = read_layer(summary["output"])
    assert_same_polygons(on_cluster, reference(arr))
    key = ["class_id", "area_m2"]
    a = single.sort_values(key).reset_index(drop=True)
    b = on_cluster.sort_values(key).reset_index(drop=True)
    np.testing.assert_array_equal(a[key].to_numpy(), b[key].to_numpy())
