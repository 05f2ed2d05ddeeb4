"""scripts/render_qgis_map.py: the demo's outputs as real headless QGIS draws them.

The script runs as docs/qgis.md says (a separate /usr/bin/python3 process); the
PNG is then read with GDAL and its colours compared with the class raster's
colour table: each class must be drawn in its palette colour, covering the share
of the panel the class covers in the raster.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from qgis_helpers import run_cli

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "render_qgis_map.py"
BACKGROUND = (240, 240, 240)
GAP = 12


@pytest.fixture(scope="module")
def demo(tmp_path_factory, rsseg_exe):
    """A small `rsseg demo` run; the GeoPackage alone, without its .qml sidecar, so the
    style QGIS applies can only come from the embedded layer_styles table."""
    out = tmp_path_factory.mktemp("demo")
    run_cli(rsseg_exe, "demo", "--out", out / "run", "--size", 320, "--seed", 11, timeout=600)
    folder = out / "map"
    folder.mkdir()
    for name in ("classes.tif", "classes.gpkg"):
        shutil.copy(out / "run" / name, folder / name)
    return folder


def render(folder: Path, png: Path, *extra) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, str(SCRIPT), str(folder), "-o", str(png), *extra],
                          capture_output=True, text=True, timeout=300, env=env,
                          stdin=subprocess.DEVNULL)


def rgb(path: Path) -> np.ndarray:
    ds = gdal.Open(str(path))
    return np.dstack([ds.GetRasterBand(b).ReadAsArray() for b in (1, 2, 3)])


def palette(path: Path):
    ds = gdal.Open(str(path))
    band = ds.GetRasterBand(1)
    table = band.GetColorTable()
    classes = band.ReadAsArray()
    return classes, {v: table.GetColorEntry(int(v))[:3] for v in np.unique(classes) if v != 255}


def share(panel: np.ndarray, colour) -> float:
    return float(np.all(panel == np.array(colour, np.uint8), axis=-1).mean())


def test_rendered_colours_are_the_palettes(demo, tmp_path):
    png = tmp_path / "map.png"
    proc = render(demo, png)
    assert proc.returncode == 0, proc.stderr
    classes, colours = palette(demo / "classes.tif")
    assert len(colours) >= 3  # a scene with several classes, or the check proves little
    image = rgb(png)
    width = classes.shape[1]  # panels are drawn at the raster's own resolution
    assert image.shape == (classes.shape[0], 2 * width + GAP, 3)
    raster_panel, vector_panel = image[:, :width], image[:, width + GAP:]
    known = list(colours.values()) + [BACKGROUND]
    # The raster panel: every pixel is a palette colour (or the background at no data).
    assert sum(share(raster_panel, c) for c in known) == pytest.approx(1.0)
    for value, colour in colours.items():
        expected = float((classes == value).mean())
        # ... each class in its own colour, over the pixels it covers (QGIS's resampling
        # to the panel may move an edge by a pixel).
        assert share(raster_panel, colour) == pytest.approx(expected, abs=0.01), value
        # The polygons: filled with the same colours from the embedded style; the thin
        # outlines (antialiased) take a few percent of the pixels.
        assert share(vector_panel, colour) == pytest.approx(expected, abs=0.05), value
    assert sum(share(vector_panel, c) for c in known) > 0.85


def test_missing_style_is_an_error_naming_the_file(demo, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(demo / "classes.tif", bare / "classes.tif")
    gdal.VectorTranslate(str(bare / "classes.gpkg"), str(demo / "classes.gpkg"),
                         layers=["classes"])  # the layer without layer_styles
    proc = render(bare, tmp_path / "x.png")
    assert proc.returncode == 1
    assert "classes.gpkg" in proc.stderr and "embedded style" in proc.stderr
    assert not (tmp_path / "x.png").exists()
