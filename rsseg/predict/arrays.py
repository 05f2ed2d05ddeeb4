"""The few array operations the blender and the classifier need, on NumPy or on torch.

:class:`~rsseg.predict.blend.StreamingBlender` and :func:`~rsseg.predict.sinks.classify`
are written once against this interface. :data:`NUMPY` runs them on host arrays (the
CPU path); :class:`TorchArrays` runs the very same code on torch tensors, on a GPU
(scores never leave the device: only uint8 classes and confidences come back) or on
the CPU, where the tests check that it is bit-identical to NumPy. Both do the same
IEEE float32 operations in the same order (a product, then a sum; a comparison and
a maximum), which round identically everywhere, so the results match bit for bit.
"""

from __future__ import annotations

import numpy as np


class NumpyArrays:
    """Host arrays: ``float32``/``bool``/``uint8`` NumPy arrays."""

    name = "numpy"

    def zeros(self, shape, kind: str = "float"):
        return np.zeros(shape, _NUMPY_KINDS[kind])

    def empty(self, shape, kind: str = "float"):
        return np.empty(shape, _NUMPY_KINDS[kind])

    def asarray(self, values: np.ndarray):
        """Host data (weights, validity masks) in this backend's memory."""
        return values

    def multiply(self, a, b, out) -> None:
        np.multiply(a, b, out=out)

    def maximum(self, a, b, out) -> None:
        np.maximum(a, b, out=out)

    def greater(self, a, b, out) -> None:
        np.greater(a, b, out=out)

    def as_uint8(self, mask):
        """A bool mask as 0/1 uint8 (no copy where possible)."""
        return mask.view(np.uint8)

    def to_uint8(self, values):
        return values.astype(np.uint8)

    def rint(self, values):
        return np.rint(values)

    def clip(self, values, lo: float, hi: float):
        return np.clip(values, lo, hi)

    def isnan_any(self, values) -> bool:
        return bool(np.isnan(values).any())

    def to_host(self, values) -> np.ndarray:
        return values

    def copy(self, values):
        return values.copy()


_NUMPY_KINDS = {"float": np.float32, "bool": bool, "uint8": np.uint8}

NUMPY = NumpyArrays()


class TorchArrays:
    """torch tensors on ``device`` (``cpu`` in the tests, ``cuda`` in production)."""

    name = "torch"

    def __init__(self, device="cpu"):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.kinds = {"float": torch.float32, "bool": torch.bool, "uint8": torch.uint8}

    def zeros(self, shape, kind: str = "float"):
        return self.torch.zeros(shape, dtype=self.kinds[kind], device=self.device)

    def empty(self, shape, kind: str = "float"):
        return self.torch.empty(shape, dtype=self.kinds[kind], device=self.device)

    def asarray(self, values):
        if isinstance(values, self.torch.Tensor):
            return values.to(self.device, non_blocking=True)
        return self.torch.from_numpy(np.ascontiguousarray(values)).to(self.device,
                                                                        non_blocking=True)

    def multiply(self, a, b, out) -> None:
        self.torch.mul(a, b, out=out)

    def maximum(self, a, b, out) -> None:
        self.torch.maximum(a, b, out=out)

    def greater(self, a, b, out) -> None:
        self.torch.gt(a, b, out=out)

    def as_uint8(self, mask):
        return mask.view(self.torch.uint8)

    def to_uint8(self, values):
        return values.to(self.torch.uint8)

    def rint(self, values):
        return self.torch.round(values)  # half to even, as np.rint

    def clip(self, values, lo: float, hi: float):
        return self.torch.clamp(values, lo, hi)

    def isnan_any(self, values) -> bool:
        return bool(self.torch.isnan(values).any())

    def to_host(self, values) -> np.ndarray:
        return values.cpu().numpy()

    def copy(self, values):
        return values.clone()
