"""Export a checkpoint for other runtimes (``rsseg export``).

Public names are imported on first use (:mod:`rsseg._lazy`).
"""

from rsseg._lazy import lazy_exports

_PUBLIC = {
    "export_checkpoint": ".onnx",
    "ExportResult": ".onnx",
}
__all__ = sorted(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
