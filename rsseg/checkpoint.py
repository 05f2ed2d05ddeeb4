"""Self-describing checkpoints.

A checkpoint is a plain dict of tensors, numbers, strings and lists, so it
loads with ``torch.load(path, weights_only=True)``: no pickled modules, no code
runs on load. Layout (``format_version`` 1)::

    {
      "format": "rsseg-checkpoint", "format_version": 1,
      "model": {"name": "bafnet", "config": {"in_channels": 4, "num_classes": 6, ...}},
      "classes": {"names": [...], "colours": [[r, g, b], ...],   # the class scheme
                  "values": [...], "ignore_values": [...],        # optional: how the
                  "ignore_colours": [[r, g, b], ...], "scheme": "dubai-aerial"},  # labels coded them
      "bands": {"names": ["IR", "R", "G", "DSM"], "mean": [...], "std": [...]},
      "tile": {"size": 512, "overlap": 128},
      "note": "trained on synthetic scenes",   # shown to users, may be empty
      "training": {...},                       # optional: epoch, metrics, settings
      "state_dict": {...},
    }
"""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rsseg.atomic import atomic_output
from rsseg.classes import ISPRS, ClassScheme
from rsseg.errors import ModelError
from rsseg.io.normalization import Normalization

FORMAT = "rsseg-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    model_name: str
    model_config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    classes: ClassScheme = ISPRS
    bands: Normalization | None = None
    tile: dict[str, int] = field(default_factory=lambda: {"size": 512, "overlap": 128})
    note: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    source: str = field(default="", compare=False)  # the file it came from, for messages

    @property
    def in_channels(self) -> int:
        return int(self.model_config["in_channels"])

    @property
    def num_classes(self) -> int:
        return int(self.model_config["num_classes"])

    def build_model(self) -> torch.nn.Module:
        """Instantiate the network and load the weights (eval mode, float32)."""
        from rsseg.models import create_model

        cfg = dict(self.model_config)
        try:
            model = create_model(self.model_name, **cfg)
        except KeyError as exc:
            raise ModelError(str(exc.args[0]), self.source or None) from None
        state = {k: v.float() if v.is_floating_point() else v for k, v in self.state_dict.items()}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"weights do not fit {self.model_name}: {_first_problem(exc)}",
                             self.source or None) from None
        return model.eval()

    def to_dict(self, half: bool = False) -> dict:
        sd = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
              for k, v in self.state_dict.items()}
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "model": {"name": self.model_name, "config": dict(self.model_config)},
            "classes": self.classes.to_dict(),
            "bands": None if self.bands is None else self.bands.to_dict(),
            "tile": dict(self.tile), "note": self.note, "training": dict(self.training),
            "state_dict": sd,
        }

    def save(self, path: str | os.PathLike, half: bool = False) -> None:
        """Write atomically (a unique temporary name, then rename; replaces ``path``)."""
        with atomic_output(path, overwrite=True) as tmp:
            torch.save(self.to_dict(half=half), tmp)

    @classmethod
    def from_model(cls, model: torch.nn.Module, classes: ClassScheme = ISPRS,
                   bands: Normalization | None = None, **kw) -> "Checkpoint":
        cfg = dict(getattr(model, "rsseg_config", {}))
        if "name" not in cfg:
            raise ValueError("model was not built by rsseg.models.create_model")
        name = cfg.pop("name")
        return cls(name, cfg, model.state_dict(), classes=classes, bands=bands, **kw)

    @classmethod
    def from_dict(cls, d: dict, source: str = "checkpoint") -> "Checkpoint":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ModelError("not an rsseg checkpoint", source)
        if int(d.get("format_version", 0)) > FORMAT_VERSION:
            raise ModelError(f"checkpoint format {d['format_version']} is newer than this rsseg "
                             f"understands ({FORMAT_VERSION}); upgrade rsseg", source)
        try:
            ckpt = cls(
                model_name=d["model"]["name"], model_config=dict(d["model"]["config"]),
                state_dict=d["state_dict"], classes=ClassScheme.from_dict(d["classes"]),
                bands=None if d.get("bands") is None else Normalization.from_dict(d["bands"]),
                tile=dict(d.get("tile") or {}), note=d.get("note", ""),
                training=dict(d.get("training") or {}), source=source,
            )
            num_classes = ckpt.num_classes
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"checkpoint is incomplete ({exc})", source) from None
        if num_classes != ckpt.classes.num_classes:
            raise ModelError(f"checkpoint is inconsistent: the network predicts {num_classes} "
                             f"classes but its class list names {ckpt.classes.num_classes}",
                             source)
        return ckpt


def _first_problem(exc: RuntimeError) -> str:
    """The first specific line of torch's load_state_dict message (size mismatch, missing key)."""
    lines = [" ".join(line.split()) for line in str(exc).splitlines() if line.strip()]
    return (lines[1] if len(lines) > 1 else lines[0])[:200]


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load safely with ``weights_only=True``; anything else is refused with a clear error."""
    path = Path(path)
    if not path.exists():
        raise ModelError("weights file not found", path)
    if path.is_dir():
        raise ModelError("weights path is a directory, not a checkpoint file", path)
    if path.suffix.lower() == ".onnx":
        raise ModelError("this is an ONNX model, not a torch checkpoint; pass --backend onnx",
                         path)
    if not _looks_like_torch_save(path):  # text, image, ...: say so, not "refused"
        raise ModelError("not a checkpoint file (not a torch save file)", path)
    try:
        with warnings.catch_warnings():
            # A pickle protocol other than torch's own: the weights-only loader says so
            # before refusing (or loading) it; our one-line error is the message.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            d = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses pickles that reference arbitrary code/classes.
        raise ModelError("refused: not a plain rsseg checkpoint (it would need to run code "
                         f"to load: {str(exc).splitlines()[0][:120]})", path) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for garbage input
        raise ModelError(f"not a checkpoint file ({type(exc).__name__})", path) from None
    return Checkpoint.from_dict(d, source=str(path))


def _looks_like_torch_save(path: Path) -> bool:
    """torch.save writes a zip archive (or, legacy, a pickle starting with PROTO 0x80)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return True  # let torch.load report it
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"
