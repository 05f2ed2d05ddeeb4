"""`rsseg batch` at national scale: planning time, driver overhead and memory vs tile count.

Generates N tiny tiles (16 x 16 px, 3 bands, one pixel grid, all in one folder,
touching: one mosaic) and measures, side by side in one run:

- planning (`rsseg batch --dry-run`: open every tile, group mosaics, find each
  tile's context tiles, checksums, window counts) at N = 1,000, 10,000 and
  100,000, each in a fresh process: seconds, time per tile and the driver's
  peak RSS. Goals: 100,000 tiles planned in <= 60 s; time per tile flat within
  2x from 1,000 to 100,000.
- a real run of 2,000 tiny tiles on a local cluster (2 workers) with a trivial
  network (baff_skipnet, random weights, 16-px windows): the driver's CPU time
  per tile while the tiles run (its own work plus the in-process Dask scheduler:
  goal <= 20 ms; also given with planning and start-up included),
  the time spent committing tiles to the job database (goal <= 2 ms per tile)
  and the driver's peak RSS.

    python benchmarks/batch_scale.py                       # 1k, 10k, 100k; run 2,000
    python benchmarks/batch_scale.py --plan 1000 10000 --run 500
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE, PX = 16, 0.2
X0, Y0 = 500000.0, 5400000.0
MODEL = dict(model="baff_skipnet", weights="random", tile=16, overlap=4)


def make_tiles(folder: Path, count: int) -> str:
    """``count`` GeoTIFFs on one grid, ``ceil(sqrt(count))`` per row; returns their glob.

    One file is written with rasterio; the others are its bytes with the origin
    (the GeoTIFF tie point) replaced, so 100,000 tiles take seconds, not minutes.
    """
    import numpy as np
    import rasterio
    from affine import Affine

    folder.mkdir(parents=True, exist_ok=True)
    template = folder / "template.tif.tmp"
    rng = np.random.default_rng(0)
    with rasterio.open(template, "w", driver="GTiff", width=SIZE, height=SIZE, count=3,
                       dtype="uint8", crs="EPSG:32632",
                       transform=Affine(PX, 0, X0, 0, -PX, Y0)) as ds:
        ds.write(rng.integers(0, 255, (3, SIZE, SIZE), dtype=np.uint8))
    data = template.read_bytes()
    template.unlink()
    at = data.index(struct.pack("<dd", X0, Y0))
    per_row = int(np.ceil(np.sqrt(count)))
    for k in range(count):
        r, c = divmod(k, per_row)
        origin = struct.pack("<dd", X0 + c * SIZE * PX, Y0 - r * SIZE * PX)
        (folder / f"t{k:06d}.tif").write_bytes(data[:at] + origin + data[at + 16:])
    return str(folder / "t*.tif")


def cpu_seconds() -> float:
    """User + system CPU of this process, all its threads (the in-process scheduler too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plan_once(pattern: str, out: str) -> dict:
    """In this process: plan the job (dry run), timing each phase."""
    import rsseg.batch.driver as driver
    from rsseg.batch.driver import BatchOptions, run_batch

    phases: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    for name in ("resolve_inputs", "open_tiles", "group_mosaics", "_settings", "_plan"):
        setattr(driver, name, timed(name, getattr(driver, name)))
    t0 = time.perf_counter()
    summary = run_batch(pattern, out, BatchOptions(dry_run=True, **MODEL))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "phases": phases, "rss_mb": peak_rss_mb(),
            "plan": summary.plan}


def run_once(pattern: str, out: str, workers: int) -> dict:
    """In this process: a real run; driver CPU, database commit time, peak RSS."""
    import torch

    from rsseg.batch.driver import BatchOptions, run_batch
    from rsseg.batch.jobdb import JobDB

    torch.set_num_threads(1)
    record = JobDB.record
    commits: list[float] = []

    def timed_record(self, key, entry):
        t0 = time.perf_counter()
        record(self, key, entry)
        commits.append(time.perf_counter() - t0)

    JobDB.record = timed_record
    import rsseg.batch.driver as driver

    run_tiles = driver.run_tiles
    phase: dict[str, float] = {}

    def timed_run_tiles(*args, **kwargs):  # the tile phase alone: no planning, no start-up
        start = cpu_seconds()
        try:
            return run_tiles(*args, **kwargs)
        finally:
            phase["cpu"] = cpu_seconds() - start

    driver.run_tiles = timed_run_tiles
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    summary = run_batch(pattern, out, BatchOptions(workers=workers, **MODEL))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    db = JobDB.read(out)
    worker_seconds = sum(t.get("seconds", 0.0) for t in db.tiles("done").values())
    db.close()
    tiles = len(summary.done)
    return {"tiles": tiles, "failed": len(summary.failed), "wall": wall, "driver_cpu": cpu,
            "tile_phase_cpu": phase.get("cpu", 0.0),
            "worker_seconds": worker_seconds, "commit_seconds": sum(commits),
            "commit_max": max(commits, default=0.0), "rss_mb": peak_rss_mb()}


def child(*args: str) -> dict:
    """Run one measurement in a fresh process (its own peak RSS, no warm caches)."""
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", type=int, nargs="*", default=[1000, 10_000, 100_000])
    ap.add_argument("--run", type=int, default=2000, help="tiles of the real run (0: none)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--_plan-one", nargs=2, dest="plan_one", help=argparse.SUPPRESS)
    ap.add_argument("--_run-one", nargs=3, dest="run_one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plan_one:
        print(json.dumps(plan_once(*args.plan_one)))
        return
    if args.run_one:
        print(json.dumps(run_once(args.run_one[0], args.run_one[1], int(args.run_one[2]))))
        return
    print(f"{os.cpu_count()} CPUs, load average " + " ".join(f"{v:.1f}" for v in os.getloadavg()))
    with tempfile.TemporaryDirectory(prefix="rsseg-scale-") as tmp:
        tmp = Path(tmp)
        per_tile = {}
        for n in args.plan:
            t0 = time.perf_counter()
            pattern = make_tiles(tmp / f"tiles-{n}", n)
            made = time.perf_counter() - t0
            got = child("--_plan-one", pattern, str(tmp / f"out-{n}"))
            per_tile[n] = got["seconds"] / n
            phases = ", ".join(f"{k.strip('_')} {v:.1f}" for k, v in got["phases"].items())
            print(f"plan {n:>7} tiles: {got['seconds']:6.1f} s = {per_tile[n] * 1e3:.3f} ms/tile "
                  f"({phases}); peak RSS {got['rss_mb']:.0f} MB; tiles written in {made:.0f} s",
                  flush=True)
        if len(per_tile) > 1:
            # Growth, not spread: the smallest job's fixed start-up (loading the model,
            # ~1 s) makes its per-tile time the largest; what must not happen is the
            # per-tile time rising with N, as the all-pairs grouping made it.
            few, most = min(per_tile), max(per_tile)
            growth = per_tile[most] / per_tile[few]
            print(f"plan time per tile at {most} / at {few} tiles: {growth:.2f} (goal <= 2; "
                  f"planned on {os.cpu_count()} CPUs)")
        if args.run:
            pattern = make_tiles(tmp / "run", args.run)
            got = child("--_run-one", pattern, str(tmp / "run-out"), str(args.workers))
            n = got["tiles"]
            print(f"run {n} tiles ({got['failed']} failed), {args.workers} workers: "
                  f"{got['wall']:.1f} s wall; driver CPU {got['tile_phase_cpu'] / n * 1e3:.1f} "
                  f"ms/tile while tiles run (goal <= 20; {got['driver_cpu'] / n * 1e3:.1f} with "
                  f"planning and start-up); database commits {got['commit_seconds'] / n * 1e3:.2f} "
                  "ms/tile "
                  f"(max {got['commit_max'] * 1e3:.1f} ms; goal <= 2); workers "
                  f"{got['worker_seconds'] / n * 1e3:.1f} ms/tile; peak RSS {got['rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
