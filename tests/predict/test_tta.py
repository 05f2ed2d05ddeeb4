"""Test-time augmentation (``--tta``): views turned back exactly, one result on NumPy and torch."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from rsseg.predict.predictor import TorchPredictor
from rsseg.predict.tta import AugmentedPredictor, views


class PositionPredictor:
    """Scores that depend on where a pixel sits in the window (not on its value), so a
    view turned back wrongly shows: class 0 = row, 1 = column, 2 = the first band."""

    num_classes = 3

    def __call__(self, batch):
        n, _, h, w = batch.shape
        rows = np.broadcast_to(np.arange(h, dtype=np.float32)[:, None], (h, w))
        cols = np.broadcast_to(np.arange(w, dtype=np.float32)[None, :], (h, w))
        return np.stack([np.stack([rows, cols, b[0]]) for b in batch]).astype(np.float32)


def _reference_flip(predict, x):
    """``flip`` written out with explicit axis flips: as is, left-right, up-down, both."""
    out = predict(x)
    out = out + predict(x[..., ::-1].copy())[..., ::-1]
    out = out + predict(x[..., ::-1, :].copy())[..., ::-1, :]
    out = out + predict(x[..., ::-1, ::-1].copy())[..., ::-1, ::-1]
    return out / 4


def test_views_of_each_mode():
    from rsseg.predict.settings import TTA_MODES

    assert [len(views(mode, 8, 8)) for mode in TTA_MODES] == [1, 4, 8]  # the CLI's choices
    assert views("none", 8, 8) == ((0, False),)
    assert len(views("flip", 8, 8)) == 4 and len(set(views("d4", 8, 8))) == 8
    # not square: only the views that keep the shape (no quarter turns)
    assert all(k % 2 == 0 for k, _ in views("d4", 8, 5)) and len(views("d4", 8, 5)) == 4
    with pytest.raises(ValueError, match="unknown test-time augmentation 'd8'"):
        views("d8", 8, 8)


def test_flip_equals_explicit_axis_flips():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 3, 16, 12)).astype(np.float32) / 256
    position = PositionPredictor()
    got = AugmentedPredictor(position, "flip")(x)
    np.testing.assert_allclose(got, _reference_flip(position, x), rtol=0, atol=1e-6)
    # turned back exactly: the value channel averages four copies of itself
    np.testing.assert_array_equal(got[:, 2], x[:, 0])
    # and the position channels average each position with its mirror image
    np.testing.assert_allclose(got[0, 0], np.full((16, 12), 7.5, np.float32))
    np.testing.assert_allclose(got[0, 1], np.full((16, 12), 5.5, np.float32))


def test_d4_turns_every_view_back():
    x = (np.arange(2 * 16 * 16, dtype=np.float32).reshape(1, 2, 16, 16) % 256) / 256
    got = AugmentedPredictor(PositionPredictor(), "d4")(x)
    np.testing.assert_array_equal(got[:, 2], x[:, 0])  # values back where they were
    # 8 views of a square: rows and columns each average to the centre
    np.testing.assert_allclose(got[0, :2], np.full((2, 16, 16), 7.5, np.float32))


@pytest.mark.parametrize("mode", ["flip", "d4"])
def test_torch_path_equals_numpy_wrapper(mode):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 5, 3, padding=1, bias=False),
                              torch.nn.Conv2d(5, 5, (1, 3), padding=(0, 1)))  # not symmetric
    x = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32)
    plain = TorchPredictor(net, "cpu", num_classes=5)
    on_torch = TorchPredictor(net, "cpu", num_classes=5, tta=mode)(x)
    on_numpy = AugmentedPredictor(plain, mode)(x)
    np.testing.assert_allclose(on_torch, on_numpy, rtol=0, atol=1e-6)
    np.testing.assert_allclose(on_torch.sum(axis=1), 1, atol=1e-5)  # still probabilities
    assert np.abs(on_torch - plain(x)).max() > 1e-3  # and really something else


def test_device_path_takes_the_views_too():
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 4, (3, 1), padding=(1, 0))
    x = torch.from_numpy(np.random.default_rng(2).normal(size=(1, 3, 16, 16)).astype(np.float32))
    with_tta = TorchPredictor(net, "cpu", tta="d4", device_path=True)
    wrapped = AugmentedPredictor(TorchPredictor(net, "cpu"), "d4")
    assert wrapped.num_classes is None  # not known before the first window...
    reference = wrapped(x.numpy())
    np.testing.assert_allclose(with_tta.probabilities(x).numpy(), reference, atol=1e-6)
    assert wrapped.num_classes == 4  # ...then the wrapped predictor's


def _lopsided_net(in_channels=3, num_classes=4):
    """Random, and not symmetric under flips or turns (a one-sided 1 x 3 kernel)."""
    return torch.nn.Sequential(torch.nn.Conv2d(in_channels, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, num_classes, (1, 3), padding=(0, 1)))


def test_predict_cli_tta_keeps_the_grid(make_geotiff, register_test_model, tmp_path, capsys):
    from rsseg.cli import run

    model = register_test_model("tta_test_net", _lopsided_net)
    data = np.random.default_rng(0).integers(0, 255, (3, 96, 80)).astype(np.uint8)
    scene = make_geotiff(data)
    outs = {}
    for mode in ("none", "d4"):
        outs[mode] = tmp_path / f"{mode}.tif"
        assert run(["predict", str(scene), "-o", str(outs[mode]), "--model", model,
                    "--weights", "random", "--tile", "64", "--overlap", "16",
                    "--probs", str(tmp_path / f"{mode}-conf.tif"), "--tta", mode]) == 0
        done = capsys.readouterr().err.strip().splitlines()[-1]
        assert done.startswith(f"wrote {mode}.tif")
        assert ("--tta d4" in done) == (mode == "d4"), done  # the completion line says it
    with rasterio.open(scene) as src, rasterio.open(outs["d4"]) as dst:
        assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, src.shape)
    with rasterio.open(tmp_path / "none-conf.tif") as plain, \
            rasterio.open(tmp_path / "d4-conf.tif") as views_mean:
        assert (plain.read(1) != views_mean.read(1)).any()  # the views changed the scores
    capsys.readouterr()
    assert run(["predict", str(scene), "-o", str(tmp_path / "x.tif"), "--tta", "d8"]) == 2
    assert "d8" in capsys.readouterr().err and not (tmp_path / "x.tif").exists()


def test_batch_worker_builds_the_augmented_network():
    from rsseg.batch.worker import ModelSpec, cached_predictor

    spec = ModelSpec("baff_skipnet", "random", "", 0, 3, "cpu", "flip")
    assert cached_predictor(spec).predict.tta == "flip"
