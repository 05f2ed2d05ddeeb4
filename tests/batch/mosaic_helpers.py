"""The 2x2 synthetic mosaic, its corrupt tile and the helpers the batch tests share
(tests/batch/test_batch*.py): writing tiles, assembling the whole mosaic independently of
the batch code, reading outputs and the job database."""

from __future__ import annotations

import contextlib
import io
import sqlite3
import time
from pathlib import Path

import numpy as np
import rasterio

from rsseg.batch.jobdb import JobDB
from rsseg.cli import run as rsseg_run
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
    """The job database's content (read-only, as `rsseg batch-status --json --tiles` does)."""
    db = JobDB.read(out)
    try:
        return db.export()
    finally:
        db.close()


def partial_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


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


def legacy_manifest(data: dict) -> dict:
    """The job's state as the JSON manifest of rsseg before the database (version 1)."""
    return dict(data, format="rsseg-batch-manifest", version=1)


def copy_run(mosaic_run, out: Path) -> Path:
    """The 2x2 mosaic's outputs in a new folder (without the job database)."""
    out.mkdir()
    for tile in mosaic_run["tiles"]:
        for name in (tile.name, f"{tile.stem}.gpkg"):
            (out / name).write_bytes((mosaic_run["out"] / name).read_bytes())
    return out


def batch_mosaic(root: Path) -> dict:
    """One `rsseg batch --workers 2 --vector` over a 2x2 mosaic and a corrupt tile, under
    ``root``, and the whole-mosaic prediction it must equal: the run the batch tests share."""
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


