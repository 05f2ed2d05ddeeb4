"""`rsseg batch` jobs over time: existing outputs, --resume, --dry-run, a killed or
interrupted run, the job database and old manifests (real LocalCluster, real files).

One batch run over a 2x2 mosaic plus a corrupt tile is shared by several tests
(module fixture); a run that must be interrupted writes its own.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rsseg.batch.jobdb import JobDB

from conftest import record_reliability, start_rsseg
from mosaic_helpers import (T, MODEL, rsseg, write_mosaic_tiles, read, load_manifest,
                            partial_files, wait_for_first_recorded_tile, legacy_manifest,
                            copy_run, batch_mosaic)


@pytest.fixture(scope="module")
def mosaic_run(tmp_path_factory):
    """One batch run over a 2x2 mosaic and a corrupt tile (see mosaic_helpers.batch_mosaic)."""
    return batch_mosaic(tmp_path_factory.mktemp("batch"))


def test_existing_outputs_need_resume_or_overwrite(mosaic_run):
    out = mosaic_run["out"]
    before = load_manifest(out)
    assert rsseg("batch", mosaic_run["root"] / "city" / "tile_*.tif", "-o", out,
                 "--no-progress", *MODEL) == 1  # outputs exist: refused, nothing touched
    assert load_manifest(out) == before


def test_manifest_checksum_follows_inputs_and_settings(mosaic_run, tmp_path):
    out = mosaic_run["out"]
    data = load_manifest(out)
    db = JobDB.read(out)
    key = str(mosaic_run["tiles"][0])
    checksum = data["tiles"][key]["checksum"]
    assert db.is_done(key, checksum, out)
    assert not db.is_done(key, "0" * 64, out)
    db.close()
    # the tile's neighbours are part of its inputs (their pixels are its context)
    assert set(data["tiles"][key]["inputs"]) == {str(t) for t in mosaic_run["tiles"]}


def start_and_wait_for_a_tile(tmp_path, new_session: bool = False):
    """A batch over a fresh 2x2 mosaic in its own process, once it has recorded a tile:
    (process, tiles, out folder, tiles recorded so far, its child processes)."""
    city = tmp_path / "city"
    tiles = write_mosaic_tiles(city)
    out = tmp_path / "out"
    proc = start_rsseg(["batch", city / "*.tif", "-o", out, "--workers", 2, "--no-progress",
                        *MODEL], stdout=subprocess.DEVNULL, new_session=new_session)
    recorded, children = wait_for_first_recorded_tile(proc, out)
    return proc, tiles, out, recorded, children


def test_sigkill_then_resume_finishes_without_recomputing(mosaic_run, tmp_path):
    """Kill the batch process mid-run; --resume completes it; outputs equal an uninterrupted run."""
    import psutil

    proc, tiles, out, recorded, children = start_and_wait_for_a_tile(tmp_path)
    city = tmp_path / "city"
    if recorded:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert recorded, "the batch finished no tile before the deadline"
    # read again once the process is dead: a tile may have finished between the poll
    # that saw the first one and the kill
    done_at_kill = {k: v for k, v in load_manifest(out)["tiles"].items()
                    if v["status"] != "pending"}
    assert recorded.keys() <= done_at_kill.keys()
    assert len(done_at_kill) < len(tiles), "every tile finished before the kill"
    # Dask's worker processes exit with their parent
    psutil.wait_procs(children, timeout=30)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    # whatever sits at a final path is complete: it equals the uninterrupted run
    for tile in tiles:
        final = out / f"{tile.stem}.tif"
        if final.exists():
            np.testing.assert_array_equal(read(final), read(mosaic_run["out"] / final.name))
    assert rsseg("batch", city / "*.tif", "-o", out, "--workers", 2, "--resume",
                 "--no-progress", *MODEL) == 0
    after = load_manifest(out)
    assert len(after["runs"]) == 2
    first_run, second_run = after["runs"][0]["id"], after["runs"][1]["id"]
    for key, entry in after["tiles"].items():
        assert entry["status"] == "done"
        if key in done_at_kill:  # finished before the kill: kept, not recomputed
            assert entry["run_id"] == first_run
            assert entry["finished"] == done_at_kill[key]["finished"]
        else:
            assert entry["run_id"] == second_run
    for tile in tiles:
        np.testing.assert_array_equal(read(out / f"{tile.stem}.tif"),
                                      read(mosaic_run["out"] / f"{tile.stem}.tif"))
    np.testing.assert_array_equal(read(out / "mosaic.vrt"), read(mosaic_run["reference"]))
    assert partial_files(out) == []


# Ctrl-C reaches the whole process group (as a terminal sends it); SIGTERM only the batch
# process (as `kill PID` or a job scheduler sends it): both stop the job cleanly.
STOPS = {"sigint": (signal.SIGINT, True, 130, "rsseg: interrupted"),
         "sigterm": (signal.SIGTERM, False, 143, "rsseg: terminated")}


@pytest.mark.parametrize("how", sorted(STOPS))
def test_signal_stops_cleanly(how, mosaic_run, tmp_path, record_property):
    """Ctrl-C or SIGTERM mid-run: its exit status, one line on stderr ending the output,
    workers gone, no temporary file left, finished tiles recorded."""
    import psutil

    sig, whole_group, status, last_line = STOPS[how]
    proc, tiles, out, recorded, children = start_and_wait_for_a_tile(tmp_path, new_session=True)
    if recorded:
        (os.killpg if whole_group else os.kill)(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert recorded and len(recorded) < len(tiles), "no tile was running at the interrupt"
    lines = err.strip().splitlines()
    record_reliability(record_property, f"batch/{how}-mid-run", error=True,
                       clear=proc.returncode == status and lines[-1:] == [last_line],
                       partial=bool(partial_files(out)), line=" | ".join(lines))
    assert proc.returncode == status, err
    assert lines[-1] == last_line and "Traceback" not in err, err
    psutil.wait_procs(children, timeout=30)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert partial_files(out) == []
    after = {k: v for k, v in load_manifest(out)["tiles"].items() if v["status"] != "pending"}
    assert after and all(entry["status"] == "done" for entry in after.values())
    written = {p.name for p in out.glob("*.tif")}
    # Recorded tiles are there; a tile a worker finished while the job was stopping may be
    # there unrecorded (--resume redoes it): whatever sits at a final path is complete.
    assert {Path(key).name for key in after} <= written
    for name in written:
        np.testing.assert_array_equal(read(out / name), read(mosaic_run["out"] / name))


def test_a_run_that_recorded_no_tile_does_not_block_the_next(mosaic_run, tmp_path):
    """E.g. Ctrl-C while the workers start: the database holds the run and its pending
    tiles but no finished one, so the next run needs no --resume; nor when every tile
    failed; a database (or an old manifest.json) with a done tile still does."""
    from rsseg.batch.driver import BatchOptions, _check_existing
    from rsseg.batch.inputs import Tile
    from rsseg.errors import OutputError

    out = tmp_path / "out"
    out.mkdir()
    data = load_manifest(mosaic_run["out"])
    tiles = [Tile(str(t)) for t in mosaic_run["tiles"]]
    db = JobDB.open(out)
    run = dict(data["runs"][0], id="r1")
    db.start_run(run, data["settings"], [{"key": k, **{f: e[f] for f in ("checksum", "inputs",
                                                                          "outputs")}}
                                         for k, e in data["tiles"].items()])
    _check_existing(tiles, out, BatchOptions())
    # every tile failed (e.g. --device cuda on workers without a GPU): nothing to protect
    key, entry = next((k, e) for k, e in data["tiles"].items() if e["status"] == "done")
    db.record(key, dict(entry, status="failed", error="no GPU"))
    _check_existing(tiles, out, BatchOptions())
    db.record(key, entry)
    db.close()
    with pytest.raises(OutputError, match="batch.sqlite: .*--resume"):
        _check_existing(tiles, out, BatchOptions())
    (out / "batch.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(OutputError, match="--resume"):  # never overwritten silently
        _check_existing(tiles, out, BatchOptions())
    for name in ("batch.sqlite", "batch.sqlite-wal", "batch.sqlite-shm"):
        (out / name).unlink(missing_ok=True)
    failed = {k: dict(e, status="failed") for k, e in data["tiles"].items()}
    (out / "manifest.json").write_text(json.dumps(legacy_manifest(dict(data, tiles=failed))))
    _check_existing(tiles, out, BatchOptions())
    (out / "manifest.json").write_text(json.dumps(legacy_manifest(data)))
    with pytest.raises(OutputError, match="manifest.json: .*--resume"):
        _check_existing(tiles, out, BatchOptions())
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(OutputError, match="--resume"):
        _check_existing(tiles, out, BatchOptions())


def test_dry_run_prints_the_plan_and_writes_nothing(mosaic_run, tmp_path):
    city = mosaic_run["root"] / "city"
    fresh = tmp_path / "fresh"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert rsseg("batch", city / "*.tif", "-o", fresh, "--dry-run", *MODEL) == 0
    plan = stdout.getvalue().splitlines()  # the plan is the result: on stdout
    assert not fresh.exists()
    assert plan[0] == "rsseg: plan: 5 input tile(s), 0 unreadable (they will be reported as failed)"
    assert plan[1].startswith("rsseg: plan: 2 mosaic(s) on 1 grid(s); the largest has 4 tile(s), "
                              f"{2 * T} x {2 * T} px")
    # as many windows as the engine ran for the 2x2 tiles, plus 2 x 2 for the lone 96-px tile
    ran = sum(e["windows"] for e in load_manifest(mosaic_run["out"])["tiles"].values()
              if e["status"] == "done")
    assert ran == 25  # 2 or 3 windows (starts 0, 48, 96, 128) per axis and tile
    assert plan[2].startswith("rsseg: plan: 5 tile(s) to predict (0 failed before), 0 already "
                              f"done; {ran + 4} window(s) of 64 px, overlap 16")
    # on the finished job: the failed tile is to do again, the others are done
    out = mosaic_run["out"]
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert rsseg("batch", city / "*.tif", "-o", out, "--dry-run", "--vector", *MODEL) == 0
    plan = stdout.getvalue().splitlines()
    assert plan[2].startswith("rsseg: plan: 1 tile(s) to predict (1 failed before), 4 already done")
    assert any("of worker time at the" in line for line in plan)
    assert any("batch.sqlite records an earlier run: pass --resume" in line for line in plan)
    # test-time augmentation and zoom are settings: the finished tiles would be predicted again
    for setting in (("--tta", "flip"), ("--zoom", "1.25")):
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            assert rsseg("batch", city / "*.tif", "-o", out, "--dry-run", "--vector", *setting,
                         *MODEL) == 0
        assert stdout.getvalue().splitlines()[2].startswith(
            "rsseg: plan: 5 tile(s) to predict (1 failed before), 0 already done"), setting
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def dry_run_plan(*args) -> list[str]:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert rsseg("batch", *args, "--dry-run") == 0
    return stdout.getvalue().splitlines()


def test_zoom_auto_is_resolved_before_the_settings_are_compared(mosaic_run):
    """--zoom auto: weights without a training pixel size run at zoom 1, so the finished
    job's tiles count as done; the plan says what auto chose."""
    plan = dry_run_plan(mosaic_run["root"] / "city" / "*.tif", "-o", mosaic_run["out"],
                        "--vector", "--zoom", "auto", *MODEL)
    assert plan[2].startswith("rsseg: plan: 1 tile(s) to predict (1 failed before), 4 already "
                              "done"), plan
    assert "rsseg: plan: --zoom auto: the weights' training pixel size is not known in " \
           "metres; the windows are shown as they are (zoom 1)" in plan


def test_batch_size_auto_is_one_on_cpu_workers(mosaic_run):
    """--batch-size auto (the default) is 1 on CPU workers: the finished job (run with the
    default) counts its tiles done under auto and 1, and redoes them under 2."""
    city, out = mosaic_run["root"] / "city" / "*.tif", mosaic_run["out"]
    for size, done in (("auto", 4), ("1", 4), ("2", 0)):
        plan = dry_run_plan(city, "-o", out, "--vector", "--batch-size", size, *MODEL)
        assert f"(1 failed before), {done} already done" in plan[2], (size, plan[2])
    assert rsseg("batch", city, "-o", out, "--batch-size", "0", "--dry-run", *MODEL) == 2


def test_zoom_auto_from_the_tiles_pixel_size(tmp_path):
    """Tiles at 0.1125 m, bundled weights trained at 0.09 m: auto plans zoom 1.25, exactly
    as --zoom 1.25 does; tiles of two pixel sizes are one clear error."""
    from rsseg.synth.scene import write_synthetic_scene

    city = tmp_path / "city"
    city.mkdir()
    for k in range(2):
        write_synthetic_scene(city / f"t{k}.tif", 96, 96, seed=k, pixel_size=0.1125,
                              origin=(496000.0 + k * 96 * 0.1125, 5420000.0))
    model = ["--model", "baff_skipnet", "--weights", "isprs-synthetic", "--tile", "64",
             "--overlap", "16"]
    auto = dry_run_plan(city / "*.tif", "-o", tmp_path / "out", "--zoom", "auto", *model)
    explicit = dry_run_plan(city / "*.tif", "-o", tmp_path / "out", "--zoom", "1.25", *model)
    assert ", zoom 1.25" in auto[2] and auto[:4] == explicit[:4]
    assert "rsseg: plan: --zoom auto: 1.25 (scene 0.1125 m / training 0.09 m per pixel)" in auto
    assert not (tmp_path / "out").exists()

    write_synthetic_scene(city / "coarse.tif", 96, 96, seed=3, pixel_size=0.3,
                          origin=(497000.0, 5420000.0))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert rsseg("batch", city / "*.tif", "-o", tmp_path / "out", "--zoom", "auto",
                     "--dry-run", *model) == 1
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rsseg: error: ") and \
        "--zoom auto needs one pixel size for the whole batch" in lines[0], lines
    assert "0.3 m" in lines[0] and "0.1125 m" in lines[0]


def test_resume_migrates_an_old_manifest_and_skips_what_it_records(mosaic_run, tmp_path):
    """A folder written by rsseg before the database: --resume migrates manifest.json,
    recomputes nothing, and `rsseg batch-status` reads the migrated state."""
    data = load_manifest(mosaic_run["out"])
    out = copy_run(mosaic_run, tmp_path / "out")
    tiles = {str(t): data["tiles"][str(t)] for t in mosaic_run["tiles"]}
    (out / "manifest.json").write_text(json.dumps(legacy_manifest(dict(data, tiles=tiles))))
    city = mosaic_run["root"] / "city"
    assert rsseg("batch", city / "tile_*.tif", "-o", out, "--dry-run", "--vector", *MODEL) == 0
    assert (out / "manifest.json").exists()  # a dry run migrates nothing
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert rsseg("batch", city / "tile_*.tif", "-o", out, "--resume", "--vector",
                     "--no-progress", *MODEL) == 0
    assert "0 tile(s) predicted, 4 already done, 0 failed" in stderr.getvalue()
    assert not (out / "manifest.json").exists() and (out / "manifest.json.migrated").exists()
    after = load_manifest(out)
    assert {k: v["finished"] for k, v in after["tiles"].items()} == {
        k: v["finished"] for k, v in tiles.items()}
    assert len(after["runs"]) == 2
    np.testing.assert_array_equal(read(out / "mosaic.vrt"), read(mosaic_run["reference"]))
