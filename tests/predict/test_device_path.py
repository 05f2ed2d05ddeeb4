"""The device path's pieces, run on CPU tensors: bit for bit the NumPy path (issue 14).

On a GPU the blender and the classifier run on torch tensors
(:class:`rsseg.predict.arrays.TorchArrays`); here the same code runs on the CPU and
must give exactly (``assert_array_equal``, no tolerance) what NumPy gives.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from rsseg.checkpoint import Normalization
from rsseg.classes import ISPRS, ClassScheme
from rsseg.predict.arrays import NUMPY, TorchArrays
from rsseg.predict.blend import StreamingBlender, window_order
from rsseg.predict.device import lookup_tables
from test_pipeline import predict  # predict_scene with the predictor carrying norm and classes
from rsseg.predict.predictor import TorchPredictor
from rsseg.predict.sinks import classify
from rsseg.tiling import BLEND_MODES, BlendWeights, WindowGrid

H, W = 150, 233


class Identity(nn.Module):
    def forward(self, x):
        return x


def blended_regions(arrays, blend: str, scores: list, valid: list) -> list:
    grid = WindowGrid(H, W, 64, 24)
    out = []

    def emit(r, c, s, v):
        out.append((r, c, np.array(arrays.to_host(s)), np.array(arrays.to_host(v))))

    blender = StreamingBlender(grid, BlendWeights(grid, blend), 4, emit, arrays=arrays)
    for window, s, v in zip(window_order(grid), scores, valid):
        blender.add(window, arrays.asarray(s) if arrays is not NUMPY else s, v)
    assert blender.done
    return out


@pytest.mark.parametrize("blend", BLEND_MODES)
def test_torch_blend_is_bit_identical_to_numpy(blend):
    grid = WindowGrid(H, W, 64, 24)
    rng = np.random.default_rng(5)
    n = len(window_order(grid))
    scores = [rng.random((4, 64, 64), dtype=np.float32) for _ in range(n)]
    valid = [rng.random((64, 64)) > 0.1 for _ in range(n)]
    host = blended_regions(NUMPY, blend, scores, valid)
    device = blended_regions(TorchArrays("cpu"), blend, scores, valid)
    assert len(host) == len(device) > 1
    for (r, c, s, v), (r2, c2, s2, v2) in zip(host, device):
        assert (r, c) == (r2, c2)
        np.testing.assert_array_equal(s2, s)
        np.testing.assert_array_equal(v2, v)


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_torch_classify_equals_numpy_and_argmax_with_ties_and_nan():
    rng = np.random.default_rng(6)
    scores = rng.integers(0, 4, (6, 40, 50)).astype(np.float32) / 4  # many exact ties
    scores[2, 3, 4] = np.nan
    scores[4, 5, 6] = np.nan
    scores[0, 7, 8] = np.nan
    valid = rng.random((40, 50)) > 0.2
    cls, conf = classify(scores, valid)
    expected = np.argmax(scores, axis=0).astype(np.uint8)
    expected[~valid] = 255
    np.testing.assert_array_equal(cls, expected)
    t_cls, t_conf = classify(torch.from_numpy(scores), torch.from_numpy(valid), True,
                             TorchArrays("cpu"))
    np.testing.assert_array_equal(t_cls.numpy(), cls)
    np.testing.assert_array_equal(t_conf.numpy()[valid & ~np.isnan(scores).any(0)],
                                  conf[valid & ~np.isnan(scores).any(0)])


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16"])
def test_lookup_tables_equal_the_normalisation_formula(dtype):
    norm = Normalization(["a", "b"], [12.5, -3.0], [57.1, 1000.0])
    tables = lookup_tables(norm, dtype)
    info = np.iinfo(dtype)
    raw = np.arange(info.min, info.max + 1, dtype=dtype)
    expected = norm.apply(np.stack([raw, raw])[:, None, :])[:, 0, :]
    index = raw.view(f"u{np.dtype(dtype).itemsize}")
    np.testing.assert_array_equal(np.stack([tables[c][index] for c in range(2)]), expected)
    assert lookup_tables(norm, "float32") is None and lookup_tables(norm, "uint32") is None


@pytest.mark.parametrize("blend", BLEND_MODES)
def test_identity_through_the_device_path_equals_the_host_path(make_geotiff, tmp_path, blend):
    """Identity network: the blended scores reconstruct the input, and the device path's
    scores are bit for bit the host path's."""
    data = np.random.default_rng(1).random((3, H, W), dtype=np.float32)
    scene = make_geotiff(data)
    norm = Normalization(["a", "b", "c"], [0.0] * 3, [1.0] * 3)
    classes = ClassScheme(ISPRS.names[:3], ISPRS.colours[:3])
    got = {}
    for device_path in (False, True):
        out = np.full((3, H, W), np.nan, np.float32)

        def on_scores(r, c, s, v, out=out):
            out[:, r:r + v.shape[0], c:c + v.shape[1]] = s

        predictor = TorchPredictor(Identity(), "cpu", num_classes=3, activation=None,
                                   device_path=device_path)
        predict(scene, tmp_path / f"out{device_path}.tif", predictor, norm, classes, tile=64,
                overlap=20, blend=blend, batch_size=2, on_scores=on_scores)
        got[device_path] = out
    np.testing.assert_allclose(got[False], data, rtol=0, atol=2e-6)
    np.testing.assert_array_equal(got[True], got[False])


def test_batch_size_auto_is_one_on_cpu_and_accepted(make_geotiff, tmp_path):
    scene = make_geotiff(np.random.default_rng(2).integers(0, 255, (3, 90, 100), np.uint8))
    predictor = TorchPredictor(Identity(), "cpu", num_classes=3, activation=None)
    assert predictor.auto_batch_size(64, 3) == 1
    predict(scene, tmp_path / "out.tif", predictor, None,
            ClassScheme(ISPRS.names[:3], ISPRS.colours[:3]), tile=64, overlap=16,
            batch_size="auto")
    assert (tmp_path / "out.tif").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none)")
@pytest.mark.parametrize("blend", ["cosine", "crop"])
def test_cuda_device_path_equals_the_host_path_on_the_same_gpu(tmp_path, blend):
    """On a GPU: the device path (uint8 upload, look-up normalisation, torch blend and
    argmax there) writes the classes the host path writes with the same network on the
    same GPU (float32, no autocast, so only the blend's place differs)."""
    import rasterio

    from test_reference_output import network, write_case

    torch.backends.cudnn.deterministic = True
    scene = write_case(tmp_path / "scene.tif", "uint8")
    got = []
    for device_path in (False, True):
        predictor = TorchPredictor(network(), "cuda", num_classes=6, amp=False,
                                   device_path=device_path)
        out = tmp_path / f"out_{device_path}.tif"
        predict(scene, out, predictor, None, tile=64, overlap=20, blend=blend,
                batch_size=3, probs=tmp_path / f"conf_{device_path}.tif")
        with rasterio.open(out) as ds, rasterio.open(tmp_path / f"conf_{device_path}.tif") as c:
            got.append((ds.read(1), c.read(1)))
    np.testing.assert_array_equal(got[1][0], got[0][0])
    np.testing.assert_array_equal(got[1][1], got[0][1])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the division by zero, on purpose
def test_zero_std_band_gives_zeros_on_both_paths(make_geotiff, tmp_path):
    """A degenerate normalisation (std 0: inf/NaN) is zeroed alike by the host path and
    by the device path's lookup tables."""
    data = np.random.default_rng(3).integers(0, 255, (3, 70, 90)).astype(np.uint8)
    scene = make_geotiff(data)
    norm = Normalization(["a", "b", "c"], [10.0, 0.0, 0.0], [0.0, 255.0, 255.0])
    got = []
    for device_path in (False, True):
        out = np.full((3, 70, 90), np.nan, np.float32)

        def on_scores(r, c, s, v, out=out):
            out[:, r:r + v.shape[0], c:c + v.shape[1]] = s

        predictor = TorchPredictor(Identity(), "cpu", num_classes=3, activation=None,
                                   device_path=device_path)
        predict(scene, tmp_path / f"o{device_path}.tif", predictor, norm,
                ClassScheme(ISPRS.names[:3], ISPRS.colours[:3]), tile=64, overlap=16,
                on_scores=on_scores)
        got.append(out)
    assert (got[0][0] == 0).all()
    np.testing.assert_array_equal(got[1], got[0])
