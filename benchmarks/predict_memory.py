"""Peak RSS of `rsseg predict` on a small and a huge synthetic scene.

Goal (issue 2): <= 1 GB for both and a ratio (huge / small) <= 1.15, i.e. memory
does not grow with the scene. Each run is a separate process running the real
CLI (`rsseg.cli.main`), measured with ``os.wait4`` (the child's own max RSS).
The network is a cheap two-layer convolution registered in the child so that
the 16384 x 16384 run finishes in minutes; `--weights random`.

    python benchmarks/predict_memory.py [--sizes 2048,16384] [--keep DIR] [--synth]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import sys, torch.nn as nn
from rsseg.models import register_model
@register_model("bench_tiny", listed=False)
def bench_tiny(in_channels=3, num_classes=6):
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, num_classes, 1))
from rsseg.cli import main
main(sys.argv[1:])
"""


def write_scene(path: Path, size: int, seed: int = 0, use_synth: bool = False, bands: int = 3,
                width: int | None = None) -> None:
    """A uint8 ``bands``-band tiled DEFLATE scene written block by block (never whole in
    memory); ``width`` defaults to ``size`` (the height)."""
    if use_synth:
        from rsseg.synth.scene import write_synthetic_scene

        write_synthetic_scene(path, size, size, seed=seed, dsm_path=path.with_suffix(".dsm.tif"))
        return
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    height, width = size, width or size
    profile = dict(driver="GTiff", width=width, height=height, count=bands, dtype="uint8",
                   crs="EPSG:32632", transform=Affine(0.09, 0, 500000, 0, -0.09, 5300000),
                   tiled=True, blockxsize=512, blockysize=512, compress="deflate", zlevel=1)
    yy, xx = np.mgrid[0:512, 0:512].astype(np.float32)
    with rasterio.open(path, "w", **profile) as ds:
        for r in range(0, height, 512):
            for c in range(0, width, 512):
                h, w = min(512, height - r), min(512, width - c)
                f = rng.uniform(0.005, 0.05, bands)
                block = np.stack([127 + 100 * np.sin(f[k] * (yy + r) + f[(k + 1) % bands] * (xx + c))
                                  for k in range(bands)])
                block += rng.normal(0, 8, block.shape)
                ds.write(np.clip(block, 0, 255).astype(np.uint8)[:, :h, :w],
                         window=Window(c, r, w, h))


def run_predict(scene: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one `rsseg predict` process."""
    args = [sys.executable, "-c", CHILD, "predict", str(scene), "--model", "bench_tiny",
            "--weights", "random", "-o", str(out), "--overwrite", "--no-progress", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"rsseg predict failed ({proc.returncode}): {err}")
    return wall, usage.ru_maxrss / 1024  # KiB -> MiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2048,16384")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--keep", type=Path, default=None, help="folder to keep scenes in")
    ap.add_argument("--synth", action="store_true", help="scenes from rsseg.synth.scene")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=128)
    opts = ap.parse_args()
    sizes = [int(s) for s in opts.sizes.split(",")]
    work = opts.keep or Path(tempfile.mkdtemp(prefix="rsseg-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    extra = ["--tile", str(opts.tile), "--overlap", str(opts.overlap)]
    results = {}
    for size in sizes:
        scene = work / f"scene_{size}.tif"
        if not scene.exists():
            t0 = time.perf_counter()
            write_scene(scene, size, use_synth=opts.synth)
            print(f"wrote {scene} ({size}x{size}) in {time.perf_counter() - t0:.0f} s", flush=True)
        runs = [run_predict(scene, work / f"classes_{size}.tif", extra) for _ in range(opts.repeats)]
        wall = statistics.median(r[0] for r in runs)
        rss = statistics.median(r[1] for r in runs)
        results[size] = rss
        mpx = size * size / 1e6
        print(f"{size:>6} x {size:<6} peak RSS {rss:7.1f} MB  wall {wall:7.1f} s  "
              f"({mpx / wall:.2f} Mpx/s)", flush=True)
    if len(sizes) >= 2:
        ratio = results[sizes[-1]] / results[sizes[0]]
        ok = max(results.values()) <= 1024 and ratio <= 1.15
        print(f"ratio peak RSS {sizes[-1]} / {sizes[0]}: {ratio:.3f} (goal <= 1.15, each <= 1024 MB)"
              f" -> {'OK' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
