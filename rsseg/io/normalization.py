"""Band normalisation: the per-band ``(x - mean) / std`` a network was trained with.

It travels in checkpoints (:mod:`rsseg.checkpoint`) and exported ONNX models, and
is applied to every window read (:mod:`rsseg.predict.engine`), so it lives with
reading rather than with either file format.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Normalization:
    """Per-band ``(x - mean) / std`` applied to the bands in ``names`` order."""

    names: list[str]
    mean: list[float]
    std: list[float]

    def __post_init__(self):
        if not (len(self.names) == len(self.mean) == len(self.std)):
            raise ValueError("band names, means and stds must have the same length")

    @property
    def num_bands(self) -> int:
        return len(self.names)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) or (C, H, W) array -> float32 normalised."""
        mean = np.asarray(self.mean, np.float32).reshape(-1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(-1, 1, 1)
        return ((x.astype(np.float32, copy=False) - mean) / std).astype(np.float32, copy=False)

    def to_dict(self) -> dict:
        return {"names": list(self.names), "mean": [float(v) for v in self.mean],
                "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalization":
        return cls(list(d["names"]), [float(v) for v in d["mean"]], [float(v) for v in d["std"]])
