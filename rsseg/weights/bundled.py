"""Weights shipped inside the package (``rsseg/weights/<model>.pt``).

They are optional: a model without bundled weights needs ``--weights``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def bundled_weights(model_name: str) -> Path | None:
    """Path of the checkpoint bundled for ``model_name``, or None when there is none."""
    if not model_name or "/" in model_name or "\\" in model_name or model_name.startswith("."):
        return None
    try:
        candidate = resources.files("rsseg.weights") / f"{model_name}.pt"
    except (ModuleNotFoundError, TypeError):
        return None
    path = Path(str(candidate))
    return path if path.is_file() else None


def list_bundled() -> list[str]:
    """Names of the models that have bundled weights."""
    folder = Path(str(resources.files("rsseg.weights")))
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.pt"))
