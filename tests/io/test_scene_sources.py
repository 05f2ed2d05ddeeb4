"""Bands stacked from several files (--band-file, --dsm, --align), the rioxarray accessor,
and the predict CLI's remaining input/output checks, on real GeoTIFFs."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import torch.nn as nn
from affine import Affine

from rsseg.cli import run
from rsseg.errors import InputError
from rsseg.io.scene import BandFile, Scene, open_dataarray, parse_band_file

H, W = 60, 75
MODEL = "pick_channel_net"
COG_VALIDATOR = "osgeo_utils.samples.validate_cloud_optimized_geotiff"


class PickChannel(nn.Module):
    """Class id = channel ``index`` of a uint8 band (scaled to 0..1 by the default
    normalisation) as near one-hot logits: shows which file's band landed where."""

    def __init__(self, in_channels=3, num_classes=6, index=2):
        super().__init__()
        self.index, self.k = index, num_classes

    def forward(self, x):
        ids = (x[:, self.index] * 255).round().long().clamp(0, self.k - 1)
        return 60.0 * nn.functional.one_hot(ids, self.k).permute(0, 3, 1, 2).float()


@pytest.fixture
def pick_model(register_test_model):
    return register_test_model(MODEL, PickChannel)


@pytest.fixture
def files(make_geotiff):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (3, H, W)).astype(np.uint8)
    ir = rng.integers(0, 6, (H, W)).astype(np.uint8)  # doubles as class ids
    dsm = np.linspace(200, 260, H * W, dtype=np.float32).reshape(H, W)
    return dict(rgb=make_geotiff(rgb, "rgb.tif"), ir=make_geotiff(ir, "ir.tif"),
                dsm=make_geotiff(dsm, "dsm.tif"), rgb_data=rgb, ir_data=ir, dsm_data=dsm)


def coarse_copy(make_geotiff, data, name):
    """``data`` at half resolution on the same footprint: another grid."""
    return make_geotiff(data[..., ::2, ::2], name,
                        transform=Affine(1.0, 0, 500000.0, 0, -1.0, 5300000.0))


@pytest.mark.parametrize("text,expected", [
    ("ir.tif", BandFile("ir.tif")),
    ("rgbi.tif:4", BandFile("rgbi.tif", (4,))),
    ("a/b:c.tif:1,1,2", BandFile("a/b:c.tif", (1, 1, 2))),
    ("c:/data/x.tif", BandFile("c:/data/x.tif")),
])
def test_parse_band_file(text, expected):
    assert parse_band_file(text) == expected


def test_parse_band_file_prefers_an_existing_file_and_refuses_band_0(tmp_path):
    odd = tmp_path / "odd:2"
    odd.write_text("")
    assert parse_band_file(str(odd)) == BandFile(str(odd))
    with pytest.raises(ValueError, match="start at 1"):
        parse_band_file("x.tif:0")


def test_band_files_and_dsm_are_stacked_in_order(files):
    with Scene(files["rgb"], bands=[3, 1], band_files=[f"{files['ir']}:1,1", files["rgb"]],
               dsm=files["dsm"]) as scene:
        values, valid = scene.read(7, 11, 30, 40)
    assert scene.channels == 8  # 3,1 | ir,ir | all of rgb | dsm
    assert scene.names == ["band3", "band1", "ir:1", "ir:1", "rgb:1", "rgb:2", "rgb:3", "DSM"]
    rows, cols = slice(7, 37), slice(11, 51)
    expected = np.concatenate([files["rgb_data"][[2, 0]], files["ir_data"][None].repeat(2, 0),
                               files["rgb_data"], files["dsm_data"][None]])[:, rows, cols]
    np.testing.assert_array_equal(values, expected.astype(np.float32))
    assert valid.all() and scene.dtypes == ["uint8"] * 7 + ["float32"]


def test_band_file_on_another_grid_needs_align(files, make_geotiff):
    coarse = coarse_copy(make_geotiff, files["dsm_data"], "coarse.tif")
    with pytest.raises(InputError, match="band file grid .* differs.*--align") as err:
        Scene(files["rgb"], band_files=[coarse])
    assert "coarse.tif" in str(err.value)
    with pytest.raises(InputError, match="band 2 does not exist"):
        Scene(files["rgb"], band_files=[f"{files['ir']}:2"])
    with Scene(files["rgb"], band_files=[coarse], align=True) as scene:
        values, valid = scene.read(0, 0, H, W)
    assert valid.all()
    assert np.abs(values[3] - files["dsm_data"]).max() < 2.0  # bilinear on a smooth ramp


def test_open_dataarray_is_lazy_and_equals_the_scene_reads(files, make_geotiff):
    import dask.array

    coarse = coarse_copy(make_geotiff, files["dsm_data"], "coarse.tif")
    kw = dict(bands=[2, 2], band_files=[files["ir"], coarse], align=True)
    da = open_dataarray(files["rgb"], chunks=32, **kw)
    assert isinstance(da.data, dask.array.Array) and da.data.chunksize[1:] == (32, 32)
    assert da.dims == ("band", "y", "x") and da.shape == (4, H, W)
    assert list(da.band_name.values) == ["band2", "band2", "ir:1", "coarse:1"]
    with rasterio.open(files["rgb"]) as src:
        assert da.rio.crs == src.crs and da.rio.transform() == src.transform
        assert da.x.values[0] == pytest.approx(src.transform.c + 0.5 * src.transform.a)
    with Scene(files["rgb"], **kw) as scene:
        expected, _ = scene.read(0, 0, H, W)
    np.testing.assert_array_equal(da.values.astype(np.float32), expected)  # warp included


def test_open_dataarray_masked_turns_nodata_into_nan(make_geotiff):
    data = np.arange(2 * 20 * 30, dtype=np.uint16).reshape(2, 20, 30) % 50 + 1
    data[:, :5] = 0
    da = open_dataarray(make_geotiff(data, nodata=0), masked=True)
    values = da.values
    assert np.isnan(values[:, :5]).all()
    np.testing.assert_array_equal(values[:, 5:], data[:, 5:])


# ---- the CLI ----------------------------------------------------------------------------

def rsseg(*args) -> int:
    return run([str(a) for a in args])


def test_cli_band_file_feeds_the_right_channel(pick_model, files, tmp_path, capsys):
    out = tmp_path / "classes.tif"
    assert rsseg("predict", files["rgb"], "--model", MODEL, "--weights", "random",
                 "--bands", "1,2", "--band-file", files["ir"], "--dsm", files["dsm"],
                 "-o", out, "--tile", 32, "--overlap", 8, "--no-progress") == 0
    assert "in_channels=4" in capsys.readouterr().err
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(1), files["ir_data"])


def test_cli_band_file_on_another_grid(pick_model, files, make_geotiff, tmp_path, capsys):
    coarse = coarse_copy(make_geotiff, files["ir_data"], "coarse_ir.tif")
    args = ("predict", files["rgb"], "--model", MODEL, "--weights", "random", "--bands", "1,2",
            "--band-file", f"{coarse}:1", "-o", tmp_path / "out.tif", "--no-progress",
            "--tile", 32)
    assert rsseg(*args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "coarse_ir.tif" in err[0] and "--align" in err[0]
    assert not (tmp_path / "out.tif").exists()
    assert rsseg(*args, "--align") == 0


@pytest.mark.parametrize("which", ["input", "probs", "band-file"])
def test_cli_outputs_never_overwrite_inputs_or_each_other(pick_model, files, tmp_path, capsys,
                                                          which):
    out = tmp_path / "out.tif"
    args = {"input": ["-o", files["rgb"], "--overwrite"],
            "probs": ["-o", out, "--probs", out],
            "band-file": ["-o", files["ir"], "--band-file", files["ir"], "--overwrite"]}[which]
    before = files["rgb"].read_bytes(), files["ir"].read_bytes()
    assert rsseg("predict", files["rgb"], "--model", MODEL, "--weights", "random",
                 *args) == 2
    assert "is also the" in capsys.readouterr().err
    assert (files["rgb"].read_bytes(), files["ir"].read_bytes()) == before
    assert not out.exists()


def test_cli_no_crs_is_a_warning_and_keeps_the_pixel_grid(pick_model, make_geotiff, tmp_path,
                                                          capsys):
    ids = np.random.default_rng(1).integers(0, 6, (3, 40, 50)).astype(np.uint8)
    scene = make_geotiff(ids, crs=None)
    out = tmp_path / "out.tif"
    assert rsseg("predict", scene, "--model", MODEL, "--weights", "random", "-o", out,
                 "--tile", 32, "--no-progress") == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "no CRS" in warnings[0] and "scene.tif" in warnings[0]
    with rasterio.open(out) as ds, rasterio.open(scene) as src:
        assert ds.crs is None and ds.transform == src.transform and ds.shape == src.shape
        np.testing.assert_array_equal(ds.read(1), ids[2])


@pytest.mark.parametrize("weights,needle", [
    ("notes.pt", "not a checkpoint file"),
    ("model.onnx", "--backend onnx"),
])
def test_cli_weights_that_are_not_a_checkpoint(pick_model, files, tmp_path, capsys, weights,
                                               needle):
    path = tmp_path / weights
    path.write_text("{'not': 'a checkpoint'}\n")
    assert rsseg("predict", files["rgb"], "--model", MODEL, "--weights", path,
                 "-o", tmp_path / "out.tif") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and weights in err[0] and needle in err[0], err
    assert not (tmp_path / "out.tif").exists()


def test_cli_output_that_is_a_directory(pick_model, files, tmp_path, capsys):
    (tmp_path / "out.tif").mkdir()
    assert rsseg("predict", files["rgb"], "--model", MODEL, "--weights", "random",
                 "-o", tmp_path / "out.tif", "--overwrite") == 1
    assert "is a directory" in capsys.readouterr().err


def _python_with_gdal() -> str | None:
    """A Python that has GDAL's bindings (this one, or the system's python3-gdal)."""
    for exe in (sys.executable, "/usr/bin/python3", shutil.which("python3")):
        if exe and subprocess.run([exe, "-c", f"import {COG_VALIDATOR}"],
                                  capture_output=True).returncode == 0:
            return exe
    return None


def test_gdal_validator_accepts_the_outputs(pick_model, make_geotiff, tmp_path):
    """GDAL's own validate_cloud_optimized_geotiff, on a scene with overviews."""
    python = _python_with_gdal()
    if python is None:
        pytest.skip("GDAL's Python COG validator (python3-gdal) is not installed")
    ids = np.random.default_rng(2).integers(0, 6, (3, 700, 600)).astype(np.uint8)
    scene = make_geotiff(ids)
    out, probs = tmp_path / "c.tif", tmp_path / "p.tif"
    assert rsseg("predict", scene, "--model", MODEL, "--weights", "random", "-o", out,
                 "--probs", probs, "--tile", 256, "--no-progress") == 0
    for path in (out, probs):
        check = subprocess.run([python, "-m", COG_VALIDATOR, str(path)],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "is a valid cloud optimized GeoTIFF" in check.stdout


def test_cli_all_nodata_scene_warns_and_writes_nodata(pick_model, make_geotiff, tmp_path, capsys):
    scene = make_geotiff(np.zeros((3, 50, 70), np.uint8), nodata=0)
    out = tmp_path / "out.tif"
    assert rsseg("predict", scene, "--model", MODEL, "--weights", "random", "-o", out,
                 "--tile", 32, "--no-progress") == 0
    assert "every pixel read is nodata" in capsys.readouterr().err
    with rasterio.open(out) as ds:
        assert (ds.read(1) == 255).all() and ds.shape == (50, 70)
