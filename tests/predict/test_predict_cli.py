"""``rsseg predict`` in-process: happy paths, checkpoints, and every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
import torch.nn as nn
from rsseg.models import create_model

from rsseg.checkpoint import Checkpoint, Normalization
from rsseg.cli import run

MODEL = "tiny_test_net"


def tiny_net(in_channels=3, num_classes=6):
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, num_classes, 1))


@pytest.fixture
def tiny_model(register_test_model):
    return register_test_model(MODEL, tiny_net)


@pytest.fixture
def scene(make_geotiff):
    data = np.random.default_rng(0).integers(0, 255, (3, 90, 130)).astype(np.uint8)
    return make_geotiff(data)


def rsseg(*args) -> int:
    return run([str(a) for a in args])


def stderr_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_random_weights_run_twice_agree_and_say_so(tiny_model, scene, tmp_path, capsys):
    outs = []
    for name in ("a.tif", "b.tif"):
        out = tmp_path / name
        assert rsseg("predict", scene, "--model", MODEL, "--weights", "random", "-o", out,
                     "--tile", 64, "--overlap", 16, "--no-progress", "--probs",
                     tmp_path / f"p{name}") == 0
        with rasterio.open(out) as ds, rasterio.open(scene) as src:
            assert (ds.crs, ds.transform, ds.shape) == (src.crs, src.transform, src.shape)
            outs.append(ds.read(1))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert outs[0].max() < 6
    err = capsys.readouterr().err
    assert "random weights (seed 0)" in err and "in_channels=3" in err


def test_checkpoint_weights_and_repeated_bands(tiny_model, make_geotiff, tmp_path, capsys):
    pan = make_geotiff(np.random.default_rng(1).integers(0, 255, (70, 50)).astype(np.uint8),
                       name="pan.tif")
    torch.manual_seed(3)
    model = create_model(MODEL, in_channels=3, num_classes=6)
    ckpt = tmp_path / "best.pt"
    Checkpoint.from_model(model, bands=Normalization(["R", "G", "B"], [100.0] * 3, [50.0] * 3),
                          tile={"size": 32, "overlap": 8}).save(ckpt)
    out = tmp_path / "out.tif"
    assert rsseg("predict", pan, "--model", MODEL, "--weights", ckpt, "--bands", "1,1,1",
                 "-o", out, "--no-progress", "--quiet") == 0
    assert stderr_lines(capsys) == []
    with rasterio.open(pan) as src, torch.inference_mode():
        x = (src.read(1).astype(np.float32) - 100.0) / 50.0
        whole = model(torch.from_numpy(np.stack([x] * 3))[None]).argmax(1)[0].numpy()
    with rasterio.open(out) as ds:
        assert (ds.read(1) == whole).mean() >= 0.995


def test_progress_json_lines(tiny_model, scene, tmp_path, capsys):
    assert rsseg("predict", scene, "--model", MODEL, "--weights", "random", "-o",
                 tmp_path / "o.tif", "--tile", 64, "--progress-json") == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0]["event"] == "start" and events[-2]["event"] == "end"
    assert events[-2]["done"] == events[-2]["total"] == 6  # 2 x 3 windows
    assert events[-1]["event"] == "result" and events[-1]["windows"] == 6


def _assert_clean_failure(capsys, tmp_path, code, rc, *needles, output="out.tif"):
    lines = stderr_lines(capsys)
    assert rc == code, lines
    if code == 1:
        assert len(lines) == 1 and lines[0].startswith("rsseg: error:"), lines
    text = " ".join(lines)
    for needle in needles:
        assert needle in text, text
    assert not (tmp_path / output).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries


def test_missing_input(tiny_model, tmp_path, capsys):
    rc = rsseg("predict", tmp_path / "nope.tif", "--model", MODEL, "--weights", "random",
               "-o", tmp_path / "out.tif")
    _assert_clean_failure(capsys, tmp_path, 1, rc, "nope.tif", "not found")


def test_not_a_raster(tiny_model, tmp_path, capsys):
    bogus = tmp_path / "notes.tif"
    bogus.write_text("hello, I am not an image\n")
    rc = rsseg("predict", bogus, "--model", MODEL, "--weights", "random", "-o", tmp_path / "out.tif")
    _assert_clean_failure(capsys, tmp_path, 1, rc, "notes.tif", "not a raster")


def test_band_count_does_not_match_the_checkpoint(tiny_model, make_geotiff, tmp_path, capsys):
    four = make_geotiff(np.zeros((4, 40, 40), np.uint8))
    ckpt = tmp_path / "m.pt"
    Checkpoint.from_model(create_model(MODEL, in_channels=3)).save(ckpt)
    rc = rsseg("predict", four, "--model", MODEL, "--weights", ckpt, "-o", tmp_path / "out.tif")
    _assert_clean_failure(capsys, tmp_path, 1, rc, "expects 3 bands", "provides 4", "--bands")


def test_band_number_out_of_range(tiny_model, scene, tmp_path, capsys):
    rc = rsseg("predict", scene, "--model", MODEL, "--weights", "random", "--bands", "1,5",
               "-o", tmp_path / "out.tif")
    _assert_clean_failure(capsys, tmp_path, 1, rc, "band 5 does not exist")


def test_unknown_model(scene, tmp_path, capsys):
    rc = rsseg("predict", scene, "--model", "no_such_net", "--weights", "random",
               "-o", tmp_path / "out.tif")
    _assert_clean_failure(capsys, tmp_path, 1, rc, "unknown model 'no_such_net'")


def test_no_weights_and_none_bundled(tiny_model, scene, tmp_path, capsys):
    rc = rsseg("predict", scene, "--model", MODEL, "-o", tmp_path / "out.tif")
    _assert_clean_failure(capsys, tmp_path, 1, rc, "no weights are bundled", "--weights")


def test_output_exists_without_overwrite(tiny_model, scene, tmp_path, capsys):
    out = tmp_path / "out.tif"
    out.write_bytes(b"keep me")
    rc = rsseg("predict", scene, "--model", MODEL, "--weights", "random", "-o", out)
    assert rc == 1 and "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert rsseg("predict", scene, "--model", MODEL, "--weights", "random", "-o", out,
                 "--overwrite", "--no-progress", "--tile", 64) == 0
    with rasterio.open(out) as ds:
        assert ds.shape == (90, 130)


def test_dsm_on_another_grid_needs_align(tiny_model, scene, make_geotiff, tmp_path, capsys):
    dsm = make_geotiff(np.ones((45, 65), np.float32), name="dsm.tif",
                       transform=rasterio.Affine(1.0, 0, 500000.0, 0, -1.0, 5300000.0))
    rc = rsseg("predict", scene, "--model", MODEL, "--weights", "random", "--dsm", dsm,
               "-o", tmp_path / "out.tif")
    _assert_clean_failure(capsys, tmp_path, 1, rc, "dsm.tif", "--align")
    assert rsseg("predict", scene, "--model", MODEL, "--weights", "random", "--dsm", dsm,
                 "--align", "-o", tmp_path / "out.tif", "--no-progress", "--tile", 64) == 0
    assert "in_channels=4" in capsys.readouterr().err


@pytest.mark.parametrize("args,needle", [
    (["--bands", "0,1"], "band numbers start at 1"),
    (["--tile", "64", "--overlap", "64"], "--overlap"),
    (["--blend", "median"], "median"),
])
def test_usage_errors_exit_2(tiny_model, scene, tmp_path, capsys, args, needle):
    rc = rsseg("predict", scene, "--model", MODEL, "--weights", "random",
               "-o", tmp_path / "out.tif", *args)
    _assert_clean_failure(capsys, tmp_path, 2, rc, needle)


def test_bundled_weights_are_used_without_weights(tiny_model, scene, tmp_path, capsys,
                                                  monkeypatch):
    ckpt = tmp_path / "bundled.pt"
    Checkpoint.from_model(create_model(MODEL, in_channels=3),
                          bands=Normalization(["R", "G", "B"], [0.0] * 3, [255.0] * 3)).save(ckpt)
    from rsseg.weights import bundled as bundled

    assert bundled.bundled_weights(MODEL) is None  # nothing shipped for a test net
    monkeypatch.setattr(bundled, "bundled_weights", lambda name: ckpt if name == MODEL else None)
    assert rsseg("predict", scene, "--model", MODEL, "-o", tmp_path / "out.tif",
                 "--no-progress", "--tile", 64, "--overlap", 16, "--quiet") == 0
    assert stderr_lines(capsys) == []  # a trained checkpoint: no 'random weights' notice


def _predict(scene, out, *options) -> tuple[np.ndarray, np.ndarray]:
    """``rsseg predict`` with random weights; returns (classes, confidence)."""
    probs = out.with_name(f"{out.stem}_conf.tif")
    assert rsseg("predict", scene, "--model", MODEL, "--weights", "random", "-o", out,
                 "--probs", probs, "--tile", 64, "--overlap", 16, "--no-progress",
                 *options) == 0
    with rasterio.open(out) as classes, rasterio.open(probs) as conf:
        return classes.read(1), conf.read(1)


def test_batch_size_and_seed(tiny_model, scene, tmp_path, capsys):
    """--batch-size groups windows, it does not change the result; --seed picks other
    random weights, announced as such."""
    classes, conf = _predict(scene, tmp_path / "one.tif")
    batched, batched_conf = _predict(scene, tmp_path / "four.tif", "--batch-size", 4)
    np.testing.assert_array_equal(batched, classes)
    assert np.abs(batched_conf.astype(int) - conf).max() <= 1  # float rounding at most
    capsys.readouterr()
    _, other_conf = _predict(scene, tmp_path / "seed.tif", "--seed", 1)
    assert "random weights (seed 1)" in capsys.readouterr().err
    assert not np.array_equal(other_conf, conf)
    _, again = _predict(scene, tmp_path / "seed_again.tif", "--seed", 1)
    np.testing.assert_array_equal(again, other_conf)


class WindowMeanNet(nn.Module):
    """Scores that depend on the whole window (its mean), so overlapping windows disagree
    everywhere they overlap and the blend weights decide every overlap pixel."""

    def __init__(self, in_channels=3, num_classes=6):
        super().__init__()
        self.pixel = nn.Conv2d(in_channels, num_classes, 1)
        self.window = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, x):
        return self.pixel(x) + 20 * self.window(x.mean((2, 3), keepdim=True))


def test_every_blend_runs_and_each_weighs_the_overlaps_its_own_way(register_test_model,
                                                                   make_geotiff, tmp_path):
    from rsseg.cli.options import BLENDS

    register_test_model(MODEL, WindowMeanNet)
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 200, 130, dtype=np.float32)[None, None]  # windows differ in mean
    scene = make_geotiff((rng.integers(0, 55, (3, 90, 130)) + ramp).astype(np.uint8))
    results = {blend: _predict(scene, tmp_path / f"{blend}.tif", "--blend", blend)[1]
               for blend in BLENDS}
    assert len({conf.tobytes() for conf in results.values()}) == len(BLENDS)
    # rows and columns 0..47 lie in the first window only (tile 64, overlap 16): the same
    # there, up to the rounding of a weight divided by itself
    for conf in results.values():
        assert np.abs(conf[:48, :48].astype(int) - results["crop"][:48, :48]).max() <= 1
