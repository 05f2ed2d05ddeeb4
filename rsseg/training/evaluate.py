"""Validation: predict held-out scenes tile by tile and score them with rsseg.score.metrics.

Tiles are read with a margin of context on each side and only their centre is
scored, so tile borders (where a network sees little context) do not bias the
validation score. Memory is one tile at a time.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from rsseg.classes import ClassScheme
from rsseg.io.normalization import Normalization
from rsseg.training.scenes import SceneInfo, SceneReader


def tile_windows(width: int, height: int, tile: int, margin: int):
    """(read window, core window relative to it, core window in the scene) per tile."""
    margin = min(margin, tile // 4)  # a margin eating the tile would score slivers
    core = tile - 2 * margin
    for row in range(0, height, core):
        for col in range(0, width, core):
            cw, ch = min(core, width - col), min(core, height - row)
            c0, r0 = max(0, col - margin), max(0, row - margin)
            c1, r1 = min(width, col + cw + margin), min(height, row + ch + margin)
            yield (c0, r0, c1 - c0, r1 - r0), (col - c0, row - r0, cw, ch)


@torch.inference_mode()
def predict_tile(model: torch.nn.Module, x: np.ndarray, device: torch.device,
                 channels_last: bool = False, amp_dtype: torch.dtype | None = None) -> np.ndarray:
    """(C, H, W) normalised bands -> (H, W) uint8 class ids."""
    t = torch.from_numpy(np.ascontiguousarray(x))[None].to(device)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = model(t)
    return logits.argmax(1)[0].to(torch.uint8).cpu().numpy()


def confusion_on_scenes(model: torch.nn.Module, infos: Sequence[SceneInfo], label_format: str,
                        classes: ClassScheme, normalization: Normalization,
                        device: torch.device, tile: int = 512, margin: int = 32,
                        channels_last: bool = False, amp_dtype: torch.dtype | None = None,
                        on_tile: Callable[[], None] | None = None) -> np.ndarray:
    """Confusion matrix (rows = label) of the model over every validation scene."""
    from rsseg.score.metrics import confusion_matrix

    k = classes.num_classes
    cm = np.zeros((k, k), np.int64)
    was_training = model.training
    model.eval()
    try:
        for info in infos:
            reader = SceneReader(info, label_format, classes)
            try:
                for (c0, r0, w, h), (cc, cr, cw, ch) in tile_windows(info.width, info.height,
                                                                     tile, margin):
                    x, y = reader.read(c0, r0, w, h)
                    pred = predict_tile(model, normalization.apply(x), device, channels_last,
                                        amp_dtype)
                    core = np.s_[cr:cr + ch, cc:cc + cw]
                    cm += confusion_matrix(y[core], pred[core], k)
                    if on_tile is not None:
                        on_tile()
            finally:
                reader.close()
    finally:
        model.train(was_training)
    return cm


def count_tiles(infos: Sequence[SceneInfo], tile: int, margin: int) -> int:
    return sum(len(list(tile_windows(i.width, i.height, tile, margin))) for i in infos)


def majority_baseline_miou(cm: np.ndarray) -> float:
    """mIoU of always predicting the most frequent labelled class (a trivial baseline)."""
    support = cm.sum(axis=1)
    k = len(support)
    majority = int(support.argmax())
    ious = np.zeros(k)
    total = support.sum()
    ious[majority] = support[majority] / total if total else 0.0
    return float(ious[support > 0].mean()) if (support > 0).any() else 0.0
