"""Commands stopped or failing in a real ``rsseg`` process (issue 9): Ctrl-C and SIGTERM
mid-run give their exit status and one stderr line and leave nothing at the final paths; a
process started with SIGINT ignored (``nohup cmd &``) keeps ignoring it; tracebacks only with
--debug. Each stop is a row of the reliability matrix (see test_bad_inputs.py).
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio

from conftest import RSSEG, read_until_progress, record_reliability, rsseg_env, start_rsseg
from reliability_inputs import FAST_NET, make_input_files


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_input_files(tmp_path_factory.mktemp("inputs"))


def _train_long(d, f):
    """Long enough epochs that a signal lands mid-run, after the first progress line."""
    return ("train", "--images", f["big"], "--labels", f["big_labels"], "--val-images",
            f["big"], "--val-labels", f["big_labels"], "-o", d / "run", "--model", FAST_NET,
            "--crop", "64", "--batch-size", "2", "--epochs", "3", "--steps-per-epoch", "200",
            "--min-class-pixels", "0", "--device", "cpu", "--progress-json")


SIGNAL_RUNS = {
    "predict": lambda d, f: ("predict", f["big"], "-o", d / "c.tif", "--model", FAST_NET,
                             "--weights", f["ckpt_3bands"], "--tile", "64", "--overlap", "16",
                             "--probs", d / "p.tif", "--progress-json"),
    "synth": lambda d, f: ("synth", "-o", d / "s.tif", "--size", "3000x3000", "--labels",
                           d / "l.tif", "--progress-json"),
    "train": _train_long,
}
# What each signal must give: exit status and the one stderr line (docs/errors.md).
SIGNALS = {"sigint": (signal.SIGINT, 130, "rsseg: interrupted"),
           "sigterm": (signal.SIGTERM, 143, "rsseg: terminated")}


@pytest.fixture(scope="module")
def big_scene(tmp_path_factory):
    from conftest import write_geotiff

    d = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (3, 1024, 1024)).astype(np.uint8)
    labels = rng.integers(0, 6, (1024, 1024)).astype(np.uint8)
    return {"big": write_geotiff(d / "big.tif", data, tiled=True),
            "big_labels": write_geotiff(d / "big_labels.tif", labels, tiled=True, nodata=255)}


def _leftovers(out: Path) -> list[str]:
    """Anything in ``out`` a stopped run may not leave: every file (a train run directory
    may stay, empty: it holds no best.pt, last.pt or log yet)."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


@pytest.mark.parametrize("how", sorted(SIGNALS))
@pytest.mark.parametrize("command", sorted(SIGNAL_RUNS))
def test_signal_mid_run(command, how, files, big_scene, tmp_path, record_property):
    """Ctrl-C / SIGTERM mid-run: its exit status, one line, nothing at the final paths."""
    sig, status, line = SIGNALS[how]
    out = tmp_path / "out"
    out.mkdir()
    proc = start_rsseg(SIGNAL_RUNS[command](out, {**files, **big_scene}), cwd=tmp_path)
    try:
        # train: in an epoch, past the scan of the scenes (the run directory exists then)
        assert read_until_progress(proc, "epoch" if command == "train" else ""), proc.stderr.read()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [text for text in err.splitlines() if text.strip()]
    clear = proc.returncode == status and lines == [line]
    left = _leftovers(out)
    record_reliability(record_property, f"{command}/{how}-mid-run", error=True, clear=clear,
            partial=bool(left), line=" | ".join(lines))
    assert proc.returncode == status and lines == [line], err
    assert not left, left


def test_sigint_ignored_at_start_stays_ignored(files, big_scene, tmp_path):
    """POSIX: a process started with SIGINT ignored (``nohup cmd &``) keeps ignoring it; it
    finishes its work. SIGTERM still stops it cleanly."""
    out = tmp_path / "out"
    out.mkdir()
    argv = ("synth", "-o", out / "s.tif", "--size", "600x600", "--progress-json")
    proc = start_rsseg(argv, cwd=tmp_path, sigint="ignored")
    assert read_until_progress(proc), proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and err == "", err
    with rasterio.open(out / "s.tif") as ds:
        assert ds.shape == (600, 600)
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    proc = start_rsseg(SIGNAL_RUNS["synth"](stopped, big_scene), cwd=tmp_path, sigint="ignored")
    assert read_until_progress(proc), proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and err.splitlines() == ["rsseg: terminated"], err
    assert _leftovers(stopped) == []


@pytest.mark.parametrize("switch", ["--debug", "RSSEG_DEBUG=1"])
def test_traceback_only_with_debug(files, switch):
    argv = RSSEG + [str(a) for a in ("score", files["text"], files["labels"], "--no-progress")]
    quiet = subprocess.run(argv, capture_output=True, text=True, env=rsseg_env())
    if switch == "--debug":
        loud = subprocess.run(argv + [switch], capture_output=True, text=True, env=rsseg_env())
    else:
        loud = subprocess.run(argv, capture_output=True, text=True,
                              env=rsseg_env(RSSEG_DEBUG="1"))
    assert quiet.returncode == loud.returncode == 1
    assert quiet.stderr.count("\n") == 1 and "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr and loud.stderr.splitlines()[-1] == quiet.stderr.strip()
