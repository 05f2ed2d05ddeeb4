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
