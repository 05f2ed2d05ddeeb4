"""The batch job database: atomic per-tile commits (kill -9), migration of the old JSON
manifest, `rsseg batch-status`, and the driver's bounded task window."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from rsseg.batch.jobdb import JobDB, now
from rsseg.cli import run as rsseg_run
from rsseg.errors import OutputError

N = 20_000
WRITER = """
import sys
from rsseg.batch.jobdb import JobDB, now
db = JobDB.open(sys.argv[1])
n = int(sys.argv[2])
run = {"id": "r1", "started": now(), "pid": 0, "workers": 1, "threads": 1,
       "scheduler": "local", "tiles": n}
db.start_run(run, {"model": "m"}, [{"key": f"k{i:05d}", "checksum": f"c{i}",
                                    "inputs": {"a": "1:2"}, "outputs": {"classes": f"k{i}.tif"}}
                                   for i in range(n)])
print("planned", flush=True)
for i in range(n):
    db.record(f"k{i:05d}", {"status": "done", "checksum": f"c{i}", "inputs": {"a": "1:2"},
                            "outputs": {"classes": f"k{i}.tif"}, "run_id": "r1",
                            "finished": now(), "seconds": 0.5, "windows": 4, "attempts": 1,
                            "worker": "w" * 200, "pid": 7})
print("finished", flush=True)
"""


def kill_writer(folder, delay: float) -> str:
    """Run the writer, SIGKILL it ``delay`` s after it planned (or while it plans, for a
    negative delay); returns what it printed."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(N)],
                            stdout=subprocess.PIPE, text=True)
    if delay >= 0:
        assert proc.stdout.readline() == "planned\n"
    time.sleep(abs(delay))
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    return out


@pytest.mark.parametrize("delay", [-0.05, 0.0, 0.05, 0.2, 0.4])
def test_kill_9_at_any_moment_leaves_a_consistent_database(tmp_path, delay):
    kill_writer(tmp_path, delay)
    conn = sqlite3.connect(tmp_path / "batch.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    db = JobDB.open(tmp_path)  # reopens for writing after the crash
    tiles = db.tiles()
    runs = db.runs()
    if not runs:  # killed before the plan's transaction committed: nothing of it
        assert tiles == {} and delay < 0
        return
    assert len(runs) == 1 and len(tiles) == N  # the plan is all there or not at all
    statuses = [tiles[f"k{i:05d}"]["status"] for i in range(N)]
    done = statuses.count("done")
    # Tiles completed in order: a prefix is done, the rest pending; no half-written row
    assert statuses == ["done"] * done + ["pending"] * (N - done)
    for i in range(done):
        entry = tiles[f"k{i:05d}"]
        assert entry["checksum"] == f"c{i}" and entry["outputs"] == {"classes": f"k{i}.tif"}
        assert entry["windows"] == 4 and entry["worker"] == "w" * 200 and entry["attempts"] == 1
    assert done < N, "the writer finished before the kill"
    if delay >= 0.2:
        assert 0 < done, "the kill came before any tile was recorded"
    db.record("k00000", {"status": "failed", "checksum": "x", "inputs": {}, "outputs": {},
                         "error": "later"})
    assert db.tiles("failed")["k00000"]["error"] == "later"
    db.close()


def test_a_tile_costs_one_small_transaction(tmp_path):
    """No rewrite of the rest: the database grows by about one row per recorded tile."""
    db = JobDB.open(tmp_path)
    db.start_run({"id": "r", "started": now(), "pid": 1, "workers": 1, "threads": 1,
                  "scheduler": "local", "tiles": 0}, {}, [])
    changes = []
    for i in range(200):
        before = db.conn.total_changes
        db.record(f"k{i}", {"status": "done", "checksum": "c", "inputs": {}, "outputs": {}})
        changes.append(db.conn.total_changes - before)
    assert set(changes) == {1}
    db.close()


def legacy(tmp_path, version=1, tiles=None) -> dict:
    data = {"format": "rsseg-batch-manifest", "version": version,
            "settings": {"model": "bafnet", "tile": 64}, "settings_hash": "h",
            "runs": [{"id": "old", "started": "2026-01-01T00:00:00.000+00:00", "pid": 1,
                      "workers": 2, "threads": 1, "scheduler": "local", "tiles": 2,
                      "timings": {"plan": 0.1}}],
            "tiles": tiles if tiles is not None else {
                "/a/t1.tif": {"status": "done", "checksum": "c1", "inputs": {"/a/t1.tif": "1:2"},
                              "outputs": {"classes": "t1.tif"}, "run_id": "old",
                              "finished": "2026-01-01T00:01:00.000+00:00", "seconds": 1.5,
                              "windows": 9, "attempts": 1, "worker": "tcp://w", "pid": 5},
                "/a/t2.tif": {"status": "failed", "checksum": "c2", "inputs": {}, "outputs": {},
                              "error": "/a/t2.tif: broken", "attempts": 2, "run_id": "old"}},
            "mosaic": {"vrt": "mosaic.vrt", "checksum": "m"}}
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    return data


def test_old_manifest_is_migrated_once(tmp_path):
    data = legacy(tmp_path)
    read = JobDB.read(tmp_path)  # read-only: in memory, nothing written
    assert read.tiles() == data["tiles"]
    read.close()
    assert sorted(os.listdir(tmp_path)) == ["manifest.json"]
    db = JobDB.open(tmp_path)
    assert db.tiles() == data["tiles"] and db.settings == data["settings"]
    assert [r["id"] for r in db.runs()] == ["old"] and db.runs()[0]["timings"] == {"plan": 0.1}
    assert db.mosaic == data["mosaic"]
    assert db.is_done("/a/t1.tif", "c1", tmp_path) is False  # its output is not there
    (tmp_path / "t1.tif").write_bytes(b"x")
    assert db.is_done("/a/t1.tif", "c1", tmp_path) and not db.is_done("/a/t1.tif", "c9", tmp_path)
    db.close()
    assert not (tmp_path / "manifest.json").exists()
    assert json.loads((tmp_path / "manifest.json.migrated").read_text()) == data


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot read the old batch manifest"),
    (json.dumps({"format": "something else"}), "not an rsseg batch manifest"),
    (json.dumps({"format": "rsseg-batch-manifest", "version": 2, "tiles": {}}),
     "version 2 cannot be migrated"),
])
def test_unreadable_old_manifest_is_refused_with_one_line(tmp_path, content, message, capsys):
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(OutputError, match=message):
        JobDB.open(tmp_path)
    assert not (tmp_path / "batch.sqlite").exists()
    assert rsseg_run(["batch-status", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0] and message in err[0]


def test_newer_database_is_refused(tmp_path):
    JobDB.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "batch.sqlite")
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'version'")
    conn.commit()
    conn.close()
    with pytest.raises(OutputError, match="version 99 is newer"):
        JobDB.open(tmp_path)


def make_job(folder, pid: int, started_ago: float, done: int, pending: int, failed: int,
             finished: bool = False) -> None:
    folder.mkdir(exist_ok=True)
    db = JobDB.open(folder)
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=started_ago)
    keys = [f"/c/t{i:03d}.tif" for i in range(done + pending + failed)]
    db.start_run({"id": "run1", "started": start.isoformat(), "pid": pid, "workers": 4,
                  "threads": 1, "scheduler": "tcp://s:8786", "tiles": len(keys)},
                 {"model": "bafnet"}, [{"key": k, "checksum": "c", "inputs": {},
                                        "outputs": {}} for k in keys])
    for k in keys[:done]:
        db.record(k, {"status": "done", "checksum": "c", "inputs": {}, "outputs": {},
                      "run_id": "run1", "finished": now(), "seconds": 2.0})
    for k in keys[done:done + failed]:
        db.record(k, {"status": "failed", "checksum": "c", "inputs": {}, "outputs": {},
                      "run_id": "run1", "finished": now(), "attempts": 2,
                      "error": f"{k}: not a raster GDAL can read"})
    if finished:
        db.finish_run("run1", {"closed": 1.0})
    db.close()


def status_of(*args) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = rsseg_run([str(a) for a in args])
    return code, out.getvalue()


def test_status_of_a_running_job_has_throughput_and_eta(tmp_path):
    make_job(tmp_path, os.getpid(), started_ago=100, done=30, pending=60, failed=2)
    code, text = status_of("batch-status", tmp_path, "--json")
    status = json.loads(text)
    assert code == 0 and status["counts"] == {"done": 30, "failed": 2, "pending": 60}
    assert status["run"]["state"] == "running" and status["run"]["scheduler"] == "tcp://s:8786"
    rate = status["throughput"]["tiles_per_hour"] / 3600  # 32 finished in ~100 s
    assert rate == pytest.approx(0.32, rel=0.05)
    assert status["eta"]["seconds"] == pytest.approx(60 / 0.32, rel=0.05)
    assert status["throughput"]["worker_seconds_per_tile"] == pytest.approx(60 / 32)
    assert [f["tile"] for f in status["failed"]] == ["/c/t030.tif", "/c/t031.tif"]
    # the text form, also as `rsseg batch status OUT`
    code, text = status_of("batch", "status", tmp_path)
    lines = text.splitlines()
    assert code == 0 and lines[0].endswith("92 tile(s): 30 done, 2 failed, 60 pending")
    assert "running" in lines[1] and lines[3].startswith("ETA: 3 min")
    assert lines[-1] == "failed: /c/t031.tif: not a raster GDAL can read"


def test_status_of_a_killed_and_of_a_finished_job(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    make_job(tmp_path / "killed", dead.pid, started_ago=50, done=5, pending=5, failed=0)
    status = json.loads(status_of("batch-status", tmp_path / "killed", "--json")[1])
    assert status["run"]["state"] == "stopped" and status["eta"] is None
    make_job(tmp_path / "done", os.getpid(), started_ago=50, done=5, pending=0, failed=0,
             finished=True)
    status = json.loads(status_of("batch-status", tmp_path / "done", "--json", "--tiles")[1])
    assert status["run"]["state"] == "finished" and len(status["tile_rows"]) == 5


def test_status_of_a_folder_without_a_job_is_one_line(tmp_path, capsys):
    assert rsseg_run(["batch-status", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no batch job here" in err[0]


WINDOW = {"scheduler": None, "seen": []}


def count_tasks_run_tile(job) -> dict:
    """Stands in for the network on an in-process worker: counts the scheduler's tasks."""
    WINDOW["seen"].append(len(WINDOW["scheduler"].tasks))
    return {"seconds": 0.0, "forward_seconds": 0.0, "windows": 1, "worker": "w",
            "pid": os.getpid(), "threads": 1, "model_loads": 1}


def test_driver_keeps_a_bounded_window_of_tasks(tmp_path, monkeypatch):
    """500 tiles on a 2-worker cluster: the scheduler never holds more than the window."""
    from distributed import Client, LocalCluster

    import rsseg.batch.worker as worker
    from rsseg.batch.bandfiles import TileExtras
    from rsseg.batch.driver import BatchSummary, _ContextVrts, _Planned
    from rsseg.batch.submit import in_flight, run_tiles
    from rsseg.batch.inputs import Tile
    from rsseg.batch.worker import ModelSpec, TileJob

    monkeypatch.setattr(worker, "run_tile", count_tasks_run_tile)
    spec = ModelSpec("m", None, "", 0, 3, "cpu")
    plans = [_Planned(Tile(f"/t/{i}.tif", 16, 16), TileJob(f"/t/{i}.tif", "", None, "", None, spec),
                      f"c{i}", {}, {"classes": f"{i}.tif"}, 1, []) for i in range(500)]
    db = JobDB.open(tmp_path)

    class Bar:
        def update(self, n):
            pass

        def log(self, text):
            pass

    summary = BatchSummary(run_id="r")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        WINDOW["scheduler"] = cluster.scheduler
        (tmp_path / ".rsseg" / "parts").mkdir(parents=True)
        run_tiles(client, plans, db, summary, Bar(), tmp_path / ".rsseg" / "parts", 2,
                  _ContextVrts([], TileExtras((), None, False, [])))
    assert len(summary.done) == 500 and len(db.tiles("done")) == 500
    # the window, plus the result just handled, whose future is released a moment later
    assert len(WINDOW["seen"]) == 500 and max(WINDOW["seen"]) <= in_flight(2) + 2 < 500
    db.close()


def test_planning_a_resumed_job_reopens_only_changed_files(tmp_path):
    """The database keeps each input's grid with its fingerprint: a file with the same
    size and mtime is not opened again (here its bytes are garbage, and planning does
    not notice); a touched file is."""
    import numpy as np
    import rasterio
    from affine import Affine

    from rsseg.batch.inputs import open_tiles

    paths = []
    for k, crs in enumerate(["EPSG:32632", "EPSG:32632", "EPSG:32633"]):
        path = tmp_path / f"t{k}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=16 + k, height=16, count=2,
                           dtype="float32", crs=crs, nodata=float("nan") if k else None,
                           transform=Affine(0.2, 0, 500000 + k, 0, -0.2, 5400000)) as ds:
            ds.write(np.zeros((2, 16, 16 + k), np.float32))
            ds.descriptions = ("a", None)
        paths.append(str(path))
    first = open_tiles(paths)
    (tmp_path / "out").mkdir()
    db = JobDB.open(tmp_path / "out")
    db.save_grids(first)
    target = tmp_path / "t1.tif"
    stat = target.stat()
    target.write_bytes(b"\0" * stat.st_size)  # same size...
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ...and mtime
    again = open_tiles(paths, known=db.grids())
    for a, b in zip(first, again):  # the same grids, CRS, bands, NaN nodata included
        assert (a.path, a.width, a.crs, a.transform, a.dtypes, a.descriptions, a.fingerprint) == (
            b.path, b.width, b.crs, b.transform, b.dtypes, b.descriptions, b.fingerprint)
        assert (a.nodata == b.nodata) or (a.nodata != a.nodata and b.nodata != b.nodata)
    assert again[1].ok  # from the database: the garbage was not read
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert not open_tiles(paths, known=db.grids())[1].ok  # touched: opened, found broken
    db.close()
