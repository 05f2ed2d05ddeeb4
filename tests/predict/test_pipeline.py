"""The predict engine end to end at library level, on real GeoTIFFs."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import rasterio
import torch
import torch.nn as nn
from affine import Affine

from rsseg import PredictSettings, predict_scene
from rsseg.classes import ISPRS, ClassScheme
from rsseg.errors import InputError
from rsseg.io.cog import read_classes, validate_cog
from rsseg.io.normalization import Normalization
from rsseg.io.scene import NoCRSWarning, Scene
from rsseg.predict.load import LoadedPredictor
from rsseg.predict.predictor import TorchPredictor
from rsseg.tiling import BLEND_MODES

from conftest import require_tool

H, W = 170, 301  # non-square, not a multiple of any tile used below


class Identity(nn.Module):
    def forward(self, x):
        return x


class OneHot(nn.Module):
    """Class ids in band 1 -> logits whose softmax is (almost exactly) one-hot."""

    def __init__(self, k=6):
        super().__init__()
        self.k = k

    def forward(self, x):
        ids = x[:, 0].round().long().clamp(0, self.k - 1)
        return 60.0 * nn.functional.one_hot(ids, self.k).permute(0, 3, 1, 2).float()


def from_origin(x, y, xres, yres):
    return Affine(xres, 0.0, x, 0.0, -yres, y)


def small_convnet(in_ch=3, k=6, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(in_ch, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, k, 3, padding=1)).eval()


def unit_norm(n):
    return Normalization([f"b{i}" for i in range(n)], [0.0] * n, [1.0] * n)


def predict(scene, out, predictor, norm, classes=ISPRS, **settings):
    """``predict_scene`` with ``predictor`` carrying ``norm`` and ``classes``."""
    return predict_scene(scene, out, LoadedPredictor(predictor, norm, classes),
                         PredictSettings(**settings))


def collect_scores(shape, k):
    out = np.full((k,) + shape, np.nan, np.float32)

    def on_scores(r, c, scores, valid):
        out[:, r:r + valid.shape[0], c:c + valid.shape[1]] = scores

    return out, on_scores


@pytest.mark.parametrize("blend", BLEND_MODES)
@pytest.mark.parametrize("tile,overlap,batch", [(64, 16, 1), (96, 40, 3), (512, 128, 2)])
def test_identity_scores_come_out_equal_to_the_input(make_geotiff, tmp_path, blend, tile,
                                                     overlap, batch):
    data = np.random.default_rng(1).random((3, H, W), dtype=np.float32)
    scene = make_geotiff(data)
    got, on_scores = collect_scores((H, W), 3)
    predictor = TorchPredictor(Identity(), "cpu", num_classes=3, activation=None)
    predict(scene, tmp_path / "out.tif", predictor, unit_norm(3),
            ClassScheme(ISPRS.names[:3], ISPRS.colours[:3]), tile=tile, overlap=overlap,
            blend=blend, batch_size=batch, on_scores=on_scores)
    np.testing.assert_allclose(got, data, rtol=0, atol=2e-6)
    with rasterio.open(tmp_path / "out.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), np.argmax(data, axis=0))


@pytest.mark.parametrize("blend", BLEND_MODES)
def test_one_hot_identity_class_raster_equals_the_input(make_geotiff, tmp_path, blend):
    ids = np.random.default_rng(2).integers(0, 6, (H, W)).astype(np.uint8)
    scene = make_geotiff(ids)
    predictor = TorchPredictor(OneHot(), "cpu", num_classes=6)
    result = predict(scene, tmp_path / "out.tif", predictor, unit_norm(1), tile=64,
                     overlap=24, blend=blend, probs=tmp_path / "conf.tif")
    with rasterio.open(tmp_path / "out.tif") as out, rasterio.open(tmp_path / "conf.tif") as conf:
        np.testing.assert_array_equal(out.read(1), ids)
        assert (conf.read(1) == 255).all()  # one-hot: full confidence
    assert result.windows == 4 * 7 and result.skipped == 0  # rows 0,40,80,106; cols 0..200,237


def test_tiled_prediction_matches_whole_image_prediction(make_geotiff, tmp_path):
    rng = np.random.default_rng(3)
    # smooth-ish texture so the network's decisions are not all near ties
    base = rng.random((3, 64, 80)).astype(np.float32)
    data = np.repeat(np.repeat(base, 4, axis=1), 4, axis=2)[:, :250, :300]
    data += 0.2 * rng.random(data.shape, dtype=np.float32)
    scene = make_geotiff(data)
    net = small_convnet()
    with torch.inference_mode():
        whole = net(torch.from_numpy(data)[None]).argmax(1)[0].numpy()
    predict(scene, tmp_path / "out.tif", TorchPredictor(net, "cpu", num_classes=6),
            unit_norm(3), tile=64, overlap=16, blend="cosine")  # 25 % overlap
    with rasterio.open(tmp_path / "out.tif") as ds:
        tiled = ds.read(1)
    agreement = (tiled == whole).mean()
    assert agreement >= 0.995, agreement


@pytest.mark.parametrize("crs,transform", [
    ("EPSG:25832", from_origin(412345.5, 5654321.0, 0.09, 0.09)),
    ("EPSG:4326", from_origin(8.25, 49.5, 1e-6, 1e-6)),  # lat/lon axis order must survive
])
def test_output_keeps_georeferencing_classes_and_is_a_cog(make_geotiff, tmp_path, crs, transform):
    ids = np.random.default_rng(4).integers(0, 6, (600, 700)).astype(np.uint8)
    scene = make_geotiff(ids, crs=crs, transform=transform)
    out = tmp_path / "classes.tif"
    predict(scene, out, TorchPredictor(OneHot(), "cpu"), unit_norm(1), tile=256,
            overlap=64)
    with rasterio.open(scene) as src, rasterio.open(out) as ds:
        assert ds.crs == src.crs and ds.transform == src.transform
        assert (ds.height, ds.width, ds.count, ds.dtypes[0]) == (600, 700, 1, "uint8")
        assert ds.nodata == 255
        cmap = ds.colormap(1)
        for i, colour in enumerate(ISPRS.colours):
            assert cmap[i][:3] == colour
        assert ds.tags(1)["CLASS_1"] == "building"
        assert ds.overviews(1) == [2]
        np.testing.assert_array_equal(ds.read(1), ids)
    assert read_classes(out) == ISPRS
    assert validate_cog(out) == []
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    gdalinfo = require_tool("gdalinfo")
    info = subprocess.run([gdalinfo, str(out)], capture_output=True, text=True, check=True)
    assert "LAYOUT=COG" in info.stdout and "CLASS_NAMES=impervious_surfaces,building" in info.stdout
    assert "Color Table" in info.stdout and "CLASS_4=car" in info.stdout
    assert "Warning" not in info.stderr and "ERROR" not in info.stderr, info.stderr


def test_validate_cog_rejects_a_plain_geotiff(make_geotiff):
    plain = make_geotiff(np.zeros((1100, 1100), np.uint8), tiled=True)
    assert validate_cog(plain) == ["no overviews although the image is larger than a block",
                                   "no LAYOUT=COG marker"]


def test_nodata_pixels_are_255_and_empty_windows_are_skipped(make_geotiff, tmp_path):
    ids = np.random.default_rng(5).integers(1, 6, (200, 260)).astype(np.uint16)
    ids[:, :130] = 0  # nodata half: whole windows without data
    ids[150:, 200:] = 0
    scene = make_geotiff(ids, nodata=0)
    result = predict(scene, tmp_path / "out.tif", TorchPredictor(OneHot(), "cpu"),
                     unit_norm(1), tile=64, overlap=16, probs=tmp_path / "conf.tif")
    with rasterio.open(tmp_path / "out.tif") as ds, rasterio.open(tmp_path / "conf.tif") as conf:
        out, c = ds.read(1), conf.read(1)
    expected = np.where(ids == 0, 255, ids).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert (c[ids == 0] == 0).all() and (c[ids != 0] == 255).all()
    assert result.skipped > 0
    # the completion line's class shares: the written raster's counts, nodata left out
    counts = np.bincount(out.ravel(), minlength=256)
    assert result.class_pixels == {ISPRS.names[c]: int(counts[c])
                                   for c in np.argsort(-counts[:255], kind="stable")
                                   if counts[c]}
    assert list(result.class_pixels.values()) == sorted(result.class_pixels.values(), reverse=True)
    share = 100 * counts[1:6] / counts[:255].sum()
    assert f"{ISPRS.names[1 + int(np.argmax(share))]} {share.max():.1f} %" in result.describe()


def test_nan_float_pixels_are_nodata(make_geotiff, tmp_path):
    data = np.full((2, 80, 90), 3.0, np.float64)
    data[:, 10:20, 30:50] = np.nan
    data[0, 40:50, :] = np.nan  # only one band NaN: still data
    scene = make_geotiff(data)
    predict(scene, tmp_path / "out.tif", TorchPredictor(OneHot(), "cpu"), unit_norm(2),
            tile=32, overlap=8)
    with rasterio.open(tmp_path / "out.tif") as ds:
        out = ds.read(1)
    assert (out[10:20, 30:50] == 255).all()
    assert (out[40:50, :30] == 0).all()  # band 1 NaN -> replaced by 0 -> class 0
    assert (out[:10] == 3).all()


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "uint32", "int32",
                                   "float32", "float64"])
def test_any_dtype_reads_exactly_with_repeated_bands(make_geotiff, dtype):
    data = (np.arange(2 * 30 * 40).reshape(2, 30, 40) % 100).astype(dtype)
    with Scene(make_geotiff(data), bands=[2, 1, 2]) as scene:
        values, valid = scene.read(5, 7, 20, 25)
    assert values.dtype == np.float32 and valid.all()
    expected = data[[1, 0, 1], 5:25, 7:32].astype(np.float32)
    np.testing.assert_array_equal(values, expected)


def test_reads_padded_only_where_the_scene_ends(make_geotiff):
    data = np.arange(5 * 7, dtype=np.uint8).reshape(1, 5, 7)
    with Scene(make_geotiff(data)) as scene:
        values, valid = scene.read(0, 0, 5, 7, pad_to=(8, 8))
    assert values.shape == (1, 8, 8)
    np.testing.assert_array_equal(values[0, :5, :7], data[0])
    assert valid[:5, :7].all() and not valid[5:].any() and not valid[:, 7:].any()


def test_dsm_band_from_another_file_and_align(make_geotiff, tmp_path):
    img = np.random.default_rng(6).integers(0, 255, (3, 64, 80)).astype(np.uint8)
    dsm = np.linspace(100, 200, 64 * 80, dtype=np.float32).reshape(64, 80)
    scene = make_geotiff(img)
    same = make_geotiff(dsm, name="dsm.tif")
    with Scene(scene, bands=[1, 2], dsm=same) as s:
        values, _ = s.read(0, 0, 64, 80)
    assert s.channels == 3 and s.names[-1] == "DSM"
    np.testing.assert_array_equal(values[2], dsm)
    # the same heights at half the resolution: a different grid
    coarse = make_geotiff(dsm[::2, ::2], name="coarse.tif",
                          transform=from_origin(500000.0, 5300000.0, 1.0, 1.0))
    with pytest.raises(InputError, match="--align"):
        Scene(scene, dsm=coarse)
    with Scene(scene, dsm=coarse, align=True) as s:
        values, valid = s.read(0, 0, 64, 80)
    assert valid.all()
    assert np.abs(values[3] - dsm).max() < 3.0  # bilinear resampling of a smooth ramp
    predict(Scene(scene, dsm=coarse, align=True), tmp_path / "out.tif",
            TorchPredictor(small_convnet(4), "cpu"), unit_norm(4), tile=32, overlap=8)
    with rasterio.open(tmp_path / "out.tif") as ds:
        assert ds.read(1).max() < 6


def test_no_crs_is_allowed_with_a_warning_and_keeps_the_pixel_grid(make_geotiff, tmp_path):
    ids = np.random.default_rng(7).integers(0, 6, (50, 60)).astype(np.uint8)
    scene = make_geotiff(ids, crs=None)
    with pytest.warns(NoCRSWarning, match="no CRS"):
        predict(scene, tmp_path / "out.tif", TorchPredictor(OneHot(), "cpu"),
                unit_norm(1), tile=32, overlap=8)
    with rasterio.open(tmp_path / "out.tif") as ds, rasterio.open(scene) as src:
        assert ds.crs is None and ds.transform == src.transform
        np.testing.assert_array_equal(ds.read(1), ids)


def test_failure_leaves_nothing_at_the_output(make_geotiff, tmp_path):
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    scene = make_geotiff(np.zeros((40, 40), np.uint8))
    with pytest.raises(RuntimeError, match="boom"):
        predict(scene, tmp_path / "out.tif", TorchPredictor(Broken(), "cpu", num_classes=6),
                unit_norm(1), tile=32, overlap=8, probs=tmp_path / "conf.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_alpha_band_masks_pixels(tmp_path):
    ids = np.random.default_rng(8).integers(0, 6, (40, 50)).astype(np.uint8)
    alpha = np.full((40, 50), 255, np.uint8)
    alpha[5:15, 10:30] = 0
    path = tmp_path / "rgba.tif"
    with rasterio.open(path, "w", driver="GTiff", width=50, height=40, count=4, dtype="uint8",
                       crs="EPSG:32632", transform=from_origin(0, 40, 1, 1),
                       photometric="RGB", alpha="YES") as ds:
        ds.write(np.stack([ids, ids, ids, alpha]))
    with Scene(path, bands=[1, 2, 3]) as scene:
        _, valid = scene.read(0, 0, 40, 50)
    np.testing.assert_array_equal(valid, alpha > 0)
    predict(Scene(path, bands=[1, 2, 3]), tmp_path / "out.tif", TorchPredictor(OneHot(), "cpu"),
            unit_norm(3), tile=32, overlap=8)
    with rasterio.open(tmp_path / "out.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), np.where(alpha > 0, ids, 255))
