"""ONNX export (`rsseg export`) and the ONNX Runtime backend (`predict --backend onnx`).

Real checkpoints of seeded random networks, real ONNX files, real GeoTIFFs; ONNX
Runtime results are compared with torch run on the same weights.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import rasterio
import torch
import torch.nn as nn
from rsseg.models import create_model

from rsseg.checkpoint import Checkpoint, Normalization
from rsseg.cli import run
from rsseg.errors import ModelError
from rsseg.export.onnx import export_checkpoint
from rsseg.predict.load import load_predictor
from rsseg.predict.onnx_predictor import OnnxPredictor
from rsseg.predict.predictor import TorchPredictor

BANDS = Normalization(["IR", "R", "G", "DSM"], [120.0, 100.0, 90.0, 20.0], [50.0, 45.0, 40.0, 10.0])
# LWGANet L1/L2 are L0's code with more channels and blocks; their exports take ~20 s each
# on a loaded 2-core machine, so they run only without -m "not slow".
NETWORKS = ["baff_skipnet", "bafnet", "canet", "lsa_binet", "lwganet_l0",
            pytest.param("lwganet_l1", marks=pytest.mark.slow),
            pytest.param("lwganet_l2", marks=pytest.mark.slow)]


def rsseg(*args) -> int:
    return run([str(a) for a in args])


def save_checkpoint(path, name: str, seed: int = 0, tile: int = 96, in_channels: int = 4):
    """A seeded random network saved with rsseg.checkpoint; BatchNorm statistics and
    affines are randomised too, or an untrained network predicts one class everywhere."""
    torch.manual_seed(seed)
    model = create_model(name, in_channels=in_channels, num_classes=6)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.normal_(0.0, 0.5)
                layer.running_mean.normal_(0.0, 0.2)
                layer.running_var.uniform_(0.5, 2.0)
    bands = BANDS if in_channels == 4 else None
    ckpt = Checkpoint.from_model(model, bands=bands, tile={"size": tile, "overlap": tile // 4},
                                 note="seeded random weights")
    ckpt.save(path)
    return ckpt


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A BAFF-SkipNet checkpoint and its ONNX export, made once through the CLI."""
    root = tmp_path_factory.mktemp("onnx")
    ckpt = save_checkpoint(root / "baff.pt", "baff_skipnet")
    assert rsseg("export", root / "baff.pt", "-o", root / "baff.onnx", "--no-progress") == 0
    return root, ckpt


@pytest.fixture
def scene(make_geotiff):
    """4-band uint8 scene with smooth structure (so classes are not pure noise)."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:150, 0:230]
    base = np.stack([np.sin(xx / (9 + 4 * b)) + np.cos(yy / (7 + 3 * b)) for b in range(4)])
    data = 110 + 60 * base + rng.normal(0, 8, base.shape)
    return make_geotiff(np.clip(data, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("name", NETWORKS)
def test_export_matches_torch_for_every_network(name, tmp_path):
    ckpt = save_checkpoint(tmp_path / "m.pt", name, tile=192)
    result = export_checkpoint(tmp_path / "m.pt", tmp_path / "m.onnx", tile=192)
    assert result.dynamic_spatial  # every seed network exports with dynamic H, W
    graph = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(graph)
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 4, "height", "width"]

    model = ckpt.build_model()
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    lo = max(result.min_size)
    rng = np.random.default_rng(7)
    for shape in [(1, 4, max(64, lo), max(96, lo + 32)), (2, 4, lo + 13, lo + 29)]:
        x = rng.standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        got = session.run(None, {"image": x})[0]
        assert got.shape == expected.shape == (shape[0], 6, shape[2], shape[3])
        assert np.abs(got - expected).max() < 1e-4


def test_metadata_carries_everything_predict_needs(exported):
    root, ckpt = exported
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(root / "baff.onnx")).metadata_props}
    assert meta["model"] == {"name": "baff_skipnet", "config": ckpt.model_config}
    assert meta["classes"] == ckpt.classes.to_dict()
    assert meta["bands"] == BANDS.to_dict()
    assert meta["tile"] == {"size": 96, "overlap": 24}
    assert meta["output"]["kind"] == "logits"
    assert meta["note"] == "seeded random weights"
    resolved = load_predictor(weights=root / "baff.onnx", channels=4, device="cpu",
                              backend="onnx")
    assert resolved.classes == ckpt.classes and resolved.normalization == BANDS
    assert resolved.predict.num_classes == 6


def test_onnx_predictor_returns_torch_probabilities(exported):
    root, ckpt = exported
    onnx_pred = OnnxPredictor(root / "baff.onnx", "cpu")
    torch_pred = TorchPredictor(ckpt.build_model(), "cpu", num_classes=6)
    x = np.random.default_rng(0).standard_normal((2, 4, 96, 96)).astype(np.float32)
    a, b = onnx_pred(x), torch_pred(x)
    assert a.dtype == np.float32 and a.shape == b.shape == (2, 6, 96, 96)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(a - b).max() < 1e-5


def test_onnx_tta_averages_the_views_as_torch_does(exported):
    from rsseg.predict.load import load_predictor

    root, _ = exported
    onnx = load_predictor(weights=root / "baff.onnx", channels=4, backend="onnx", tta="d4")
    torch_tta = load_predictor(weights=root / "baff.pt", channels=4, device="cpu", tta="d4")
    x = np.random.default_rng(1).standard_normal((1, 4, 96, 96)).astype(np.float32)
    assert np.abs(onnx(x) - torch_tta(x)).max() < 1e-5
    plain = load_predictor(weights=root / "baff.onnx", channels=4, backend="onnx")
    assert np.abs(onnx(x) - plain(x)).max() > 1e-4  # the views changed the scores


def test_onnx_zoom_sees_the_window_as_torch_does(exported):
    from rsseg.predict.load import load_predictor

    root, _ = exported
    onnx = load_predictor(weights=root / "baff.onnx", channels=4, backend="onnx", zoom=1.5)
    torch_zoom = load_predictor(weights=root / "baff.pt", channels=4, device="cpu", zoom=1.5)
    x = np.random.default_rng(2).standard_normal((1, 4, 96, 96)).astype(np.float32)
    assert onnx(x).shape == (1, onnx.num_classes, 96, 96)
    assert np.abs(onnx(x) - torch_zoom(x)).max() < 1e-5
    plain = load_predictor(weights=root / "baff.onnx", channels=4, backend="onnx")
    assert np.abs(onnx(x) - plain(x)).max() > 1e-4  # the zoom changed the scores


def test_predict_onnx_writes_the_classes_torch_writes(scene, tmp_path):
    # CANet: with randomised BatchNorm it predicts several classes on this scene, so the
    # comparison is not trivially satisfied by a constant map.
    name = "canet"
    save_checkpoint(tmp_path / "m.pt", name, seed=5)
    assert rsseg("export", tmp_path / "m.pt", "-o", tmp_path / "m.onnx", "--no-progress") == 0
    for backend, weights in (("torch", "m.pt"), ("onnx", "m.onnx")):
        assert rsseg("predict", scene, "--model", name, "--backend", backend, "--weights",
                     tmp_path / weights, "-o", tmp_path / f"{backend}.tif", "--probs",
                     tmp_path / f"{backend}_conf.tif", "--no-progress") == 0
    with rasterio.open(tmp_path / "torch.tif") as t, rasterio.open(tmp_path / "onnx.tif") as o, \
            rasterio.open(scene) as src:
        assert (o.crs, o.transform, o.shape) == (src.crs, src.transform, src.shape)
        assert o.colormap(1) == t.colormap(1) and o.tags(1) == t.tags(1)
        a, b = t.read(1), o.read(1)
    assert len(np.unique(a)) > 1  # a constant map would agree trivially
    assert (a == b).mean() >= 0.999
    with rasterio.open(tmp_path / "torch_conf.tif") as t, \
            rasterio.open(tmp_path / "onnx_conf.tif") as o:
        conf_t, conf_o = t.read(1).astype(int), o.read(1).astype(int)
    assert (np.abs(conf_t - conf_o) <= 1).mean() >= 0.999


class FrozenSizeNet(nn.Module):
    """Adds a bias map whose size ``int()`` freezes at trace time: not dynamic in ONNX."""

    def __init__(self, in_channels=3, num_classes=6):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, 3, padding=1)

    def forward(self, x):
        h, w = int(x.shape[2]), int(x.shape[3])
        return self.conv(x) + torch.linspace(0, 1, h * w).reshape(1, 1, h, w)


def test_network_without_dynamic_sizes_is_exported_at_the_tile(register_test_model, tmp_path):
    register_test_model("frozen_size_net", FrozenSizeNet)
    torch.manual_seed(0)
    model = create_model("frozen_size_net", in_channels=3, num_classes=6)
    Checkpoint.from_model(model, tile={"size": 48, "overlap": 8}).save(tmp_path / "f.pt")
    result = export_checkpoint(tmp_path / "f.pt", tmp_path / "f.onnx")
    assert not result.dynamic_spatial and result.min_size == (48, 48)
    dims = [d.dim_param or d.dim_value
            for d in onnx.load(str(tmp_path / "f.onnx")).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 48, 48]

    pred = OnnxPredictor(tmp_path / "f.onnx", "cpu")
    x = np.random.default_rng(0).standard_normal((2, 3, 48, 48)).astype(np.float32)
    assert np.abs(pred(x) - TorchPredictor(model.eval(), "cpu")(x)).max() < 1e-5
    assert pred(x[:, :, :30, :40]).shape == (2, 6, 30, 40)  # small edge windows are padded
    pred.check_tile(48)
    with pytest.raises(ModelError, match="fixed input size 48x48"):
        pred.check_tile(64)
    with pytest.raises(ModelError, match="larger than the fixed input size"):
        pred(np.zeros((1, 3, 64, 64), np.float32))


def stderr_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_export_refuses_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    assert rsseg("export", tmp_path / "junk.pt", "-o", tmp_path / "m.onnx", "--no-progress") == 1
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and "junk.pt" in lines[0] and "checkpoint" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.pt"]  # nothing written


def test_export_keeps_an_existing_output(exported, tmp_path, capsys):
    root, _ = exported
    (tmp_path / "m.onnx").write_text("keep me")
    assert rsseg("export", root / "baff.pt", "-o", tmp_path / "m.onnx", "--no-progress") == 1
    assert "output exists" in stderr_lines(capsys)[0]
    assert (tmp_path / "m.onnx").read_text() == "keep me"
    assert rsseg("export", root / "baff.pt", "-o", tmp_path / "m.onnx", "--opset", "9") == 2


def test_predict_onnx_bad_inputs(exported, scene, make_geotiff, tmp_path, capsys):
    root, _ = exported
    out = tmp_path / "out.tif"
    assert rsseg("predict", scene, "--backend", "onnx", "-o", out) == 2
    assert "--weights" in capsys.readouterr().err

    plain = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])]),
        ir_version=8, opset_imports=[onnx.helper.make_opsetid("", 17)])
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    (tmp_path / "junk.onnx").write_text("junk")
    three_bands = make_geotiff(np.zeros((3, 40, 40), np.uint8), name="rgb.tif")
    cases = [(scene, tmp_path / "plain.onnx", [], "no rsseg metadata"),
             (scene, tmp_path / "junk.onnx", [], "not a readable ONNX model"),
             (scene, tmp_path / "missing.onnx", [], "not found"),
             (three_bands, root / "baff.onnx", [], "expects 4 bands")]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        cases.append((scene, root / "baff.onnx", ["--device", "cuda"], "CUDA"))
    for src, weights, extra, needle in cases:
        code = rsseg("predict", src, "--backend", "onnx", "--weights", weights, "-o", out,
                     "--no-progress", *extra)
        lines = stderr_lines(capsys)
        assert code == 1 and len(lines) == 1 and needle in lines[0], (needle, lines)
        assert not out.exists()


def test_export_tile_and_opset_options(exported, tmp_path):
    """--opset sets the graph's opset; --tile the window size predict will use (stored in
    the metadata): the file runs in ONNX Runtime as the checkpoint runs in torch."""
    root, ckpt = exported
    out = tmp_path / "m.onnx"
    assert rsseg("export", root / "baff.pt", "-o", out, "--opset", "13", "--tile", "128",
                 "--no-progress") == 0
    model = onnx.load(str(out))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [13]
    meta = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert meta["tile"]["size"] == 128
    default = {p.key: json.loads(p.value)
               for p in onnx.load(str(root / "baff.onnx")).metadata_props}
    assert default["tile"]["size"] == 96  # the checkpoint's own, without --tile
    x = torch.randn(1, 4, 128, 128)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        expected = ckpt.build_model()(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)
