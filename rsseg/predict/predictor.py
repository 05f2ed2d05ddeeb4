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

from .tta import average_views, torch_ops, views
from .settings import check_zoom
from .zoom import zoomed_scores

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
    On CUDA the network runs under autocast (bf16 where supported, else fp16) and
    the predict engine takes the device path (:mod:`rsseg.predict.device`): windows
    go to the GPU in their own dtype, and normalisation, softmax, blending and
    argmax happen there. ``device_path`` forces that path on or off (the tests run
    it on the CPU). ``activation`` is ``"softmax"`` (logits -> probabilities) or
    ``None`` (the network already returns scores). ``tta`` averages the scores over
    flipped/turned views of each window (:mod:`rsseg.predict.tta`) and ``zoom`` shows
    the network each window magnified by that factor (:mod:`rsseg.predict.zoom`), on
    either path.
    """

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "auto",
                 num_classes: int | None = None, activation: str | None = "softmax",
                 amp: bool = True, device_path: bool | None = None, tta: str = "none",
                 zoom: float = 1.0):
        views(tta, 1, 1)  # an unknown mode fails before any work
        self.tta, self._tta_ops = tta, torch_ops()
        self.zoom = check_zoom(zoom)
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.activation = activation
        self.cuda = self.device.type == "cuda"
        self.device_path = self.cuda if device_path is None else bool(device_path)
        self.memory_format = torch.channels_last if not self.cuda else torch.contiguous_format
        self.model = model.eval().to(self.device, memory_format=self.memory_format)
        cfg = getattr(model, "rsseg_config", {})
        self.num_classes = int(num_classes or cfg.get("num_classes", 0)) or None
        self.amp_dtype = None
        if self.cuda and amp:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self.cuda:
            x = x.pin_memory().to(self.device, non_blocking=True)
        out = self.probabilities(x).cpu().numpy()
        return np.ascontiguousarray(out, dtype=np.float32)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``(N, C, H, W)`` float32 on the device -> float32 scores there."""
        with torch.inference_mode():
            y = zoomed_scores(x, self._views, self.zoom)
        if self.num_classes is None:
            self.num_classes = y.shape[1]
        return y

    def _views(self, x: torch.Tensor) -> torch.Tensor:
        return average_views(x, self._scores, self.tta, self._tta_ops)

    def _scores(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        if self.amp_dtype is not None:
            with torch.autocast("cuda", dtype=self.amp_dtype):
                y = self.model(x)
        else:
            y = self.model(x)
        y = y.float()
        return torch.softmax(y, dim=1) if self.activation == "softmax" else y

    def window_runner(self, norm, dtype, tile: int):
        """The engine's device path (see :mod:`rsseg.predict.device`), or None for the host's."""
        if not self.device_path:
            return None
        from rsseg.predict.device import DeviceRunner

        return DeviceRunner(self, norm, dtype, tile)

    def auto_batch_size(self, tile: int, channels: int) -> int:
        """``--batch-size auto``: 1 on the CPU (larger batches gain nothing on 2-16
        cores and hold more windows); on a GPU, as many windows as half the free memory
        holds, measured with one window (a power of two, at most 64)."""
        if not self.cuda:
            return 1
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        probe = torch.zeros((1, channels, tile, tile), device=self.device)
        self.probabilities(probe)
        torch.cuda.synchronize(self.device)
        per_window = max(1, torch.cuda.max_memory_allocated(self.device) - before)
        free, _ = torch.cuda.mem_get_info(self.device)
        fit = int(0.5 * free // (per_window * 2))  # x2: the blender's buffers and slack
        size = 1
        while size * 2 <= min(fit, 64):
            size *= 2
        return size
