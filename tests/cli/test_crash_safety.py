"""SIGKILL mid-run leaves nothing at the final path; a rerun is byte-identical (issue 9).

``rsseg predict`` and ``rsseg vectorize`` run as real processes on inputs big
enough to take a few seconds; each is killed (SIGKILL: no cleanup can run) right
after its first progress JSON line. The final paths must not exist. Running the
same command again, in the same directory with the dead run's temporary files
still there, must give files byte-identical to those of an uninterrupted run.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import RSSEG, read_until_progress, rsseg_env, start_rsseg, write_geotiff

NET = "baff_skipnet"


def _run(argv, cwd) -> None:
    done = subprocess.run(RSSEG + [str(a) for a in argv], cwd=cwd, env=rsseg_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def _kill_after_first_progress(argv, cwd) -> None:
    """Start ``rsseg``, SIGKILL it as soon as it reports progress, wait for it to die."""
    proc = start_rsseg(argv, cwd=cwd, stderr=subprocess.DEVNULL)
    try:
        if not read_until_progress(proc):
            pytest.fail("the command ended without reporting progress")
        assert proc.poll() is None, "the run finished before it could be killed; use a bigger input"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _same_bytes(a: Path, b: Path) -> None:
    assert a.read_bytes() == b.read_bytes(), f"{a} and {b} differ"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    from rsseg.checkpoint import Checkpoint, Normalization
    from rsseg.models import create_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "net.pt"
    Checkpoint.from_model(create_model(NET, in_channels=3, num_classes=6),
                          bands=Normalization(["b1", "b2", "b3"], [0.0] * 3, [255.0] * 3),
                          tile={"size": 64, "overlap": 16}).save(path)
    return path


def test_sigkill_during_predict(tmp_path, checkpoint):
    rng = np.random.default_rng(5)
    scene = write_geotiff(tmp_path / "scene.tif",
                          rng.integers(0, 255, (3, 768, 768)).astype(np.uint8), tiled=True)
    argv = lambda d: ("predict", scene, "-o", d / "classes.tif", "--probs", d / "conf.tif",  # noqa: E731
                      "--model", NET, "--weights", checkpoint, "--progress-json")
    ref, work = tmp_path / "ref", tmp_path / "work"
    ref.mkdir()
    work.mkdir()
    _run(argv(ref), tmp_path)
    _kill_after_first_progress(argv(work), tmp_path)
    assert not (work / "classes.tif").exists() and not (work / "conf.tif").exists()
    _run(argv(work), tmp_path)
    for name in ("classes.tif", "conf.tif"):
        _same_bytes(ref / name, work / name)


def test_sigkill_during_vectorize(tmp_path):
    from rsseg.synth.scene import write_synthetic_scene

    write_synthetic_scene(tmp_path / "scene.tif", 1500, 1500, seed=3,
                          labels_path=tmp_path / "labels.tif")
    argv = lambda d: ("vectorize", tmp_path / "labels.tif", "-o", d / "classes.gpkg",  # noqa: E731
                      "--block-size", "256", "--progress-json")
    ref, work = tmp_path / "ref", tmp_path / "work"
    ref.mkdir()
    work.mkdir()
    _run(argv(ref), tmp_path)
    _kill_after_first_progress(argv(work), tmp_path)
    assert not (work / "classes.gpkg").exists()
    _run(argv(work), tmp_path)
    _same_bytes(ref / "classes.gpkg", work / "classes.gpkg")
    _same_bytes(ref / "classes.qml", work / "classes.qml")
