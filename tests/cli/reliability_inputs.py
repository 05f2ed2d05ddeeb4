"""Bad (and awkward) inputs for the reliability tests, written once per session.

Every file is real: GeoTIFFs written by rasterio, checkpoints saved by
:class:`rsseg.checkpoint.Checkpoint`, a pickle that would run code if loaded.
Also the places outputs go wrong: a read-only directory and a nearly full file
system (tiny tmpfs mounts when this process may mount them, else fallbacks that
say why).
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from conftest import write_geotiff

SCENE_SHAPE = (3, 48, 64)  # bands, rows, cols: a few 32-px windows
FAST_NET = "baff_skipnet"  # the smallest registered network
# A 3-band checkpoint with its normalisation and 32-px windows: predict prints nothing but errors.
PREDICT_FAST = ("--model", FAST_NET, "--weights", "{ckpt_3bands}", "--no-progress")


class EvilPayload:
    """Unpickling this calls ``Path.touch(marker)``: a stand-in for arbitrary code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _scene(rng) -> np.ndarray:
    return rng.integers(1, 255, SCENE_SHAPE).astype(np.uint8)


def _labels(rng, values: int = 6) -> np.ndarray:
    return rng.integers(0, values, SCENE_SHAPE[1:]).astype(np.uint8)


def _truncated_copy(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def _corrupt_copy(src: Path, dst: Path) -> Path:
    """A deflate-compressed copy whose last block's bytes are garbage (same size: not truncated)."""
    import rasterio

    with rasterio.open(src) as ds:
        profile = dict(ds.profile, compress="deflate", tiled=True, blockxsize=16, blockysize=16)
        data = ds.read()
        band, last = ds.count, f"{-(-ds.width // 16) - 1}_{-(-ds.height // 16) - 1}"
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
    with rasterio.open(dst) as ds:
        offset = int(ds.get_tag_item(f"BLOCK_OFFSET_{last}", "TIFF", bidx=band))
        size = int(ds.get_tag_item(f"BLOCK_SIZE_{last}", "TIFF", bidx=band))
    raw = bytearray(dst.read_bytes())
    raw[offset:offset + size] = b"\xff" * size
    dst.write_bytes(bytes(raw))
    return dst


def _checkpoints(d: Path) -> dict[str, Path]:
    import torch
    from rsseg.models import create_model

    from rsseg.checkpoint import Checkpoint, Normalization
    from rsseg.classes import ClassScheme

    torch.manual_seed(0)
    net4 = create_model(FAST_NET, in_channels=4, num_classes=6)
    Checkpoint.from_model(net4, tile={"size": 32, "overlap": 8}).save(d / "ckpt_4bands.pt")
    net3 = create_model(FAST_NET, in_channels=3, num_classes=6)
    ok = Checkpoint.from_model(net3, tile={"size": 32, "overlap": 8},
                               bands=Normalization(["b1", "b2", "b3"], [0.0] * 3, [255.0] * 3))
    ok.save(d / "ckpt_3bands.pt")
    # Weights of a 6-class network under a configuration that says 5 classes.
    misfit = Checkpoint(FAST_NET, {**ok.model_config, "num_classes": 5}, ok.state_dict,
                        classes=ClassScheme(tuple("abcde"), ((0, 0, 0),) * 5))
    misfit.save(d / "ckpt_misfit.pt")
    # A 6-class network whose class list names 4 classes.
    wrong_names = Checkpoint(FAST_NET, dict(ok.model_config), ok.state_dict,
                             classes=ClassScheme(tuple("abcd"), ((0, 0, 0),) * 4))
    wrong_names.save(d / "ckpt_4names.pt")
    (d / "not_ckpt.pt").write_text("these are not weights\n")
    with open(d / "evil.pt", "wb") as f:
        pickle.dump({"format": "rsseg-checkpoint", "x": EvilPayload(d / "PWNED")}, f)
    torch.save({"format": "rsseg-checkpoint", "x": EvilPayload(d / "PWNED")}, d / "evil_zip.pt")
    return {k: d / f"{k}.pt" for k in ("ckpt_4bands", "ckpt_3bands", "ckpt_misfit",
                                       "ckpt_4names", "not_ckpt", "evil", "evil_zip")}


def _rgb_labels_unknown(d: Path, rng) -> Path:
    from rsseg.classes import ISPRS_COLOURS

    ids = _labels(rng)
    rgb = np.asarray(ISPRS_COLOURS, np.uint8)[ids].transpose(2, 0, 1).copy()
    rgb[:, :5, :5] = np.array([12, 34, 56], np.uint8)[:, None, None]  # no ISPRS colour
    return write_geotiff(d / "labels_rgb_unknown.tif", rgb)


def make_inputs(d: Path) -> dict[str, Path]:
    """All input files, by name."""
    from affine import Affine

    rng = np.random.default_rng(9)
    d.mkdir(parents=True, exist_ok=True)
    f: dict[str, Path] = {}
    f["scene"] = write_geotiff(d / "scene.tif", _scene(rng), tiled=False)
    f["labels"] = write_geotiff(d / "labels.tif", _labels(rng), nodata=255)
    f["missing"] = d / "does_not_exist.tif"
    f["empty"] = d / "empty.tif"
    f["empty"].write_bytes(b"")
    f["text"] = d / "text.tif"
    f["text"].write_text("this is a text file, not a GeoTIFF\n")
    big = write_geotiff(d / "big_for_truncation.tif",
                        rng.integers(0, 255, (3, 256, 256)).astype(np.uint8))
    f["truncated"] = _truncated_copy(big, d / "truncated.tif")
    f["nocrs"] = write_geotiff(d / "nocrs.tif", _scene(rng), crs=None,
                               transform=Affine(0.5, 0, 1000.0, 0, -0.5, 2000.0))
    nan = rng.random(SCENE_SHAPE).astype(np.float32)
    nan[:, 0:4, 0:4] = np.nan
    nan[:, 10:14, 20:24] = np.inf
    nan[:, 20:22, 30:32] = -np.inf
    f["nan_inf"] = write_geotiff(d / "nan_inf.tif", nan)
    f["all_nodata"] = write_geotiff(d / "all_nodata.tif", np.zeros(SCENE_SHAPE, np.uint8),
                                    nodata=0)
    f["small"] = write_geotiff(d / "small.tif", rng.integers(1, 255, (3, 10, 13)).astype(np.uint8))
    f["one_pixel"] = write_geotiff(d / "one_pixel.tif", np.full((3, 1, 1), 77, np.uint8))
    f["four_bands"] = write_geotiff(d / "four_bands.tif",
                                    rng.integers(1, 255, (4,) + SCENE_SHAPE[1:]).astype(np.uint8))
    shifted = Affine(0.5, 0, 500100.0, 0, -0.5, 5300000.0)
    f["labels_other_grid"] = write_geotiff(d / "labels_other_grid.tif", _labels(rng),
                                           transform=shifted)
    f["dsm_other_grid"] = write_geotiff(d / "dsm_other_grid.tif",
                                        rng.random(SCENE_SHAPE[1:]).astype(np.float32),
                                        transform=shifted)
    f["labels_unknown"] = write_geotiff(d / "labels_unknown.tif", _labels(rng, values=9))
    f["labels_rgb_unknown"] = _rgb_labels_unknown(d, rng)
    f["float_raster"] = write_geotiff(d / "float_raster.tif",
                                      rng.random(SCENE_SHAPE[1:]).astype(np.float32))
    f.update(_checkpoints(d))
    f["not_onnx"] = d / "not_a_model.onnx"
    f["not_onnx"].write_text("not an ONNX model\n")
    f["not_a_dir"] = d / "NOT_A_DIR"
    f["not_a_dir"].write_text("a file where a directory is expected\n")
    f.update(_scheme_inputs(d))
    return f


def _scheme_inputs(d: Path) -> dict[str, Path]:
    """Class-scheme files that are wrong, a label of another size, an empty dataset folder."""
    import json

    f: dict[str, Path] = {}
    classes = [{"name": "a", "colour": "#102030"}, {"name": "b", "colour": "#405060"}]
    bad = {"scheme_not_json": "{\"classes\": [",
           "scheme_dup_names": {"classes": [classes[0], {**classes[1], "name": "A"}]},
           "scheme_dup_colours": {"classes": [classes[0], {**classes[1], "colour": "#102030"}]},
           "scheme_too_many": {"classes": [{"name": f"c{i}", "colour": f"#{i:06X}", "value": 0}
                                           for i in range(256)]}}
    for name, content in bad.items():
        f[name] = d / f"{name}.json"
        f[name].write_text(content if isinstance(content, str) else json.dumps(content))
    rng = np.random.default_rng(13)
    f["labels_smaller"] = write_geotiff(d / "labels_smaller.tif",
                                        rng.integers(0, 6, (40, 64)).astype(np.uint8))
    f["empty_dataset"] = d / "empty_dataset"
    (f["empty_dataset"] / "images").mkdir(parents=True)
    (f["empty_dataset"] / "masks").mkdir()
    return f


def make_class_rasters(d: Path, f: dict[str, Path]) -> None:
    """Class rasters written by ``rsseg predict`` itself (scene, no-CRS, all-nodata, 1x1)."""
    from rsseg.cli import run

    fast = [a.format(**f) for a in PREDICT_FAST]
    for name, src in (("classes", "scene"), ("classes_all_nodata", "all_nodata"),
                      ("classes_nocrs", "nocrs"),
                      ("classes_one_pixel", "one_pixel"), ("probs_source", "small")):
        out = d / f"{name}.tif"
        assert run(["predict", str(f[src]), "-o", str(out), *fast]) == 0, name
        f[name] = out
    # Truncated copies whose headers still open: the damage shows only when pixels are read.
    for name in ("scene", "labels", "classes"):
        f[f"truncated_{name}"] = _truncated_copy(f[name], d / f"truncated_{name}.tif")
    f["corrupt_scene"] = _corrupt_copy(f["scene"], d / "corrupt_scene.tif")
    f["corrupt_classes"] = _corrupt_copy(f["classes"], d / "corrupt_classes.tif")
    f["probs_other_grid"] = d / "probs_other_grid.tif"
    assert run(["predict", str(f["small"]), "-o", str(d / "_c.tif"), "--probs",
                str(f["probs_other_grid"]), *fast]) == 0


# ---- places where writing fails --------------------------------------------------------------

@dataclass
class Mount:
    """A directory outputs go to, and how it was made (said in the test report)."""

    path: Path
    how: str
    mounted: bool = False

    def release(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)


def _try_mount(path: Path, options: str) -> bool:
    """Mount a tmpfs (root only); RSSEG_TEST_NO_MOUNT=1 tries the fallbacks instead."""
    if os.environ.get("RSSEG_TEST_NO_MOUNT") == "1":
        return False
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


def read_only_dir(base: Path) -> Mount:
    """A directory no output can be written to.

    Root ignores permission bits, so as root a read-only tmpfs is mounted; when
    mounting is not allowed, root gets a path under a regular file instead
    (NOT_A_DIR/...), and other users a chmod 555 directory.
    """
    path = base / "read_only"
    if _try_mount(path, "ro,size=64k"):
        return Mount(path, "read-only tmpfs mount", mounted=True)
    if os.geteuid() != 0:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o555)
        return Mount(path, "chmod 555 directory")
    path.write_text("not a directory\n")
    return Mount(path, "a regular file in place of the directory (root, no mount allowed)")


def full_disk(base: Path, size_kb: int = 64) -> Mount | None:
    """A tiny tmpfs filled to the last block (by FILLER), or None where none can be mounted."""
    path = base / "full_disk"
    if not _try_mount(path, f"size={size_kb}k"):
        return None
    with open(path / "FILLER", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError:  # ENOSPC: full
            pass
    return Mount(path, f"{size_kb} KiB tmpfs mount, filled up", mounted=True)


def make_input_files(d: Path) -> dict[str, Path]:
    """Every input of the bad-input rows (:func:`make_inputs`, then the class rasters), made
    with one torch thread."""
    import torch

    torch.set_num_threads(1)
    f = make_inputs(d)
    make_class_rasters(d, f)
    return f
