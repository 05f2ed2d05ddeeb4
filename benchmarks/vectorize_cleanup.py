"""Benchmark: memory and time of `rsseg vectorize --simplify / --min-area` against a plain run.

Plain vectorization streams (flat memory); the coverage clean-up options hold the
scene's polygons. This script shows how much, on a deliberately noisy class raster
(smooth 6-class blobs plus 2 % single-pixel speckle, the worst case for polygon
counts), at two heights of the same width, so the growth with the scene is visible:

    python benchmarks/vectorize_cleanup.py [--width 2048] [--heights 1024,4096]

Each run is its own process; peak RSS and CPU seconds come from ``getrusage``
(see ``benchmarks/vectorize.py``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from vectorize import feature_count, timed  # noqa: E402 - the shared measuring wrapper

VARIANTS = {"plain": [], "--min-area 1": ["--min-area", "1"], "--simplify 0.5": ["--simplify", "0.5"]}


def write_noisy(path: Path, width: int, height: int, seed: int = 1) -> None:
    """Argmax of six smoothed random fields, plus 2 % random single pixels."""
    import rasterio
    from rasterio.transform import from_origin
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    fields = ndimage.gaussian_filter(rng.random((6, height, width)).astype(np.float32),
                                     sigma=(0, 5, 5))
    classes = fields.argmax(0).astype(np.uint8)
    speckle = rng.random(classes.shape) < 0.02
    classes[speckle] = rng.integers(0, 6, int(speckle.sum()))
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1,
                       dtype="uint8", nodata=255, crs="EPSG:32632", tiled=True,
                       compress="deflate",
                       transform=from_origin(500000, 5400000, 0.25, 0.25)) as dst:
        dst.write(classes, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--heights", default="1024,4096")
    args = ap.parse_args()
    rsseg = shutil.which("rsseg", path=os.path.dirname(sys.executable)) or shutil.which("rsseg")
    work = Path(tempfile.mkdtemp(prefix="rsseg-bench-cleanup-"))
    try:
        print(f"{'raster':<12}{'variant':<16}{'polygons':>10}{'CPU s':>8}{'peak RSS MiB':>14}")
        for height in (int(h) for h in args.heights.split(",")):
            raster = work / f"noisy_{height}.tif"
            write_noisy(raster, args.width, height)
            out = work / "out.gpkg"
            for name, extra in VARIANTS.items():
                cmd = [rsseg, "vectorize", str(raster), "-o", str(out), "--overwrite",
                       "--no-progress", "--workers", "1", *extra]
                _, rss, cpu = timed(cmd)
                print(f"{args.width}x{height:<7}{name:<16}{feature_count(out, 'classes'):>10}"
                      f"{cpu:>8.1f}{rss:>14.0f}", flush=True)
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
