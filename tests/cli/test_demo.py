"""rsseg demo: every stage on a small synthetic scene, and the bundled weights."""

from __future__ import annotations

import json

import numpy as np
import pyogrio
import pytest
import rasterio
import torch

from rsseg.weights.bundled import bundled_weights
from rsseg.checkpoint import load_checkpoint
from rsseg.classes import ISPRS
from rsseg.cli import run as run_cli
from rsseg.demo import colourise, real_image_files, run_demo
from rsseg.models import register_model, unregister_model
from rsseg.synth.scene import write_synthetic_scene
from rsseg.training import TrainConfig, train

TINY = "_test_demo_tiny"
BUNDLED = ("bafnet", "baff_skipnet", "lwganet_l0")



@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A few steps of a tiny network on a synthetic scene: real weights, quick to run."""

    @register_model(TINY, listed=False)
    def _build(in_channels, num_classes):
        return torch.nn.Sequential(torch.nn.Conv2d(in_channels, 8, 3, padding=1),
                                   torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                   torch.nn.Conv2d(8, num_classes, 1))

    d = tmp_path_factory.mktemp("tiny")
    write_synthetic_scene(d / "s.tif", 192, 192, seed=3, labels_path=d / "l.tif")
    cfg = TrainConfig(images=[str(d / "s.tif")], labels=[str(d / "l.tif")],
                      val_images=[str(d / "s.tif")], val_labels=[str(d / "l.tif")],
                      out_dir=str(d / "run"), model=TINY, crop=64, batch_size=2, epochs=1,
                      steps_per_epoch=3, min_class_pixels=0, note="tiny test weights")
    result = train(cfg, progress="off")
    yield result.best_path
    unregister_model(TINY)


def test_demo_runs_every_stage_and_outputs_agree(tiny_checkpoint, tmp_path):
    messages = []
    out = tmp_path / "demo"
    result = run_demo(out, model=TINY, weights=str(tiny_checkpoint), size=200, seed=11,
                      progress="off", say=messages.append, real=False)
    assert [m.split()[0] for m in messages] == ["1/5", "2/5", "3/5", "4/5", "5/5"]
    assert result["note"] == "tiny test weights"
    with rasterio.open(out / "scene.tif") as scene, rasterio.open(out / "classes.tif") as cls, \
            rasterio.open(out / "labels.tif") as lab:
        assert (cls.crs, cls.transform, cls.shape) == (scene.crs, scene.transform, scene.shape)
        pred, label = cls.read(1), lab.read(1)
    # The score is that of the files on disk, recomputed here without rsseg's metrics:
    # pixel pairs counted with np.add.at, IoU = TP / (TP + FP + FN), clutter left out.
    keep = (label < 6) & (pred < 6)
    cm = np.zeros((6, 6), np.int64)
    np.add.at(cm, (label[keep].astype(np.int64), pred[keep].astype(np.int64)), 1)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    counted = [c for c in range(5) if union[c] > 0]  # clutter (5) is excluded from the mean
    saved = json.loads((out / "score.json").read_text())
    assert saved["confusion_matrix"] == cm.tolist()
    assert saved["miou"] == pytest.approx(np.mean([tp[c] / union[c] for c in counted]))
    assert saved["oa"] == pytest.approx(tp.sum() / cm.sum())
    assert "IoU" in result["table"] and "building" in result["table"]
    polygons = pyogrio.read_dataframe(out / "classes.gpkg")
    assert len(polygons) == result["features"] > 0
    assert polygons.crs.to_epsg() == 32632
    # Polygons cover exactly the predicted pixels: areas per class match pixel counts.
    pixel_area = abs(scene.transform.a * scene.transform.e)
    class_col = next(c for c in polygons.columns if c in ("class_id", "class", "value"))
    for class_id in np.unique(pred):
        area = polygons.geometry[polygons[class_col] == class_id].area.sum()
        assert area == pytest.approx((pred == class_id).sum() * pixel_area, rel=1e-6)
    png = (out / "quicklook.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_segments_the_shipped_real_image(tiny_checkpoint, tmp_path):
    messages = []
    out = tmp_path / "demo"
    result = run_demo(out, model=TINY, weights=str(tiny_checkpoint), size=96, seed=11,
                      progress="off", say=messages.append)
    assert [m.split()[0] for m in messages] == [f"{i}/8" for i in range(1, 9)]
    real = result["real"]
    assert "Humans in the Loop / MBRSC" in real["credit"] and "MBRSC" in real["note"]
    image, mask, credit = real_image_files()
    assert "CC0" in credit.read_text()
    with rasterio.open(out / "real_classes.tif") as cls, rasterio.open(image) as img:
        assert cls.shape == img.shape == (512, 512) and cls.crs is None  # pixel grid kept
        assert cls.tags()["CLASS_NAMES"] == "building,land,road,vegetation,water"
        pred = cls.read(1)
    with rasterio.open(mask) as m:
        rgb = m.read().transpose(1, 2, 0)
    label = np.full(rgb.shape[:2], 255, np.uint8)  # independent decode of the colour mask
    for i, colour in enumerate(load_checkpoint(real["weights"]).classes.colours):
        label[np.all(rgb == colour, axis=-1)] = i
    keep = (label < 5) & (pred < 5)
    cm = np.zeros((5, 5), np.int64)
    np.add.at(cm, (label[keep].astype(np.int64), pred[keep].astype(np.int64)), 1)
    saved = json.loads((out / "real_score.json").read_text())
    assert saved["confusion_matrix"] == cm.tolist()
    assert (out / "real_quicklook.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_colourise_uses_class_colours_and_black_nodata():
    ids = np.array([[0, 1], [5, 255]], np.uint8)
    rgb = colourise(ids, ISPRS)
    assert rgb[0, 0].tolist() == [255, 255, 255] and rgb[0, 1].tolist() == [0, 0, 255]
    assert rgb[1, 0].tolist() == [255, 0, 0] and rgb[1, 1].tolist() == [0, 0, 0]


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_weights_are_small_fp16_and_say_synthetic(name):
    path = bundled_weights(name)
    assert path is not None, f"rsseg/weights/{name}.pt is missing"
    assert path.stat().st_size < 16 * 2**20
    raw = torch.load(path, map_location="cpu", weights_only=True)
    floats = [v for v in raw["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    ckpt = load_checkpoint(path)
    assert "trained on synthetic rsseg synth scenes" in ckpt.note
    assert ckpt.in_channels == 4 and ckpt.bands.names == ["IR", "R", "G", "DSM"]
    assert ckpt.classes.names == ISPRS.names
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["model"] == name and 0 < meta["val_miou"] <= 1


def test_demo_command_with_bundled_bafnet(tmp_path, capfd):
    out = tmp_path / "demo_out"
    assert run_cli(["demo", "--out", str(out), "--size", "256", "--no-progress"]) == 0
    text = capfd.readouterr().out
    assert "trained on synthetic" in text and "mIoU" in text
    report = json.loads((out / "score.json").read_text())
    support = np.array([c["support"] for c in report["classes"]])
    majority = support.max() / support.sum() / (support > 0).sum()  # trivial baseline mIoU
    assert report["miou"] > majority + 0.2
