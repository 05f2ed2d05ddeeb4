"""ONNX Runtime backend: :class:`OnnxPredictor`, a drop-in for :class:`~rsseg.predict.predictor.TorchPredictor`.

It runs a model written by :mod:`rsseg.export.onnx` and reads from the file's
metadata everything else predict needs (classes, band order, normalisation,
tile and overlap), so ``rsseg predict --backend onnx --weights model.onnx``
takes no ``--model`` (:func:`rsseg.predict.load.load_predictor` opens it).
Like TorchPredictor it returns softmax probabilities.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rsseg.classes import ClassScheme
from rsseg.errors import ModelError
from rsseg.io.normalization import Normalization

FORMAT = "rsseg-onnx"  # = rsseg.export.onnx.FORMAT (not imported: that module pulls in torch)
FORMAT_VERSION = 1
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class OnnxModelInfo:
    """What an exported model's metadata says about it."""

    model_name: str
    model_config: dict
    classes: ClassScheme
    normalization: Normalization | None
    tile: dict
    channels: int
    dynamic_spatial: bool
    min_size: tuple[int, int]
    output_kind: str = "logits"
    note: str = ""
    extra: dict = field(default_factory=dict)
    gsd_m: float | None = None  # the training imagery's pixel size, when recorded

    @property
    def num_classes(self) -> int:
        return self.classes.num_classes


def read_info(metadata: dict[str, str], source: str = "model") -> OnnxModelInfo:
    """Parse the ``metadata_props`` written by :func:`rsseg.export.onnx.export_checkpoint`."""
    try:
        values = {k: json.loads(v) for k, v in metadata.items()}
    except (TypeError, ValueError):
        raise ModelError("ONNX metadata is not valid JSON; re-export with `rsseg export`",
                         source) from None
    marker = values.get("rsseg")
    if not isinstance(marker, dict) or marker.get("format") != FORMAT:
        raise ModelError("ONNX model has no rsseg metadata (classes, bands, tile); export it "
                         "with `rsseg export CHECKPOINT -o model.onnx`", source)
    if int(marker.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelError(f"rsseg ONNX format {marker['format_version']} is newer than this "
                         f"rsseg understands ({FORMAT_VERSION}); upgrade rsseg", source)
    try:
        bands = values.get("bands")
        shape = values["input"]
        return OnnxModelInfo(
            model_name=values["model"]["name"], model_config=dict(values["model"]["config"]),
            classes=ClassScheme.from_dict(values["classes"]),
            normalization=None if bands is None else Normalization.from_dict(bands),
            tile={k: int(v) for k, v in values["tile"].items()},
            channels=int(shape["channels"]), dynamic_spatial=bool(shape["dynamic_spatial"]),
            min_size=(int(shape["min_size"][0]), int(shape["min_size"][1])),
            output_kind=values.get("output", {}).get("kind", "logits"),
            note=values.get("note") or "",
            gsd_m=None if values.get("gsd_m") is None else float(values["gsd_m"]),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelError(f"ONNX metadata is incomplete ({exc}); re-export with `rsseg export`",
                         source) from None


def providers_for(device: str = "auto") -> list[str]:
    """ONNX Runtime execution providers for ``--device`` (CUDA first where asked and present)."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise ModelError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise ModelError("--device cuda was asked for but this onnxruntime has no CUDA "
                         "execution provider (install onnxruntime-gpu)")
    if device in ("cuda", "auto") and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxPredictor:
    """Run an exported model on NumPy batches: ``(N, C, H, W)`` -> ``(N, K, H, W)`` probabilities.

    ``threads`` defaults to torch's intra-op thread count so both backends use the
    machine alike. Batches smaller than the size the graph was checked for (a
    scene smaller than the tile) are padded up symmetrically and the scores cropped,
    as the pipeline pads edge windows.
    """

    def __init__(self, path: str | os.PathLike, device: str = "auto", threads: int | None = None):
        self.path = Path(path)
        self.session = _open_session(self.path, device, threads)
        self.info = read_info(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        self.num_classes = self.info.num_classes
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.providers = self.session.get_providers()

    def check_tile(self, tile: int) -> None:
        """A fixed-size graph cannot take windows larger than the size it was exported at."""
        h, w = self.info.min_size
        if not self.info.dynamic_spatial and tile > min(h, w):
            raise ModelError(f"this ONNX model has a fixed input size {h}x{w}; use --tile "
                             f"{min(h, w)} or less (or re-export with `rsseg export --tile`)",
                             self.path)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        n, c, h, w = x.shape
        need_h, need_w = self._input_size(h, w)
        if (need_h, need_w) != (h, w):
            x = np.pad(x, ((0, 0), (0, 0), (0, need_h - h), (0, need_w - w)), mode="symmetric")
        scores = self.session.run([self.output_name], {self.input_name: x})[0]
        scores = scores[:, :, :h, :w]
        if self.info.output_kind == "logits":
            scores = softmax(scores, axis=1)
        return np.ascontiguousarray(scores, dtype=np.float32)

    def _input_size(self, h: int, w: int) -> tuple[int, int]:
        min_h, min_w = self.info.min_size
        if not self.info.dynamic_spatial and (h > min_h or w > min_w):
            raise ModelError(f"window {h}x{w} is larger than the fixed input size "
                             f"{min_h}x{min_w} of this ONNX model", self.path)
        if self.info.dynamic_spatial:
            # Pad only a side that is too small: the graph is checked for sizes >= min_size.
            return max(h, min_h), max(w, min_w)
        return min_h, min_w


def softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    """Numerically stable softmax in float32."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def _open_session(path: Path, device: str, threads: int | None):
    import onnxruntime as ort

    if not path.exists():
        raise ModelError("ONNX model file not found", path)
    if path.is_dir():
        raise ModelError("ONNX model path is a directory, not a file", path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or _torch_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=providers_for(device))
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - ORT raises its own types for garbage input
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ModelError(f"not a readable ONNX model ({first})", path) from None


def _torch_threads() -> int:
    try:
        import torch
    except ImportError:  # ORT alone: its own default
        return 0
    return max(1, torch.get_num_threads())
