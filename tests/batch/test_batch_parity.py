"""`rsseg batch` takes what `rsseg predict` takes: --band-file, --dsm, --align, --probs;
and it fails fast and on one line (a wrong --scheduler, --device cuda without a GPU,
failing tiles), on a real LocalCluster with real GeoTIFFs.

The reference for every batch result is `rsseg predict` on the whole mosaic (one
GeoTIFF assembled independently of the batch code) with the same extra files.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from mosaic_helpers import (MODEL, PX, T, X0, Y0, assemble, corrupt_tile, load_manifest, read,
                            rsseg, write_mosaic_tiles)

RSSEG = [sys.executable, "-c", "from rsseg.cli import main; main()"]


def write_band(path: Path, like: Path, seed: int, scale: int = 1, pad=(0, 0, 0, 0)) -> Path:
    """A one-band float32 raster on ``like``'s grid (``scale`` times coarser, ``pad`` pixels
    (top, bottom, left, right) wider), smooth enough that resampling it means something."""
    with rasterio.open(like) as ds:
        profile, transform, h, w = ds.profile, ds.transform, ds.height, ds.width
    top, bottom, left, right = pad
    h, w = (h + top + bottom) // scale, (w + left + right) // scale
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    data = (np.sin(rows / 7.0 + seed) + np.cos(cols / 5.0 - seed)) * 10.0 + seed
    profile.update(count=1, dtype="float32", nodata=None, width=w, height=h, tiled=False,
                   transform=transform @ Affine.translation(-left, -top) @ Affine.scale(scale))
    for key in ("blockxsize", "blockysize", "compress", "photometric"):
        profile.pop(key, None)
    with rasterio.open(path, "w", **profile) as out:
        out.write(data[None])
    return path


def cut(src: Path, like: Path, dst: Path) -> Path:
    """The part of ``src`` on ``like``'s footprint, at ``src``'s resolution (a per-tile file)."""
    with rasterio.open(src) as ds, rasterio.open(like) as tile:
        window = ds.window(*tile.bounds).round_offsets().round_lengths()
        data = ds.read(window=window)
        profile = dict(ds.profile, width=window.width, height=window.height,
                       transform=ds.window_transform(window))
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
    return dst


@pytest.fixture(scope="module")
def extras_run(tmp_path_factory):
    """One batch over a 2x2 mosaic with an IR band per tile ({stem} pattern), a DSM mosaic
    file larger than the tiles, --probs and --vector; plus a lone tile whose IR file is missing.
    The shell's expansion of an unquoted glob is what INPUTS gets (several paths)."""
    root = tmp_path_factory.mktemp("extras")
    tiles = write_mosaic_tiles(root / "city")
    whole = assemble(tiles, root / "whole.tif")
    whole_ir = write_band(root / "whole_ir.tif", whole, seed=1)
    (root / "ir").mkdir()
    for tile in tiles:
        cut(whole_ir, tile, root / "ir" / f"{tile.stem}_ir.tif")
    dsm = write_band(root / "dsm_big.tif", whole, seed=2, pad=(7, 3, 5, 9))
    lone = root / "city" / "lone.tif"  # far from the others, and without an IR file
    from rsseg.synth.scene import write_synthetic_scene

    write_synthetic_scene(lone, T, T, seed=5, origin=(X0 + 5000.0, Y0))
    reference, ref_conf = root / "ref.tif", root / "ref_conf.tif"
    assert rsseg("predict", whole, "-o", reference, "--probs", ref_conf, "--band-file",
                 f"{whole_ir}:1", "--dsm", dsm, "--no-progress", *MODEL) != 0  # not its grid
    whole_dsm = cut(dsm, whole, root / "whole_dsm.tif")
    assert rsseg("predict", whole, "-o", reference, "--probs", ref_conf, "--band-file",
                 f"{whole_ir}:1", "--dsm", whole_dsm, "--no-progress", *MODEL) == 0
    out = root / "out"
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = rsseg("batch", *sorted((root / "city").glob("*.tif")), "-o", out,
                       "--band-file", str(root / "ir" / "{stem}_ir.tif:1"), "--dsm", dsm,
                       "--probs", "--vector", "--workers", 2, "--no-progress", *MODEL)
    return dict(root=root, tiles=tiles, lone=lone, out=out, status=status, dsm=dsm,
                reference=reference, ref_conf=ref_conf, stderr=stderr.getvalue())


def test_band_files_and_dsm_give_predicts_classes_and_confidences(extras_run):
    """Per-tile IR files ({stem}) and one DSM covering the mosaic: every tile's classes and
    confidences are predict's on the whole mosaic with the same bands, cut to the tile."""
    out = extras_run["out"]
    ref, ref_conf = read(extras_run["reference"]), read(extras_run["ref_conf"])
    for tile in extras_run["tiles"]:
        with rasterio.open(tile) as src:
            col = round((src.transform.c - X0) / PX)
            row = round((Y0 - src.transform.f) / PX)
        for got, want in ((out / f"{tile.stem}.tif", ref),
                          (out / "confidence" / f"{tile.stem}.tif", ref_conf)):
            with rasterio.open(got) as ds, rasterio.open(tile) as src:
                assert ds.crs == src.crs and ds.transform.almost_equals(src.transform)
                np.testing.assert_array_equal(ds.read(1), want[row:row + T, col:col + T])
    np.testing.assert_array_equal(read(out / "mosaic.vrt"), ref)
    with rasterio.open(out / "confidence.vrt") as ds:
        assert ds.nodata == 0 and ds.descriptions == ("confidence",)
        np.testing.assert_array_equal(ds.read(1), ref_conf)
    assert ref_conf.min() > 0  # real confidences, not the nodata value


def test_tile_without_its_band_file_fails_alone_with_predicts_message(extras_run):
    assert extras_run["status"] == 1
    entry = load_manifest(extras_run["out"])["tiles"][str(extras_run["lone"])]
    assert entry["status"] == "failed"
    missing = extras_run["root"] / "ir" / "lone_ir.tif"
    assert entry["error"] == f"{extras_run['lone']}: {missing}: band file not found"
    done = [k for k, v in load_manifest(extras_run["out"])["tiles"].items() if v["status"] == "done"]
    assert len(done) == 4
    assert f"failed: {extras_run['lone']}: {missing}: band file not found" in extras_run["stderr"]


def test_manifest_fingerprints_the_extra_files(extras_run):
    """A tile depends on its neighbours' IR files (context) and on the DSM: --resume
    must redo it when one of them changes."""
    manifest = load_manifest(extras_run["out"])
    tile = str(extras_run["tiles"][0])
    inputs = manifest["tiles"][tile]["inputs"]
    ir = extras_run["root"] / "ir"
    assert {str(ir / f"{t.stem}_ir.tif") for t in extras_run["tiles"]} <= set(inputs)
    assert str(extras_run["dsm"]) in inputs
    assert manifest["settings"]["probs"] is True
    assert manifest["settings"]["band_files"][-1][2] == "DSM"


def test_polygons_carry_mean_confidence(extras_run):
    import pyogrio

    for name in ("mosaic.gpkg", f"{extras_run['tiles'][0].stem}.gpkg"):
        info = pyogrio.read_info(extras_run["out"] / name, layer="classes")
        assert "mean_confidence" in list(info["fields"]) and info["features"] > 0


def test_align_reprojects_coarser_files_like_predict(tmp_path):
    """--align: per-tile IR files and a DSM, both twice coarser than the tiles, give the
    classes predict --align gives on the whole mosaic with the same coarse files."""
    tiles = write_mosaic_tiles(tmp_path / "city", rows=1, cols=2)
    whole = assemble(tiles, tmp_path / "whole.tif")
    coarse_ir = write_band(tmp_path / "ir.tif", whole, seed=3, scale=2)
    (tmp_path / "ir").mkdir()
    for tile in tiles:
        cut(coarse_ir, tile, tmp_path / "ir" / f"{tile.stem}.tif")
    dsm = write_band(tmp_path / "dsm.tif", whole, seed=4, scale=2)
    ref = tmp_path / "ref.tif"
    assert rsseg("predict", whole, "-o", ref, "--band-file", coarse_ir, "--dsm", dsm, "--align",
                 "--no-progress", *MODEL) == 0
    out = tmp_path / "out"
    assert rsseg("batch", str(tmp_path / "city" / "*.tif"), "-o", out, "--band-file",
                 str(tmp_path / "ir" / "{stem}.tif"), "--dsm", dsm, "--align",
                 "--workers", 1, "--no-progress", *MODEL) == 0
    np.testing.assert_array_equal(read(out / "mosaic.vrt"), read(ref))


# ---- mistakes: the same line as predict, before any cluster starts ---------------------------

@pytest.fixture(scope="module")
def small_city(tmp_path_factory):
    root = tmp_path_factory.mktemp("mistakes")
    tiles = write_mosaic_tiles(root / "city", rows=1, cols=2)
    whole = assemble(tiles, root / "whole.tif")
    return dict(root=root, tiles=tiles, whole=whole,
                coarse=write_band(root / "coarse.tif", whole, seed=1, scale=2),
                small=write_band(root / "small.tif", tiles[0], seed=1))


@pytest.mark.parametrize("extra, says", [
    (["--dsm", "{root}/dsm/{{stem}}.tif"], "{root}/dsm/tile_00.tif: DSM file not found"),
    (["--band-file", "{root}/city/{{stem}}.tif:9"],
     "{root}/city/tile_00.tif: band 9 does not exist: the file has 4 band(s)"),
    (["--dsm", "{coarse}"], "{coarse}: DSM grid (96x48"),
    (["--dsm", "{small}"], "{small}: DSM does not cover the tile {root}/city/tile_01.tif"),
    (["--band-file", "{coarse}:2"], "{coarse}: band 2 does not exist: the file has 1 band(s)"),
    (["--dsm", "{root}/nothing.tif"], "{root}/nothing.tif: DSM file not found"),
])
def test_band_file_mistakes_are_one_line_and_create_nothing(small_city, tmp_path, capsys, extra,
                                                            says):
    ns = {k: str(v) for k, v in small_city.items() if isinstance(v, Path)}
    out = tmp_path / "out"
    argv = ["batch", str(small_city["root"] / "city" / "*.tif"), "-o", out,
            *[e.format(**ns) for e in extra], "--no-progress", *MODEL]
    capsys.readouterr()
    assert rsseg(*argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rsseg: error: {says.format(**ns)}"] or (
        len(err) == 1 and err[0].startswith(f"rsseg: error: {says.format(**ns)}")), err
    assert not out.exists()


def test_predict_says_the_same_for_the_same_mistake(small_city, tmp_path, capsys):
    """A file on another grid without --align, and a band that does not exist."""
    whole, coarse = small_city["whole"], small_city["coarse"]
    for extra, start in ((["--dsm", coarse], f"{coarse}: DSM grid (96x48"),
                         (["--band-file", f"{coarse}:2"],
                          f"{coarse}: band 2 does not exist: the file has 1 band(s)")):
        capsys.readouterr()
        assert rsseg("predict", whole, "-o", tmp_path / "c.tif", *extra, "--no-progress",
                     *MODEL) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"rsseg: error: {start}"), err


def test_several_input_paths_are_one_job(small_city):
    """An unquoted glob reaches rsseg as the list of files the shell found."""
    from rsseg.batch.inputs import resolve_inputs

    tiles = [str(t) for t in small_city["tiles"]]
    assert resolve_inputs(tiles) == tiles
    assert resolve_inputs(tiles + [str(small_city["root"] / "city" / "*.tif")]) == tiles


# ---- the cluster: fast, one-line failures ------------------------------------------------------

@contextlib.contextmanager
def listener(reply: bytes | None):
    """A TCP server on 127.0.0.1 that accepts connections and then stays silent (``reply``
    None) or answers every connection with ``reply`` and closes it (another service)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []

    def serve():
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                if reply is None:
                    held.append(conn)
                else:
                    with contextlib.suppress(OSError):
                        conn.recv(1024)
                        conn.sendall(reply)
                    conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        for conn in held:
            conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["silent", "wrong-service", "refused"])
def test_a_wrong_scheduler_fails_fast_on_one_line(small_city, tmp_path, capsys, kind):
    """A silent peer, another service, a closed port: one line naming the address well
    within --connect-timeout's default of 10 s, before the output directory is made."""
    replies = {"silent": None, "wrong-service": b"HTTP/1.0 400 Bad Request\r\n\r\n"}
    context = (listener(replies[kind]) if kind in replies
               else contextlib.nullcontext(f"tcp://127.0.0.1:{free_port()}"))
    out = tmp_path / "out"
    with context as address:
        capsys.readouterr()
        t0 = time.perf_counter()
        status = rsseg("batch", small_city["tiles"][0], "-o", out, "--scheduler", address,
                       "--no-progress", *MODEL)
        seconds = time.perf_counter() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1 and address in err[0], err
    assert seconds < 10 + 5, seconds  # the default timeout, plus planning on a loaded machine
    if kind == "refused":
        assert seconds < 5, seconds  # told at once, not after the timeout
    assert {"silent": "did not answer within 10 s", "wrong-service": "not as a Dask scheduler",
            "refused": "connection refused"}[kind] in err[0]
    assert not out.exists()  # checked before anything is written


def test_connect_timeout_sets_the_wait(small_city, tmp_path, capsys):
    with listener(None) as address:
        t0 = time.perf_counter()
        assert rsseg("batch", small_city["tiles"][0], "-o", tmp_path / "out", "--scheduler",
                     address, "--connect-timeout", "1.5", "--no-progress", *MODEL) == 1
        assert time.perf_counter() - t0 < 8
    assert "did not answer within 1.5 s" in capsys.readouterr().err


def test_a_workers_address_is_not_a_scheduler(tmp_path):
    from distributed import LocalCluster

    from rsseg.batch.cluster import probe_scheduler
    from rsseg.errors import RssegError

    with LocalCluster(n_workers=1, processes=False, dashboard_address=None, protocol="tcp://",
                      host="127.0.0.1") as cluster:
        assert probe_scheduler(cluster.scheduler_address, 5)["type"] == "Scheduler"
        worker = next(iter(cluster.scheduler.workers))
        with pytest.raises(RssegError, match="is a Dask Worker, not a scheduler"):
            probe_scheduler(worker, 5)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_without_a_gpu_is_refused_up_front(small_city, tmp_path, capsys):
    out = tmp_path / "out"
    capsys.readouterr()
    assert rsseg("batch", small_city["tiles"][0], "-o", out, "--device", "cuda",
                 "--no-progress", *MODEL) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rsseg: error: --device cuda was asked for but no CUDA GPU is available"]
    assert not out.exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_on_a_cluster_without_gpus_is_refused(small_city, tmp_path, capsys):
    from distributed import LocalCluster

    out = tmp_path / "out"
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None, protocol="tcp://",
                      host="127.0.0.1") as cluster:
        capsys.readouterr()
        assert rsseg("batch", small_city["tiles"][0], "-o", out, "--device", "cuda",
                     "--scheduler", cluster.scheduler_address, "--no-progress", *MODEL) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda was asked for but 1 of 1 worker(s)" in err[0], err
    # no tile finished (the one planned stays pending)
    assert [t["status"] for t in load_manifest(out)["tiles"].values()] in ([], ["pending"])


def test_failed_tiles_print_one_line_each_and_a_rerun_is_not_refused(tmp_path):
    """In a real process (the workers' own stderr included): no Dask "Compute Failed" or
    traceback block, only rsseg's lines; the run left no finished tile, so running the same
    command again is a fresh start, not 'already holds a batch'."""
    bad = corrupt_tile(tmp_path / "broken.tif")
    argv = RSSEG + ["batch", str(bad), "-o", str(tmp_path / "out"), "--workers", "1",
                    "--no-progress", *MODEL]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for attempt in range(2):
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=240)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1, done.stderr
        assert all(line.startswith("rsseg: ") for line in lines), done.stderr
        assert "Traceback" not in done.stderr and "Compute Failed" not in done.stderr
        assert any(line.startswith(f"rsseg: failed: {bad}: cannot read pixels") for line in lines)
        assert "already holds a batch" not in done.stderr


def test_dashboard_link_only_when_a_dashboard_answers():
    """A scheduler names its HTTP service "dashboard" even when it serves no dashboard."""
    from distributed import Client, LocalCluster

    from rsseg.batch.cluster import probe_scheduler, serving_dashboard

    for address, served in ((":0", True), (None, False)):
        with LocalCluster(n_workers=0, processes=False, dashboard_address=address,
                          protocol="tcp://", host="127.0.0.1") as cluster, \
                Client(cluster.scheduler_address) as client:
            identity = probe_scheduler(cluster.scheduler_address, 5)
            link = serving_dashboard(client, identity, 5)
            assert (link is not None) == served, (address, link)
            if served:
                assert link.startswith("http://127.0.0.1:") and link.endswith("/status")
