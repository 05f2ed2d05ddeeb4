"""Weights shipped inside the package: ``rsseg/weights/<model>.pt`` (the model's default,
synthetic ISPRS weights) and ``rsseg/weights/<model>.<tag>.pt`` (tagged weights such as
``baff_skipnet.dubai-aerial.pt``, each with a ``.json`` of its data and scores).

They are optional: a model without bundled weights needs ``--weights``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def bundled_weights(model_name: str, tag: str | None = None) -> Path | None:
    """Path of the checkpoint bundled for ``model_name`` (and ``tag``), or None when there
    is none."""
    for part in (model_name, tag or "x"):
        if not part or "/" in part or "\\" in part or part.startswith("."):
            return None
    stem = model_name if tag is None else f"{model_name}.{tag}"
    try:
        candidate = resources.files("rsseg.weights") / f"{stem}.pt"
    except (ModuleNotFoundError, TypeError):
        return None
    path = Path(str(candidate))
    return path if path.is_file() else None


def list_bundled() -> list[str]:
    """Names of the models that have bundled weights."""
    folder = Path(str(resources.files("rsseg.weights")))
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.pt") if "." not in p.stem)  # untagged
