"""rsseg synth: real GeoTIFFs written to tmp_path and read back with rasterio."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import tracemalloc

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from rsseg.classes import ISPRS
from rsseg.cli import run
from rsseg.synth.layout import SceneLayout
from rsseg.synth.render import SceneGrid, render_window
from rsseg.synth.scene import FLOAT_NODATA, write_synthetic_scene

from conftest import require_tool

IMPERVIOUS, BUILDING, LOW_VEG, TREE, CAR, CLUTTER = range(6)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 900x700 scene with a 16 px collar, DSM as band 4, labels and RGB labels."""
    d = tmp_path_factory.mktemp("synth")
    summary = write_synthetic_scene(d / "scene.tif", 900, 700, seed=14, labels_path=d / "labels.tif",
                                    labels_rgb_path=d / "rgb.tif", nodata_border=16)
    return d, summary


def read(path, **kw):
    with rasterio.open(path) as ds:
        return ds.read(**kw)


def test_scene_georeferencing_bands_and_layout(scene):
    d, summary = scene
    with rasterio.open(d / "scene.tif") as ds:
        assert (ds.width, ds.height, ds.count) == (900, 700, 4)
        assert ds.dtypes == ("float32",) * 4
        assert ds.crs.to_epsg() == 32632
        assert tuple(ds.transform)[:6] == (0.09, 0.0, 496000.0, 0.0, -0.09, 5420000.0)
        assert ds.descriptions == ("IR", "R", "G", "DSM")
        assert ds.nodata == FLOAT_NODATA
        assert ds.block_shapes[0] == (512, 512) and ds.profile["tiled"]
        assert ds.compression.name.lower() == "deflate"
        assert ds.units[3] == "metre"
        data = ds.read()
    inside = np.s_[:, 16:-16, 16:-16]
    assert (data[:, :16] == FLOAT_NODATA).all() and (data[:, :, -16:] == FLOAT_NODATA).all()
    image = data[:3][inside[0], inside[1], inside[2]]
    assert image.min() >= 1 and image.max() <= 255
    assert np.array_equal(image, np.round(image))  # integral IR/R/G values in a float32 file
    dsm = data[3, 16:-16, 16:-16]
    assert 230 < dsm.min() and dsm.max() < 290  # ground near 245 m plus objects
    assert summary["shape"] == (700, 900) and summary["dtype"] == "float32"


def test_labels_colour_table_nodata_and_rgb_code(scene):
    d, summary = scene
    with rasterio.open(d / "labels.tif") as ds:
        assert ds.dtypes[0] == "uint8" and ds.nodata == 255
        cmap = ds.colormap(1)
        assert ds.tags()["CLASSES"].split(",") == list(ISPRS.names)
        labels = ds.read(1)
    for i, colour in enumerate(ISPRS.colours):
        assert cmap[i][:3] == colour
    collar = np.ones(labels.shape, bool)
    collar[16:-16, 16:-16] = False
    assert (labels[collar] == 255).all()
    assert labels[~collar].max() <= 5
    assert set(np.unique(labels[~collar])) == set(range(6))  # every class occurs
    counts = np.bincount(labels.ravel(), minlength=256)
    assert summary["class_counts"] == {n: int(counts[i]) for i, n in enumerate(ISPRS.names)}
    assert summary["nodata_pixels"] == int(collar.sum())
    rgb = read(d / "rgb.tif")
    expected = np.zeros((256, 3), np.uint8)
    expected[:6] = ISPRS.colours
    assert np.array_equal(np.moveaxis(rgb, 0, -1), expected[labels])


def test_separate_dsm_matches_band_four(scene, tmp_path):
    d, _ = scene
    write_synthetic_scene(tmp_path / "scene8.tif", 900, 700, seed=14, dsm_path=tmp_path / "dsm.tif",
                          nodata_border=16)
    with rasterio.open(tmp_path / "scene8.tif") as ds:
        assert ds.count == 3 and ds.dtypes == ("uint8",) * 3 and ds.nodata == 0
        assert ds.descriptions == ("IR", "R", "G")
        image = ds.read()
    with rasterio.open(tmp_path / "dsm.tif") as ds:
        assert ds.count == 1 and ds.dtypes[0] == "float32" and ds.nodata == FLOAT_NODATA
        assert ds.crs.to_epsg() == 32632 and ds.transform.a == 0.09
        dsm = ds.read(1)
    combined = read(d / "scene.tif")
    valid = combined[3] != FLOAT_NODATA
    assert np.array_equal(image.astype(np.float32)[:, valid], combined[:3, valid])
    assert np.array_equal(dsm, combined[3])
    assert (image[:, ~valid] == 0).all()


def test_same_seed_is_byte_identical_other_seed_differs(tmp_path):
    kw = dict(labels_path=None, dsm_path=None)
    for name in ("a", "b"):
        write_synthetic_scene(tmp_path / f"{name}.tif", 640, 384, seed=7,
                              labels_path=tmp_path / f"{name}_labels.tif")
    write_synthetic_scene(tmp_path / "c.tif", 640, 384, seed=8, **kw)
    assert filecmp.cmp(tmp_path / "a.tif", tmp_path / "b.tif", shallow=False)
    assert filecmp.cmp(tmp_path / "a_labels.tif", tmp_path / "b_labels.tif", shallow=False)
    assert not np.array_equal(read(tmp_path / "a.tif"), read(tmp_path / "c.tif"))


def test_block_size_does_not_change_a_single_byte(tmp_path):
    for block in (512, 200, 96):
        write_synthetic_scene(tmp_path / f"s{block}.tif", 700, 450, seed=5, block_size=block,
                              labels_path=tmp_path / f"l{block}.tif",
                              dsm_path=tmp_path / f"d{block}.tif")
    for stem in ("s", "l", "d"):
        assert filecmp.cmp(tmp_path / f"{stem}512.tif", tmp_path / f"{stem}200.tif", shallow=False)
        assert np.array_equal(read(tmp_path / f"{stem}512.tif"), read(tmp_path / f"{stem}96.tif"))


def test_windows_render_the_same_pixels_as_the_whole():
    grid = SceneGrid(300, 260, 0.09, 11)
    whole = render_window(SceneLayout(11), grid, 0, 0, 260, 300)
    layout = SceneLayout(11)  # fresh cache
    for r0, r1, c0, c1 in ((0, 97, 0, 131), (97, 260, 0, 131), (0, 260, 131, 300)):
        part = render_window(layout, grid, r0, c0, r1 - r0, c1 - c0)
        assert np.array_equal(part.labels, whole.labels[r0:r1, c0:c1])
        assert np.array_equal(part.image, whole.image[:, r0:r1, c0:c1])
        assert np.array_equal(part.dsm, whole.dsm[r0:r1, c0:c1])


def _peak_bytes(path, width, height):
    tracemalloc.start()
    try:
        write_synthetic_scene(path, width, height, seed=2, block_size=256)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_scene_size(tmp_path):
    write_synthetic_scene(tmp_path / "warm.tif", 32, 32)  # imports happen outside the trace
    small = _peak_bytes(tmp_path / "small.tif", 512, 512)  # one 512 x 512 tile
    large = _peak_bytes(tmp_path / "large.tif", 1024, 1024)  # four tiles
    # The peak is one tile's working set; it varies a little with the objects in a tile.
    assert large < 1.5 * small, (small, large)
    assert large < 1024 * 1024 * 16  # less than the float32 4-band scene itself


def test_class_proportions_are_vaihingen_like(tmp_path):
    # 450 m x 450 m at 0.45 m: many blocks, few pixels. Objects are defined in metres.
    summary = write_synthetic_scene(tmp_path / "s.tif", 1000, 1000, seed=0, pixel_size=0.45,
                                    dsm_path=tmp_path / "d.tif")
    share = {k: 100 * v for k, v in summary["class_fractions"].items()}
    assert 20 <= share["impervious_surfaces"] <= 38, share
    assert 15 <= share["building"] <= 32, share
    assert 12 <= share["low_vegetation"] <= 32, share
    assert 12 <= share["tree"] <= 30, share
    assert 0.7 <= share["car"] <= 3.0, share
    assert 0.5 <= share["clutter"] <= 6.0, share


def _ring(mask, width):
    return ndimage.binary_dilation(mask, iterations=width) & ~mask


def test_objects_sit_where_they_belong(scene):
    d, _ = scene
    labels = read(d / "labels.tif", indexes=1)[16:-16, 16:-16]
    dsm = read(d / "scene.tif", indexes=4)[16:-16, 16:-16]
    cars = labels == CAR
    ring = _ring(cars, 3)
    on_road = np.isin(labels[ring], (IMPERVIOUS, CAR, TREE)).mean()
    assert on_road > 0.85, on_road  # cars stand on impervious surfaces (trees may overhang)
    ground = np.isin(labels, (IMPERVIOUS, LOW_VEG))
    components, n = ndimage.label(labels == BUILDING)
    assert n >= 3
    for k in range(1, n + 1):
        building = components == k
        around = _ring(building, 6) & ground
        if building.sum() > 500 and around.sum() > 100:
            assert np.median(dsm[building]) - np.median(dsm[around]) > 2.5
    trees, car_height = labels == TREE, np.median(dsm[cars]) - np.median(dsm[ring & ground])
    assert np.median(dsm[trees]) - np.median(dsm[_ring(trees, 4) & ground]) > 2.5
    assert 0.8 < car_height < 2.5


def test_vegetation_is_bright_in_infrared_and_classes_are_textured(scene):
    d, _ = scene
    data = read(d / "scene.tif")[:, 16:-16, 16:-16]
    labels = read(d / "labels.tif", indexes=1)[16:-16, 16:-16]
    ir, red = data[0], data[1]
    ndvi = (ir - red) / (ir + red)
    veg = np.isin(labels, (LOW_VEG, TREE))
    assert np.median(ndvi[veg]) > 0.2 > np.median(ndvi[labels == IMPERVIOUS]) + 0.1
    for cls in (IMPERVIOUS, BUILDING, LOW_VEG, TREE):
        assert data[0][labels == cls].std() > 4  # texture and noise, not flat fills


def test_crs_pixel_size_and_origin_options(tmp_path):
    write_synthetic_scene(tmp_path / "s.tif", 64, 48, seed=1, crs="EPSG:25832", pixel_size=0.2,
                          origin=(1000.0, 2000.0), dsm_path=tmp_path / "d.tif")
    for name in ("s.tif", "d.tif"):
        with rasterio.open(tmp_path / name) as ds:
            assert ds.crs.to_epsg() == 25832 and (ds.width, ds.height) == (64, 48)
            assert tuple(ds.transform)[:6] == (0.2, 0.0, 1000.0, 0.0, -0.2, 2000.0)


def test_cli_writes_files_and_reports(tmp_path, capsys):
    out = tmp_path / "scene.tif"
    code = run(["synth", "-o", str(out), "--size", "300x200", "--seed", "1", "--labels",
                str(tmp_path / "l.tif"), "--labels-rgb", str(tmp_path / "rgb.tif"),
                "--dsm-out", str(tmp_path / "dsm.tif"), "--nodata-border", "8",
                "--crs", "EPSG:32632", "--pixel-size", "0.09", "--origin", "496100,5420100",
                "--progress-json"])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["event"] == "start" and lines[-1]["event"] == "log"
    assert lines[-1]["summary"]["shape"] == [200, 300]
    with rasterio.open(out) as ds:
        assert (ds.width, ds.height, ds.count, ds.dtypes[0]) == (300, 200, 3, "uint8")
        assert ds.transform.c == 496100 and ds.transform.f == 5420100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dsm.tif", "l.tif", "rgb.tif",
                                                          "scene.tif"]


def test_cli_bad_usage_and_existing_output(tmp_path, capsys):
    out = tmp_path / "scene.tif"
    out.write_bytes(b"precious")
    assert run(["synth", "-o", str(out), "--size", "64x64"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "output exists" in err and str(out) in err
    assert out.read_bytes() == b"precious"
    for bad in (["--size", "64x"], ["--size", "0x10"], ["--size", "axb"], ["--origin", "1"],
                ["--nodata-border", "40", "--size", "64x64"], ["--crs", "EPSG:99999"],
                ["--labels", str(tmp_path / "new.tif"), "-o", str(tmp_path / "new.tif")]):
        argv = ["synth", "-o", str(tmp_path / "x.tif"), "--size", "64x48"] + bad
        assert run(argv) == 2, bad
    capsys.readouterr()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_failure_midway_leaves_no_output(tmp_path, monkeypatch, capsys):
    import rsseg.synth.scene as synth_module

    calls = []

    def failing(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return render_window(*args, **kw)

    monkeypatch.setattr(synth_module, "render_window", failing)
    code = run(["synth", "-o", str(tmp_path / "s.tif"), "--size", "600x300", "--labels",
                str(tmp_path / "l.tif"), "--no-progress"])
    assert code == 1 and "no space left" in capsys.readouterr().err.lower()
    assert list(tmp_path.iterdir()) == []


def test_gdal_reads_band_names_and_colour_table(scene):
    d, _ = scene
    gdalinfo = require_tool("gdalinfo")
    info = json.loads(subprocess.run([gdalinfo, "-json", str(d / "scene.tif")], check=True,
                                     capture_output=True, text=True).stdout)
    assert [b["description"] for b in info["bands"]] == ["IR", "R", "G", "DSM"]
    info = json.loads(subprocess.run([gdalinfo, "-json", str(d / "labels.tif")], check=True,
                                     capture_output=True, text=True).stdout)
    entries = info["bands"][0]["colorTable"]["entries"]
    assert [e[:3] for e in entries[:6]] == [list(c) for c in ISPRS.colours]
    assert os.path.getsize(d / "labels.tif") < 900 * 700 / 4  # compressed


def test_origin_picks_the_part_of_one_town_so_tiles_form_a_mosaic(tmp_path):
    # Two tiles side by side (origins one tile width apart) are exactly the two halves of the
    # scene that covers both; before --origin moved the pixels, both tiles were identical.
    from rsseg.synth.scene import DEFAULT_ORIGIN

    x0, y0 = DEFAULT_ORIGIN
    ps = 0.5
    whole = tmp_path / "whole.tif"
    write_synthetic_scene(whole, 192, 96, seed=5, pixel_size=ps, origin=(x0 - 96 * ps, y0 + 40 * ps))
    tiles = []
    for k in range(2):
        path = tmp_path / f"t{k}.tif"
        write_synthetic_scene(path, 96, 96, seed=5, pixel_size=ps,
                              origin=(x0 - 96 * ps + k * 96 * ps, y0 + 40 * ps))
        tiles.append(path)
    with rasterio.open(whole) as ds:
        big = ds.read()
    halves = []
    for path in tiles:
        with rasterio.open(path) as ds:
            halves.append(ds.read())
    np.testing.assert_array_equal(np.concatenate(halves, axis=2), big)
    assert not np.array_equal(halves[0], halves[1])
