"""Predictors: turn a batch of normalised tiles into class probabilities.

A predictor is any callable ``(N, C, H, W) float32 ndarray -> (N, K, H, W)
float32 ndarray`` of class probabilities with a ``num_classes`` attribute. The
engine only depends on that interface, so other backends (ONNX Runtime,
:mod:`rsseg.predict.onnx_predictor`) plug in next to :class:`TorchPredictor`.
Turning ``--model``/``--weights`` into one is :mod:`rsseg.predict.load`'s job.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from rsseg.errors import ModelError

DEVICES = ("auto", "cpu", "cuda")


class Predictor(Protocol):
    num_classes: int

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``, ``cuda`` or ``cuda:N``.

    Asking for CUDA without a GPU is an error here, before any work (predict, batch,
    demo and train all resolve their ``--device`` through this function).
    """
    if device in ("", "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ModelError(f"unknown device {device!r}; choose from {', '.join(DEVICES)} "
                         "(or cuda:N)") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ModelError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"--device {device} was asked for but no CUDA GPU is available")
    return resolved


class TorchPredictor:
    """Run a torch segmentation network on NumPy batches.

    On CPU the network and inputs use ``channels_last`` (10-40 % faster here).
    On CUDA batches go through pinned host memory and the network runs under
    autocast (bf16 where supported, else fp16). ``activation`` is ``"softmax"``
    (logits -> probabilities) or ``None`` (the network already returns scores).
    """

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "auto",
                 num_classes: int | None = None, activation: str | None = "softmax",
                 amp: bool = True):
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.activation = activation
        self.cuda = self.device.type == "cuda"
        self.memory_format = torch.channels_last if not self.cuda else torch.contiguous_format
        self.model = model.eval().to(self.device, memory_format=self.memory_format)
        cfg = getattr(model, "rsseg_config", {})
        self.num_classes = int(num_classes or cfg.get("num_classes", 0)) or None
        self.amp_dtype = None
        if self.cuda and amp:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        with torch.inference_mode():
            if self.cuda:
                x = x.pin_memory().to(self.device, non_blocking=True)
            x = x.contiguous(memory_format=self.memory_format)
            if self.amp_dtype is not None:
                with torch.autocast("cuda", dtype=self.amp_dtype):
                    y = self.model(x)
            else:
                y = self.model(x)
            y = y.float()
            if self.activation == "softmax":
                y = torch.softmax(y, dim=1)
            out = y.cpu().numpy()
        if self.num_classes is None:
            self.num_classes = out.shape[1]
        return np.ascontiguousarray(out, dtype=np.float32)
