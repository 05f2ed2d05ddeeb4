"""The shared contracts: atomic outputs, checkpoints, CLI error mapping, progress lines."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess

import pytest
import torch
from rsseg.models import create_model, register_model, unregister_model

from rsseg.atomic import atomic_output, check_output_path
from rsseg.checkpoint import Checkpoint, Normalization, load_checkpoint
from rsseg.classes import ISPRS
from rsseg.cli import run
from rsseg.errors import ModelError, OutputError
from rsseg.progress import Progress

from conftest import RSSEG, rsseg_env


@pytest.fixture
def tiny_model_name():
    name = "_test_core_tiny"

    @register_model(name, listed=False)
    def _build(in_channels, num_classes, width=4):
        return torch.nn.Sequential(torch.nn.Conv2d(in_channels, width, 3, padding=1),
                                   torch.nn.ReLU(), torch.nn.Conv2d(width, num_classes, 1))

    yield name
    unregister_model(name)


def test_atomic_output_renames_on_success(tmp_path):
    final = tmp_path / "out.txt"
    with atomic_output(final) as tmp:
        assert tmp.parent == final.parent and tmp != final
        tmp.write_text("done")
        assert not final.exists()
    assert final.read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_output(final) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_refuses_existing_without_overwrite(tmp_path):
    final = tmp_path / "out.txt"
    final.write_text("old")
    with pytest.raises(OutputError, match="--overwrite"):
        with atomic_output(final):
            pass
    with atomic_output(final, overwrite=True) as tmp:
        tmp.write_text("new")
    assert final.read_text() == "new"


def test_atomic_output_creates_missing_folders_and_removes_them_on_failure(tmp_path):
    # The one rule for every command: missing output folders are created when the output is
    # written; a failed write leaves no folder it created behind.
    with pytest.raises(RuntimeError):
        with atomic_output(tmp_path / "a" / "b" / "out.txt"):
            raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []
    with atomic_output(tmp_path / "a" / "b" / "out.txt") as tmp:
        tmp.write_text("done")
    assert (tmp_path / "a" / "b" / "out.txt").read_text() == "done"


def test_output_under_a_file_is_refused_before_work(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match="is a file"):
        check_output_path(tmp_path / "f" / "sub" / "out.tif", overwrite=False)


def test_checkpoint_roundtrip_weights_only(tmp_path, tiny_model_name):
    torch.manual_seed(0)
    model = create_model(tiny_model_name, in_channels=4, num_classes=6, width=5)
    norm = Normalization(["IR", "R", "G", "DSM"], [1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0])
    ckpt = Checkpoint.from_model(model, classes=ISPRS, bands=norm, note="synthetic")
    path = tmp_path / "m.pt"
    ckpt.save(path)
    raw = torch.load(path, weights_only=True)  # must not need any class to unpickle
    assert raw["model"] == {"name": tiny_model_name,
                            "config": {"in_channels": 4, "num_classes": 6, "width": 5}}
    back = load_checkpoint(path)
    assert back.bands == norm and back.classes == ISPRS and back.note == "synthetic"
    rebuilt = back.build_model()
    x = torch.randn(1, 4, 8, 8)
    model.eval()
    assert torch.equal(model(x), rebuilt(x))


def test_checkpoint_refuses_code_pickle(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(ModelError, match="refused"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_checkpoint_rejects_non_checkpoints(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ModelError, match="not a checkpoint"):
        load_checkpoint(text)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(ModelError, match="not an rsseg checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_of_other_shape_is_a_clear_error(tmp_path, tiny_model_name):
    model = create_model(tiny_model_name, in_channels=3, num_classes=6)
    ckpt = Checkpoint.from_model(model)
    ckpt.model_config["num_classes"] = 7
    with pytest.raises(ModelError, match="weights do not fit"):
        ckpt.build_model()


def test_cli_version_and_unknown_command():
    # main() in a child: in this process it would leave CPL_LOG, its warning printer and its
    # SIGTERM handler behind for the tests that follow.
    from rsseg import __version__

    done = subprocess.run(RSSEG + ["--version"], capture_output=True, text=True, env=rsseg_env())
    assert (done.returncode, done.stdout, done.stderr) == (0, f"rsseg, version {__version__}\n", "")
    done = subprocess.run(RSSEG + ["no-such-command"], capture_output=True, text=True,
                          env=rsseg_env())
    assert done.returncode == 2 and "No such command 'no-such-command'" in done.stderr
    assert run(["no-such-command"]) == 2


def test_progress_json_lines():
    buf = io.StringIO()
    with Progress(3, "predict", mode="json", unit="window", stream=buf) as p:
        for _ in range(3):
            p.update()
        p.log("hello")
    events = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert events[0] == {"event": "start", "task": "predict", "total": 3, "unit": "window"}
    assert any(e["event"] == "progress" and e["done"] == 3 and e["fraction"] == 1.0 for e in events)
    assert {"event": "log", "message": "hello"} in events
    assert events[-1]["event"] == "end" and events[-1]["done"] == 3


def test_cli_blend_names_are_the_tiling_modes():
    from rsseg.tiling import BLEND_MODES

    from rsseg.cli.options import BLENDS

    assert tuple(BLENDS) == tuple(BLEND_MODES)


def test_progress_bar_lands_on_total_and_shows_mpx_per_second(capsys):
    # 7 x 0.1 Mpx sums to 0.7000000000000001 in floats: tqdm used to warn "clamping frac to
    # range [0, 1]" and show a negative ETA; below 1 Mpx/s it printed s/Mpx.
    import time
    import warnings

    from rsseg.progress import Progress

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bar = Progress(7, "predict", mode="bar", mpx_per_unit=0.1)
        for _ in range(7):
            time.sleep(0.02)  # 0.1 Mpx per 20 ms: 5 Mpx/s
            bar.update(1)
        assert bar._bar.n == bar._bar.total
        bar.close()
    err = capsys.readouterr().err
    assert "0.7/0.7 Mpx" in err and "Mpx/s" in err
    assert "s/Mpx" not in err and "-" not in err.rsplit("[", 1)[1]

    slow = Progress(1, "predict", mode="bar", mpx_per_unit=0.001)
    time.sleep(0.05)
    slow.update(1)
    slow.close()
    err = capsys.readouterr().err
    assert "Mpx/s" in err and "s/Mpx" not in err


def test_completion_lines_and_quiet(tmp_path, capsys):
    # vectorize and score end with one line: what was written, classes, time and Mpx/s;
    # --quiet drops it (and nothing else).
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from rsseg.cli import run

    labels = np.zeros((64, 80), np.uint8)
    labels[10:30, 10:50] = 1
    profile = dict(driver="GTiff", width=80, height=64, count=1, dtype="uint8", nodata=255,
                   crs="EPSG:32632", transform=from_origin(500000, 5400000, 0.5, 0.5))
    with rasterio.open(tmp_path / "c.tif", "w", **profile) as ds:
        ds.write(labels, 1)
    assert run(["vectorize", str(tmp_path / "c.tif"), "-o", str(tmp_path / "c.gpkg"),
                "--no-progress"]) == 0
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"wrote 2 polygons to {tmp_path / 'c.gpkg'}") and "Mpx/s" in line
    assert "impervious_surfaces 1, building 1" in line
    assert run(["score", str(tmp_path / "c.tif"), str(tmp_path / "c.tif"), "--no-progress",
                "--json", str(tmp_path / "r.json")]) == 0
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("scored 1 pair(s), 5,120 px (mIoU 100.00)") and "Mpx/s" in line
    assert "classes present: impervious_surfaces, building;" in line and "r.json" in line
    for argv in (["vectorize", str(tmp_path / "c.tif"), "-o", str(tmp_path / "d.gpkg")],
                 ["score", str(tmp_path / "c.tif"), str(tmp_path / "c.tif")]):
        assert run([*argv, "--no-progress", "--quiet"]) == 0
        assert capsys.readouterr().err == ""


PROBE = """
import os, sys
import rsseg.cli
print("numpy" in sys.modules)
try:
    rsseg.cli.main(["--version"])
except SystemExit:
    pass
print(os.environ.get("OPENBLAS_NUM_THREADS"))
"""


@pytest.mark.parametrize("preset, expected", [(None, "1"), ("3", "3")])
def test_cli_keeps_numpy_blas_to_one_thread_unless_asked(preset, expected):
    """The CLI sets OPENBLAS_NUM_THREADS before NumPy is imported (its spinning threads
    cost CPU and rsseg calls no NumPy BLAS); a user's own setting wins."""
    env = {k: v for k, v in rsseg_env().items() if k != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    out = subprocess.run([RSSEG[0], "-c", PROBE], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    assert out == ["False", "rsseg,", "version", out[3], expected], out
