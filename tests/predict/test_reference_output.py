"""Outputs stay byte-identical to a reference made before the speed work (issue 14).

``data/predict_reference.npz`` holds the class and confidence rasters that the
engine of commit 256a9c2 (before issue 14) wrote for the scenes and network
built below, for every blend mode. The network is a small seeded CNN run with
one torch thread (bit-reproducible on CPU). Regenerate only on purpose:
``python tests/predict/test_reference_output.py`` (then say why in the commit).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn as nn

from test_pipeline import predict  # predict_scene with the predictor carrying norm and classes
from rsseg.predict.predictor import TorchPredictor
from rsseg.tiling import BLEND_MODES

REFERENCE = Path(__file__).parent / "data" / "predict_reference.npz"
CASES = ("uint8", "uint16")


def network(in_ch: int = 3, k: int = 6) -> nn.Module:
    torch.manual_seed(7)
    net = nn.Sequential(nn.Conv2d(in_ch, 8, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(8, k, 3, padding=1)).eval()
    with torch.no_grad():  # spread the logits: several classes, some close calls
        net[0].weight.mul_(4.0)
        net[2].weight.mul_(3.0)
        net[2].bias.zero_()
    return net


def write_case(path: Path, dtype: str) -> Path:
    """A 3-band scene of smooth texture plus noise, with a no-data corner (value 0)."""
    from affine import Affine

    rng = np.random.default_rng(11)
    h, w = 203, 277
    base = rng.random((3, 26, 36))
    smooth = np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)[:, :h, :w]
    top = 255 if dtype == "uint8" else 4000
    data = np.clip(smooth * top * 0.8 + rng.normal(0, top * 0.05, (3, h, w)), 1, top)
    data = data.astype(dtype)
    data[:, :40, :60] = 0  # no data
    profile = dict(driver="GTiff", width=w, height=h, count=3, dtype=dtype, nodata=0,
                   crs="EPSG:32632", transform=Affine(0.5, 0, 500000, 0, -0.5, 5300000),
                   tiled=True, blockxsize=64, blockysize=64)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


def predict_case(folder: Path, dtype: str, blend: str,
                 device_path: bool = False) -> tuple[np.ndarray, np.ndarray]:
    scene = write_case(folder / f"scene_{dtype}.tif", dtype)
    out, conf = folder / f"{dtype}_{blend}.tif", folder / f"{dtype}_{blend}_conf.tif"
    torch.set_num_threads(1)
    predictor = TorchPredictor(network(), "cpu", num_classes=6, device_path=device_path)
    predict(scene, out, predictor, None, tile=64, overlap=20, blend=blend, batch_size=3,
            probs=conf, overwrite=True)
    with rasterio.open(out) as a, rasterio.open(conf) as b:
        return a.read(1), b.read(1)


@pytest.mark.parametrize("device_path", [False, True], ids=["host", "device-path-on-cpu"])
@pytest.mark.parametrize("dtype", CASES)
@pytest.mark.parametrize("blend", BLEND_MODES)
def test_classes_and_confidence_equal_the_reference(tmp_path, dtype, blend, device_path):
    """The host path, and the device path run on CPU tensors (uint8/uint16 batches,
    look-up normalisation, torch blend and argmax), both give the reference bytes."""
    reference = np.load(REFERENCE)
    classes, confidence = predict_case(tmp_path, dtype, blend, device_path)
    np.testing.assert_array_equal(classes, reference[f"{dtype}_{blend}_classes"])
    np.testing.assert_array_equal(confidence, reference[f"{dtype}_{blend}_confidence"])


def regenerate(folder: Path) -> None:
    arrays = {}
    for dtype in CASES:
        for blend in BLEND_MODES:
            classes, confidence = predict_case(folder, dtype, blend)
            arrays[f"{dtype}_{blend}_classes"] = classes
            arrays[f"{dtype}_{blend}_confidence"] = confidence
    np.savez_compressed(REFERENCE, **arrays)
    print(f"wrote {REFERENCE}")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        regenerate(Path(tmp))
    sys.exit(0)
