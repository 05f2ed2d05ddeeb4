"""Benchmark: `rsseg score` on 8192 x 8192 rasters vs sklearn's confusion_matrix in memory.

Writes a synthetic label and prediction (uint8, 6 classes, land-cover-like
patches, 512-pixel DEFLATE tiles like `rsseg predict` output) to a temporary
directory, then times, side by side in one run:

* ``rsseg score`` as a command (subprocess: start-up, reading both GeoTIFFs
  window by window, counting, JSON report);
* :func:`rsseg.score.rasters.score_rasters` (the same, in process);
* :func:`rsseg.score.metrics.confusion_matrix` on the arrays already in memory;
* ``sklearn.metrics.confusion_matrix`` on the same arrays in memory.

It checks that every matrix is identical and prints medians, Mpx/s and ratios.
Usage: ``python benchmarks/score.py [--size 8192] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_maps(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(label, prediction): 16-px class patches; the prediction is wrong on ~15 % of 8-px cells."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 6, (size // 16, size // 16), dtype=np.uint8)
    label = np.repeat(np.repeat(cells, 16, axis=0), 16, axis=1)
    wrong = rng.random((size // 8, size // 8)) < 0.15
    other = rng.integers(0, 6, wrong.shape, dtype=np.uint8)
    pred = label.copy()
    view = pred.reshape(size // 8, 8, size // 8, 8)
    view[:] = np.where(wrong[:, None, :, None], other[:, None, :, None], view)
    return label, pred


def write_tif(path: Path, array: np.ndarray) -> None:
    """(H, W) or (bands, H, W) uint8 as a tiled DEFLATE GeoTIFF."""
    import rasterio
    from rasterio.transform import from_origin

    data = array if array.ndim == 3 else array[None]
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype="uint8", crs="EPSG:32632",
                       transform=from_origin(500000, 5400000, 0.1, 0.1), tiled=True,
                       blockxsize=512, blockysize=512, compress="deflate") as ds:
        ds.write(data)


def write_rgb_label(path: Path, label: np.ndarray) -> None:
    """The label in the ISPRS colour code, written block row by block row."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from rsseg.classes import ISPRS

    palette = np.array(ISPRS.colours, np.uint8).T  # (3, K)
    size = label.shape[0]
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3,
                       dtype="uint8", crs="EPSG:32632", tiled=True, blockxsize=512,
                       blockysize=512, compress="deflate",
                       transform=from_origin(500000, 5400000, 0.1, 0.1)) as ds:
        for row in range(0, size, 512):
            rows = label[row:row + 512]
            ds.write(palette[:, rows], window=Window(0, row, size, rows.shape[0]))


def _cpu_seconds() -> float:
    """CPU time of this process (all threads) plus finished child processes."""
    own = time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own + children.ru_utime + children.ru_stime


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall seconds, median CPU seconds and the last result of ``fn()``."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        c0, t0 = _cpu_seconds(), time.perf_counter()
        result = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu_seconds() - c0)
    return statistics.median(walls), statistics.median(cpus), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sklearn-repeats", type=int, default=1)
    args = parser.parse_args()

    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    from rsseg.score.metrics import confusion_matrix
    from rsseg.score.rasters import score_rasters

    size = args.size
    label, pred = synthetic_maps(size)
    with tempfile.TemporaryDirectory(prefix="rsseg-bench-score-") as tmp:
        tmp = Path(tmp)
        write_tif(tmp / "label.tif", label)
        write_tif(tmp / "pred.tif", pred)
        write_rgb_label(tmp / "label_rgb.tif", label)
        rsseg = str(Path(sys.executable).with_name("rsseg"))

        def run_cli():
            report = tmp / "report.json"
            subprocess.run([rsseg, "score", str(tmp / "pred.tif"), str(tmp / "label.tif"),
                            "--no-progress", "--overwrite", "--json", str(report)],
                           check=True, stdout=subprocess.DEVNULL)
            return np.array(json.loads(report.read_text())["confusion_matrix"])

        def run_library(label_name="label.tif", **options):
            return np.array(score_rasters(tmp / "pred.tif", tmp / label_name, **options)
                            ["confusion_matrix"])

        results = {
            "rsseg score (CLI, from GeoTIFFs)": timed(run_cli, args.repeats),
            "score_rasters (library, from GeoTIFFs)": timed(run_library, args.repeats),
            "score_rasters, ISPRS RGB label":
                timed(lambda: run_library("label_rgb.tif", label_format="isprs-rgb"),
                      args.repeats),
            "score_rasters, --erode-radius 3 (disc)":
                timed(lambda: run_library(erode_radius=3), args.repeats),
            "rsseg.score.metrics.confusion_matrix (in memory)":
                timed(lambda: confusion_matrix(label, pred, 6), args.repeats),
            "sklearn confusion_matrix (in memory)":
                timed(lambda: sk_confusion_matrix(label.ravel(), pred.ravel(),
                                                  labels=list(range(6))), args.sklearn_repeats),
        }
    report(results, size, args)


def report(results: dict, size: int, args) -> None:
    """Print the table: wall and CPU medians, Mpx/s, ratios to sklearn, matrix check."""
    mpx = size * size / 1e6
    sk_wall, sk_cpu, reference = results["sklearn confusion_matrix (in memory)"]
    print(f"{size} x {size} = {mpx:.1f} Mpx, 6 classes, {os.cpu_count()} CPU(s), "
          f"load average {os.getloadavg()[0]:.1f}, median of {args.repeats} "
          f"(sklearn: {args.sklearn_repeats})")
    print(f"{'method':<44} {'wall s':>7} {'Mpx/s':>7} {'x sklearn':>9} "
          f"{'CPU s':>7} {'x sklearn':>9} {'same matrix':>11}")
    identical = True
    for name, (wall, cpu, matrix) in results.items():
        same = "n/a"  # eroded labels give another matrix
        if "erode" not in name:
            same = bool(np.array_equal(matrix, reference))
            identical &= same
        print(f"{name:<44} {wall:>7.3f} {mpx / wall:>7.1f} {sk_wall / wall:>8.1f}x "
              f"{cpu:>7.3f} {sk_cpu / cpu:>8.1f}x {str(same):>11}")
    print("wall: elapsed time; CPU: user+sys seconds of all threads and child processes "
          "(less sensitive to other load on the machine)")
    if not identical:
        sys.exit("matrices differ")


if __name__ == "__main__":
    main()
