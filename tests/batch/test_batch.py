"""`rsseg batch` on a real LocalCluster (2 worker processes), real GeoTIFFs and GeoPackages:
what a run writes (seamless tiles, failures, workers, inputs, options).

One batch run over a 2x2 mosaic plus a corrupt tile is shared by several tests
(module fixture): each LocalCluster start costs seconds on a small machine.
"""

from __future__ import annotations

import contextlib
import io
import os
import re

import numpy as np
import pytest
import rasterio

from rsseg.batch.inputs import group_mosaics, open_tiles, resolve_inputs
from rsseg.io.vrt import input_mosaic_vrt
from rsseg import PredictSettings, predict_scene
from rsseg.predict.load import load_predictor
from rsseg.synth.scene import write_synthetic_scene

from mosaic_helpers import (T, PX, X0, Y0, MODEL, rsseg, write_mosaic_tiles, assemble, read,
                            load_manifest, partial_files, batch_mosaic)


@pytest.fixture(scope="module")
def mosaic_run(tmp_path_factory):
    """One batch run over a 2x2 mosaic and a corrupt tile (see mosaic_helpers.batch_mosaic)."""
    return batch_mosaic(tmp_path_factory.mktemp("batch"))


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
