"""Synthetic scenes and raster reading with GDAL's Python bindings (they ship with QGIS;
rasterio is not available to /usr/bin/python3)."""

import os
import subprocess

import numpy as np
from osgeo import gdal, osr

gdal.UseExceptions()

EPSG = 32632
# rsseg's default class scheme (rsseg.classes.ISPRS; rsseg is not importable here)
ISPRS_NAMES = ["impervious_surfaces", "building", "low_vegetation", "tree", "car", "clutter"]
ISPRS_COLOURS = [(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0),
                 (255, 0, 0)]
ORIGIN = (500000.0, 5500000.0)
PIXEL = 0.5


def make_scene(path, width=300, height=200, bands=3, seed=0):
    """An RGB uint8 GeoTIFF in UTM 32N: smooth fields with blocky 'buildings' and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = [(xx * 255 // max(width - 1, 1)), (yy * 255 // max(height - 1, 1)),
            ((xx // 40 + yy // 40) % 2) * 200 + 20]
    ds = gdal.GetDriverByName("GTiff").Create(str(path), width, height, bands, gdal.GDT_Byte,
                                              options=["TILED=YES", "COMPRESS=DEFLATE"])
    ds.SetGeoTransform((ORIGIN[0], PIXEL, 0.0, ORIGIN[1], 0.0, -PIXEL))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    ds.SetProjection(srs.ExportToWkt())
    for b in range(bands):
        noise = rng.integers(0, 30, size=(height, width))
        band = np.clip(base[b % 3] + noise, 0, 255).astype(np.uint8)
        ds.GetRasterBand(b + 1).WriteArray(band)
    ds.FlushCache()
    ds = None
    return str(path)


def write_classes_like(path, template, array, nodata=255):
    """A uint8 class raster on ``template``'s grid."""
    src = gdal.Open(str(template))
    ds = gdal.GetDriverByName("GTiff").Create(str(path), src.RasterXSize, src.RasterYSize, 1,
                                              gdal.GDT_Byte)
    ds.SetGeoTransform(src.GetGeoTransform())
    ds.SetProjection(src.GetProjection())
    band = ds.GetRasterBand(1)
    band.SetNoDataValue(nodata)
    band.WriteArray(np.asarray(array, dtype=np.uint8))
    ds.FlushCache()
    ds = None
    return str(path)


def read_band(path, band=1):
    ds = gdal.Open(str(path))
    return ds.GetRasterBand(band).ReadAsArray()


def grid(path):
    """(width, height, geotransform, EPSG code) of a raster."""
    ds = gdal.Open(str(path))
    srs = osr.SpatialReference(wkt=ds.GetProjection())
    srs.AutoIdentifyEPSG()
    return ds.RasterXSize, ds.RasterYSize, ds.GetGeoTransform(), srs.GetAuthorityCode(None)


def run_cli(exe, *args, timeout=300):
    """Run the rsseg CLI directly (the reference the plugin's outputs must match)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([exe, *map(str, args), "--no-progress"], capture_output=True,
                          text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"rsseg {args[0]} failed: {proc.stderr.strip()}"
    return proc


# Small and fast: the lightest network, untrained (--weights random, seeded), small tiles.
MODEL = os.environ.get("RSSEG_TEST_MODEL", "baff_skipnet")
TILE, OVERLAP = 128, 32


def predict_params(scene, output, **extra):
    """rsseg:predict parameters for the test settings (the CLI reference uses the same)."""
    params = {"INPUT": str(scene), "MODEL": MODEL, "WEIGHTS": "random", "TILE": TILE,
              "OVERLAP": OVERLAP, "OUTPUT": str(output)}
    params.update(extra)
    return params


def class_pattern(width=300, height=200):
    """Classes 0-5 in blocks, a diagonal band (stair-stepped edges to simplify) and
    single-pixel specks (below any sensible minimum area)."""
    yy, xx = np.mgrid[0:height, 0:width]
    classes = ((xx // 60) + (yy // 50)) % 6
    band = np.abs(xx - 1.5 * yy - 20) < 12
    classes[band] = 1
    specks = (xx % 23 == 7) & (yy % 19 == 5)
    classes[specks] = 4
    return classes.astype(np.uint8)


def assert_class_style(layer):
    """``layer`` carries rsseg's class style: categories on class_id, one per class, named
    and coloured as the scheme says (not just "some renderer other than the default")."""
    renderer = layer.renderer()
    assert renderer.type() == "categorizedSymbol", renderer.type()
    assert renderer.classAttribute() == "class_id"
    categories = renderer.categories()
    assert [(int(c.value()), c.label()) for c in categories] == list(enumerate(ISPRS_NAMES))
    assert [c.symbol().color().getRgb()[:3] for c in categories] == ISPRS_COLOURS
