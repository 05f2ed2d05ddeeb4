"""What Deepness (QGIS plugin) and GeoDeep (OpenDroneMap) need from an ONNX segmentation model.

Both tools read plain keys from the model's ``metadata_props``; :func:`tool_metadata`
writes them next to rsseg's own keys in every export. How each tool parses them
(read from their sources; the documented table is vendored in
``tests/data/deepness_metadata_table.rst``) and how the export resolves their
differences:

* ``model_type``: both ``json.loads`` it; both want ``"Segmentor"``.
* ``class_names``: a JSON object ``{"0": name, ...}``; Deepness insists on
  consecutive ids, GeoDeep looks names up by ``str(id)``.
* ``resolution`` (cm/px): Deepness ``float(json.loads(v))``, GeoDeep ``float(v)``.
  Written only when known (the checkpoint's training GSD or ``--resolution``):
  GeoDeep assumes 10 cm when it is missing and downsamples finer scenes.
* ``tiles_overlap`` (percent): Deepness ``int(json.loads(v))``, GeoDeep ``float(v)``:
  written as a JSON integer, which both read alike.
* tile size: Deepness documents ``tiles_size`` but its code reads ``tile_size``;
  GeoDeep ignores both and takes the input's fixed width. Both keys are written,
  and the ``--for`` graphs have a fixed square input of that size.
* ``standardization_mean`` / ``standardization_std``: Deepness applies them after
  dividing by 255; GeoDeep ignores them. The ``--for`` graphs bake the
  normalisation in, so they carry the identity (0 and 1) and both tools agree.
* ``seg_thresh``: both zero every probability below it before the argmax, which
  turns uncertain pixels into class 0. Written as 0.0, a plain argmax like
  ``rsseg predict``.
* ``seg_small_segment``: Deepness median-blurs the class map with a window of
  about that size, GeoDeep sieves regions under ``(2 * n)^2`` pixels. Written as
  0 (off), as ``rsseg predict`` does not filter; users raise it in the tool.

:class:`ToolInputGraph` is the fixed contract behind ``rsseg export --for``: three
bands in R, G, B order scaled to 0..1 (what both tools feed: uint8 / 255) in,
softmax probabilities out.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from rsseg.checkpoint import Checkpoint, Normalization
from rsseg.classes import ClassScheme
from rsseg.errors import ModelError

TARGETS = ("deepness", "geodeep")
TOOL_KEYS = ("model_type", "class_names", "resolution", "tiles_size", "tile_size",
             "tiles_overlap", "standardization_mean", "standardization_std", "seg_thresh",
             "seg_small_segment")
RGB_NAMES = {"R": 0, "RED": 0, "G": 1, "GREEN": 1, "B": 2, "BLUE": 2}
SEG_THRESH = 0.0
SEG_SMALL_SEGMENT = 0
UINT8_MAX = 255.0


def tool_metadata(classes: ClassScheme, tile: dict, standardization: tuple[list, list],
                  resolution_cm: float | None) -> dict[str, str]:
    """The Deepness/GeoDeep keys, each value a JSON string (see the module docstring)."""
    size = int(tile["size"])
    values = {
        "model_type": "Segmentor",
        "class_names": {str(i): name for i, name in enumerate(classes.names)},
        "tiles_size": size,
        "tile_size": size,
        "tiles_overlap": int(round(100.0 * int(tile["overlap"]) / size)),
        "standardization_mean": [float(v) for v in standardization[0]],
        "standardization_std": [float(v) for v in standardization[1]],
        "seg_thresh": SEG_THRESH,
        "seg_small_segment": SEG_SMALL_SEGMENT,
    }
    if resolution_cm is not None:
        values["resolution"] = round(float(resolution_cm), 4)
    return {key: json.dumps(values[key]) for key in TOOL_KEYS if key in values}


def default_standardization(ckpt: Checkpoint) -> tuple[list, list]:
    """Mean/std that turn the tools' ``uint8 / 255`` into what rsseg's default graph expects.

    rsseg normalises digital numbers, ``(x - mean) / std``; with ``x = 255 * x01``
    that is ``(x01 - mean / 255) / (std / 255)``. Without a checkpoint
    normalisation rsseg divides uint8 by 255, which is the tools' scaling already.
    """
    if ckpt.bands is None:
        return [0.0] * ckpt.in_channels, [1.0] * ckpt.in_channels
    return ([m / UINT8_MAX for m in ckpt.bands.mean], [s / UINT8_MAX for s in ckpt.bands.std])


def resolution_cm(ckpt: Checkpoint, override: float | None, path=None) -> float | None:
    """Ground sampling distance in cm/px: ``override``, else the checkpoint's training
    pixel size (:func:`rsseg.weights.bundled.training_gsd_m`: recorded by training, or
    the card's when ``path`` is a bundled checkpoint)."""
    from rsseg.weights.bundled import training_gsd_m

    if override is not None:
        if not override > 0:
            raise ModelError(f"resolution must be a positive number of cm/px, not {override}")
        return float(override)
    gsd = training_gsd_m(ckpt, path)
    return None if gsd is None else 100.0 * gsd


def rgb_order(ckpt: Checkpoint) -> list[int] | None:
    """For each network input band, which of the tool's R, G, B bands feeds it.

    None when the checkpoint's band names are not a permutation of R, G, B (e.g.
    IR, R, G): the tools then feed the raster's first three bands as they are.
    """
    if ckpt.bands is None:
        return None
    order = [RGB_NAMES.get(name.strip().upper()) for name in ckpt.bands.names]
    return order if sorted(o for o in order if o is not None) == [0, 1, 2] else None


def tool_contract(ckpt: Checkpoint, target: str) -> tuple[list[int] | None, Normalization]:
    """Check that ``ckpt`` can take the tools' input; returns the band order and the
    normalisation rsseg's own predictor uses for the ``--for`` graph (uint8 / 255)."""
    if target not in TARGETS:
        raise ModelError(f"unknown export target {target!r}; choose from {', '.join(TARGETS)}")
    if ckpt.in_channels != 3:
        names = f" ({', '.join(ckpt.bands.names)})" if ckpt.bands else ""
        raise ModelError(f"{target} feeds a model three RGB bands, but this model takes "
                         f"{ckpt.in_channels}{names}; export it without --for for rsseg only")
    order = rgb_order(ckpt)
    if order is not None:
        names = ["R", "G", "B"]
    elif ckpt.bands is not None:
        names = list(ckpt.bands.names)
    else:
        names = ["band1", "band2", "band3"]
    return order, Normalization(names, [0.0] * 3, [UINT8_MAX] * 3)


def tool_input_graph(model, ckpt: Checkpoint, order: list[int] | None):
    """``model`` wrapped into :class:`ToolInputGraph` with the checkpoint's normalisation."""
    if ckpt.bands is None:  # rsseg scales uint8 by 1/255 itself: the tools' input already
        mean, std = np.zeros(3), np.full(3, UINT8_MAX)
    else:
        mean, std = np.asarray(ckpt.bands.mean), np.asarray(ckpt.bands.std)
    # eval(): the exporter restores the wrapper's mode afterwards, recursively; a wrapper left in
    # training mode would put the network's BatchNorm into training mode for the check.
    return ToolInputGraph(model, order, mean, std).eval()


class ToolInputGraph(torch.nn.Module):
    """R, G, B in 0..1 -> the network's normalised bands -> softmax probabilities.

    ``x * 255`` are the digital numbers rsseg normalised while training, so the
    network sees ``(255 * x - mean) / std = x * (255 / std) - mean / std``.
    """

    def __init__(self, net, order, mean, std):
        super().__init__()
        self.net = net
        self.order = None if order is None or list(order) == [0, 1, 2] else list(order)
        std = torch.as_tensor(np.asarray(std, np.float32))
        mean = torch.as_tensor(np.asarray(mean, np.float32))
        self.register_buffer("scale", (UINT8_MAX / std).reshape(1, -1, 1, 1))
        self.register_buffer("shift", (mean / std).reshape(1, -1, 1, 1))

    def forward(self, x):
        if self.order is not None:
            x = x[:, self.order]
        return torch.softmax(self.net(x * self.scale - self.shift), dim=1)
