"""Benchmark: `rsseg vectorize` against `gdal_polygonize.py` on the same class raster.

Writes a plausible 6-class raster (smooth random fields at two scales, argmax:
blobby regions with wiggly borders, no pixel noise), then runs both tools as
separate processes, alternating, and reports median wall time, peak RSS and the
ratios. A second, smaller raster shows whether rsseg's memory stays flat when the
scene grows taller (same width: memory is one row of blocks). Both tools write a GeoPackage with the same polygons (4-connectivity).

    python benchmarks/vectorize.py [--size 8192] [--repeats 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# A wrapper runs the command and reports its descendants' peak RSS (largest single process,
# KiB) and CPU seconds (user + system, all processes): CPU time is what a loaded machine
# distorts least.
_WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
            "print(u.ru_maxrss, u.ru_utime + u.ru_stime, file=sys.stderr); "
            "sys.exit(r.returncode)")


def smooth_basis(n_out: int, n_knots: int, spacing: float) -> np.ndarray:
    """(n_out, n_knots) Gaussian interpolation weights: a smooth field from knot values."""
    x = (np.arange(n_out) + 0.5) / spacing
    k = np.arange(n_knots)
    w = np.exp(-0.5 * ((x[:, None] - k[None, :]) / 0.7) ** 2)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def write_scene(path: Path, width: int, height: int, seed: int = 0, classes: int = 6,
                strip: int = 1024):
    """A width x height uint8 class raster written strip by strip (tiled, DEFLATE, georeferenced)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from rsseg.classes import ISPRS

    rng = np.random.default_rng(seed)
    scales = ((96.0, 1.0), (24.0, 0.35))  # coarse regions + finer wiggles of their borders
    knots = [rng.standard_normal((classes, int(height / s) + 2, int(width / s) + 2))
             .astype(np.float32) * a for s, a in scales]
    cols = [smooth_basis(width, k.shape[2], s) for k, (s, _) in zip(knots, scales)]
    profile = dict(driver="GTiff", width=width, height=height, count=1, dtype="uint8", nodata=255,
                   crs="EPSG:32632", transform=from_origin(500000, 5400000, 0.25, 0.25),
                   tiled=True, blockxsize=512, blockysize=512, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write_colormap(1, ISPRS.colormap())
        for r0 in range(0, height, strip):
            h = min(strip, height - r0)
            fields = np.zeros((classes, h, width), dtype=np.float32)
            for k, c, (s, _) in zip(knots, cols, scales):
                rows = smooth_basis(height, k.shape[1], s)[r0:r0 + h]
                fields += np.einsum("hk,ckl,wl->chw", rows, k, c, optimize=True)
            dst.write(fields.argmax(0).astype(np.uint8), 1, window=Window(0, r0, width, h))


def timed(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MiB, CPU seconds) of ``cmd`` run in its own process."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stderr[-2000:]}")
    peak_kib, cpu = res.stderr.strip().splitlines()[-1].split()
    return seconds, int(peak_kib) / 1024, float(cpu)


def feature_count(gpkg: Path, layer: str) -> int:
    import pyogrio

    return int(pyogrio.read_info(gpkg, layer=layer)["features"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--short", type=int, default=2048,
                    help="height of the memory-flatness check (same width as --size)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--block-size", type=int, default=1024)
    ap.add_argument("--keep", type=Path, default=None, help="directory to keep rasters/outputs")
    args = ap.parse_args()

    gdal_polygonize = shutil.which("gdal_polygonize.py") or shutil.which("gdal_polygonize")
    rsseg = shutil.which("rsseg", path=os.path.dirname(sys.executable)) or shutil.which("rsseg")
    if rsseg is None:
        raise SystemExit("rsseg is not installed in this environment")
    work = args.keep or Path(tempfile.mkdtemp(prefix="rsseg-bench-vectorize-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        rasters = {}
        for height in (args.size, args.short):
            path = work / f"classes_{args.size}x{height}.tif"
            if not path.exists():
                t0 = time.perf_counter()
                write_scene(path, args.size, height)
                print(f"wrote {path.name} in {time.perf_counter() - t0:.1f} s")
            rasters[height] = path
        out = work / "out.gpkg"

        def rsseg_cmd(height, workers):
            return [rsseg, "vectorize", str(rasters[height]), "-o", str(out), "--overwrite",
                    "--no-progress", "--block-size", str(args.block_size),
                    "--workers", str(workers)]

        runs = {  # label -> command; all on the big raster except the last
            "rsseg vectorize (auto workers)": rsseg_cmd(args.size, 0),
            "rsseg vectorize --workers 1": rsseg_cmd(args.size, 1),
        }
        if gdal_polygonize:
            runs["gdal_polygonize.py"] = [gdal_polygonize, "-q", str(rasters[args.size]), "-f",
                                          "GPKG", str(out), "classes", "class_id"]
        runs[f"rsseg --workers 1, {args.size}x{args.short}"] = rsseg_cmd(args.short, 1)

        results = {label: [] for label in runs}
        counts = {}
        for _ in range(args.repeats):  # interleaved so that load drifts hit every tool alike
            for label, cmd in runs.items():
                out.unlink(missing_ok=True)
                results[label].append(timed(cmd))
                counts[label] = feature_count(out, "classes")
        out.unlink(missing_ok=True)
        report(args, results, counts)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def report(args, results, counts) -> None:
    med = {label: [statistics.median(r[k] for r in rs) for k in range(3)]
           for label, rs in results.items()}
    print(f"\n{args.size}x{args.size} 6-class raster, block {args.block_size}, "
          f"{args.repeats} interleaved runs each (median), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'tool':<36}{'wall s':>9}{'CPU s':>9}{'peak RSS MiB':>14}{'polygons':>10}")
    for label, (wall, rss, cpu) in med.items():
        print(f"{label:<36}{wall:>9.2f}{cpu:>9.2f}{rss:>14.0f}{counts[label]:>10}")
    gdal = med.get("gdal_polygonize.py")
    if gdal:
        for label in ("rsseg vectorize (auto workers)", "rsseg vectorize --workers 1"):
            print(f"{label} / GDAL: wall {med[label][0] / gdal[0]:.2f}, "
                  f"CPU {med[label][2] / gdal[2]:.2f} (goal: wall <= 1.5)")
        same = counts["rsseg vectorize --workers 1"] == counts["gdal_polygonize.py"]
        print(f"same polygon count as GDAL: {same}")
    else:
        print("gdal_polygonize.py not found: GDAL side skipped")
    short = med[f"rsseg --workers 1, {args.size}x{args.short}"]
    ratio = med["rsseg vectorize --workers 1"][1] / short[1]
    print(f"rsseg peak RSS {args.size}x{args.size} / {args.size}x{args.short} "
          f"({args.size // args.short}x the pixels): {ratio:.2f} (flat memory: ~1)")


if __name__ == "__main__":
    main()
