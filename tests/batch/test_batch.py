"""`rsseg batch` on a real LocalCluster (2 worker processes), real GeoTIFFs and GeoPackages.

One batch run over a 2x2 mosaic plus a corrupt tile is shared by several tests
(module fixture): each LocalCluster start costs seconds on a small machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rsseg.batch.inputs import group_mosaics, open_tiles, resolve_inputs
from rsseg.batch.jobdb import JobDB
from rsseg.io.vrt import input_mosaic_vrt
from rsseg.cli import run as rsseg_run
from rsseg import PredictSettings, predict_scene
from rsseg.predict.load import load_predictor
from rsseg.synth.scene import write_synthetic_scene

from conftest import record_reliability, start_rsseg

T = 96  # tile side (pixels); windows of 64 with overlap 16 cross every tile border
PX = 0.09
X0, Y0 = 496000.0, 5420000.0
MODEL = ["--model", "baff_skipnet", "--weights", "random", "--tile", "64", "--overlap", "16"]


def rsseg(*args) -> int:
    return rsseg_run([str(a) for a in args])


def write_mosaic_tiles(folder: Path, rows: int = 2, cols: int = 2, size: int = T) -> list[Path]:
    """Synthetic tiles whose origins make them abut: a rows x cols mosaic."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in range(rows):
        for c in range(cols):
            path = folder / f"tile_{r}{c}.tif"
            write_synthetic_scene(path, size, size, seed=10 + r * cols + c,
                                  origin=(X0 + c * size * PX, Y0 - r * size * PX))
            paths.append(path)
    return paths


def assemble(paths: list[Path], dst: Path) -> Path:
    """The whole mosaic as one GeoTIFF (independent of the batch code's VRT)."""
    with rasterio.open(paths[0]) as first:
        profile = first.profile
        left, top = first.transform.c, first.transform.f
    tiles = []
    for p in paths:
        with rasterio.open(p) as ds:
            col = round((ds.transform.c - left) / PX)
            row = round((top - ds.transform.f) / PX)
            tiles.append((row, col, ds.read()))
    height = max(r + d.shape[1] for r, _, d in tiles)
    width = max(c + d.shape[2] for _, c, d in tiles)
    profile.update(width=width, height=height, tiled=False)
    profile.pop("blockxsize", None)
    profile.pop("blockysize", None)
    with rasterio.open(dst, "w", **profile) as out:
        for row, col, data in tiles:
            out.write(data, window=((row, row + data.shape[1]), (col, col + data.shape[2])))
    return dst


def corrupt_tile(path: Path) -> Path:
    """A GeoTIFF whose header opens but whose pixel data is garbage."""
    write_synthetic_scene(path, T, T, seed=99, origin=(X0 + 5000.0, Y0))
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 3)
        f.write(b"\xff" * (size // 3))
    return path


def read(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def load_manifest(out: Path) -> dict:
    """The job database's content (read-only, as `rsseg batch-status --json --tiles` does)."""
    db = JobDB.read(out)
    try:
        return db.export()
    finally:
        db.close()


def partial_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


@pytest.fixture(scope="module")
def mosaic_run(tmp_path_factory):
    """One `rsseg batch --workers 2 --vector` over a 2x2 mosaic and a corrupt tile."""
    root = tmp_path_factory.mktemp("batch")
    tiles = write_mosaic_tiles(root / "city")
    bad = corrupt_tile(root / "city" / "broken.tif")
    reference = root / "reference.tif"
    whole = assemble(tiles, root / "mosaic.tif")
    assert rsseg("predict", whole, "-o", reference, "--no-progress", *MODEL) == 0
    out = root / "out"
    t0 = time.perf_counter()
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = rsseg("batch", root / "city" / "*.tif", "-o", out, "--workers", 2, "--vector",
                       "--no-progress", *MODEL)
    return dict(root=root, tiles=tiles, bad=bad, reference=reference, out=out, status=status,
                seconds=time.perf_counter() - t0, stderr=stderr.getvalue().splitlines())


def test_batch_tiles_equal_whole_mosaic_prediction(mosaic_run):
    """No seams: every tile's class raster is the whole-mosaic prediction cut to the tile."""
    ref = read(mosaic_run["reference"])
    with rasterio.open(mosaic_run["reference"]) as ds:
        left, top = ds.transform.c, ds.transform.f
    for tile in mosaic_run["tiles"]:
        out = mosaic_run["out"] / f"{tile.stem}.tif"
        with rasterio.open(out) as got, rasterio.open(tile) as src:
            assert got.crs == src.crs and got.transform.almost_equals(src.transform)
            assert got.shape == src.shape
            col = round((src.transform.c - left) / PX)
            row = round((top - src.transform.f) / PX)
            np.testing.assert_array_equal(got.read(1), ref[row:row + T, col:col + T])
    # the class mosaic VRT reads back as the whole reference
    np.testing.assert_array_equal(read(mosaic_run["out"] / "mosaic.vrt"), ref)


def test_tiles_predicted_alone_would_show_seams(mosaic_run, tmp_path):
    """The check above can fail: without neighbour context the border pixels change."""
    ref = read(mosaic_run["reference"])
    predictor = load_predictor("baff_skipnet", "random", channels=4, device="cpu", seed=0)
    tile = mosaic_run["tiles"][0]  # top-left: its right and bottom edges are seams
    predict_scene(tile, tmp_path / "alone.tif", predictor, PredictSettings(tile=64, overlap=16))
    assert (read(tmp_path / "alone.tif") != ref[:T, :T]).any()


def test_failing_tile_is_reported_while_the_others_finish(mosaic_run):
    out, bad = mosaic_run["out"], str(mosaic_run["bad"])
    assert mosaic_run["status"] == 1  # a tile failed
    tiles = load_manifest(out)["tiles"]
    assert tiles[bad]["status"] == "failed"
    assert tiles[bad]["attempts"] == 2  # retried once
    assert bad in tiles[bad]["error"] and "TIFFReadEncodedTile" in tiles[bad]["error"]
    assert not (out / "broken.tif").exists()
    # the summary on stderr says what was done and what failed, and why
    err = mosaic_run["stderr"]
    summary = [line for line in err if line.startswith("rsseg: batch:")]
    assert len(summary) == 1, err
    assert summary[0].startswith("rsseg: batch: 4 tile(s) predicted, 0 already done, 1 failed")
    failed = [line for line in err if line.startswith("rsseg: failed:")]
    assert len(failed) == 1 and failed[0].startswith(f"rsseg: failed: {bad}: ")
    assert "TIFFReadEncodedTile" in failed[0]
    for tile in mosaic_run["tiles"]:
        entry = tiles[str(tile)]
        assert entry["status"] == "done" and entry["attempts"] == 1
        assert (out / entry["outputs"]["classes"]).is_file()
    assert partial_files(out) == []


def test_workers_load_the_model_once_and_share_the_work(mosaic_run):
    tiles = load_manifest(mosaic_run["out"])["tiles"]
    done = [t for t in tiles.values() if t["status"] == "done"]
    loads_by_pid: dict[int, int] = {}
    for entry in done:
        loads_by_pid[entry["pid"]] = max(loads_by_pid.get(entry["pid"], 0), entry["model_loads"])
    # both workers took tiles (4 tiles, 2 single-thread workers), none ran in this process
    assert len(loads_by_pid) == 2 and os.getpid() not in loads_by_pid
    assert set(loads_by_pid.values()) == {1}  # each worker built the network once
    assert all(t["threads"] == 1 for t in done)
    # the cluster and its dashboard link are announced when the job starts
    started = [line for line in mosaic_run["stderr"] if "local cluster: 2 worker(s)" in line]
    assert len(started) == 1 and re.search(r"dashboard: http://\S+/status", started[0]), started


def test_merged_geopackage_dissolves_polygons_across_tile_borders(mosaic_run):
    import geopandas as gpd

    out = mosaic_run["out"]
    merged = gpd.read_file(out / "mosaic.gpkg", layer="classes")
    tile = gpd.read_file(out / "tile_00.gpkg", layer="classes")
    border_x = X0 + T * PX
    assert len(merged) and merged.crs == tile.crs
    bounds = merged.geometry.bounds
    crossing = (bounds.minx < border_x - PX / 2) & (bounds.maxx > border_x + PX / 2)
    assert crossing.any()  # some polygons run across the tile border, in one piece
    # every class pixel of the mosaic is covered: the area equals the mosaic's valid area
    valid = (read(mosaic_run["reference"]) != 255).sum() * PX * PX
    assert merged.geometry.area.sum() == pytest.approx(valid, rel=1e-6)
    assert tile.geometry.bounds.maxx.max() <= border_x + 1e-6  # per-tile layers stop at the tile


def test_existing_outputs_need_resume_or_overwrite(mosaic_run):
    out = mosaic_run["out"]
    before = load_manifest(out)
    assert rsseg("batch", mosaic_run["root"] / "city" / "tile_*.tif", "-o", out,
                 "--no-progress", *MODEL) == 1  # outputs exist: refused, nothing touched
    assert load_manifest(out) == before


def test_inputs_from_list_file_vrt_and_tile_index(mosaic_run, tmp_path, monkeypatch):
    import geopandas as gpd
    from shapely.geometry import box

    tiles = [str(t) for t in mosaic_run["tiles"]]
    listing = tmp_path / "tiles.txt"
    listing.write_text("# city tiles\n" + "\n".join(os.path.relpath(t, tmp_path) for t in tiles))
    assert resolve_inputs(str(listing)) == tiles
    mosaic = group_mosaics(open_tiles(tiles))
    assert len(mosaic) == 1 and (mosaic[0].width, mosaic[0].height) == (2 * T, 2 * T)
    vrt = input_mosaic_vrt(tmp_path / "city.vrt", mosaic[0])
    assert resolve_inputs(str(vrt)) == tiles
    np.testing.assert_array_equal(rasterio.open(vrt).read(),
                                  rasterio.open(assemble(mosaic_run["tiles"],
                                                         tmp_path / "m.tif")).read())
    index = gpd.GeoDataFrame({"location": tiles}, geometry=[box(0, 0, 1, 1)] * 4,
                             crs="EPSG:32632")
    index.to_file(tmp_path / "index.gpkg")
    assert resolve_inputs(str(tmp_path / "index.gpkg")) == tiles
    # gdaltindex stores paths as typed: relative to the folder it ran in, not to the index
    (tmp_path / "indexes").mkdir()
    index["location"] = [os.path.relpath(t, tmp_path) for t in tiles]
    index.to_file(tmp_path / "indexes" / "typed.gpkg")
    monkeypatch.chdir(tmp_path)
    assert resolve_inputs("indexes/typed.gpkg") == tiles


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



def wait_for_first_recorded_tile(proc, out, timeout: float = 240):
    """Poll until the running batch's manifest records a tile.

    Returns (the manifest's tiles, the process's children seen meanwhile); the tiles are
    empty if the process ended or the timeout passed first.
    """
    import psutil

    children, recorded = [], {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            children = psutil.Process(proc.pid).children(recursive=True) or children
            recorded = {k: v for k, v in load_manifest(out)["tiles"].items()
                        if v["status"] != "pending"}
        except (OSError, ValueError, KeyError, AttributeError, psutil.Error, sqlite3.Error):
            recorded = {}
        if recorded:
            break
        time.sleep(0.02)
    return recorded, children

def test_sigkill_then_resume_finishes_without_recomputing(mosaic_run, tmp_path):
    """Kill the batch process mid-run; --resume completes it; outputs equal an uninterrupted run."""
    import psutil

    city = tmp_path / "city"
    tiles = write_mosaic_tiles(city)
    out = tmp_path / "out"
    proc = start_rsseg(["batch", city / "*.tif", "-o", out, "--workers", 2, "--no-progress",
                        *MODEL], stdout=subprocess.DEVNULL)
    done_at_kill, children = wait_for_first_recorded_tile(proc, out)
    if done_at_kill:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert done_at_kill, "the batch finished no tile before the deadline"
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


def test_bad_arguments_are_usage_errors_and_bad_inputs_one_line(tmp_path, capsys):
    assert rsseg("batch", tmp_path / "none-*.tif", "-o", tmp_path / "o", "--no-progress",
                 *MODEL) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "matches no file" in err[0]
    assert rsseg("batch", "x.tif", "-o", tmp_path / "o", "--resume", "--overwrite") == 2
    assert rsseg("batch", "x.tif", "-o", tmp_path / "o", "--simplify", "1") == 2


def test_predict_region_equals_the_whole_scene_cut(tmp_path):
    """predict_scene(region=...): the region's pixels (classes and confidences)
    and georeferencing are those of the whole-scene prediction."""
    from rsseg.errors import InputError

    scene = tmp_path / "scene.tif"
    write_synthetic_scene(scene, 230, 170, seed=3)
    predictor = load_predictor("baff_skipnet", "random", channels=4, device="cpu")
    kw = dict(tile=64, overlap=16, overwrite=True)
    predict_scene(scene, tmp_path / "full.tif", predictor,
                  PredictSettings(probs=tmp_path / "fullp.tif", **kw))
    full, fullp = read(tmp_path / "full.tif"), read(tmp_path / "fullp.tif")
    with rasterio.open(tmp_path / "full.tif") as ds:
        whole_transform = ds.transform
    for r0, c0, h, w in [(0, 0, 80, 100), (80, 100, 90, 130), (37, 91, 55, 77), (169, 0, 1, 230)]:
        predict_scene(scene, tmp_path / "r.tif", predictor,
                      PredictSettings(probs=tmp_path / "rp.tif", region=(r0, c0, h, w), **kw))
        with rasterio.open(tmp_path / "r.tif") as ds:
            assert ds.shape == (h, w)
            assert ds.transform.almost_equals(whole_transform @ whole_transform.translation(c0, r0))
            np.testing.assert_array_equal(ds.read(1), full[r0:r0 + h, c0:c0 + w])
        np.testing.assert_array_equal(read(tmp_path / "rp.tif"), fullp[r0:r0 + h, c0:c0 + w])
    with pytest.raises(InputError, match="not inside"):
        predict_scene(scene, tmp_path / "x.tif", predictor,
                      PredictSettings(region=(100, 0, 71, 10), **kw))


def test_existing_cluster_via_scheduler_address(mosaic_run, tmp_path):
    """--scheduler ADDRESS: the job runs on that cluster's workers, which it leaves running."""
    from distributed import Client, LocalCluster

    city = tmp_path / "city"
    city.mkdir()
    for tile in mosaic_run["tiles"]:  # the same 2x2 mosaic, without the corrupt tile
        (city / tile.name).write_bytes(tile.read_bytes())
    out = tmp_path / "out"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None, protocol="tcp://", host="127.0.0.1") as cluster:
        worker = next(iter(cluster.scheduler.workers))
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            status = rsseg("batch", city / "*.tif", "-o", out, "--scheduler",
                           cluster.scheduler_address, "--no-progress", *MODEL)
        assert status == 0, stderr.getvalue()
        assert f"cluster at {cluster.scheduler_address}: 1 worker(s)" in stderr.getvalue()
        assert "dashboard" not in stderr.getvalue()  # this cluster runs none
        tiles = load_manifest(out)["tiles"]
        assert {t["worker"] for t in tiles.values()} == {worker}
        assert load_manifest(out)["runs"][0]["scheduler"] == cluster.scheduler_address
        assert load_manifest(out)["runs"][0]["workers"] == 1  # the cluster's, not --workers
        with Client(cluster) as client:  # still up: the job only disconnected
            assert list(client.nthreads()) == [worker]
            assert client.submit(sum, [1, 2]).result() == 3
    for tile in mosaic_run["tiles"]:
        np.testing.assert_array_equal(read(out / tile.name), read(mosaic_run["out"] / tile.name))


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
    city = tmp_path / "city"
    tiles = write_mosaic_tiles(city)
    out = tmp_path / "out"
    proc = start_rsseg(["batch", city / "*.tif", "-o", out, "--workers", 2, "--no-progress",
                        *MODEL], stdout=subprocess.DEVNULL, new_session=True)
    recorded, children = wait_for_first_recorded_tile(proc, out)
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


def test_one_big_tile_keeps_both_workers_busy(tmp_path):
    """Fewer tiles than workers: the tile runs as row bands on both workers, stitched into
    the same COG one task would write (pixels, grid, classes; confidences with --probs),
    with nothing left behind."""
    from rsseg.io.cog import read_classes, validate_cog
    tile = tmp_path / "city" / "tall.tif"
    tile.parent.mkdir()
    write_synthetic_scene(tile, T, 520, seed=5, origin=(X0, Y0))
    out = tmp_path / "out"
    assert rsseg("batch", tile, "-o", out, "--workers", 2, "--probs", "--no-progress",
                 *MODEL) == 0
    entry = load_manifest(out)["tiles"][str(tile)]
    assert entry["status"] == "done" and len(entry["bands"]) == 2
    assert len({band["pid"] for band in entry["bands"]}) == 2  # one band on each worker
    predictor = load_predictor("baff_skipnet", "random", channels=4, device="cpu", seed=0)
    predict_scene(tile, tmp_path / "whole.tif", predictor,
                  PredictSettings(tile=64, overlap=16, probs=tmp_path / "whole_conf.tif"))
    got, whole = out / "tall.tif", tmp_path / "whole.tif"
    np.testing.assert_array_equal(read(got), read(whole))
    np.testing.assert_array_equal(read(out / "confidence" / "tall.tif"),
                                  read(tmp_path / "whole_conf.tif"))
    assert validate_cog(out / "confidence" / "tall.tif") == []
    with rasterio.open(got) as a, rasterio.open(whole) as b:
        assert (a.crs, a.transform, a.shape, a.nodata) == (b.crs, b.transform, b.shape, b.nodata)
        assert a.colormap(1) == b.colormap(1) and a.tags(1) == b.tags(1)
    assert read_classes(got) == read_classes(whole) and validate_cog(got) == []
    assert list((out / ".rsseg" / "parts").glob("*")) == [] and partial_files(out) == []


def legacy_manifest(data: dict) -> dict:
    """The job's state as the JSON manifest of rsseg before the database (version 1)."""
    return dict(data, format="rsseg-batch-manifest", version=1)


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


def test_local_workers_start_without_dask_malloc_trim_threshold(monkeypatch):
    """Dask's MALLOC_TRIM_THRESHOLD_ for worker processes doubled the network's time per
    window (docs/benchmarks/batch.md): the workers start_cluster starts must not have it."""
    from distributed.nanny import _get_env_variables

    from rsseg.batch.cluster import start_cluster, stop_cluster

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    # Dask's default sets it: without start_cluster's override the workers would get it
    assert "MALLOC_TRIM_THRESHOLD_" in _get_env_variables("distributed.nanny.pre-spawn-environ")
    info = start_cluster(workers=1, threads=1)
    try:
        seen = info.client.run(lambda: {k: os.environ.get(k) for k in
                                        ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")})
    finally:
        stop_cluster(info)
    assert list(seen.values()) == [{"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1"}]


def test_bands_blend_simplify_min_area_and_overwrite(mosaic_run, tmp_path):
    """--bands, --blend, --simplify and --min-area reach every tile: the class mosaic equals
    `rsseg predict` of the whole mosaic with the same options, the merged polygons equal
    `rsseg vectorize` of it with the same options; --overwrite then replaces the outputs."""
    import pyogrio

    city = tmp_path / "city"
    write_mosaic_tiles(city)
    whole = assemble(sorted(city.glob("*.tif")), tmp_path / "whole.tif")
    options = ["--bands", "3,2,1", "--blend", "linear"]
    vector = ["--simplify", "0.2", "--min-area", "0.05"]
    reference, polygons = tmp_path / "reference.tif", tmp_path / "reference.gpkg"
    assert rsseg("predict", whole, "-o", reference, "--no-progress", *MODEL, *options) == 0
    assert rsseg("vectorize", reference, "-o", polygons, "--no-progress", *vector) == 0
    out = tmp_path / "out"
    assert rsseg("batch", city / "*.tif", "-o", out, "--workers", 1, "--vector", "--no-progress",
                 *MODEL, *options, *vector) == 0
    np.testing.assert_array_equal(read(out / "mosaic.vrt"), read(reference))
    assert not np.array_equal(read(reference), read(mosaic_run["reference"]))  # options mattered
    merged = pyogrio.read_dataframe(out / "mosaic.gpkg", layer="classes")
    expected = pyogrio.read_dataframe(polygons, layer="classes")
    assert len(merged) == len(expected)
    assert merged.geometry.area.sum() == pytest.approx(expected.geometry.area.sum(), rel=1e-9)
    assert rsseg("batch", city / "*.tif", "-o", out, "--workers", 1, "--no-progress",
                 *MODEL) == 1  # outputs exist
    assert rsseg("batch", city / "*.tif", "-o", out, "--workers", 1, "--no-progress",
                 "--overwrite", *MODEL) == 0
    np.testing.assert_array_equal(read(out / "mosaic.vrt"), read(mosaic_run["reference"]))
    assert partial_files(out) == []


def copy_run(mosaic_run, out: Path) -> Path:
    """The 2x2 mosaic's outputs in a new folder (without the job database)."""
    out.mkdir()
    for tile in mosaic_run["tiles"]:
        for name in (tile.name, f"{tile.stem}.gpkg"):
            (out / name).write_bytes((mosaic_run["out"] / name).read_bytes())
    return out


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
    # test-time augmentation is a setting: the finished tiles would be predicted again
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert rsseg("batch", city / "*.tif", "-o", out, "--dry-run", "--vector", "--tta",
                     "flip", *MODEL) == 0
    assert stdout.getvalue().splitlines()[2].startswith(
        "rsseg: plan: 5 tile(s) to predict (1 failed before), 0 already done")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


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
