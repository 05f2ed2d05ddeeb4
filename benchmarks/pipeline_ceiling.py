"""The predict pipeline's own ceiling: ``predict_scene`` with a null predictor (issue 14).

A generated 4-band uint8 tiled DEFLATE scene (8192 x 8192 by default), 512 px windows
with 128 px overlap, cosine blend, finished as a COG, predicted by a predictor that
costs nothing (fixed class probabilities), so everything measured is the pipeline:
read + decode, normalise, blend, argmax/confidence, writes, COG finish. Prints Mpx/s
and the per-stage seconds of the same run (summed over threads: stages overlap, so
they add up to more than the wall time), with the machine's load beside them.

Goal on the 2-core development CPU: >= 35 Mpx/s (moonshot 50).

``--baseline DIR`` runs the same measurement with the rsseg of another checkout (e.g.
``/work/main``) in alternation with this one, each in a fresh process, and prints
the ratio of medians: on a shared machine only such side-by-side ratios mean much.

``--predictor torch`` uses a :class:`TorchPredictor` around a null network instead
(on ``--device cuda`` that takes the device path: uint8 batches, normalisation,
blend and argmax on the GPU; ``--device-path`` takes it on the CPU too, to compare).

    python benchmarks/pipeline_ceiling.py [--size 8192] [--repeats 3] [--baseline /work/main]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
STAGES = ("read", "normalize", "batch", "forward", "blend", "classify", "write", "COG finish",
          "overviews", "wait for reads", "wait for writer", "wait for classify", "writer idle")


def null_probabilities(k: int, tile: int, seed: int = 0) -> np.ndarray:
    """Fixed probabilities ``(K, tile, tile)`` that vary like a real map's: smooth class
    regions tens of pixels across (so the COG compresses like a land-cover map, not
    like noise) with a little per-pixel noise in the confidences."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:tile, 0:tile].astype(np.float32)
    f = rng.uniform(0.01, 0.06, (k, 2)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, k).astype(np.float32)
    logits = np.stack([np.sin(f[c, 0] * yy + phase[c]) + np.cos(f[c, 1] * xx + 2 * phase[c])
                       for c in range(k)]) * 3
    logits += rng.normal(0, 0.1, logits.shape).astype(np.float32)
    e = np.exp(logits - logits.max(axis=0))
    return (e / e.sum(axis=0)).astype(np.float32)


class NullPredictor:
    """The library contract (NumPy in, NumPy out) at no cost: the same probabilities for
    every window, returned as a read-only broadcast view."""

    num_classes = 6

    def __init__(self, tile: int):
        self.probs = null_probabilities(self.num_classes, tile)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.probs, (batch.shape[0],) + self.probs.shape)


def null_network(tile: int):
    """A torch module with the null predictor's output (as logits; softmax of log p = p)."""
    import torch

    class NullNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            logits = np.log(null_probabilities(6, tile))
            self.register_buffer("logits", torch.from_numpy(logits))

        def forward(self, x):
            return self.logits.expand(x.shape[0], -1, -1, -1) + 0 * x[:, :1]

    return NullNet()


def child(opts) -> None:
    """One measured run in this process; prints a JSON line."""
    import torch

    torch.set_num_threads(1)
    from rsseg import PredictSettings, predict_scene

    if opts.predictor == "numpy":
        predictor = NullPredictor(opts.tile)
    else:
        from rsseg.predict.predictor import TorchPredictor

        predictor = TorchPredictor(null_network(opts.tile), opts.device, num_classes=6,
                                   device_path=True if opts.device_path else None)
    out = Path(opts.out)
    batch = opts.batch_size if opts.batch_size == "auto" else int(opts.batch_size)
    t0, c0 = time.perf_counter(), time.process_time()
    settings = PredictSettings(tile=opts.tile, overlap=opts.overlap, blend="cosine",
                               batch_size=batch, overwrite=True, readers=opts.readers)
    result = predict_scene(opts.scene, out, predictor, settings)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"wall": wall, "cpu": cpu, "windows": result.windows,
                      "stages": getattr(result, "stages", {})}))


def run_child(opts, scene: Path, out: Path, rsseg_root: str | None) -> dict:
    env = dict(os.environ)
    if rsseg_root:
        env["PYTHONPATH"] = rsseg_root + os.pathsep + env.get("PYTHONPATH", "")
    args = [sys.executable, str(Path(__file__).resolve()), "--child", "--scene", str(scene),
            "--out", str(out), "--tile", str(opts.tile), "--overlap", str(opts.overlap),
            "--batch-size", str(opts.batch_size), "--readers", str(opts.readers),
            "--predictor", opts.predictor, "--device", opts.device]
    if opts.device_path:
        args.append("--device-path")
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"run failed ({rsseg_root or 'this checkout'}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def load() -> str:
    return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def report(label: str, runs: list[dict], mpx: float) -> float:
    walls = [r["wall"] for r in runs]
    wall = statistics.median(walls)
    print(f"{label}: median {wall:.2f} s = {mpx / wall:.1f} Mpx/s (runs "
          f"{', '.join(f'{w:.2f}' for w in walls)} s; best {mpx / min(walls):.1f} Mpx/s)")
    if all("cpu" in r for r in runs):  # every thread of the process, GDAL's included
        cpu = statistics.median(r["cpu"] for r in runs)
        print(f"  process CPU {cpu:.2f} s (median): {cpu / wall:.2f} cores busy on average")
    stages = [r["stages"] for r in runs if r["stages"]]
    if stages:
        windows = runs[0]["windows"]
        print(f"  {'stage':<16} {'wall s':>8} {'% of wall':>10} {'CPU s':>8} "
              f"{'CPU ms/window':>14}")
        names = [n for n in set().union(*stages) if not n.startswith("cpu ")]
        for name in [n for n in STAGES if n in names] + sorted(set(names) - set(STAGES)):
            sec = statistics.median(s.get(name, 0.0) for s in stages)
            cpu = statistics.median(s.get("cpu " + name, 0.0) for s in stages)
            print(f"  {name:<16} {sec:8.2f} {100 * sec / wall:9.1f}% {cpu:8.2f} "
                  f"{1000 * cpu / windows:14.2f}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--bands", type=int, default=4)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=128)
    ap.add_argument("--batch-size", default="1")
    ap.add_argument("--readers", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--predictor", choices=("numpy", "torch"), default="numpy")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--device-path", action="store_true",
                    help="with --predictor torch: take the device path even on the CPU")
    ap.add_argument("--baseline", default=None, help="another checkout's root to compare with")
    ap.add_argument("--keep", type=Path, default=None, help="folder to keep the scene in")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--scene", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.child:
        return child(opts)

    sys.path.insert(0, str(HERE))
    from predict_memory import write_scene

    work = opts.keep or Path(tempfile.mkdtemp(prefix="rsseg-ceiling-"))
    work.mkdir(parents=True, exist_ok=True)
    scene = work / f"scene_{opts.size}_{opts.bands}b.tif"
    if not scene.exists():
        t0 = time.perf_counter()
        write_scene(scene, opts.size, bands=opts.bands)
        print(f"wrote {scene} in {time.perf_counter() - t0:.0f} s", flush=True)
    mpx = opts.size * opts.size / 1e6
    print(f"scene {opts.size}x{opts.size} uint8 x{opts.bands} DEFLATE tiled, tile {opts.tile} "
          f"overlap {opts.overlap}, cosine, COG; {opts.predictor} null predictor on "
          f"{opts.device}, batch {opts.batch_size}, readers {opts.readers}; {os.cpu_count()} "
          f"CPUs; {load()} at start", flush=True)
    ours, base = [], []
    for _ in range(opts.repeats):
        ours.append(run_child(opts, scene, work / "classes.tif", None))
        if opts.baseline:
            base.append(run_child(opts, scene, work / "classes_base.tif", opts.baseline))
    wall = report("this checkout", ours, mpx)
    if opts.baseline:
        base_wall = report(f"baseline {opts.baseline}", base, mpx)
        print(f"speed-up (ratio of medians, same run): {base_wall / wall:.2f}x")
    print(f"{load()} at the end; goal >= 35 Mpx/s: "
          f"{'met' if mpx / wall >= 35 else 'not met'} ({mpx / wall:.1f})")


if __name__ == "__main__":
    main()
