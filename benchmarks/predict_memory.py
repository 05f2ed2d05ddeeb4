"""Peak RSS of `rsseg predict` on a small and a huge synthetic scene.

Goals (issues 2 and 14): <= 1 GB at every size and a ratio (huge / small) <= 1.15,
i.e. memory does not grow with the scene. Each run is a separate process running
the real CLI (`rsseg.cli.main`), measured with ``os.wait4`` (the child's own max RSS).
The network is a cheap two-layer convolution registered in the child so that
the 16384 x 16384 run finishes in minutes; `--weights random`.

``--mosaic 32768`` adds a 32768 x 32768 (1.07 Gpx) scene built as a VRT mosaic of
4096 x 4096 generated tiles (four distinct files, each used many times), so no 4 GB
file is written; ``--mosaic 32768x2048`` a strip of that width (what the memory
depends on: the blender's carry and GDAL's cache grow with the width only).

    python benchmarks/predict_memory.py [--sizes 2048,16384] [--mosaic 32768] [--keep DIR]
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


MOSAIC_TILE = 4096


def write_mosaic(path: Path, width: int, height: int, distinct: int = 4) -> Path:
    """A VRT of ``MOSAIC_TILE``-pixel generated tiles covering ``width x height``; only
    ``distinct`` tile files are written (each placed many times)."""
    from affine import Affine

    from rsseg.io.vrt import VrtBand, VrtSource, write_mosaic_vrt

    tiles = []
    for k in range(distinct):
        tile = path.parent / f"mosaic_tile_{k}.tif"
        if not tile.exists():
            write_scene(tile, MOSAIC_TILE, seed=100 + k)
        tiles.append(tile)
    sources = []
    for n, (r, c) in enumerate((r, c) for r in range(0, height, MOSAIC_TILE)
                               for c in range(0, width, MOSAIC_TILE)):
        h, w = min(MOSAIC_TILE, height - r), min(MOSAIC_TILE, width - c)
        sources.append(VrtSource(str(tiles[n % distinct]), c, r, w, h))
    from rasterio.crs import CRS

    write_mosaic_vrt(path, sources, width, height, CRS.from_epsg(32632),
                     Affine(0.09, 0, 500000, 0, -0.09, 5300000),
                     [VrtBand("uint8") for _ in range(3)])
    return path


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
    ap.add_argument("--mosaic", default=None, help="SIZE or WIDTHxHEIGHT of a VRT mosaic")
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
    if opts.mosaic:
        width, _, height = opts.mosaic.partition("x")
        width, height = int(width), int(height or width)
        vrt = write_mosaic(work / f"mosaic_{width}x{height}.vrt", width, height)
        wall, rss = run_predict(vrt, work / "classes_mosaic.tif", extra)
        print(f"mosaic {width} x {height} VRT ({width * height / 1e9:.2f} Gpx): peak RSS "
              f"{rss:7.1f} MB  wall {wall:7.1f} s ({width * height / 1e6 / wall:.2f} Mpx/s) -> "
              f"{'OK' if rss <= 1024 else 'MISSED'} (goal <= 1024 MB)", flush=True)


if __name__ == "__main__":
    main()
