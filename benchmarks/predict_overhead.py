"""End-to-end predict time / pure forward time of the same model on the same windows.

Goal (issue 2): <= 1.10 on CPU. Both are measured in this one process, alternating
(forward, end-to-end) ``--repeats`` times, and compared by their medians (and,
since a shared machine makes single runs noisy, by their minimums):

- forward: the scene's windows are read and normalised beforehand (not timed),
  then the predictor runs on each batch exactly as the pipeline calls it;
- end-to-end: ``rsseg.predict_scene`` (what `rsseg predict` runs after
  argument parsing): Dask reads, inference, streaming blend, block writes, COG.

By default the network is the fastest real one registered in ``rsseg.models``
(``baff_skipnet`` when present) with random weights; ``--model tiny`` uses a
two-layer convolution instead, which exposes the pipeline's own cost.

    python benchmarks/predict_overhead.py [--size 1024] [--model baff_skipnet] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn


def build_model(name: str, in_channels: int) -> tuple[nn.Module, str]:
    from rsseg.models import create_model, list_models

    torch.manual_seed(0)
    if name != "tiny" and name in list_models():
        return create_model(name, in_channels=in_channels, num_classes=6), name
    net = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 6, 1))
    return net, "tiny (2x conv3x3 16ch + 1x1)"


def forward_only(scene_path: Path, predictor, tile: int, overlap: int, batch: int) -> float:
    from rsseg.tiling import WindowGrid

    from rsseg.io.scene import Scene, default_normalization
    from rsseg.predict.blend import window_order
    from rsseg.predict.engine import _load_window

    with Scene(scene_path) as scene:
        grid = WindowGrid(scene.height, scene.width, tile, overlap)
        norm = default_normalization(scene)
        tiles = [_load_window(scene, norm, w)[1] for w in window_order(grid)]
    batches = [np.stack(tiles[k:k + batch]) for k in range(0, len(tiles), batch)]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--model", default="baff_skipnet")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--device", default="cpu")
    opts = ap.parse_args()
    torch.set_num_threads(opts.threads)

    from predict_memory import write_scene  # same folder

    from rsseg.predict.predictor import TorchPredictor

    work = Path(tempfile.mkdtemp(prefix="rsseg-overhead-"))
    scene = work / "scene.tif"
    write_scene(scene, opts.size)
    model, label = build_model(opts.model, 3)
    predictor = TorchPredictor(model, opts.device, num_classes=6)
    predictor(np.zeros((1, 3, opts.tile, opts.tile), np.float32))  # warm-up
    fwd, e2e, inner = [], [], []
    for _ in range(opts.repeats):
        fwd.append(forward_only(scene, predictor, opts.tile, opts.overlap, opts.batch_size))
        seconds, result = end_to_end(scene, work / "classes.tif", predictor, opts.tile,
                                     opts.overlap, opts.batch_size)
        e2e.append(seconds)
        inner.append(result.forward_seconds)
    f, e = statistics.median(fwd), statistics.median(e2e)
    print(f"model {label}, device {predictor.device}, scene {opts.size}x{opts.size} uint8x3, "
          f"tile {opts.tile} overlap {opts.overlap}, batch {opts.batch_size}, "
          f"{result.windows} windows, torch threads {opts.threads}")
    print(f"forward only   median {f:8.2f} s  runs {[round(v, 2) for v in fwd]}")
    print(f"end-to-end     median {e:8.2f} s  runs {[round(v, 2) for v in e2e]}")
    own = [e_ - i_ for e_, i_ in zip(e2e, inner)]
    print(f"(forward inside end-to-end: median {statistics.median(inner):.2f} s; pipeline's own "
          f"time = end-to-end - forward inside: median {statistics.median(own):.2f} s)")
    print(f"ratio of minimums (robust to a busy machine): {min(e2e) / min(fwd):.3f}")
    print(f"ratio end-to-end / forward: {e / f:.3f} (goal <= 1.10) -> "
          f"{'OK' if e / f <= 1.10 else 'MISSED'}")

if __name__ == "__main__":
    main()
