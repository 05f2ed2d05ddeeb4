"""End-to-end predict time / pure forward time of the same model on the same windows.

Goals (issue 14): ``baff_skipnet`` <= 1.25 at 4096 x 4096; a 1-5 GMAC model
(``lwganet_l0``, 3.2 GMAC) <= 1.15; ``bafnet`` <= 1.05; on CUDA (bf16) end-to-end
>= 0.8 of the model-only throughput for bafnet. Both are measured in this one process,
alternating (forward, end-to-end) ``--repeats`` times, compared by their medians (and,
since a shared machine makes single runs noisy, by their minimums):

- forward: the scene's windows are read and normalised beforehand (not timed; on
  CUDA they are also put on the GPU beforehand), then the network runs on each batch
  (on CUDA: synchronised at the end);
- end-to-end: ``rsseg.predict.engine.predict_scene`` (what `rsseg predict` runs after
  argument parsing): reads, inference, streaming blend, writes, COG.

By default the network is ``baff_skipnet`` with random weights; ``--model tiny`` uses a
two-layer convolution instead, which exposes the pipeline's own cost. Several networks:
``--model baff_skipnet,lwganet_l0``.

    python benchmarks/predict_overhead.py [--size 4096] [--model baff_skipnet] [--repeats 3]
        [--device cuda] [--batch-size auto]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

GOALS = {"baff_skipnet": 1.25, "lwganet_l0": 1.15, "bafnet": 1.05}


def build_model(name: str, in_channels: int) -> tuple[nn.Module, str]:
    from rsseg.models import create_model, list_models

    torch.manual_seed(0)
    if name != "tiny" and name in list_models():
        return create_model(name, in_channels=in_channels, num_classes=6), name
    net = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 6, 1))
    return net, "tiny (2x conv3x3 16ch + 1x1)"


def forward_only(scene_path: Path, predictor, tile: int, overlap: int, batch: int) -> float:
    """Seconds of the network alone on the scene's windows, read and prepared beforehand."""
    from rsseg.io.scene import Scene, default_normalization
    from rsseg.predict.blend import window_order
    from rsseg.predict.runners import HostRunner
    from rsseg.tiling import WindowGrid

    with Scene(scene_path) as scene:
        grid = WindowGrid(scene.height, scene.width, tile, overlap)
        prepare = HostRunner(predictor, default_normalization(scene), scene.dtype, tile).prepare
        tiles = [prepare(*scene.read_raw(w.row_off, w.col_off, w.height, w.width))
                 for w in window_order(grid)]
    batches = [np.stack(tiles[k:k + batch]) for k in range(0, len(tiles), batch)]
    if predictor.cuda:
        batches = [torch.from_numpy(b).to(predictor.device) for b in batches]
        torch.cuda.synchronize(predictor.device)
        t0 = time.perf_counter()
        for b in batches:
            predictor.probabilities(b)
        torch.cuda.synchronize(predictor.device)
        return time.perf_counter() - t0
    t0 = time.perf_counter()
    for b in batches:
        predictor(b)
    return time.perf_counter() - t0


def end_to_end(scene_path: Path, out: Path, predictor, tile: int, overlap: int, batch: int):
    from rsseg import PredictSettings, predict_scene

    settings = PredictSettings(tile=tile, overlap=overlap, batch_size=batch, overwrite=True)
    t0 = time.perf_counter()
    result = predict_scene(scene_path, out, predictor, settings)
    return time.perf_counter() - t0, result


def measure(name: str, scene: Path, work: Path, opts) -> None:
    from rsseg.predict.predictor import TorchPredictor
    from rsseg.predict.runners import resolve_batch_size

    model, label = build_model(name, 3)
    predictor = TorchPredictor(model, opts.device, num_classes=6)
    batch = resolve_batch_size(opts.batch_size, predictor, opts.tile, 3)
    predictor(np.zeros((batch, 3, opts.tile, opts.tile), np.float32))  # warm-up
    fwd, e2e, inner = [], [], []
    for _ in range(opts.repeats):
        fwd.append(forward_only(scene, predictor, opts.tile, opts.overlap, batch))
        seconds, result = end_to_end(scene, work / "classes.tif", predictor, opts.tile,
                                     opts.overlap, batch)
        e2e.append(seconds)
        inner.append(result.forward_seconds)
    f, e = statistics.median(fwd), statistics.median(e2e)
    device = torch.cuda.get_device_name(predictor.device) if predictor.cuda else "CPU"
    print(f"model {label}, device {predictor.device} ({device}), amp {predictor.amp_dtype}, "
          f"scene {opts.size}x{opts.size} uint8x3, tile {opts.tile} overlap {opts.overlap}, "
          f"batch {batch}, {result.windows} windows, torch threads {opts.threads}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"  forward only   median {f:8.2f} s  runs {[round(v, 2) for v in fwd]}")
    print(f"  end-to-end     median {e:8.2f} s  runs {[round(v, 2) for v in e2e]}")
    own = [e_ - i_ for e_, i_ in zip(e2e, inner)]
    print(f"  (forward inside end-to-end: median {statistics.median(inner):.2f} s; pipeline's "
          f"own time = end-to-end - forward inside: median {statistics.median(own):.2f} s)")
    goal = GOALS.get(name)
    verdict = "" if goal is None else (f" (goal <= {goal}) -> "
                                       f"{'OK' if e / f <= goal else 'MISSED'}")
    print(f"  ratio of minimums (robust to a busy machine): {min(e2e) / min(fwd):.3f}")
    print(f"  ratio end-to-end / forward (medians): {e / f:.3f}{verdict}; end-to-end is "
          f"{f / e:.2f} of model-only throughput", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--model", default="baff_skipnet", help="comma-separated; 'tiny' too")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=128)
    ap.add_argument("--batch-size", default="1", help="a number or 'auto'")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--device", default="cpu")
    opts = ap.parse_args()
    torch.set_num_threads(opts.threads)

    from predict_memory import write_scene  # same folder

    work = Path(tempfile.mkdtemp(prefix="rsseg-overhead-"))
    scene = work / "scene.tif"
    write_scene(scene, opts.size)
    for name in opts.model.split(","):
        measure(name.strip(), scene, work, opts)


if __name__ == "__main__":
    main()
