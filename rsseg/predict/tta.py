"""Test-time augmentation: average a network's class scores over flipped and turned views.

A land-cover map has no preferred orientation, so a network trained with flips and
90-degree turns (every rsseg recipe) can be asked about each window in several
orientations: each view is predicted, turned back, and the scores are averaged.
This costs one forward pass per view and typically gains a point or two of mIoU
(unseen Dubai tile 7 with ``baff_skipnet.dubai-aerial-holdout7``: 0.566 -> 0.581 with
``flip``, 0.582 with ``d4``; docs/cli/predict.md).

Modes: ``none`` (one view), ``flip`` (4 views: as is, mirrored, turned half way, and
both: the views that keep a window's shape) and ``d4`` (all 8 symmetries of the
square). A window that is not square (a scene smaller than the tile) takes only the
shape-keeping views. The same code runs on NumPy arrays (any predictor, ONNX included)
and on torch tensors (on the device, inside :class:`~rsseg.predict.predictor.TorchPredictor`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .settings import TTA_MODES

# (quarter turns, mirrored) of each view; the view of x is rot90(mirror(x) if mirrored, k)
_VIEWS = {
    "none": ((0, False),),
    "flip": ((0, False), (0, True), (2, False), (2, True)),
    "d4": tuple((k, m) for m in (False, True) for k in range(4)),
}


def views(mode: str, height: int, width: int) -> tuple[tuple[int, bool], ...]:
    """The views of ``mode`` for a ``height x width`` window (no quarter turns unless square)."""
    if mode not in _VIEWS:
        raise ValueError(f"unknown test-time augmentation {mode!r}; "
                         f"choose from {', '.join(TTA_MODES)}")
    return tuple(v for v in _VIEWS[mode] if height == width or v[0] % 2 == 0)


class ArrayOps:
    """How to turn (quarter turns) and mirror the last two axes of one kind of array."""

    def __init__(self, rot90: Callable, mirror: Callable):
        self.rot90, self.mirror = rot90, mirror


NUMPY_OPS = ArrayOps(lambda a, k: np.rot90(a, k, axes=(-2, -1)) if k % 4 else a,
                     lambda a: a[..., ::-1])


def torch_ops() -> ArrayOps:
    import torch

    return ArrayOps(lambda t, k: torch.rot90(t, k, (-2, -1)) if k % 4 else t,
                    lambda t: torch.flip(t, (-1,)))


def average_views(batch, scores: Callable, mode: str, array_ops: ArrayOps):
    """Mean over the views of ``mode`` of ``scores(view of batch)``, turned back.

    ``batch`` is ``(N, C, H, W)``; ``scores`` returns ``(N, K, H', W')`` for it.
    ``array_ops`` turns and mirrors the last two axes (:data:`NUMPY_OPS`, :func:`torch_ops`).
    """
    chosen = views(mode, batch.shape[-2], batch.shape[-1])
    if len(chosen) == 1:
        return scores(batch)
    total = None
    for turns, mirrored in chosen:
        view = array_ops.rot90(array_ops.mirror(batch) if mirrored else batch, turns)
        out = array_ops.rot90(scores(view), -turns)
        out = array_ops.mirror(out) if mirrored else out
        total = out if total is None else total + out
    return total / len(chosen)


class AugmentedPredictor:
    """Any predictor (NumPy batches in, probabilities out) averaged over the views of
    ``mode``; what ``--tta`` wraps around a predictor that has no faster path of its own
    (ONNX Runtime, a library caller's callable)."""

    def __init__(self, predict, mode: str):
        views(mode, 1, 1)  # an unknown mode fails here, not at the first window
        self.predict, self.mode = predict, mode

    @property
    def num_classes(self) -> int | None:
        return getattr(self.predict, "num_classes", None)  # some learn it at the first call

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = average_views(batch, lambda view: self.predict(np.ascontiguousarray(view)),
                            self.mode, NUMPY_OPS)
        return np.ascontiguousarray(out, dtype=np.float32)

    def check_tile(self, tile: int) -> None:
        check = getattr(self.predict, "check_tile", None)
        if check is not None:
            check(tile)
