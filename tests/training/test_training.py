"""rsseg train: windows, normalisation, loss, a real short run, exact resume, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from rsseg.models import register_model, unregister_model

from rsseg.checkpoint import load_checkpoint
from rsseg.classes import ISPRS, NODATA
from rsseg.cli import run as run_cli
from rsseg.errors import InputError, ModelError, OutputError
from rsseg.training import TrainConfig, resume, train
from rsseg.training.dataset import RandomWindowDataset
from rsseg.training.evaluate import majority_baseline_miou
from rsseg.training.loss import HybridLoss, soft_dice_loss
from rsseg.training.normalisation import scan_scenes
from rsseg.training.sampling import ClassSampler, class_grid
from rsseg.training.scenes import SceneReader, inspect_scenes, pair_scenes

from conftest import read_until_progress, rsseg_env, start_rsseg
from tiny_network import TINY, build_tiny

# Band means per class (IR, R, G, DSM): separable, as in real scenes where
# buildings are high and vegetation is bright in IR.
CLASS_MEANS = np.array([[0.2, 0.5, 0.3, 1.0], [0.5, 0.1, 0.7, 8.0], [0.7, 0.3, 0.5, 0.5],
                        [0.9, 0.2, 0.6, 5.0], [0.3, 0.9, 0.9, 1.5], [0.5, 0.5, 0.1, 2.0]],
                       np.float32)
NOISE = 0.05
# `rsseg` with the tiny network registered, for runs in a child process
TINY_RSSEG = [sys.executable, str(Path(__file__).with_name("tiny_network.py"))]


@pytest.fixture(scope="module", autouse=True)
def tiny_model():
    register_model(TINY, listed=False)(build_tiny)
    yield TINY
    unregister_model(TINY)


def class_layout(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = np.zeros((size, size), np.uint8)
    for _ in range(size // 5):
        c = rng.integers(0, 6)
        x, y = rng.integers(0, size, 2)
        w, h = rng.integers(4, size // 4, 2)
        lab[y:y + h, x:x + w] = c
    return lab


def write_scene(tmp_path, name: str, size: int = 128, seed: int = 0, rgb_labels=False,
                transform=None, bands: int = 4):
    """A GeoTIFF scene + label raster; bands are class means + noise."""
    rng = np.random.default_rng(seed + 1000)
    lab = class_layout(size, seed)
    img = CLASS_MEANS[lab][..., :bands].transpose(2, 0, 1)
    img = img + rng.normal(0, NOISE, img.shape).astype(np.float32)
    prof = dict(driver="GTiff", width=size, height=size, crs="EPSG:32632",
                transform=transform or from_origin(500000, 5000000, 0.1, 0.1))
    image_path, label_path = tmp_path / f"{name}.tif", tmp_path / f"{name}_label.tif"
    with rasterio.open(image_path, "w", count=bands, dtype="float32", **prof) as ds:
        ds.write(img)
    if rgb_labels:
        rgb = np.array(ISPRS.colours, np.uint8)[lab].transpose(2, 0, 1)
        with rasterio.open(label_path, "w", count=3, dtype="uint8", **prof) as ds:
            ds.write(rgb)
    else:
        with rasterio.open(label_path, "w", count=1, dtype="uint8", nodata=255, **prof) as ds:
            ds.write(lab, 1)
    return str(image_path), str(label_path)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    d = tmp_path_factory.mktemp("scenes")
    return {name: write_scene(d, name, 128, seed) for seed, name in
            enumerate(["train_a", "train_b", "val"])}


def config(scenes, out_dir, **kw) -> TrainConfig:
    base = dict(images=[scenes["train_a"][0], scenes["train_b"][0]],
                labels=[scenes["train_a"][1], scenes["train_b"][1]],
                val_images=[scenes["val"][0]], val_labels=[scenes["val"][1]],
                out_dir=str(out_dir), model=TINY, crop=48, batch_size=4, epochs=3,
                steps_per_epoch=15, lr=0.01, val_tile=64, val_margin=8)
    base.update(kw)
    return TrainConfig(**base)


# ----------------------------------------------------------------- building blocks


def test_streamed_normalisation_equals_whole_array_statistics(scenes):
    infos = inspect_scenes(pair_scenes([scenes["train_a"][0], scenes["val"][0]],
                                       [scenes["train_a"][1], scenes["val"][1]]), "index")
    stats = scan_scenes(infos, "index", ISPRS, block=50)  # blocks that do not divide 128
    whole = []
    counts = np.zeros(6, np.int64)
    for key in ("train_a", "val"):
        with rasterio.open(scenes[key][0]) as ds:
            whole.append(ds.read().reshape(4, -1).astype(np.float64))
        with rasterio.open(scenes[key][1]) as ds:
            counts += np.bincount(ds.read(1).ravel(), minlength=6)
    whole = np.concatenate(whole, axis=1)
    np.testing.assert_allclose(stats.normalization.mean, whole.mean(axis=1), rtol=1e-10)
    np.testing.assert_allclose(stats.normalization.std, whole.std(axis=1), rtol=1e-10)
    assert stats.class_counts.tolist() == counts.tolist()
    assert stats.normalization.names == ["B1", "B2", "B3", "B4"]


def test_windows_are_seeded_and_keep_bands_and_labels_aligned(scenes):
    infos = inspect_scenes(pair_scenes([scenes["train_a"][0]], [scenes["train_a"][1]]), "index")
    norm = scan_scenes(infos, "index", ISPRS).normalization
    ds = RandomWindowDataset(infos, "index", ISPRS, norm, crop=40, samples=30, seed=3)
    x0, y0 = ds[7]
    assert torch.equal(ds[7][0], x0) and torch.equal(ds[7][1], y0)
    ds.epoch = 1
    assert not torch.equal(ds[7][0], x0)  # a new epoch draws new windows
    mean = np.array(norm.mean, np.float32)[:, None]
    std = np.array(norm.std, np.float32)[:, None]
    for i in range(30):
        x, y = ds[i]
        assert x.shape == (4, 40, 40) and y.shape == (40, 40) and y.dtype == torch.int64
        # After flips, rotations and resampling every labelled pixel must still show the
        # bands of its class (bilinear blur only at class edges: test interior pixels).
        raw = x.numpy().reshape(4, -1) * std + mean
        lab = y.numpy()
        interior = np.zeros_like(lab, bool)
        interior[1:-1, 1:-1] = ((lab[1:-1, 1:-1] == lab[:-2, 1:-1]) & (lab[1:-1, 1:-1] == lab[2:, 1:-1])
                                & (lab[1:-1, 1:-1] == lab[1:-1, :-2]) & (lab[1:-1, 1:-1] == lab[1:-1, 2:]))
        interior &= lab != NODATA
        ids = lab[interior]
        err = np.abs(raw[:, interior.ravel()] - CLASS_MEANS[ids].T)
        assert np.median(err) < 3 * NOISE, i


def test_class_balanced_windows_find_rare_classes(scenes):
    infos = inspect_scenes(pair_scenes([scenes["train_a"][0]], [scenes["train_a"][1]]), "index")
    grid = class_grid(infos[0], "index", ISPRS)
    with rasterio.open(scenes["train_a"][1]) as ds:
        lab = ds.read(1)
    assert grid.counts.sum(axis=(0, 1)).tolist() == np.bincount(lab.ravel(), minlength=6).tolist()
    rare = int(np.argmin(np.where(grid.counts.sum(axis=(0, 1)) > 0,
                                  grid.counts.sum(axis=(0, 1)), np.inf)))
    sampler = ClassSampler([grid])
    reader = SceneReader(infos[0], "index", ISPRS)
    rng = np.random.default_rng(0)
    cell = grid.cell
    # A window of two cells centred anywhere in a cell covers the whole cell, so it must
    # contain the class the cell was drawn for, however rare.
    for _ in range(40):
        scene, row, col = sampler.draw_class(rare, rng)
        r0 = int(np.clip(row - cell, 0, 128 - 2 * cell))
        c0 = int(np.clip(col - cell, 0, 128 - 2 * cell))
        assert scene == 0 and (reader.read_labels(c0, r0, 2 * cell, 2 * cell) == rare).any()
    reader.close()


def test_loss_ignores_nodata_and_dice_is_zero_for_perfect_predictions():
    target = torch.randint(0, 6, (2, 16, 16))
    perfect = torch.nn.functional.one_hot(target, 6).permute(0, 3, 1, 2).float() * 50
    assert float(soft_dice_loss(perfect, target)) < 1e-3
    noisy = torch.randn(2, 6, 16, 16)
    masked = target.clone()
    masked[:, :8] = NODATA
    loss = HybridLoss()
    changed = noisy.clone()
    changed[:, :, :8] = torch.randn(2, 6, 8, 16) * 10  # only ignored pixels differ
    assert torch.allclose(loss(noisy, masked), loss(changed, masked))
    assert float(loss(noisy, torch.full_like(target, NODATA))) == 0.0


# ----------------------------------------------------------------- training runs


@pytest.fixture(scope="module")
def trained(scenes, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    result = train(config(scenes, out, plot=True), progress="off")
    return result


def test_short_run_lowers_loss_and_beats_majority_baseline(trained, scenes):
    hist = trained.history
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["train_loss"] < 0.6 * hist[0]["train_loss"]
    with rasterio.open(scenes["val"][1]) as ds:
        lab = ds.read(1)
    cm = np.diag(np.bincount(lab.ravel(), minlength=6))
    baseline = majority_baseline_miou(cm)
    assert trained.best_miou > baseline + 0.4, (trained.best_miou, baseline)
    out = trained.out_dir
    logged = json.loads((out / "log.json").read_text())
    assert [round(e["val_miou"], 6) for e in logged] == [round(h["val_miou"], 6) for h in hist]
    header = (out / "log.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "train_loss", "val_miou", "iou_building"} <= set(header)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = load_checkpoint(out / "best.pt")
    assert best.training["val_miou"] == pytest.approx(trained.best_miou)
    assert best.bands.num_bands == 4 and best.model_name == TINY


def test_checkpoint_from_train_loads_with_weights_only_and_predicts_the_same(trained, scenes):
    raw = torch.load(trained.last_path, map_location="cpu", weights_only=True)
    assert raw["format"] == "rsseg-checkpoint"
    ckpt = load_checkpoint(trained.last_path)
    assert ckpt.training["gsd_m"] == pytest.approx(0.1)  # for `rsseg export`'s `resolution`
    loaded = ckpt.build_model()
    with rasterio.open(scenes["val"][0]) as ds:
        x = ckpt.bands.apply(ds.read())
    t = torch.from_numpy(x)[None]
    with torch.inference_mode():
        expected = trained.model.eval()(t).argmax(1)
        got = loaded(t).argmax(1)
    assert torch.equal(expected, got)


def test_rsseg_predict_with_the_trained_checkpoint_gives_the_models_classes(trained, scenes,
                                                                            tmp_path):
    out = tmp_path / "classes.tif"
    assert run_cli(["predict", scenes["val"][0], "--model", TINY, "--weights",
                    str(trained.best_path), "-o", str(out), "--no-progress"]) == 0
    ckpt = load_checkpoint(trained.best_path)  # weights_only=True inside
    with rasterio.open(scenes["val"][0]) as ds:
        x = torch.from_numpy(ckpt.bands.apply(ds.read()))[None]
    with torch.inference_mode():
        expected = ckpt.build_model()(x).argmax(1)[0].numpy()
    with rasterio.open(out) as ds:
        got = ds.read(1)
    # The network sees a few pixels of context: compare away from the scene edge, where
    # predict's tile padding and the whole-scene forward pass see the same pixels.
    core = np.s_[3:-3, 3:-3]
    assert np.array_equal(got[core], expected[core])


def test_resume_after_interruption_gives_the_same_weights(scenes, tmp_path):
    settings = dict(epochs=2, steps_per_epoch=6, class_balance=0.5)
    full = train(config(scenes, tmp_path / "full", **settings), progress="off")

    class Stop(Exception):
        pass

    def stop_after_first(entry):
        if entry["epoch"] == 1:
            raise Stop()

    with pytest.raises(Stop):
        train(config(scenes, tmp_path / "cut", **settings), progress="off",
              on_epoch_end=stop_after_first)
    assert load_checkpoint(tmp_path / "cut" / "last.pt").training["epoch"] == 1
    resumed = resume(tmp_path / "cut", progress="off")
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [h["train_loss"] for h in full.history] == [h["train_loss"] for h in resumed.history]


# ----------------------------------------------------------------- interrupted in a real process

def _cli_args(scenes, out, epochs: int = 3) -> list:
    return ["train", "--images", scenes["train_a"][0], scenes["train_b"][0],
            "--labels", scenes["train_a"][1], scenes["train_b"][1],
            "--val-images", scenes["val"][0], "--val-labels", scenes["val"][1],
            "--model", TINY, "-o", out, "--crop", "48", "--batch-size", "4",
            "--epochs", str(epochs), "--steps-per-epoch", "40", "--lr", "0.01",
            "--class-balance", "0.5", "--device", "cpu", "--seed", "3", "--progress-json"]


def _train_child(argv) -> None:
    done = subprocess.run(TINY_RSSEG + [str(a) for a in argv], capture_output=True, text=True,
                          env=rsseg_env(), timeout=600)
    assert done.returncode == 0, done.stderr


def _stop_in_second_epoch(argv, how: str) -> subprocess.Popen:
    """Run ``rsseg train``; once epoch 2 reports progress (epoch 1's checkpoints are
    written), stop it ``how``: SIGTERM, SIGINT (Ctrl-C in a foreground run) or SIGKILL."""
    proc = start_rsseg(argv, command=TINY_RSSEG)
    try:
        if not read_until_progress(proc, "epoch 2/"):
            pytest.fail(f"the run ended before epoch 2: {proc.stderr.read()}")
        proc.send_signal({"sigterm": signal.SIGTERM, "sigint": signal.SIGINT,
                          "kill-9": signal.SIGKILL}[how])
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    expected = {"sigterm": (143, ["rsseg: terminated"]), "sigint": (130, ["rsseg: interrupted"]),
                "kill-9": (-signal.SIGKILL, [])}[how]
    # (click echoes a newline on Ctrl-C, to end the terminal's "^C" line)
    assert (proc.returncode, [line for line in err.splitlines() if line.strip()]) == expected
    return proc


@pytest.fixture(scope="module")
def uninterrupted_cli_run(scenes, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "full"
    _train_child(_cli_args(scenes, out))
    return out


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("how", ["sigterm", "sigint", "kill-9"])
def test_train_stopped_then_resumed_gives_bit_identical_weights(how, scenes,
                                                               uninterrupted_cli_run, tmp_path):
    """Stopped mid-epoch (any way), the run keeps epoch 1's complete checkpoints and
    ``--resume`` ends with the same weights, to the bit, as a run never stopped."""
    out = tmp_path / "cut"
    _stop_in_second_epoch(_cli_args(scenes, out), how)
    for name in ("best.pt", "last.pt"):  # whole, loadable, from epoch 1
        assert load_checkpoint(out / name).training["epoch"] == 1
    if how != "kill-9":  # a cleaned-up stop leaves no temporary file
        assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "log.csv",
                                                         "log.json"]
    _train_child(["train", "--resume", out, "--progress-json"])
    for name in ("last.pt", "best.pt"):
        full, resumed = _weights(uninterrupted_cli_run / name), _weights(out / name)
        assert full["training"]["epoch"] == resumed["training"]["epoch"]
        assert full["state_dict"].keys() == resumed["state_dict"].keys()
        for key, value in full["state_dict"].items():
            assert torch.equal(value, resumed["state_dict"][key]), (name, key)
    history = json.loads((out / "log.json").read_text())
    reference = json.loads((uninterrupted_cli_run / "log.json").read_text())
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in reference]
    assert len(history) == 3


def test_isprs_rgb_labels_train_as_their_class_ids(tmp_path):
    """ISPRS colour labels decode to the class ids: training on them gives, to the bit, the
    weights and validation scores of training on the same labels written as ids."""
    results = {}
    for label_format, rgb in (("isprs-rgb", True), ("index", False)):
        d = tmp_path / label_format
        d.mkdir()
        img, lab = write_scene(d, "scene", 96, 5, rgb_labels=rgb)
        cfg = TrainConfig(images=[img], labels=[lab], val_images=[img], val_labels=[lab],
                          out_dir=str(d / "run"), model=TINY, label_format=label_format,
                          crop=32, batch_size=2, epochs=1, steps_per_epoch=3, val_tile=64,
                          min_class_pixels=1)
        results[label_format] = train(cfg, progress="off")
    rgb, ids = results["isprs-rgb"], results["index"]
    assert rgb.history[0]["val_iou"] == ids.history[0]["val_iou"]
    assert rgb.history[0]["train_loss"] == ids.history[0]["train_loss"]
    for key, value in ids.model.state_dict().items():
        assert torch.equal(rgb.model.state_dict()[key], value), key
    assert load_checkpoint(rgb.best_path).training["label_format"] == "rgb"


# ----------------------------------------------------------------- bad input


def _expect_nothing_written(cfg, exc_type, match):
    with pytest.raises(exc_type, match=match):
        train(cfg, progress="off")
    from pathlib import Path

    assert not Path(cfg.out_dir).exists()


def test_unknown_label_colours_are_refused(tmp_path, scenes):
    img, lab = write_scene(tmp_path, "odd", 64, 9, rgb_labels=True)
    with rasterio.open(lab, "r+") as ds:
        rgb = ds.read()
        rgb[:, 5:9, 5:9] = np.array([12, 34, 56], np.uint8)[:, None, None]
        ds.write(rgb)
    cfg = config(scenes, tmp_path / "run", images=[img], labels=[lab], label_format="isprs-rgb",
                 val_images=[img], val_labels=[lab], min_class_pixels=1)
    _expect_nothing_written(cfg, InputError, r"odd_label\.tif.*RGB\(12, 34, 56\)")


def test_index_label_values_out_of_range_are_refused(tmp_path, scenes):
    img, lab = write_scene(tmp_path, "bad", 64, 4)
    with rasterio.open(lab, "r+") as ds:
        a = ds.read(1)
        a[0, 0] = 9
        ds.write(a, 1)
    cfg = config(scenes, tmp_path / "run", images=[img], labels=[lab], min_class_pixels=1)
    _expect_nothing_written(cfg, InputError, r"bad_label\.tif.*values that are not class ids")


def test_grid_mismatch_is_refused(tmp_path, scenes):
    img, _ = write_scene(tmp_path, "a", 64, 1)
    _, lab = write_scene(tmp_path, "b", 64, 1, transform=from_origin(500010, 5000000, 0.1, 0.1))
    cfg = config(scenes, tmp_path / "run", images=[img], labels=[lab])
    _expect_nothing_written(cfg, InputError, r"b_label\.tif: label grid .* does not match")


def test_too_few_pixels_of_a_class_is_refused(tmp_path, scenes):
    img, lab = write_scene(tmp_path, "few", 64, 2)
    with rasterio.open(lab, "r+") as ds:
        a = ds.read(1)
        a[a == 4] = 0
        a[:2, :2] = 4  # four car pixels
        ds.write(a, 1)
    cfg = config(scenes, tmp_path / "run", images=[img], labels=[lab], min_class_pixels=50)
    _expect_nothing_written(cfg, InputError, r"too few labelled pixels of class .*car \(4 px\)")


def test_band_count_mismatch_between_scenes_is_refused(tmp_path, scenes):
    img, lab = write_scene(tmp_path, "three", 64, 3, bands=3)
    cfg = config(scenes, tmp_path / "run", val_images=[img], val_labels=[lab])
    _expect_nothing_written(cfg, InputError, r"three\.tif: validation scene has 3 band\(s\)")


def test_pretrained_band_mismatch_is_refused(tmp_path, scenes):
    name = "_test_training_pretrained"

    class Net(torch.nn.Module):
        def __init__(self, in_channels, num_classes):
            super().__init__()
            self.stem = torch.nn.Conv2d(in_channels, 4, 3, padding=1)
            self.head = torch.nn.Conv2d(4, num_classes, 1)

        def forward(self, x):
            return self.head(self.stem(x))

        def load_pretrained_encoder(self, state):
            weight = state["stem.weight"]
            if weight.shape[1] != self.stem.weight.shape[1]:
                raise ValueError(f"stem has {weight.shape[1]} input bands, "
                                 f"the network {self.stem.weight.shape[1]}")
            self.stem.load_state_dict({"weight": weight, "bias": state["stem.bias"]})

    register_model(name, listed=False)(lambda in_channels, num_classes: Net(in_channels,
                                                                           num_classes))
    try:
        path = tmp_path / "imagenet.pth"
        torch.save({"state_dict": {"stem.weight": torch.zeros(4, 7, 3, 3),
                                   "stem.bias": torch.zeros(4)}}, path)
        cfg = config(scenes, tmp_path / "run", model=name, pretrained=str(path))
        _expect_nothing_written(cfg, ModelError, r"imagenet\.pth: cannot load the pretrained "
                                                 r"encoder .* 4 input band\(s\): stem has 7")
        cfg = config(scenes, tmp_path / "run", pretrained=str(path))  # TINY has no encoder
        _expect_nothing_written(cfg, ModelError, "has no pretrained encoder")
    finally:
        unregister_model(name)


def test_existing_run_is_not_overwritten(trained, scenes):
    with pytest.raises(OutputError, match="already holds a training run"):
        train(config(scenes, trained.out_dir), progress="off")


# ----------------------------------------------------------------- command line


def test_cli_trains_with_shell_expanded_file_lists_and_resumes(scenes, tmp_path, capsys):
    out = tmp_path / "cli_run"
    args = ["train", "--images", scenes["train_a"][0], scenes["train_b"][0],
            "--labels", scenes["train_a"][1], scenes["train_b"][1],
            "--val-images", scenes["val"][0], "--val-labels", scenes["val"][1],
            "--model", TINY, "-o", str(out), "--crop", "32", "--batch-size", "2",
            "--epochs", "1", "--steps-per-epoch", "2", "--no-progress"]
    assert run_cli(args) == 0
    assert load_checkpoint(out / "last.pt").training["train_scenes"] == ["train_a.tif",
                                                                        "train_b.tif"]
    assert run_cli(["train", "--resume", str(out), "--crop", "64"]) == 2  # settings are fixed
    assert run_cli(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    assert load_checkpoint(out / "last.pt").training["epoch"] == 2
    capsys.readouterr()
    assert run_cli(args[:-1] + ["--overwrite", "--no-progress", "--labels",
                                scenes["val"][0]]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rsseg: error:")


def test_backbone_only_classifier_is_refused_for_training():
    from rsseg.errors import ModelError
    from rsseg.training.setup import build_model

    with pytest.raises(ModelError, match="image classifier"):
        build_model("lwganet_l0_cls", in_channels=4, num_classes=6)
    with pytest.raises(ModelError, match="unknown model"):
        build_model("no_such_net", in_channels=4, num_classes=6)


# ----------------------------------------------------------------- options, each for its effect

def _split_dsm(image: str, d) -> tuple[str, str]:
    """The 4-band scene as a 3-band image plus its DSM band in a file of its own."""
    with rasterio.open(image) as src:
        data, profile = src.read(), src.profile
    stem = Path(image).stem
    paths = d / f"{stem}_rgb.tif", d / f"{stem}_dsm.tif"
    for path, bands in zip(paths, (data[:3], data[3:])):
        with rasterio.open(path, "w", **dict(profile, count=len(bands))) as dst:
            dst.write(bands)
    return str(paths[0]), str(paths[1])


def _cli_train(scenes, out, *options, images=None, val_images=None) -> dict:
    """``rsseg train`` in this process; returns last.pt (weights, config, normalisation)."""
    images = images or [scenes["train_a"][0], scenes["train_b"][0]]
    args = ["train", "--images", *images, "--labels", scenes["train_a"][1], scenes["train_b"][1],
            "--val-images", *(val_images or [scenes["val"][0]]), "--val-labels", scenes["val"][1],
            "--model", TINY, "-o", str(out), "--crop", "32", "--batch-size", "2",
            "--epochs", "1", "--steps-per-epoch", "4", "--device", "cpu", "--no-progress",
            *options]
    assert run_cli(args) == 0
    return torch.load(out / "last.pt", map_location="cpu", weights_only=True)


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_dsm_files_and_loader_workers_train_as_the_stacked_scene(scenes, tmp_path):
    """--dsm/--val-dsm append each file's band after its image's bands: training on RGB +
    DSM files gives, to the bit, the run on the 4-band scenes; --workers 1 (windows read in
    a worker process) changes nothing either."""
    stacked = _cli_train(scenes, tmp_path / "stacked")
    split = {name: _split_dsm(scenes[name][0], tmp_path) for name in ("train_a", "train_b", "val")}
    separate = _cli_train(
        scenes, tmp_path / "separate", "--dsm", split["train_a"][1], split["train_b"][1],
        "--val-dsm", split["val"][1], "--workers", "1",
        images=[split["train_a"][0], split["train_b"][0]], val_images=[split["val"][0]])
    # the same means and deviations; the appended band is named for what it is
    assert separate["bands"] == dict(stacked["bands"], names=["B1", "B2", "B3", "DSM"])
    assert _same_weights(separate["state_dict"], stacked["state_dict"])
    assert separate["resume"]["history"][0]["train_loss"] == \
        stacked["resume"]["history"][0]["train_loss"]
    assert separate["resume"]["config"]["workers"] == 1


def test_model_config_and_exclude_from_mean(scenes, tmp_path):
    last = _cli_train(scenes, tmp_path / "run", "--model-config", '{"width": 4}',
                      "--exclude-from-mean", "clutter", "--exclude-from-mean", "car")
    assert last["model"]["config"]["width"] == 4
    assert last["state_dict"]["0.weight"].shape == (4, 4, 3, 3)  # the network built with it
    entry = last["resume"]["history"][0]
    kept = [v for name, v in entry["val_iou"].items()
            if name not in ("clutter", "car") and v is not None]
    assert entry["val_miou"] == pytest.approx(np.mean(kept))
    assert last["training"]["exclude_from_mean"] == ["clutter", "car"]


def test_channels_last_and_amp_on_cpu(scenes, tmp_path):
    """--channels-last on changes the memory layout, not the result; --amp on (bfloat16 on
    CPU) changes the arithmetic: other weights, still a sound run."""
    plain = _cli_train(scenes, tmp_path / "plain", "--channels-last", "off", "--amp", "off")
    nhwc = _cli_train(scenes, tmp_path / "nhwc", "--channels-last", "on", "--amp", "off")
    amp = _cli_train(scenes, tmp_path / "amp", "--channels-last", "off", "--amp", "on")
    # (Adam divides by the gradient's magnitude, so rounding-level differences of another
    # convolution kernel reach the weights at the scale of one step: compare at that scale)
    for key, value in plain["state_dict"].items():
        torch.testing.assert_close(nhwc["state_dict"][key], value, rtol=0, atol=1e-3)
    for metric in ("train_loss", "val_oa"):
        assert nhwc["resume"]["history"][0][metric] == pytest.approx(
            plain["resume"]["history"][0][metric], rel=1e-4)
    assert not _same_weights(amp["state_dict"], plain["state_dict"])
    loss = plain["resume"]["history"][0]["train_loss"]
    assert amp["resume"]["history"][0]["train_loss"] == pytest.approx(loss, rel=0.1)
    assert all(torch.isfinite(v).all() for v in amp["state_dict"].values()
               if v.is_floating_point())
    assert (nhwc["resume"]["config"]["channels_last"], amp["resume"]["config"]["amp"]) == \
        ("on", "on")
