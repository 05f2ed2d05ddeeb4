"""Random training windows from scene/label pairs, with the papers' augmentations.

Each sample is a square crop taken at a random place of a random scene (scenes
weighted by area) or, with class balancing, centred near a pixel of a class drawn
uniformly (:mod:`rsseg.training.sampling`), at a random scale (the window read is ``crop / scale`` pixels
and resampled to ``crop``), then flipped and rotated by a multiple of 90 degrees.

Randomness comes from a generator seeded with ``(seed, epoch, index)`` so a
sample does not depend on which worker draws it or on what ran before: an
interrupted run resumed at an epoch boundary sees exactly the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from rsseg.classes import NODATA, ClassScheme
from rsseg.io.normalization import Normalization
from rsseg.training.sampling import ClassSampler
from rsseg.training.scenes import SceneInfo, SceneReader


@dataclass(frozen=True)
class Augmentation:
    scale_min: float = 0.75
    scale_max: float = 1.5
    flips: bool = True
    rot90: bool = True


class RandomWindowDataset(torch.utils.data.Dataset):
    """``samples`` random (bands, labels) crops per epoch; set ``epoch`` before each epoch."""

    def __init__(self, infos: Sequence[SceneInfo], label_format: str, classes: ClassScheme,
                 normalization: Normalization, crop: int, samples: int, seed: int = 0,
                 augmentation: Augmentation = Augmentation(),
                 sampler: ClassSampler | None = None, class_balance: float = 0.0):
        self.readers = [SceneReader(i, label_format, classes) for i in infos]
        areas = np.array([i.width * i.height for i in infos], np.float64)
        self.scene_weights = areas / areas.sum()
        self.normalization = normalization
        self.crop = int(crop)
        self.samples = int(samples)
        self.seed = int(seed)
        self.augmentation = augmentation
        self.sampler = sampler
        self.class_balance = float(class_balance)
        self.epoch = 0

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, int(index)))
        x, y = self._random_window(rng)
        x, y = self._flip_rotate(rng, x, y)
        x = self.normalization.apply(x)
        return torch.from_numpy(np.ascontiguousarray(x)), \
            torch.from_numpy(np.ascontiguousarray(y).astype(np.int64))

    def _random_window(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        centre = None
        if self.sampler is not None and rng.random() < self.class_balance:
            index, *centre = self.sampler.draw(rng)
        else:
            index = rng.choice(len(self.readers), p=self.scene_weights)
        reader = self.readers[index]
        aug = self.augmentation
        scale = float(np.exp(rng.uniform(np.log(aug.scale_min), np.log(aug.scale_max))))
        src = max(1, int(round(self.crop / scale)))
        w, h = reader.info.width, reader.info.height
        src_w, src_h = min(src, w), min(src, h)
        if centre is None:
            col = int(rng.integers(0, w - src_w + 1))
            row = int(rng.integers(0, h - src_h + 1))
        else:
            row = int(np.clip(centre[0] - src_h // 2, 0, h - src_h))
            col = int(np.clip(centre[1] - src_w // 2, 0, w - src_w))
        # Keep the zoom of a scene smaller than the window: shrink the output too.
        out_w = max(1, int(round(src_w * self.crop / src)))
        out_h = max(1, int(round(src_h * self.crop / src)))
        x, y = reader.read(col, row, src_w, src_h, out_size=(out_h, out_w))
        if (out_h, out_w) != (self.crop, self.crop):
            x, y = _pad_to(x, y, self.crop)
        return x, y

    def _flip_rotate(self, rng, x, y):
        aug = self.augmentation
        if aug.flips and rng.random() < 0.5:
            x, y = x[:, :, ::-1], y[:, ::-1]
        if aug.flips and rng.random() < 0.5:
            x, y = x[:, ::-1, :], y[::-1, :]
        if aug.rot90:
            k = int(rng.integers(0, 4))
            x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k, axes=(0, 1))
        return x, y


def _pad_to(x: np.ndarray, y: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad a crop from a scene smaller than the window; padding is ignored by the loss."""
    c, h, w = x.shape
    xp = np.zeros((c, size, size), np.float32)
    yp = np.full((size, size), NODATA, np.uint8)
    xp[:, :h, :w] = x[:, :size, :size]
    yp[:h, :w] = y[:size, :size]
    return xp, yp
