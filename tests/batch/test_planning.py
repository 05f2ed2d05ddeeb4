"""Batch planning at scale: grouping, context tiles and VRTs against all-pairs references.

The planner uses R-trees (n log n); the references here compare every pair of
tiles, written from the definitions (same CRS, pixel size, band layout and
whole-pixel offset; closed boxes touching; open boxes within a margin).
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from rsseg.batch.inputs import Mosaic, Tile, context_tiles, group_mosaics
from rsseg.io.vrt import VrtBand, VrtSource, _overlapping, input_mosaic_vrt, write_mosaic_vrt

PX = 0.2
UTM32, UTM33 = CRS.from_epsg(32632), CRS.from_epsg(32633)


def random_tiles(seed: int, n: int = 400) -> list[Tile]:
    """Tiles on a few grids: a 20x20 layout of 16-px tiles with holes, some 2x2 tiles
    overlapping others, a half-pixel-shifted set, another CRS, another dtype."""
    rng = random.Random(seed)
    tiles = []
    for k in range(n):
        r, c = rng.randrange(20), rng.randrange(20)
        size = 32 if rng.random() < 0.1 else 16
        crs, dtype, shift = UTM32, "uint8", 0.0
        kind = rng.random()
        if kind < 0.1:
            crs = UTM33
        elif kind < 0.2:
            shift = PX / 2
        elif kind < 0.25:
            dtype = "uint16"
        transform = Affine(PX, 0, 500000 + c * 16 * PX + shift, 0, -PX, 5400000 - r * 16 * PX)
        tiles.append(Tile(f"/t/{k}.tif", size, size, crs, transform, 3, (dtype,) * 3))
    return tiles


def brute_force_groups(tiles: list[Tile]) -> set[frozenset]:
    def same_grid(a, b):
        ta, tb = a.transform, b.transform
        dx, dy = (tb.c - ta.c) / ta.a, (tb.f - ta.f) / ta.e
        return (a.crs == b.crs and a.dtypes == b.dtypes and a.count == b.count
                and abs(dx - round(dx)) < 1e-3 and abs(dy - round(dy)) < 1e-3)

    def touching(a, b):
        dx = round((b.transform.c - a.transform.c) / PX)
        dy = round((a.transform.f - b.transform.f) / PX)
        return -b.width <= dx <= a.width and -b.height <= dy <= a.height

    group = {t.path: {t.path} for t in tiles}
    for i, a in enumerate(tiles):
        for b in tiles[i + 1:]:
            if same_grid(a, b) and touching(a, b) and group[a.path] is not group[b.path]:
                merged = group[a.path] | group[b.path]
                for path in merged:
                    group[path] = merged
    return {frozenset(g) for g in group.values()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_group_mosaics_equals_all_pairs_grouping(seed):
    tiles = random_tiles(seed)
    mosaics = group_mosaics(tiles)
    assert {frozenset(t.path for t in m.tiles) for m in mosaics} == brute_force_groups(tiles)
    for m in mosaics:  # placed: every tile at its pixel offset from the mosaic's corner
        for t in m.tiles:
            x = m.transform.c + t.col * PX
            y = m.transform.f - t.row * PX
            assert (x, y) == pytest.approx((t.transform.c, t.transform.f))
            assert t.col + t.width <= m.width and t.row + t.height <= m.height


@pytest.mark.parametrize("margin", [1, 8, 16, 40])
def test_context_tiles_equals_all_pairs_scan(margin):
    mosaic = max(group_mosaics(random_tiles(5)), key=lambda m: len(m.tiles))
    assert len(mosaic.tiles) > 50
    got = context_tiles(mosaic, margin)
    for tile, context in zip(mosaic.tiles, got):
        expected = {t.path for t in mosaic.tiles
                    if t.col < tile.col + tile.width + margin and t.col + t.width > tile.col - margin
                    and t.row < tile.row + tile.height + margin
                    and t.row + t.height > tile.row - margin}
        assert {t.path for t in context} == expected and tile in context


def test_overlap_detection_equals_all_pairs():
    rng = random.Random(3)
    for _ in range(200):
        tiles = [Tile(f"{k}", rng.randint(1, 4), rng.randint(1, 4), col=rng.randint(0, 12),
                      row=rng.randint(0, 12)) for k in range(rng.randint(2, 8))]
        pixels = [{(t.row + i, t.col + j) for i in range(t.height) for j in range(t.width)}
                  for t in tiles]
        expected = any(pixels[i] & pixels[j] for i in range(len(tiles))
                       for j in range(i + 1, len(tiles)))
        assert _overlapping(tiles) == expected


def write_tile(path: Path, value: int, transform: Affine, size: int = 16) -> None:
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1,
                       dtype="uint8", crs=UTM32, transform=transform) as ds:
        ds.write(np.full((1, size, size), value, np.uint8))


def test_input_vrt_reads_back_the_tiles_with_holes_masked(tmp_path):
    """Tiles with escapable names, a hole and no nodata: the VRT equals the tiles pasted
    by hand, and its mask marks the hole."""
    cells = [(0, 0), (0, 1), (1, 1)]  # (1, 0) is a hole
    paths = []
    for k, (r, c) in enumerate(cells):
        path = tmp_path / f"t<{k}>&'.tif"
        write_tile(path, 10 + k, Affine(PX, 0, 500000 + c * 16 * PX, 0, -PX, 5400000 - r * 16 * PX))
        paths.append(str(path))
    from rsseg.batch.inputs import open_tiles

    [mosaic] = group_mosaics(open_tiles(paths))
    vrt = input_mosaic_vrt(tmp_path / "in.vrt", mosaic)
    expected = np.zeros((32, 32), np.uint8)
    for k, (r, c) in enumerate(cells):
        expected[r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] = 10 + k
    with rasterio.open(vrt) as ds:
        np.testing.assert_array_equal(ds.read(1), expected)
        mask = ds.dataset_mask()
        assert (mask[16:, :16] == 0).all() and (mask[:16] == 255).all()
        assert ds.crs == UTM32 and ds.transform == mosaic.transform


@pytest.fixture(scope="module")
def big_vrt(tmp_path_factory):
    """A class mosaic VRT of 100,000 sources (one tiny file placed 100,000 times)."""
    root = tmp_path_factory.mktemp("vrt")
    tile = root / "tiles" / "t.tif"
    tile.parent.mkdir()
    write_tile(tile, 7, Affine(PX, 0, 500000, 0, -PX, 5400000))
    side = 316  # 316 x 316 = 99,856 sources, plus one row
    sources = [VrtSource(str(tile), (k % side) * 16, (k // side) * 16, 16, 16)
               for k in range(100_000)]
    rows = -(-100_000 // side)
    band = VrtBand("uint8", 255, "class", {0: (1, 2, 3, 255), 7: (9, 8, 7, 255)}, {"CLASS_7": "x"})
    path = write_mosaic_vrt(root / "mosaic.vrt", sources, side * 16, rows * 16, UTM32,
                            Affine(PX, 0, 500000, 0, -PX, 5400000), [band],
                            tags={"CLASS_NAMES": "a,b"}, relative=True)
    return path, side, rows


def test_100k_source_vrt_opens_in_gdal(big_vrt):
    path, side, rows = big_vrt
    with rasterio.open(path) as ds:
        assert (ds.width, ds.height) == (side * 16, rows * 16)
        assert ds.tags()["CLASS_NAMES"] == "a,b" and ds.tags(1)["CLASS_7"] == "x"
        assert ds.colormap(1)[7] == (9, 8, 7, 255)
        last = ds.read(1, window=((rows * 16 - 16, rows * 16), (0, 16)))  # the last source
        assert (last == 7).all()
        beyond = ds.read(1, window=((rows * 16 - 16, rows * 16), (side * 16 - 16, side * 16)))
        assert (beyond == 255).all()  # no source there: nodata
    info = subprocess.run(["gdalinfo", str(path)], capture_output=True, text=True, timeout=120)
    assert info.returncode == 0 and f"Size is {side * 16}, {rows * 16}" in info.stdout


QGIS_PYTHON = "/usr/bin/python3"


def test_100k_source_vrt_opens_in_qgis(big_vrt):
    if not os.path.exists(QGIS_PYTHON) or subprocess.run(
            [QGIS_PYTHON, "-c", "import qgis.core"], capture_output=True).returncode != 0:
        pytest.skip("QGIS's Python is not installed")
    path, side, rows = big_vrt
    script = (
        "import sys\n"
        "from qgis.core import QgsApplication, QgsRasterLayer\n"
        "app = QgsApplication([], False); app.initQgis()\n"
        "layer = QgsRasterLayer(sys.argv[1], 'mosaic')\n"
        "block = layer.dataProvider().block(1, layer.extent(), 64, 64) if layer.isValid() else None\n"
        "print(layer.isValid(), layer.width(), layer.height(), block.value(0, 0) if block else -1)\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([QGIS_PYTHON, "-c", script, str(path)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-4:] == ["True", str(side * 16), str(rows * 16), "7.0"], done.stdout


def test_gdal_virtual_paths_are_kept_and_opened(tmp_path):
    """A list file naming tiles inside a zip (/vsizip/, as /vsis3/ or /vsicurl/ would be):
    the paths stay as written and the tiles' grids are read through GDAL."""
    import zipfile

    from rsseg.batch.inputs import open_tiles, resolve_inputs

    for k in range(2):
        write_tile(tmp_path / f"z{k}.tif", k, Affine(PX, 0, 500000 + k * 16 * PX, 0, -PX, 5400000))
    with zipfile.ZipFile(tmp_path / "tiles.zip", "w") as z:
        for k in range(2):
            z.write(tmp_path / f"z{k}.tif", f"z{k}.tif")
    names = [f"/vsizip/{tmp_path}/tiles.zip/z{k}.tif" for k in range(2)]
    (tmp_path / "list.txt").write_text("\n".join(names) + "\n")
    assert resolve_inputs(str(tmp_path / "list.txt")) == names
    tiles = open_tiles(names)
    assert all(t.ok for t in tiles), [t.error for t in tiles]
    [mosaic] = group_mosaics(tiles)
    assert (mosaic.width, mosaic.height) == (32, 16)


def test_output_folder_holding_the_inputs_is_refused(tmp_path, capsys):
    """Class rasters are named after their tiles: -o the input folder (here through a
    symlink) would replace the tiles."""
    from rsseg.cli import run

    city = tmp_path / "city"
    city.mkdir()
    write_tile(city / "a.tif", 1, Affine(PX, 0, 500000, 0, -PX, 5400000))
    (tmp_path / "link").symlink_to(city)
    assert run(["batch", str(city / "*.tif"), "-o", str(tmp_path / "link"), "--model",
                "baff_skipnet", "--weights", "random"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds the inputs" in err[0] and "a.tif" in err[0]
    assert sorted(os.listdir(city)) == ["a.tif"]


def test_per_tile_band_file_vrt_lists_the_context_files_only(tmp_path):
    """--band-file 'ir/{stem}.tif' on a 1 x 5 row of tiles: each tile's extra VRT names
    the IR files of its context tiles only (opening it costs the same in a mosaic of any
    size), and reads, around the tile, exactly what a VRT of every IR file reads."""
    from rsseg.batch.bandfiles import TileExtras
    from rsseg.batch.inputs import open_tiles
    from rsseg.io.scene import BandFile

    size, margin = 16, 8
    (tmp_path / "rgb").mkdir()
    (tmp_path / "ir").mkdir()
    rng = np.random.default_rng(3)
    for k in range(5):
        transform = Affine(PX, 0, 1000 + k * size * PX, 0, -PX, 2000)
        for folder, count in (("rgb", 3), ("ir", 1)):
            with rasterio.open(tmp_path / folder / f"t{k}.tif", "w", driver="GTiff",
                               width=size, height=size, count=count, dtype="uint8",
                               crs=UTM32, transform=transform) as ds:
                ds.write(rng.integers(0, 255, (count, size, size), dtype=np.uint8))
    tiles = open_tiles(sorted(str(p) for p in (tmp_path / "rgb").glob("*.tif")))
    (mosaic,) = group_mosaics(tiles)
    extras = TileExtras([BandFile(str(tmp_path / "ir" / "{stem}.tif"), (1,), None)], None,
                        False, tiles)
    extras.check_mosaics([mosaic], tmp_path / ".rsseg", tmp_path / ".rsseg" / "inputs")
    ir_files = open_tiles([str(tmp_path / "ir" / f"{t.stem}.tif") for t in mosaic.tiles])
    for ir, tile in zip(ir_files, mosaic.tiles):
        ir.col, ir.row = tile.col, tile.row
    whole = input_mosaic_vrt(tmp_path / "whole_ir.vrt", Mosaic(
        0, ir_files, mosaic.width, mosaic.height, mosaic.transform))
    for tile, context in zip(mosaic.tiles, context_tiles(mosaic, margin)):
        (path,) = extras.write_tile_vrts(tile, context)
        assert extras.for_tile(tile)[0].path == path
        sources = [Path(s).name for s in _vrt_source_names(path)]
        assert sources == [f"{t.stem}.tif" for t in context]
        assert len(sources) == (2 if tile.col in (0, 4 * size) else 3)
        lo, hi = max(0, tile.col - margin), min(mosaic.width, tile.col + size + margin)
        window = rasterio.windows.Window(lo, 0, hi - lo, size)
        with rasterio.open(path) as part, rasterio.open(whole) as ref:
            assert np.array_equal(part.read(window=window), ref.read(window=window))


def _vrt_source_names(path) -> list[str]:
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    return [node.text for band in root.iter("VRTRasterBand")
            for node in band.iter("SourceFilename")]
