"""How the engine turns loaded windows into scores: on the host, or on a device.

A *window runner* has two halves. ``prepare(raw, valid)`` runs on the reader
threads, on each window as read (file dtype, cropped to the scene); ``runner(tiles,
clock)`` runs on the main thread on a batch of prepared windows and returns one
``(K, tile, tile)`` score array per window. ``runner.arrays`` is the array backend
(:mod:`rsseg.predict.arrays`) of those scores: the blender and the classifier run
where the scores are.

- :class:`HostRunner` (any predictor, the library contract): windows are
  normalised to float32 on the reader threads, stacked, and handed to the
  predictor as a NumPy batch; it returns NumPy probabilities.
- :class:`rsseg.predict.device.DeviceRunner` (a :class:`TorchPredictor` on CUDA):
  windows travel in their own dtype; normalisation, softmax, blending and
  classification happen on the GPU.
"""

from __future__ import annotations

import numpy as np

from rsseg.checkpoint import Normalization
from rsseg.errors import InputError
from rsseg.predict.arrays import NUMPY
from rsseg.predict.settings import AUTO


class HostRunner:
    """NumPy batches through any predictor callable."""

    arrays = NUMPY

    def __init__(self, predictor, norm: Normalization, dtype, tile: int):
        self.predictor = predictor
        self.norm, self.tile = norm, tile
        self.mean = np.asarray(norm.mean, np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(norm.std, np.float32).reshape(-1, 1, 1)
        # integers over a finite, non-zero std give finite values: no need to check them
        self.may_be_non_finite = (np.dtype(dtype).kind == "f" or not np.all(self.std != 0)
                                  or not np.all(np.isfinite(self.mean / self.std)))

    def prepare(self, raw: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """``(C, tile, tile)`` float32: normalised, nodata and non-finite values at 0
        (the band mean: no extreme value in the context), mirrored out to the tile
        size where the scene is smaller than a tile."""
        # Normalization.apply's float32 arithmetic, in one buffer: the raw values are
        # cast to float32 inside the subtraction (bit for bit what astype gives)
        data = np.empty(raw.shape, np.float32)
        np.subtract(raw, self.mean, out=data, dtype=np.float32)
        np.divide(data, self.std, out=data)
        if not valid.all():
            data[:, ~valid] = 0.0
        if self.may_be_non_finite:
            np.nan_to_num(data, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        _, h, w = data.shape
        if h < self.tile or w < self.tile:
            data = np.pad(data, ((0, 0), (0, self.tile - h), (0, self.tile - w)),
                          mode="symmetric")
        return data

    def __call__(self, tiles: list, clock) -> np.ndarray:
        with clock("batch"):  # one window: a view, no copy (each tile is a fresh array)
            batch = tiles[0][None] if len(tiles) == 1 else np.stack(tiles)
        with clock("forward"):
            return self.predictor(batch)


def window_runner(predictor, norm: Normalization, dtype, tile: int):
    """The predictor's own runner when it has one for this input (a torch network on a
    GPU), else :class:`HostRunner`."""
    factory = getattr(predictor, "window_runner", None)
    runner = factory(norm, dtype, tile) if factory is not None else None
    return runner if runner is not None else HostRunner(predictor, norm, dtype, tile)


def resolve_batch_size(batch_size, predictor, tile: int, channels: int) -> int:
    """``"auto"``: what the predictor suggests for this tile (1 when it has no opinion)."""
    if batch_size == AUTO:
        suggest = getattr(predictor, "auto_batch_size", None)
        return int(suggest(tile, channels)) if suggest is not None else 1
    try:
        value = int(batch_size)
    except (TypeError, ValueError):
        raise InputError(f"batch size must be a positive integer or 'auto', got {batch_size!r}")
    if value < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    return value
