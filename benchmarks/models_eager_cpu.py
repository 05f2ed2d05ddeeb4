"""CPU throughput of the networks in torch eager mode: contiguous vs channels_last.

For every network (3 bands, 6 classes, eval mode, no_grad) one 1x3xSxS tile is
run alternately in the two memory layouts, so both see the same machine load.
Prints per network the median and best Mpx/s of each layout and the
channels_last / contiguous ratio of the medians.

    python benchmarks/models_eager_cpu.py                 # all listed networks
    python benchmarks/models_eager_cpu.py canet lsa_binet --threads 1 --repeats 5
"""

from __future__ import annotations

import time

import torch
from _speed import median_and_best, speed_arguments  # benchmarks/ is on sys.path
from rsseg.models import create_model, list_models


def time_forward(model: torch.nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    model(x)
    return time.perf_counter() - start


def measure(name: str, size: int, repeats: int, warmup: int) -> dict[str, list[float]]:
    torch.manual_seed(0)
    model = create_model(name, in_channels=3, num_classes=6).eval()
    x = torch.randn(1, 3, size, size)
    layouts = {
        "contiguous": (model, x),
        "channels_last": (model, x.contiguous(memory_format=torch.channels_last)),
    }
    times: dict[str, list[float]] = {k: [] for k in layouts}
    with torch.no_grad():
        for _ in range(warmup):
            for layout, (net, inp) in layouts.items():
                _set_layout(net, layout)
                time_forward(net, inp)
        for _ in range(repeats):  # interleaved: both layouts see the same load
            for layout, (net, inp) in layouts.items():
                _set_layout(net, layout)
                times[layout].append(time_forward(net, inp))
    return times


def _set_layout(model: torch.nn.Module, layout: str) -> None:
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model.to(memory_format=fmt)


def main() -> None:
    args = speed_arguments(__doc__.splitlines()[0], default_threads=1)
    mpx = args.size * args.size / 1e6
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.size}x{args.size}, "
          f"{args.repeats} timed runs per layout (median / best Mpx/s)")
    print(f"{'network':14s} {'contiguous':>17s} {'channels_last':>17s} {'ratio':>6s}")
    for name in args.names or list_models():
        times = measure(name, args.size, args.repeats, args.warmup)
        med, best = median_and_best(times, mpx)
        print(f"{name:14s} {med['contiguous']:8.3f} / {best['contiguous']:6.3f} "
              f"{med['channels_last']:8.3f} / {best['channels_last']:6.3f} "
              f"{med['channels_last'] / med['contiguous']:6.2f}", flush=True)


if __name__ == "__main__":
    main()
