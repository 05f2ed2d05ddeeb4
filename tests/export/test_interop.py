"""rsseg models in Deepness and GeoDeep (`rsseg export --for`, :mod:`rsseg.export.interop`).

A small network is trained here on a georeferenced RGB scene, exported, and run
through GeoDeep's own API (a dev dependency, nothing is installed at run time);
its classes are compared with `rsseg predict --backend onnx`. The Deepness keys
are checked against Deepness's documented table, vendored in tests/data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import rasterio
import torch
import torch.nn as nn

from rsseg.checkpoint import Checkpoint, Normalization, load_checkpoint
from rsseg.classes import ClassScheme
from rsseg.cli import run
from rsseg.models import create_model

DATA = Path(__file__).resolve().parents[1] / "data"
PIXEL_M = 0.1  # 10 cm/px: the scene's GSD and the model's `resolution`
TILE, OVERLAP = 64, 16
# Class k is drawn in COLOURS[k] (R, G, B) plus noise; the network learns the mapping.
COLOURS = np.array([[200, 200, 200], [180, 60, 50], [60, 160, 60], [40, 90, 30],
                    [60, 60, 200]], np.float32)
CLASSES = ClassScheme(("road", "roof", "grass", "tree", "water"),
                      ((255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (0, 0, 128)))
# The network reads B, G, R (band names say so): the --for graph must reorder R, G, B.
BGR = Normalization(["B", "G", "R"], [110.0, 100.0, 120.0], [60.0, 55.0, 65.0])


def rsseg(*args) -> int:
    return run([str(a) for a in args])


def import_geodeep(module: str = "geodeep"):
    """GeoDeep is a dev dependency: skipped (with the reason) where it is missing, except
    under CI, where the dev extra is installed and a skip would hide a broken setup."""
    import importlib
    import os

    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise
        pytest.skip("geodeep is not installed (pip install -c constraints.txt -e '.[dev]')")


class TinyNet(nn.Module):
    """Two 3x3 convolutions and a 1x1 head: a 5-px receptive field, fast to train."""

    def __init__(self, in_channels=3, num_classes=5):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, num_classes, 1))

    def forward(self, x):
        return self.body(x)


def label_map(height: int, width: int, seed: int) -> np.ndarray:
    """Blobs of classes: a few hundred random discs over a background class."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((height, width), np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(height * width // 900):
        cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(5, 22)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(1, len(COLOURS))
    return labels


def render(labels: np.ndarray, seed: int) -> np.ndarray:
    """(3, H, W) uint8 R, G, B: the class colours plus noise."""
    rng = np.random.default_rng(seed)
    rgb = COLOURS[labels].transpose(2, 0, 1) + rng.normal(0, 12, (3, *labels.shape))
    return np.clip(rgb, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, request):
    """A TinyNet trained for a few seconds on B, G, R inputs; saved as a checkpoint."""
    from rsseg.models import register_model, unregister_model

    register_model("tiny_rgb_net", stride=1)(TinyNet)
    request.addfinalizer(lambda: unregister_model("tiny_rgb_net"))
    root = tmp_path_factory.mktemp("interop")
    torch.manual_seed(0)
    labels = label_map(128, 128, seed=1)
    bgr = render(labels, seed=2)[::-1].astype(np.float32)
    x = torch.from_numpy(BGR.apply(bgr)[None])
    y = torch.from_numpy(labels[None].astype(np.int64))
    model = create_model("tiny_rgb_net", in_channels=3, num_classes=len(COLOURS))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    accuracy = float((model(x).argmax(1) == y).float().mean())
    assert accuracy > 0.97, accuracy  # the colours are separable: training must succeed
    ckpt = Checkpoint.from_model(model.eval(), classes=CLASSES, bands=BGR,
                                 tile={"size": TILE, "overlap": OVERLAP}, note="interop test",
                                 training={"gsd_m": PIXEL_M})
    ckpt.save(root / "tiny.pt")
    return root


@pytest.fixture(scope="module")
def rgb_scene(trained):
    """A georeferenced 3-band uint8 R, G, B scene, not a multiple of the tile step."""
    from affine import Affine

    labels = label_map(230, 290, seed=5)
    path = trained / "scene.tif"
    profile = dict(driver="GTiff", width=290, height=230, count=3, dtype="uint8",
                   crs="EPSG:32632", photometric="RGB", tiled=True, blockxsize=128,
                   blockysize=128,
                   transform=Affine(PIXEL_M, 0, 500000.0, 0, -PIXEL_M, 5300000.0))
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(render(labels, seed=6))
    return path, labels


def export(root: Path, name: str, *extra) -> Path:
    out = root / name
    if not out.exists():
        assert rsseg("export", root / "tiny.pt", "-o", out, "--no-progress", *extra) == 0
    return out


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def predict_onnx(model: Path, scene: Path, out: Path, *extra) -> np.ndarray:
    assert rsseg("predict", scene, "--backend", "onnx", "--weights", model, "-o", out,
                 "--no-progress", *extra) == 0
    with rasterio.open(out) as ds:
        return ds.read(1)


def test_geodeep_agrees_with_rsseg_predict(trained, rgb_scene):
    geodeep = import_geodeep()
    scene, labels = rgb_scene
    default = export(trained, "tiny.onnx")
    for_geodeep = export(trained, "tiny_geodeep.onnx", "--for", "geodeep")

    # rsseg's own graph, bands given in the network's B, G, R order.
    ours = predict_onnx(default, scene, trained / "ours.tif", "--bands", "3,2,1")
    assert (ours == labels).mean() > 0.97  # the model is good: agreement is not by chance

    mask = geodeep.segment(str(scene), str(for_geodeep), max_threads=1)
    assert mask.shape == ours.shape and mask.dtype == np.uint8
    agreement = float((mask == ours).mean())
    # GeoDeep stitches windows without blending and median-filters (5x5) the mask.
    assert agreement >= 0.95, agreement
    # ... and the filter alone explains most of what differs: not 100 %, but close.
    assert (mask == labels).mean() > 0.95


def test_for_graph_runs_in_rsseg_with_the_same_classes(trained, rgb_scene):
    scene, _ = rgb_scene
    default = predict_onnx(export(trained, "tiny.onnx"), scene, trained / "a.tif",
                           "--bands", "3,2,1")
    baked = predict_onnx(export(trained, "tiny_deepness.onnx", "--for", "deepness"), scene,
                         trained / "b.tif")  # R, G, B as the scene has them
    assert (default == baked).mean() > 0.999  # float rounding at ties only


def test_for_graph_contract(trained):
    path = export(trained, "tiny_deepness.onnx", "--for", "deepness")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.shape[1:] == [3, TILE, TILE] and inp.type == "tensor(float)"
    assert out.shape[1:] == [len(COLOURS), TILE, TILE]
    x = np.random.default_rng(0).random((2, 3, TILE, TILE), dtype=np.float32)
    probs = session.run(None, {inp.name: x})[0]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)  # softmax, not logits
    # ... and equal to the checkpoint's network on the normalised, reordered bands.
    net = load_checkpoint(trained / "tiny.pt").build_model()
    bgr = torch.from_numpy(BGR.apply(255.0 * x[:, ::-1]))
    with torch.no_grad():
        expected = torch.softmax(net(bgr), 1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def deepness_table() -> dict[str, str]:
    """Parameter -> documented type, from the vendored Deepness docs table."""
    rows = re.findall(r"^\|\s*(\w+)\s*\|\s*(\w+)\s*\|", (DATA / "deepness_metadata_table.rst")
                      .read_text(), flags=re.MULTILINE)
    return {name: kind for name, kind in rows if name != "Parameter"}


PY_TYPES = {"str": str, "dict": dict, "float": (int, float), "int": int, "list": list,
            "bool": bool}
SEGMENTOR_KEYS = ("model_type", "class_names", "resolution", "tiles_size", "tiles_overlap",
                  "standardization_mean", "standardization_std", "seg_thresh",
                  "seg_small_segment")


@pytest.mark.parametrize("name,extra", [("tiny.onnx", ()),
                                        ("tiny_deepness.onnx", ("--for", "deepness"))])
def test_deepness_keys_and_types_follow_its_table(trained, name, extra):
    table = deepness_table()
    assert set(SEGMENTOR_KEYS) <= set(table)  # the vendored table is the one we rely on
    meta = metadata(export(trained, name, *extra))
    for key in SEGMENTOR_KEYS:
        value = json.loads(meta[key])  # Deepness json.loads every value
        kind = PY_TYPES[table[key]]
        assert isinstance(value, kind) and not isinstance(value, bool), (key, value)
    assert json.loads(meta["model_type"]).capitalize() == "Segmentor"
    names = json.loads(meta["class_names"])
    assert [names[str(i)] for i in range(len(names))] == list(CLASSES.names)  # consecutive ids
    assert json.loads(meta["resolution"]) == pytest.approx(100 * PIXEL_M)
    assert json.loads(meta["tiles_size"]) == json.loads(meta["tile_size"]) == TILE
    assert json.loads(meta["tiles_overlap"]) == round(100 * OVERLAP / TILE)
    assert json.loads(meta["seg_thresh"]) == 0.0 and json.loads(meta["seg_small_segment"]) == 0
    mean, std = json.loads(meta["standardization_mean"]), json.loads(meta["standardization_std"])
    if extra:  # normalisation inside the graph: Deepness must not standardise again
        assert mean == [0.0] * 3 and std == [1.0] * 3
    else:  # rsseg's graph: what (uint8 / 255) needs to become the network's input
        np.testing.assert_allclose(np.array(mean) * 255, BGR.mean)
        np.testing.assert_allclose(np.array(std) * 255, BGR.std)
    assert json.loads(meta["rsseg"])["format"] == "rsseg-onnx"  # rsseg's own keys stay


def test_geodeep_reads_the_keys_as_it_parses_them(trained):
    geodeep_inference = import_geodeep("geodeep.inference")
    path = export(trained, "tiny_geodeep.onnx", "--for", "geodeep")
    _, config = geodeep_inference.create_session(str(path), max_threads=1)
    assert config["model_type"] == "Segmentor"
    assert config["tiles_size"] == TILE and config["tiles_overlap"] == 25.0
    assert config["resolution"] == pytest.approx(10.0)
    assert config["class_names"] == {str(i): n for i, n in enumerate(CLASSES.names)}
    assert config["seg_thresh"] == 0.0 and config["seg_small_segment"] == 0


def test_for_refuses_a_model_that_is_not_rgb(tmp_path, capsys):
    torch.manual_seed(0)
    model = create_model("bafnet", in_channels=4, num_classes=6)
    bands = Normalization(["IR", "R", "G", "DSM"], [0.0] * 4, [1.0] * 4)
    Checkpoint.from_model(model, bands=bands).save(tmp_path / "m.pt")
    assert rsseg("export", tmp_path / "m.pt", "-o", tmp_path / "m.onnx", "--for", "geodeep",
                 "--no-progress") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "takes 4 (IR, R, G, DSM)" in err[0] and "geodeep" in err[0]
    assert not (tmp_path / "m.onnx").exists()


def test_band_order_and_resolution_rules():
    from rsseg.export.interop import resolution_cm, rgb_order, tool_metadata
    from rsseg.errors import ModelError

    def ckpt(names, training=None):
        bands = None if names is None else Normalization(list(names), [0.0] * 3, [1.0] * 3)
        return Checkpoint("tiny_rgb_net", {"in_channels": 3, "num_classes": 5}, {},
                          classes=CLASSES, bands=bands, training=training or {})

    assert rgb_order(ckpt(["B", "G", "R"])) == [2, 1, 0]
    assert rgb_order(ckpt(["red", "Green", "BLUE"])) == [0, 1, 2]
    assert rgb_order(ckpt(["IR", "R", "G"])) is None  # false colour: fed as the raster has it
    assert rgb_order(ckpt(["B1", "B2", "B3"])) is None and rgb_order(ckpt(None)) is None
    assert resolution_cm(ckpt(None, {"gsd_m": 0.09}), None) == pytest.approx(9.0)
    assert resolution_cm(ckpt(None, {"gsd_m": 0.09}), 20.0) == 20.0  # --resolution wins
    assert resolution_cm(ckpt(None), None) is None
    with pytest.raises(ModelError, match="positive"):
        resolution_cm(ckpt(None), 0.0)
    keys = tool_metadata(CLASSES, {"size": 512, "overlap": 100}, ([0.0] * 3, [1.0] * 3), None)
    assert "resolution" not in keys  # unknown: GeoDeep's and Deepness's own defaults apply
    assert json.loads(keys["tiles_overlap"]) == 20  # 100 / 512 = 19.5 %, an integer for Deepness


@pytest.mark.parametrize("network", ["baff_skipnet"])
def test_for_export_of_a_batchnorm_network_matches_torch(tmp_path, network):
    # torch.onnx.export restores the wrapper's training mode afterwards, recursively: a
    # wrapper built in training mode put BatchNorm into batch statistics and the check
    # failed (probabilities off by 0.5) for every bundled network.
    torch.manual_seed(0)
    model = create_model(network, in_channels=3, num_classes=6)
    norm = Normalization(["R", "G", "B"], [100.0, 110.0, 90.0], [50.0, 40.0, 60.0])
    Checkpoint.from_model(model, bands=norm).save(tmp_path / "m.pt")
    assert run(["export", str(tmp_path / "m.pt"), "--for", "deepness", "--tile", "128",
                "-o", str(tmp_path / "m.onnx"), "--no-progress"]) == 0
    x = np.random.default_rng(0).random((1, 3, 128, 128)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        scaled = torch.from_numpy(x) * 255.0
        mean = torch.tensor(norm.mean).reshape(1, 3, 1, 1)
        std = torch.tensor(norm.std).reshape(1, 3, 1, 1)
        expected = torch.softmax(model.eval()((scaled - mean) / std), dim=1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
