"""Predictors: turn a batch of normalised tiles into class probabilities.

A predictor is any callable ``(N, C, H, W) float32 ndarray -> (N, K, H, W)
float32 ndarray`` of class probabilities with a ``num_classes`` attribute. The
pipeline only depends on that interface, so other backends (ONNX Runtime) plug
in next to :class:`TorchPredictor`.

This module also resolves what the user asked for on the command line
(``--model``, ``--weights PATH|random``, bundled weights) into a network plus
the normalisation, class scheme and tile settings that go with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from rsseg.checkpoint import Checkpoint, Normalization, load_checkpoint
from rsseg.classes import ISPRS, ClassScheme
from rsseg.errors import ModelError

DEVICES = ("auto", "cpu", "cuda")


class Predictor(Protocol):
    num_classes: int

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if device not in DEVICES:
        raise ModelError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for but no CUDA GPU is available")
    return torch.device(device)


class TorchPredictor:
    """Run a torch segmentation network on NumPy batches.

    On CPU the network and inputs use ``channels_last`` (10-40 % faster here).
    On CUDA the network runs under autocast (bf16 where supported, else fp16) and
    the predict engine takes the device path (:mod:`rsseg.predict.device`): windows
    go to the GPU in their own dtype, and normalisation, softmax, blending and
    argmax happen there. ``device_path`` forces that path on or off (the tests run
    it on the CPU). ``activation`` is ``"softmax"`` (logits -> probabilities) or
    ``None`` (the network already returns scores).
    """

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "auto",
                 num_classes: int | None = None, activation: str | None = "softmax",
                 amp: bool = True, device_path: bool | None = None):
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
            x = x.contiguous(memory_format=self.memory_format)
            if self.amp_dtype is not None:
                with torch.autocast("cuda", dtype=self.amp_dtype):
                    y = self.model(x)
            else:
                y = self.model(x)
            y = y.float()
            if self.activation == "softmax":
                y = torch.softmax(y, dim=1)
        if self.num_classes is None:
            self.num_classes = y.shape[1]
        return y

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


@dataclass
class ResolvedModel:
    """A network ready to predict plus what it needs: normalisation, classes, tiling."""

    model: torch.nn.Module
    classes: ClassScheme
    normalization: Normalization | None  # None: the pipeline uses per-dtype defaults
    tile: dict = field(default_factory=dict)
    source: str = ""  # what the weights are, for messages
    note: str = ""


def check_model_name(name: str) -> None:
    """Unknown model names fail early with the list of known ones."""
    from rsseg.models import model_entry

    try:
        entry = model_entry(name)
    except KeyError as exc:
        raise ModelError(str(exc.args[0])) from None
    if entry.task != "segmentation":
        raise ModelError(f"model {name!r} is an image classifier (it checks a backbone's size), "
                         "not a segmentation network; see `rsseg models`")


def resolve_model(name: str, weights: str | os.PathLike | None, in_channels: int,
                  seed: int = 0, classes: ClassScheme = ISPRS) -> ResolvedModel:
    """Build ``name`` from ``weights``: a bundled tag, a checkpoint path, ``"random"`` or
    None (the model's default bundled tag).

    ``in_channels`` is the number of bands the scene provides; a checkpoint that
    expects another number is refused with a clear message.
    """
    from rsseg.weights.bundled import resolve_weights

    check_model_name(name)
    path = resolve_weights(name, None if weights is None else str(weights))
    if path == "random":
        return _random_model(name, in_channels, seed, classes)
    if path is None:
        raise ModelError(f"no weights are bundled for model {name!r}; pass --weights "
                         "PATH (a checkpoint from `rsseg train`) or --weights random")
    ckpt = load_checkpoint(path)
    return _from_checkpoint(ckpt, name, in_channels, str(path))


def _random_model(name: str, in_channels: int, seed: int, classes: ClassScheme) -> ResolvedModel:
    from rsseg.models import create_model

    torch.manual_seed(seed)
    model = create_model(name, in_channels=in_channels, num_classes=classes.num_classes)
    return ResolvedModel(model, classes, None, {}, source=f"random weights (seed {seed})")


def _fitting_tags(in_channels: int) -> str:
    from rsseg.weights.bundled import tags_fitting

    fitting = tags_fitting(in_channels)
    return f", or use bundled weights for {in_channels} bands: {'; '.join(fitting)}" \
        if fitting else ""


def _from_checkpoint(ckpt: Checkpoint, name: str, in_channels: int, source: str) -> ResolvedModel:
    if ckpt.model_name != name:
        raise ModelError(f"checkpoint holds a {ckpt.model_name!r} model, not {name!r}; "
                         f"use --model {ckpt.model_name}", source)
    if ckpt.in_channels != in_channels:
        bands = f" ({', '.join(ckpt.bands.names)})" if ckpt.bands else ""
        raise ModelError(f"model expects {ckpt.in_channels} bands{bands} but the input provides "
                         f"{in_channels}; choose them with --bands (and --band-file, --dsm)"
                         f"{_fitting_tags(in_channels)}", source)
    model = ckpt.build_model()
    return ResolvedModel(model, ckpt.classes, ckpt.bands, dict(ckpt.tile or {}),
                         source=source, note=ckpt.note)
