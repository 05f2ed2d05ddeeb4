"""CPU speed of every network: torch eager (channels_last) against ONNX Runtime, side by side.

For each network (3 bands, 6 classes, seeded random weights) the checkpoint is
exported with ``rsseg.export.onnx`` and one 1x3xSxS tile is run through the two
predictors predict uses, :class:`rsseg.predict.predictor.TorchPredictor` (channels_last,
inference mode) and :class:`rsseg.predict.onnx_predictor.OnnxPredictor`, alternating run
by run so both see the same machine load; both include the softmax. Both use
the same thread count. Prints the median and best Mpx/s of each and the ORT /
eager ratio of the medians.

    python benchmarks/models_speed.py                        # all networks, 2 threads
    python benchmarks/models_speed.py canet lsa_binet --repeats 7 --threads 2
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _speed import median_and_best, speed_arguments  # benchmarks/ is on sys.path
from rsseg.models import create_model, list_models

from rsseg.checkpoint import Checkpoint
from rsseg.export.onnx import export_checkpoint
from rsseg.predict.onnx_predictor import OnnxPredictor
from rsseg.predict.predictor import TorchPredictor


def export(name: str, size: int, folder: Path) -> tuple[torch.nn.Module, Path, str]:
    torch.manual_seed(0)
    model = create_model(name, in_channels=3, num_classes=6).eval()
    ckpt = Checkpoint.from_model(model, tile={"size": size, "overlap": size // 4})
    start = time.perf_counter()
    result = export_checkpoint(ckpt, folder / f"{name}.onnx", tile=size)
    shapes = "dynamic" if result.dynamic_spatial else "fixed"
    return model, result.path, f"{shapes}, export {time.perf_counter() - start:.0f} s"


def measure(name: str, size: int, repeats: int, warmup: int, threads: int,
            folder: Path) -> tuple[dict[str, list[float]], str]:
    model, path, how = export(name, size, folder)
    predictors = {"eager": TorchPredictor(model, "cpu", num_classes=6),
                  "ort": OnnxPredictor(path, "cpu", threads=threads)}
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    times: dict[str, list[float]] = {k: [] for k in predictors}
    for run in range(warmup + repeats):
        for key, predict in predictors.items():  # interleaved: both see the same load
            start = time.perf_counter()
            predict(x)
            if run >= warmup:
                times[key].append(time.perf_counter() - start)
    return times, how


def main() -> None:
    args = speed_arguments(__doc__.splitlines()[0], default_threads=2)
    mpx = args.size * args.size / 1e6
    print(f"torch {torch.__version__}, onnxruntime {_ort_version()}, {args.threads} thread(s), "
          f"1x3x{args.size}x{args.size}, {args.repeats} timed runs each (median / best Mpx/s)")
    print(f"{'network':14s} {'torch eager CL':>17s} {'onnxruntime':>17s} {'ratio':>6s}  graph")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names or list_models():
            times, how = measure(name, args.size, args.repeats, args.warmup, args.threads,
                                 Path(tmp))
            med, best = median_and_best(times, mpx)
            ratio = med["ort"] / med["eager"]
            ratios.append(ratio)
            print(f"{name:14s} {med['eager']:8.3f} / {best['eager']:6.3f} "
                  f"{med['ort']:8.3f} / {best['ort']:6.3f} {ratio:6.2f}  {how}", flush=True)
    print(f"ORT >= 1.3x eager for {sum(r >= 1.3 for r in ratios)} of {len(ratios)} networks; "
          f"median ratio {statistics.median(ratios):.2f}")


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    main()
