"""Predict a scene: resolve the model once, then read -> tile -> infer -> blend -> write.

- :func:`load_predictor` (:mod:`.load`): model name / weights / device / backend ->
  a ready :class:`LoadedPredictor` with its normalisation, classes and notes;
- :func:`predict_scene` (:mod:`.engine`): a scene, an output path, any predictor and
  one :class:`PredictSettings` (:mod:`.settings`) -> a COG (plus confidences, polygons);
- :func:`predict_file` (:mod:`.run`): what ``rsseg predict`` runs;
- :class:`TorchPredictor`, :class:`OnnxPredictor`: the two backends;
- :mod:`.blend`, :mod:`.sinks`, :mod:`.regions`: the streaming blend, the raw band
  writers, sub-grids for predicting part of a scene.

Public names are imported on first use (:mod:`rsseg._lazy`).
"""

from rsseg._lazy import lazy_exports

_PUBLIC = {
    "load_predictor": ".load",
    "LoadedPredictor": ".load",
    "check_model_name": ".load",
    "predict_scene": ".engine",
    "PredictResult": ".engine",
    "predict_file": ".run",
    "PredictSettings": ".settings",
    "resolve_tiling": ".settings",
    "DEFAULT_TILE": ".settings",
    "Predictor": ".predictor",
    "TorchPredictor": ".predictor",
    "resolve_device": ".predictor",
    "OnnxPredictor": ".onnx_predictor",
}
__all__ = sorted(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
