"""Shared by the per-network speed benchmarks (models_eager_cpu.py, models_speed.py)."""

from __future__ import annotations

import argparse
import statistics

import torch


def speed_arguments(description: str, default_threads: int) -> argparse.Namespace:
    """Parse ``names --size --threads --repeats --warmup`` and apply the torch thread count."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("names", nargs="*", help="networks (default: all listed)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=default_threads)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args


def median_and_best(times: dict[str, list[float]], mpx: float) -> tuple[dict, dict]:
    """Mpx/s of the median and of the fastest run, per key of ``times`` (seconds per run)."""
    med = {k: mpx / statistics.median(v) for k, v in times.items()}
    best = {k: mpx / min(v) for k, v in times.items()}
    return med, best
