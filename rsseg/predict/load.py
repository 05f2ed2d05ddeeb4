"""Resolve what the user asked for (model, weights, device, backend) into a ready predictor.

:func:`load_predictor` is the one place where ``--model``, ``--weights
PATH|random|MODEL.onnx`` (or the bundled weights), ``--device`` and ``--backend``
are turned into a network: ``rsseg predict`` (and so the QGIS plugin, which runs
it), ``rsseg batch`` (driver and workers) and ``rsseg demo`` all call it. It
returns a :class:`LoadedPredictor`: the callable that
:func:`rsseg.predict.engine.predict_scene` runs, with the normalisation, class
scheme, training tile and notes that belong to those weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rsseg.classes import ISPRS, ClassScheme
from rsseg.errors import ModelError, UsageError
from rsseg.io.normalization import Normalization

from .predictor import Predictor
from .tta import TTA_MODES, AugmentedPredictor
from .settings import check_zoom
from .zoom import ZoomedPredictor

DEFAULT_MODEL = "bafnet"
BACKENDS = ("torch", "onnx")


@dataclass
class LoadedPredictor:
    """A predictor plus what belongs to its weights; itself a predictor (callable,
    ``num_classes``), so it goes straight into ``predict_scene``.

    ``tile_hint`` is the tile and overlap the weights were trained with (a
    checkpoint's ``tile`` dict, empty when unknown); ``notes`` are the lines a user
    should read before trusting the output (random weights, no normalisation, the
    checkpoint's note).
    """

    predict: Predictor
    normalization: Normalization | None = None  # None: per-dtype scaling of the scene
    classes: ClassScheme = ISPRS
    tile_hint: dict = field(default_factory=dict)
    model_name: str = ""
    source: str = ""  # what the weights are, for messages
    note: str = ""  # the checkpoint's own note
    notes: list[str] = field(default_factory=list)
    model: object = None  # the torch module (None for ONNX or a plain callable)
    gsd_m: float | None = None  # pixel size of the training imagery, when recorded

    @property
    def num_classes(self) -> int:
        return int(getattr(self.predict, "num_classes", None) or self.classes.num_classes)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.predict(batch)

    def window_runner(self, norm, dtype, tile: int):
        """The wrapped predictor's device path (a torch network on a GPU), if it has one."""
        factory = getattr(self.predict, "window_runner", None)
        return factory(norm, dtype, tile) if factory is not None else None

    def auto_batch_size(self, tile: int, channels: int) -> int:
        """``--batch-size auto``: the wrapped predictor's suggestion, else 1."""
        suggest = getattr(self.predict, "auto_batch_size", None)
        return int(suggest(tile, channels)) if suggest is not None else 1

    @property
    def device_path(self) -> bool:
        return bool(getattr(self.predict, "device_path", False))

    @property
    def cuda(self) -> bool:
        return bool(getattr(self.predict, "cuda", False))

    def check_tile(self, tile: int) -> None:
        """A backend that cannot take ``tile``-px windows (a fixed-size ONNX graph) says so."""
        check = getattr(self.predict, "check_tile", None)
        if check is not None:
            check(tile)


def load_predictor(model: str | None = None, weights: str | os.PathLike | None = None, *,
                   channels: int, device: str = "auto", backend: str = "torch",
                   seed: int = 0, input_bands: list[str] | None = None,
                   tta: str = "none", zoom: float = 1.0) -> LoadedPredictor:
    """A ready predictor for a scene with ``channels`` bands.

    ``weights``: a checkpoint path (its network is used; ``model``, when given, must
    match), ``"random"`` (untrained ``model`` seeded by ``seed``), an ``.onnx`` file
    from ``rsseg export`` (with ``backend="onnx"``), or None for the weights bundled with
    ``model``. ``model`` None means the checkpoint's network, else
    :data:`DEFAULT_MODEL`. ``backend`` is ``torch`` or ``onnx`` (ONNX Runtime; then
    ``weights`` is an ``.onnx`` file and ``model`` is ignored). ``device`` ``cuda``
    without a GPU fails here, before any work. ``input_bands`` (the scene's band names)
    makes a band-count mismatch say what the input holds. ``tta`` (``none``, ``flip``,
    ``d4``) averages each window's scores over flipped/turned views (:mod:`.tta`);
    ``zoom`` shows the network each window magnified by that factor (:mod:`.zoom`).
    """
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if tta not in TTA_MODES:
        raise UsageError(f"unknown --tta {tta!r}; choose from {', '.join(TTA_MODES)}")
    try:
        zoom = check_zoom(zoom)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if backend == "onnx":
        loaded = _load_onnx(weights, channels, device, input_bands)
        if tta != "none":
            loaded.predict = AugmentedPredictor(loaded.predict, tta)
        set_zoom(loaded, zoom)
        return loaded
    from .predictor import TorchPredictor, resolve_device

    torch_device = resolve_device(device)
    loaded = _load_torch(model, weights, channels, seed, input_bands)
    loaded.predict = TorchPredictor(loaded.model, torch_device,
                                    num_classes=loaded.classes.num_classes, tta=tta, zoom=zoom)
    return loaded


def set_zoom(loaded: LoadedPredictor, zoom: float) -> None:
    """Show ``loaded``'s network each window zoomed by ``zoom`` (:mod:`.zoom`): inside a
    :class:`~.predictor.TorchPredictor`, else by wrapping the predictor."""
    zoom = check_zoom(zoom)
    if hasattr(loaded.predict, "zoom"):  # a TorchPredictor, or already wrapped
        loaded.predict.zoom = zoom
    elif zoom != 1.0:
        loaded.predict = ZoomedPredictor(loaded.predict, zoom)


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


def weights_file(model: str | None, weights) -> Path | None:
    """The checkpoint file ``weights`` stands for: a path, a bundled tag of ``model``
    (:func:`rsseg.weights.bundled.resolve_weights`), or None for the default tag;
    None for ``random``."""
    from rsseg.weights.bundled import resolve_weights

    name = model or DEFAULT_MODEL
    path = resolve_weights(name, None if weights is None else str(weights))
    if path == "random":
        return None
    if path is None:
        check_model_name(name)
        raise ModelError(f"no weights are bundled for model {name!r}; pass --weights "
                         "PATH (a checkpoint from `rsseg train`) or --weights random")
    return Path(path)


def _load_torch(model: str | None, weights, channels: int, seed: int,
                input_bands) -> LoadedPredictor:
    from rsseg.checkpoint import load_checkpoint
    from rsseg.weights.bundled import training_gsd_m

    if model is not None:
        check_model_name(model)
    path = weights_file(model, weights)
    if path is None:
        return _random(model or DEFAULT_MODEL, channels, seed)
    ckpt = load_checkpoint(path)
    if model is not None and ckpt.model_name != model:
        raise ModelError(f"checkpoint holds a {ckpt.model_name!r} model, not {model!r}; "
                         f"use --model {ckpt.model_name} (or leave --model out)", path)
    if ckpt.in_channels != channels:
        raise ModelError(band_hint(ckpt.in_channels, ckpt.bands, channels, input_bands)
                         + _fitting_tags(channels), path)
    notes = [f"note: {path.name} ({ckpt.model_name}): {ckpt.note}"] if ckpt.note else []
    if ckpt.bands is None:
        notes.append(f"warning: {path} has no band normalisation; {_DTYPE_SCALING}")
    notes += _height_band_warnings(ckpt.bands, input_bands)
    return LoadedPredictor(None, ckpt.bands, ckpt.classes, dict(ckpt.tile or {}),
                           ckpt.model_name, str(path), ckpt.note, notes, ckpt.build_model(),
                           training_gsd_m(ckpt, path))


_DTYPE_SCALING = "inputs scaled by dtype (integers / dtype max, floats as they are)"


def _random(name: str, channels: int, seed: int) -> LoadedPredictor:
    import torch

    from rsseg.models import create_model

    torch.manual_seed(seed)
    net = create_model(name, in_channels=channels, num_classes=ISPRS.num_classes)
    source = f"random weights (seed {seed})"
    notes = [f"{name} runs with {source}, in_channels={channels}; {_DTYPE_SCALING}"]
    return LoadedPredictor(None, None, ISPRS, {}, name, source, "", notes, net)


def _load_onnx(weights, channels: int, device: str, input_bands) -> LoadedPredictor:
    if weights is None or str(weights) == "random":
        raise UsageError("--backend onnx needs an exported model: --weights MODEL.onnx "
                         "(see `rsseg export`)")
    from .onnx_predictor import OnnxPredictor

    predictor = OnnxPredictor(weights, device)
    info = predictor.info
    if info.channels != channels:
        raise ModelError(band_hint(info.channels, info.normalization, channels, input_bands),
                         weights)
    source = f"{weights} ({info.model_name}, ONNX Runtime {', '.join(predictor.providers)})"
    notes = [f"note: {Path(weights).name} ({info.model_name}): {info.note}"] if info.note else []
    return LoadedPredictor(predictor, info.normalization, info.classes, dict(info.tile),
                           info.model_name, source, info.note, notes, gsd_m=info.gsd_m)


HEIGHT_BANDS = ("DSM", "NDSM", "HEIGHT")


def _height_band_warnings(bands: Normalization | None, input_bands) -> list[str]:
    """A height channel fed a band that also feeds another channel (``--bands 1,2,3,3`` on an
    RGB file) is a colour band standing in for a DSM: the map will be wrong, so say so."""
    if bands is None or not input_bands or len(input_bands) != bands.num_bands:
        return []
    return [f"warning: the model's {name} channel (band {k + 1}) is fed {input_bands[k]!r}, "
            "which also feeds another channel; a height band must come from a DSM file "
            "(--dsm FILE)"
            for k, name in enumerate(bands.names)
            if name.upper() in HEIGHT_BANDS and input_bands.count(input_bands[k]) > 1]


def _fitting_tags(channels: int) -> str:
    """Bundled weights that would take the input as it is."""
    from rsseg.weights.bundled import tags_fitting

    fitting = tags_fitting(channels)
    return f"; or use bundled weights for {channels} bands: {'; '.join(fitting)}" if fitting else ""


def band_hint(needed: int, bands: Normalization | None, provided: int,
              input_bands: list[str] | None = None) -> str:
    """What the model needs, what the input gives, and how to supply the rest."""
    names = f" ({', '.join(bands.names)})" if bands else ""
    has = f" ({', '.join(input_bands)})" if input_bands else ""
    text = (f"model expects {needed} bands{names} but the input provides {provided}{has}; "
            "pick the matching bands, in the model's order, with --bands")
    if bands and any(n.upper() in HEIGHT_BANDS for n in bands.names):
        text += "; a height band must come from a real DSM file: --dsm FILE"
    return text + "; bands in other files: --band-file FILE[:BANDS]"
