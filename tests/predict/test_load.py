"""One way to resolve a model (load_predictor), one tiling default (resolve_tiling), the
library entry point with any callable, and what predict tells a new user on stderr."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
import torch.nn as nn

from rsseg import PredictSettings, load_predictor, predict_scene
from rsseg.checkpoint import Checkpoint
from rsseg.cli import run
from rsseg.errors import InputError, ModelError, OutputError, UsageError
from rsseg.io.normalization import Normalization
from rsseg.models import create_model
from rsseg.predict.settings import check_plan, resolve_tiling

MODEL = "tiny_load_net"
IRRG_DSM = Normalization(["IR", "R", "G", "DSM"], [0.0] * 4, [255.0] * 4)


@pytest.fixture
def tiny_model(register_test_model):
    """A one-layer network: loading, not learning, is what these tests check."""
    return register_test_model(MODEL, lambda in_channels=3, num_classes=6:
                               nn.Conv2d(in_channels, num_classes, 1))


@pytest.fixture
def checkpoint(tiny_model, tmp_path):
    """A 4-band (IR, R, G, DSM) checkpoint trained at 512 px with 128 px overlap, with a note."""
    path = tmp_path / "run" / "best.pt"
    path.parent.mkdir()
    Checkpoint.from_model(create_model(MODEL, in_channels=4), bands=IRRG_DSM,
                          tile={"size": 512, "overlap": 128},
                          note="trained on synthetic scenes; not for real imagery").save(path)
    return path


def rsseg(*args) -> int:
    return run([str(a) for a in args])


def err_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# ---- resolve_tiling / check_plan: the one tile/overlap default ----------------------------

def test_tiling_defaults_to_the_checkpoint_else_512_and_a_quarter():
    assert resolve_tiling(None, None) == (512, 128)
    assert resolve_tiling(None, None, {"size": 256, "overlap": 32}) == (256, 32)
    assert resolve_tiling(384, None, {"size": 512, "overlap": 128}) == (384, 128)  # fits
    assert resolve_tiling(200, 10, {"size": 512, "overlap": 128}) == (200, 10)  # explicit


def test_a_checkpoint_overlap_that_does_not_fit_the_tile_falls_back_to_a_quarter():
    with pytest.warns(UserWarning, match="does not fit a 128-px tile; using tile/4 = 32"):
        assert resolve_tiling(128, None, {"size": 512, "overlap": 128}) == (128, 32)
    with pytest.warns(UserWarning):
        assert resolve_tiling(100, None, {"size": 512, "overlap": 128}) == (100, 25)


def test_an_explicit_overlap_must_be_below_the_tile():
    with pytest.raises(UsageError, match="--overlap"):
        resolve_tiling(64, 64)
    with pytest.raises(InputError, match="at least 16"):
        resolve_tiling(8, 0)


def test_a_plan_of_tiny_strides_is_refused_with_its_window_count():
    # The case: 600 x 400 with tile 128 and overlap 127 = stride 1:
    # (1 + 472) x (1 + 272) windows, against (1 + ceil(472/96)) x (1 + ceil(272/96)) = 6 x 4.
    tiling = resolve_tiling(128, 127)
    with pytest.raises(InputError, match="129,129 windows"):
        check_plan(400, 600, tiling, "t6.tif")
    check_plan(400, 600, resolve_tiling(128, 64), "t6.tif")  # 2x the windows: fine


# ---- load_predictor -----------------------------------------------------------------------

def test_weights_alone_name_the_network(checkpoint):
    loaded = load_predictor(weights=checkpoint, channels=4, device="cpu")
    assert loaded.model_name == MODEL and loaded.normalization == IRRG_DSM
    assert loaded.tile_hint == {"size": 512, "overlap": 128}
    assert loaded.num_classes == 6
    out = loaded(np.zeros((1, 4, 32, 32), np.float32))
    assert out.shape == (1, 6, 32, 32)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ModelError, match=f"holds a '{MODEL}' model, not 'bafnet'"):
        load_predictor("bafnet", checkpoint, channels=4, device="cpu")


def test_band_mismatch_names_what_the_model_needs_and_what_the_file_has(checkpoint):
    with pytest.raises(ModelError) as info:
        load_predictor(weights=checkpoint, channels=3, device="cpu",
                       input_bands=["Red", "Green", "Blue"])
    message = str(info.value)
    assert "expects 4 bands (IR, R, G, DSM)" in message
    assert "provides 3 (Red, Green, Blue)" in message
    assert "--dsm FILE" in message and "--bands" in message


def test_a_colour_band_repeated_as_the_dsm_is_pointed_out(checkpoint, make_geotiff, tmp_path,
                                                          capsys):
    """The issue's case: `--bands 1,2,3,3` on an RGB file feeds blue to the DSM channel."""
    rgb = make_geotiff(np.random.default_rng(2).integers(0, 255, (3, 40, 50)).astype(np.uint8),
                       name="rgb.tif")
    assert rsseg("predict", rgb, "--weights", checkpoint, "--bands", "1,2,3,3", "--tile", 32,
                 "--overlap", 8, "-o", tmp_path / "c.tif", "--no-progress") == 0
    warning = [line for line in err_lines(capsys) if "warning" in line]
    assert warning == ["rsseg: warning: the model's DSM channel (band 4) is fed 'band3', which "
                       "also feeds another channel; a height band must come from a DSM file "
                       "(--dsm FILE)"]
    loaded = load_predictor(weights=checkpoint, channels=4, device="cpu",
                            input_bands=["band1", "band2", "band3", "DSM"])
    assert not [n for n in loaded.notes if n.startswith("warning")]


def test_device_cuda_without_a_gpu_fails_before_any_work(checkpoint):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelError, match="no CUDA GPU"):
        load_predictor(weights=checkpoint, channels=4, device="cuda")


# ---- predict_scene with any callable -------------------------------------------------------

class BandZeroIsTheClass:
    """A plain NumPy predictor (no torch): class = round(band 0), one-hot probabilities."""

    num_classes = 6

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        ids = np.clip(np.rint(batch[:, 0]), 0, 5).astype(np.int64)
        return np.moveaxis(np.eye(6, dtype=np.float32)[ids], -1, 1)


def test_predict_scene_accepts_a_plain_callable(make_geotiff, tmp_path):
    ids = np.random.default_rng(0).integers(0, 6, (70, 90)).astype(np.float32)
    scene = make_geotiff(ids)  # float band: used as it is by the per-dtype scaling
    result = predict_scene(scene, tmp_path / "out.tif", BandZeroIsTheClass(),
                           PredictSettings(tile=32, overlap=8))
    with rasterio.open(tmp_path / "out.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), ids.astype(np.uint8))
    assert (result.tile, result.overlap, result.skipped) == (32, 8, 0)


def test_outputs_are_checked_before_anything_is_read(make_geotiff, tmp_path):
    class MustNotRun(BandZeroIsTheClass):
        def __call__(self, batch):
            raise AssertionError("the predictor ran")

    scene = make_geotiff(np.zeros((40, 40), np.float32))
    (tmp_path / "conf.tif").write_bytes(b"keep")
    with pytest.raises(OutputError, match="exists"):
        predict_scene(scene, tmp_path / "out.tif", MustNotRun(),
                      PredictSettings(probs=tmp_path / "conf.tif"))
    with pytest.raises(UsageError, match="also the input"):
        predict_scene(scene, scene, MustNotRun(), PredictSettings(overwrite=True))
    assert (tmp_path / "conf.tif").read_bytes() == b"keep"
    assert not (tmp_path / "out.tif").exists()


# ---- the command: notes, warnings, --weights without --model ------------------------------

@pytest.fixture
def irrg_dsm_scene(make_geotiff):
    data = np.random.default_rng(1).integers(0, 255, (4, 60, 80)).astype(np.uint8)
    return make_geotiff(data)


def test_predict_with_weights_only_shows_the_checkpoint_note(checkpoint, irrg_dsm_scene,
                                                            tmp_path, capsys):
    out = tmp_path / "classes.tif"
    assert rsseg("predict", irrg_dsm_scene, "--weights", checkpoint, "-o", out,
                 "--no-progress") == 0
    lines = err_lines(capsys)
    assert lines[0] == (f"rsseg: note: best.pt ({MODEL}): trained on synthetic scenes; "
                        "not for real imagery")
    # the completion line: what was written, the windows, time and rate
    assert len(lines) == 2 and lines[1].startswith("wrote classes.tif (1 windows of 512 px")
    assert lines[1].endswith("Mpx/s")
    with rasterio.open(out) as ds:
        assert ds.read(1).max() < 6


def test_a_small_tile_warns_and_uses_a_quarter_overlap(checkpoint, irrg_dsm_scene, tmp_path,
                                                       capsys):
    """The issue's case: --tile below the checkpoint's overlap used to plan stride-1 windows."""
    out = tmp_path / "classes.tif"
    assert rsseg("predict", irrg_dsm_scene, "--weights", checkpoint, "--tile", 32, "-o", out,
                 "--no-progress") == 0
    warning = [line for line in err_lines(capsys) if "warning" in line]
    assert warning == ["rsseg: warning: the model's overlap (128 px) does not fit a 32-px tile; "
                       "using tile/4 = 8 px (set --overlap to choose)"]
    assert out.exists()


def test_a_tiny_stride_is_refused_before_writing(checkpoint, irrg_dsm_scene, tmp_path, capsys):
    out = tmp_path / "classes.tif"
    assert rsseg("predict", irrg_dsm_scene, "--weights", checkpoint, "--tile", 32,
                 "--overlap", 31, "-o", out, "--no-progress") == 1
    lines = err_lines(capsys)
    assert lines[-1].startswith("rsseg: error:") and "windows" in lines[-1]
    assert not out.exists() and not list(tmp_path.glob(".*part*"))


def test_bundled_weights_say_they_were_trained_on_synthetic_scenes(irrg_dsm_scene, tmp_path,
                                                                    capsys):
    from rsseg.weights.bundled import bundled_weights

    if bundled_weights("baff_skipnet") is None:
        pytest.skip("no bundled baff_skipnet weights in this install")
    out = tmp_path / "classes.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert rsseg("predict", irrg_dsm_scene, "--model", "baff_skipnet", "--tile", 64,
                     "-o", out, "--no-progress") == 0
    notes = [line for line in err_lines(capsys) if line.startswith("rsseg: note:")]
    assert len(notes) == 1 and "trained on synthetic" in notes[0], notes


def test_batch_resolves_the_model_and_tiling_as_predict(checkpoint, irrg_dsm_scene):
    """batch plans with load_predictor and resolve_tiling: --weights alone names the
    network, the checkpoint's overlap is replaced when it does not fit, notes are kept."""
    from rsseg.batch.bandfiles import TileExtras
    from rsseg.batch.driver import BatchOptions, _settings
    from rsseg.batch.inputs import open_tiles

    tiles = open_tiles([str(irrg_dsm_scene)])
    options = BatchOptions(weights=str(checkpoint), tile=64)
    with pytest.warns(UserWarning, match="does not fit a 64-px tile"):
        settings, notes = _settings(tiles, options, TileExtras((), None, False, tiles))
    assert (settings["model"], settings["tile"], settings["overlap"]) == (MODEL, 64, 16)
    assert notes == [f"note: best.pt ({MODEL}): trained on synthetic scenes; "
                     "not for real imagery"]
