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
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rsseg.batch.inputs import group_mosaics, open_tiles, resolve_inputs
from rsseg.batch.manifest import Manifest
from rsseg.io.vrt import input_mosaic_vrt
from rsseg.cli import run as rsseg_run
from rsseg import PredictSettings, predict_scene
from rsseg.predict.load import load_predictor
from rsseg.synth.scene import write_synthetic_scene

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
    return json.loads((out / "manifest.json").read_text())


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
    assert len(loads_by_pid) <= 2 and os.getpid() not in loads_by_pid
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
    manifest = Manifest.load(out, data["settings"])
    key = str(mosaic_run["tiles"][0])
    checksum = data["tiles"][key]["checksum"]
    assert manifest.is_done(key, checksum, out)
    assert not manifest.is_done(key, "0" * 64, out)
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
            recorded = load_manifest(out)["tiles"]
        except (OSError, ValueError, KeyError, psutil.Error):
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
    args = [sys.executable, "-c", "from rsseg.cli import main; main()", "batch", str(city / "*.tif"), "-o", str(out),
            "--workers", "2", "--no-progress", *MODEL]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
        with Client(cluster) as client:  # still up: the job only disconnected
            assert list(client.nthreads()) == [worker]
            assert client.submit(sum, [1, 2]).result() == 3
    for tile in mosaic_run["tiles"]:
        np.testing.assert_array_equal(read(out / tile.name), read(mosaic_run["out"] / tile.name))


def test_sigint_stops_cleanly(mosaic_run, tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) mid-run: exit 130, one
    line on stderr, workers gone, no temporary file left, finished tiles recorded."""
    import psutil

    city = tmp_path / "city"
    tiles = write_mosaic_tiles(city)
    out = tmp_path / "out"
    args = [sys.executable, "-c", "from rsseg.cli import main; main()", "batch",
            str(city / "*.tif"), "-o", str(out), "--workers", "2", "--no-progress", *MODEL]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    recorded, children = wait_for_first_recorded_tile(proc, out)
    if recorded:
        os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert recorded and len(recorded) < len(tiles), "no tile was running at the interrupt"
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert lines[-1] == "rsseg: interrupted" and "Traceback" not in err, err
    psutil.wait_procs(children, timeout=30)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert partial_files(out) == []
    after = load_manifest(out)["tiles"]
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


def test_a_run_that_recorded_no_tile_does_not_block_the_next(mosaic_run, tmp_path):
    """E.g. Ctrl-C while the workers start: the manifest holds the run but no finished tile,
    so the next run needs no --resume; a manifest with finished tiles still does."""
    from rsseg.batch.driver import BatchOptions, _check_existing
    from rsseg.batch.inputs import Tile
    from rsseg.errors import OutputError

    out = tmp_path / "out"
    out.mkdir()
    data = load_manifest(mosaic_run["out"])
    tiles = [Tile(str(t)) for t in mosaic_run["tiles"]]
    (out / "manifest.json").write_text(json.dumps(dict(data, tiles={})))
    _check_existing(tiles, out, BatchOptions())
    # every tile failed (e.g. --device cuda on workers without a GPU): nothing to protect
    failed = {key: dict(entry, status="failed") for key, entry in data["tiles"].items()}
    (out / "manifest.json").write_text(json.dumps(dict(data, tiles=failed)))
    _check_existing(tiles, out, BatchOptions())
    (out / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(OutputError, match="--resume"):
        _check_existing(tiles, out, BatchOptions())
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(OutputError, match="--resume"):  # never overwritten silently
        _check_existing(tiles, out, BatchOptions())


def test_local_workers_start_without_dask_malloc_trim_threshold():
    """Dask's MALLOC_TRIM_THRESHOLD_ for worker processes doubled the network's time per
    window (docs/benchmarks/batch.md); the override start_cluster applies removes it."""
    import dask
    from distributed.nanny import _get_env_variables

    from rsseg.batch.cluster import UNSET_MALLOC_TRIM

    key = "distributed.nanny.pre-spawn-environ"
    assert "MALLOC_TRIM_THRESHOLD_" in _get_env_variables(key)  # Dask's default
    with dask.config.set({UNSET_MALLOC_TRIM: None}):
        env = _get_env_variables(key)
    assert "MALLOC_TRIM_THRESHOLD_" not in env and env.get("OMP_NUM_THREADS") == "1"
