"""Does `rsseg batch` scale, and what does distribution cost?

Eight synthetic tiles (apart from each other, so every tile is predicted on its
own, exactly the work `rsseg predict` does) are run, interleaved per repeat so
that every layout sees the same machine load:

- ``batch 1x1``: `rsseg batch --workers 1 --threads 1`
- ``batch 2x1``: `rsseg batch --workers 2 --threads 1`
- ``predict 2t``: one Python process calling `rsseg predict` on every tile in
  turn, torch with 2 threads (the plain way to use two cores)

Each is timed end to end as a fresh process (interpreter, imports and, for
batch, the cluster start included). Prints the median wall time of each and
the ratios: (a) 2x1 vs 1x1, goal >= 1.7; (b) 2x1 vs predict 2t, goal >= 0.95,
and the CPU seconds each layout used (user + system of the whole process tree): on a
shared machine they measure the work, distribution overhead included, whatever the load.
Also prints the load average, and from the job database how much of the batch's
wall time the workers spent inside tiles (the rest is start-up and hand-off).

Tiles are 2048 px by default: with baff_skipnet a 768-px tile is 0.3 s of work, so eight
of them (2-3 s) would time the ~4 s of process start-up (Python, torch, the cluster),
which no layout hides, rather than how the tile work spreads over the workers.

    python benchmarks/batch_scaling.py                        # 8 tiles of 2048 px, 3 repeats
    python benchmarks/batch_scaling.py --size 512 --repeats 1 --model lwganet_l0
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PREDICT_LOOP = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
from rsseg.cli import run
args, tiles, out = sys.argv[2:-2], sys.argv[-2].split(','), sys.argv[-1]
for t in tiles:
    name = t.rsplit('/', 1)[-1]
    assert run(['predict', t, '-o', out + '/' + name, '--no-progress', '--overwrite', *args]) == 0
"""


def make_tiles(folder: Path, count: int, size: int) -> list[Path]:
    from rsseg.synth.scene import write_synthetic_scene

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        path = folder / f"tile_{k}.tif"
        # 1 km apart: no two tiles touch, each is a mosaic of its own
        write_synthetic_scene(path, size, size, seed=k, origin=(496000.0 + 1000.0 * k, 5420000.0))
        paths.append(path)
    return paths


def rsseg_cmd() -> list[str]:
    return [sys.executable, "-c", "from rsseg.cli import main; main()"]


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the process and all it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def busy_fraction(out: Path, wall: float, workers: int) -> float:
    from rsseg.batch.jobdb import JobDB

    db = JobDB.read(out)
    try:
        tiles = db.tiles("done").values()
    finally:
        db.close()
    return sum(t["seconds"] for t in tiles) / (wall * workers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=8)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--model", default="baff_skipnet")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    model = ["--model", args.model, "--weights", "random"]
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    times: dict[str, list[float]] = {"batch 1x1": [], "batch 2x1": [], "predict 2t": []}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    busy: dict[str, list[float]] = {"batch 1x1": [], "batch 2x1": []}
    with tempfile.TemporaryDirectory(prefix="rsseg-bench-") as tmp:
        tmp = Path(tmp)
        tiles = make_tiles(tmp / "tiles", args.tiles, args.size)
        glob = str(tmp / "tiles" / "*.tif")
        print(f"{args.tiles} tiles of {args.size}x{args.size} px, {args.model} (random weights), "
              f"{os.cpu_count()} CPUs, load average before: "
              + " ".join(f"{v:.1f}" for v in os.getloadavg()))
        for rep in range(args.repeats):
            for name, workers in (("batch 1x1", 1), ("batch 2x1", 2)):
                out = tmp / f"out-{workers}-{rep}"
                cmd = rsseg_cmd() + ["batch", glob, "-o", str(out), "--workers", str(workers),
                                     "--threads", "1", "--no-progress", *model]
                wall, used = timed(cmd, env)
                times[name].append(wall)
                cpu[name].append(used)
                busy[name].append(busy_fraction(out, times[name][-1], workers))
            out = tmp / f"out-predict-{rep}"
            out.mkdir()
            cmd = [sys.executable, "-c", PREDICT_LOOP, "2", *model,
                   ",".join(str(t) for t in tiles), str(out)]
            wall, used = timed(cmd, env)
            times["predict 2t"].append(wall)
            cpu["predict 2t"].append(used)
            print(f"repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items())
                  + f"; load {os.getloadavg()[0]:.1f}", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        extra = f", workers busy {statistics.median(busy[k]):.0%} of wall" if k in busy else ""
        print(f"{k:11s} median {med[k]:7.2f} s  (runs: {', '.join(f'{x:.1f}' for x in v)}); "
              f"CPU {statistics.median(cpu[k]):.1f} s, {statistics.median(cpu[k]) / med[k]:.2f} "
              f"cores used{extra}")
    a = med["batch 1x1"] / med["batch 2x1"]
    b = med["predict 2t"] / med["batch 2x1"]
    print(f"(a) speed-up 2 workers vs 1 worker:           {a:.2f}x (goal >= 1.7)")
    print(f"(b) 2 workers vs one 2-thread predict process: {b:.2f}x (goal >= 0.95)")
    # On a shared machine wall times follow the other load; CPU seconds do not: they show
    # the work each layout costs (distribution overhead included), whatever the load.
    c = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"CPU seconds: 2x1 / 1x1 = {c['batch 2x1'] / c['batch 1x1']:.2f}, "
          f"2x1 / predict 2t = {c['batch 2x1'] / c['predict 2t']:.2f} (1.00 = no extra work)")
    print("load average after: " + " ".join(f"{v:.1f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
