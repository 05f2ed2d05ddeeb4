"""Speed and memory of `rsseg synth` at growing scene sizes, side by side in one run.

Each size runs in a fresh process (`rsseg synth ... --labels`), so peak RSS is
that run's alone. Prints wall and CPU seconds, Mpx/s and the peak RSS relative
to the smallest scene: flat memory means ratios near 1.

    python benchmarks/synth.py                 # 2048^2, 4096^2, 8192^2
    python benchmarks/synth.py --sizes 2048,20000 --repeat 1
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


def run_once(size: int, workdir: Path, dsm_out: bool) -> dict:
    out = workdir / f"scene_{size}.tif"
    cmd = [sys.executable, "-c", "from rsseg.cli import main; main()", "synth", "-o", str(out),
           "--size", f"{size}x{size}", "--seed", "1", "--labels",
           str(workdir / f"labels_{size}.tif"), "--overwrite", "--no-progress"]
    if dsm_out:
        cmd += ["--dsm-out", str(workdir / f"dsm_{size}.tif")]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"rsseg synth failed for {size}: {err}")
    for f in workdir.glob(f"*_{size}.tif"):
        f.unlink()
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2048,4096,8192",
                        help="comma-separated square scene sides in pixels")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median reported)")
    parser.add_argument("--dsm-out", action="store_true",
                        help="write uint8 scene + separate DSM instead of a float32 4-band scene")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="rsseg-bench-synth-") as tmp:
        for size in sizes:
            runs = [run_once(size, Path(tmp), args.dsm_out) for _ in range(args.repeat)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            med["size"] = size
            rows.append(med)
    base = rows[0]
    layout = "uint8 scene + float32 DSM" if args.dsm_out else "float32 IR,R,G,DSM scene"
    print(f"rsseg synth, {layout} + labels, median of {args.repeat} run(s), "
          f"{os.cpu_count()} CPUs")
    print(f"{'size':>12} {'Mpx':>7} {'wall s':>8} {'cpu s':>8} {'Mpx/s':>7} {'cpu Mpx/s':>9} "
          f"{'peak RSS MB':>11} {'RSS ratio':>9}")
    for r in rows:
        mpx = r["size"] ** 2 / 1e6
        print(f"{r['size']:>5}x{r['size']:<6} {mpx:7.1f} {r['wall']:8.2f} {r['cpu']:8.2f} "
              f"{mpx / r['wall']:7.2f} {mpx / r['cpu']:9.2f} {r['rss_mb']:11.1f} "
              f"{r['rss_mb'] / base['rss_mb']:9.2f}")


if __name__ == "__main__":
    main()
