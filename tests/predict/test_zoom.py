"""``--zoom``: the network sees each window magnified, the scores come back on its grid."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F

from rsseg.predict.predictor import TorchPredictor
from rsseg.predict.zoom import ZoomedPredictor, check_zoom, zoomed_size
from conftest import write_geotiff
from test_pipeline import OneHot, predict, small_convnet, unit_norm


def test_torch_zoom_is_resample_network_resample_back():
    net = small_convnet(in_ch=3, k=4, seed=1)
    x = np.random.default_rng(0).standard_normal((2, 3, 40, 56)).astype(np.float32)
    for zoom in (0.5, 1.25, 2.0):
        got = TorchPredictor(net, "cpu", zoom=zoom)(x)
        t = torch.from_numpy(x)
        size = (zoomed_size(40, zoom), zoomed_size(56, zoom))
        seen = F.interpolate(t, size=size, mode="bilinear", align_corners=False,
                             antialias=zoom < 1)
        with torch.inference_mode():
            scores = torch.softmax(net(seen.contiguous(memory_format=torch.channels_last)), 1)
        expected = F.interpolate(scores, size=(40, 56), mode="bilinear", align_corners=False,
                                 antialias=zoom > 1)
        assert got.shape == (2, 4, 40, 56)
        np.testing.assert_array_equal(got, expected.numpy())
        np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)  # still probabilities
    np.testing.assert_array_equal(TorchPredictor(net, "cpu", zoom=1.0)(x),
                                  TorchPredictor(net, "cpu")(x))  # 1: the window as is


def test_numpy_wrapper_equals_the_torch_path():
    net = small_convnet(in_ch=3, k=4, seed=2)
    x = np.random.default_rng(1).standard_normal((1, 3, 48, 48)).astype(np.float32)
    wrapped = ZoomedPredictor(TorchPredictor(net, "cpu"), 1.5)
    np.testing.assert_array_equal(wrapped(x), TorchPredictor(net, "cpu", zoom=1.5)(x))
    assert wrapped.num_classes == 4  # the wrapped predictor's, learnt at its first call

    class FixedSize:  # a backend that takes one window size only (a fixed ONNX graph)
        num_classes = 4

        def check_tile(self, tile):
            assert tile == 96, tile

    ZoomedPredictor(FixedSize(), 1.5).check_tile(64)  # asked about the zoomed window


@pytest.mark.parametrize("zoom", [0.5, 2.0])
def test_zoomed_prediction_keeps_the_map_and_its_grid(make_geotiff, tmp_path, zoom):
    """Class ids in 16-px blocks through a one-hot network: zoomed in or out, the map
    comes back on the scene's grid, equal to the ids except along block edges."""
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 6, (12, 15)).repeat(16, 0).repeat(16, 1).astype(np.uint16)
    scene = make_geotiff(ids)
    out = tmp_path / "out.tif"
    predict(scene, out, TorchPredictor(OneHot(), "cpu", zoom=zoom), unit_norm(1), tile=64,
            overlap=16)
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, src.shape)
        got = dst.read(1)
    rows, cols = np.indices(ids.shape) % 16
    inner = (rows >= 3) & (rows < 13) & (cols >= 3) & (cols < 13)  # away from block edges
    assert (got[inner] == ids[inner]).all()
    assert (got == ids).mean() > 0.9


def test_device_path_zooms_as_the_host_path(make_geotiff, tmp_path):
    data = np.random.default_rng(4).integers(0, 255, (3, 90, 110)).astype(np.uint8)
    scene = make_geotiff(data)
    net = small_convnet(in_ch=3, k=6, seed=3)
    outs = []
    for device_path in (False, True):
        outs.append(tmp_path / f"{device_path}.tif")
        predict(scene, outs[-1], TorchPredictor(net, "cpu", device_path=device_path,
                                                zoom=1.25), unit_norm(3), tile=64, overlap=16)
    with rasterio.open(outs[0]) as host, rasterio.open(outs[1]) as device:
        np.testing.assert_array_equal(device.read(1), host.read(1))


def test_cli_zoom_and_its_limits(make_geotiff, tmp_path, capsys):
    from rsseg.cli import run

    scene = make_geotiff(np.random.default_rng(5).integers(0, 255, (3, 80, 96)).astype(np.uint8))
    out = tmp_path / "z.tif"
    assert run(["predict", str(scene), "-o", str(out), "--model", "baff_skipnet", "--weights",
                "random", "--tile", "64", "--overlap", "16", "--zoom", "1.5"]) == 0
    assert "--zoom 1.5" in capsys.readouterr().err.strip().splitlines()[-1]
    for bad in ("0", "5", "-1", "x"):
        assert run(["predict", str(scene), "-o", str(tmp_path / "bad.tif"), "--zoom", bad]) == 2
        err = capsys.readouterr().err
        assert "--zoom" in err and "Traceback" not in err
    assert not (tmp_path / "bad.tif").exists()
    with pytest.raises(ValueError, match="between 0.25 and 4"):
        check_zoom(8)


def test_batch_worker_builds_the_zoomed_network():
    from rsseg.batch.worker import ModelSpec, cached_predictor

    spec = ModelSpec("baff_skipnet", "random", "", 0, 3, "cpu", "none", 1.25)
    assert cached_predictor(spec).predict.zoom == 1.25


def test_auto_zoom_is_the_ratio_of_pixel_sizes():
    from rsseg.predict.zoom import auto_zoom

    assert auto_zoom(0.5, 0.4)[0] == pytest.approx(1.25)
    zoom, line = auto_zoom(None, 0.4)
    assert zoom == 1.0 and "scene's pixel size is not known" in line
    zoom, line = auto_zoom(0.5, None)
    assert zoom == 1.0 and "training pixel size is not known" in line
    with pytest.raises(ValueError, match="outside 0.25-4"):
        auto_zoom(3.0, 0.5)
    zoom, line = auto_zoom(0.5, 0.0)  # a card saying 0 m: unknown, not a division by zero
    assert zoom == 1.0 and "training pixel size is not known" in line


def test_a_damaged_pixel_size_in_onnx_metadata_is_one_clear_error():
    import json

    from rsseg.errors import ModelError
    from rsseg.predict.onnx_predictor import read_info

    metadata = {"rsseg": {"format": "rsseg-onnx", "format_version": 1},
                "model": {"name": "baff_skipnet", "config": {}},
                "classes": {"classes": [{"name": "a", "colour": "#000000"}]},
                "bands": None, "tile": {"size": 64, "overlap": 16},
                "input": {"channels": 3, "dynamic_spatial": True, "min_size": [32, 32]},
                "gsd_m": "abc"}
    with pytest.raises(ModelError, match="ONNX metadata is incomplete"):
        read_info({k: json.dumps(v) for k, v in metadata.items()})


def test_cli_zoom_auto_from_the_scene_and_the_checkpoint(tmp_path, capsys):
    """The checkpoint records 0.4 m training pixels (as `rsseg train` does from
    georeferenced imagery); the scene has 0.5 m pixels: zoom 1.25, as asked by hand."""
    from affine import Affine

    from rsseg.checkpoint import Checkpoint
    from rsseg.cli import run
    from rsseg.models import create_model

    torch.manual_seed(0)
    net = create_model("baff_skipnet", in_channels=3, num_classes=6)
    Checkpoint.from_model(net, training={"gsd_m": 0.4}).save(tmp_path / "m.pt")
    Checkpoint.from_model(net).save(tmp_path / "no_gsd.pt")
    data = np.random.default_rng(6).integers(0, 255, (3, 80, 96)).astype(np.uint8)
    scene = write_geotiff(tmp_path / "scene.tif", data)  # 0.5 m pixels, UTM
    common = ["--tile", "64", "--overlap", "16", "--probs"]
    assert run(["predict", str(scene), "--weights", str(tmp_path / "m.pt"), "-o",
                str(tmp_path / "auto.tif"), *common, str(tmp_path / "auto_c.tif"),
                "--zoom", "auto"]) == 0
    err = capsys.readouterr().err
    assert "--zoom auto: 1.25 (scene 0.5 m / training 0.4 m per pixel)" in err
    assert "--zoom 1.25" in err.strip().splitlines()[-1]
    assert run(["predict", str(scene), "--weights", str(tmp_path / "m.pt"), "-o",
                str(tmp_path / "hand.tif"), *common, str(tmp_path / "hand_c.tif"),
                "--zoom", "1.25"]) == 0
    with rasterio.open(tmp_path / "auto_c.tif") as a, rasterio.open(tmp_path / "hand_c.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))
    # without a recorded training pixel size: zoom 1, and a line saying why
    assert run(["predict", str(scene), "--weights", str(tmp_path / "no_gsd.pt"), "-o",
                str(tmp_path / "plain.tif"), "--tile", "64", "--overlap", "16",
                "--zoom", "auto"]) == 0
    assert "training pixel size is not known in metres" in capsys.readouterr().err
    # a scene far coarser than the training imagery: one clear line, nothing written
    coarse = write_geotiff(tmp_path / "coarse.tif", data,
                           transform=Affine(4.0, 0, 500000, 0, -4.0, 5300000))
    assert run(["predict", str(coarse), "--weights", str(tmp_path / "m.pt"), "-o",
                str(tmp_path / "never.tif"), "--zoom", "auto"]) != 0
    err = capsys.readouterr().err
    assert "coarse.tif" in err and "10 times the weights' training pixels" in err
    assert "Traceback" not in err and not (tmp_path / "never.tif").exists()


def test_bundled_weights_give_their_cards_pixel_size():
    from rsseg.predict.load import load_predictor

    assert load_predictor("baff_skipnet", channels=4, device="cpu").gsd_m == 0.09  # ISPRS-like
    assert load_predictor("baff_skipnet", "dubai-aerial", channels=3,
                          device="cpu").gsd_m is None  # the publisher states none


def test_onnx_exports_keep_the_training_pixel_size(tmp_path):
    """`--zoom auto` works on exported models too: rsseg export writes the pixel size the
    checkpoint records (or `--resolution`, in cm/px) into the ONNX metadata."""
    from rsseg.checkpoint import Checkpoint
    from rsseg.cli import run
    from rsseg.models import create_model
    from rsseg.predict.load import load_predictor

    torch.manual_seed(0)
    net = create_model("baff_skipnet", in_channels=3, num_classes=6)
    Checkpoint.from_model(net, training={"gsd_m": 0.4}).save(tmp_path / "m.pt")
    cases = {"m.onnx": [], "r.onnx": ["--resolution", "25"]}
    for name, extra in cases.items():
        assert run(["export", str(tmp_path / "m.pt"), "-o", str(tmp_path / name),
                    *extra, "--no-progress"]) == 0
    gsd = {name: load_predictor(weights=tmp_path / name, channels=3, backend="onnx").gsd_m
           for name in cases}
    assert gsd == {"m.onnx": 0.4, "r.onnx": 0.25}
    Checkpoint.from_model(net).save(tmp_path / "none.pt")
    assert run(["export", str(tmp_path / "none.pt"), "-o", str(tmp_path / "none.onnx"),
                "--no-progress"]) == 0
    assert load_predictor(weights=tmp_path / "none.onnx", channels=3, backend="onnx").gsd_m is None
