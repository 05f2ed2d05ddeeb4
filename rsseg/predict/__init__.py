"""Predict a scene: resolve the model once, then read -> tile -> infer -> blend -> write.

Public surface (imported on first use, so ``import rsseg.predict`` stays cheap):

- :func:`load_predictor` (:mod:`.load`): model name / weights / device / backend ->
  a ready :class:`LoadedPredictor` with its normalisation, classes and notes;
- :func:`predict_scene` (:mod:`.engine`): a scene, an output path, any predictor and
  one :class:`PredictSettings` (:mod:`.settings`) -> a COG (plus confidences, polygons);
- :func:`predict_file` (:mod:`.run`): what ``rsseg predict`` runs;
- :class:`TorchPredictor`, :class:`OnnxPredictor`: the two backends.
"""

from __future__ import annotations

import importlib

_PUBLIC = {
    "load_predictor": ".load", "LoadedPredictor": ".load",
    "predict_scene": ".engine", "PredictResult": ".engine",
    "predict_file": ".run",
    "PredictSettings": ".settings", "resolve_tiling": ".settings",
    "Predictor": ".predictor", "TorchPredictor": ".predictor",
    "OnnxPredictor": ".onnx_predictor",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
