"""Weights shipped inside the package, by tag: ``rsseg/weights/<model>.<tag>.pt``.

A model may have several bundled weights, named as timm names pretrained tags
(``bafnet.isprs-synthetic``, ``bafnet.dubai-aerial``). Next to each checkpoint a
``<model>.<tag>.json`` card says what the checkpoint itself does not hold:
``trained_on`` (text), ``gsd_m`` (ground resolution in metres, if known),
``metrics`` (validation scores: ``miou``, ``oa``, ``iou`` per class, ...) and
optionally ``"default": true``. The default tag of a model is the one whose card
says so, else ``isprs-synthetic``, else the first by name.

``--weights TAG`` picks a bundled tag, ``--weights PATH`` a file, ``--weights
random`` an untrained network; without ``--weights`` the default tag is used.
They are optional: a model without bundled weights needs ``--weights``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from rsseg.errors import ModelError

DEFAULT_TAG = "isprs-synthetic"
WEIGHT_SUFFIXES = (".pt", ".pth", ".onnx")


@dataclass(frozen=True)
class BundledWeights:
    """One bundled checkpoint: its model, tag, file and card (the .json, {} if none)."""

    model: str
    tag: str
    path: Path
    card: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def metrics(self) -> dict:
        """Validation scores from the card (``metrics``, or the older ``val_*`` fields)."""
        if isinstance(self.card.get("metrics"), dict):
            return dict(self.card["metrics"])
        found = {}
        for source in (self.card, self.card.get("shipped_fp16") or {}):  # as shipped wins
            found.update({key[4:]: source[key] for key in ("val_miou", "val_oa", "val_mf1",
                                                           "val_iou") if key in source})
        return found

    @property
    def trained_on(self) -> str:
        return str(self.card.get("trained_on") or self.card.get("note") or "")

    @property
    def gsd_m(self) -> float | None:
        """From the card (the checkpoint also records it when its training scenes had one)."""
        value = self.card.get("gsd_m")
        return None if value is None else float(value)


def _folder() -> Path | None:
    try:
        folder = Path(str(resources.files("rsseg.weights")))
    except (ModuleNotFoundError, TypeError):
        return None
    return folder if folder.is_dir() else None


def _scan(folder: Path) -> list[BundledWeights]:
    found = []
    for path in sorted(folder.glob("*.pt")):
        model, _, tag = path.stem.partition(".")
        card_path = path.with_suffix(".json")
        try:
            card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else {}
        except (OSError, ValueError):
            card = {}  # a damaged card must not hide the weights
        found.append(BundledWeights(model, tag or "bundled", path, card))
    return found


def all_bundled() -> list[BundledWeights]:
    """Every bundled checkpoint, by model then tag."""
    folder = _folder()
    return _scan(folder) if folder is not None else []


def bundled_tags(model_name: str) -> list[BundledWeights]:
    """The bundled weights of ``model_name``, the default first."""
    tags = [w for w in all_bundled() if w.model == model_name]
    default = _default(tags)
    return sorted(tags, key=lambda w: (w is not default, w.tag))


def _default(tags: list[BundledWeights]) -> BundledWeights | None:
    marked = [w for w in tags if w.card.get("default") is True]
    if marked:
        return marked[0]
    named = [w for w in tags if w.tag == DEFAULT_TAG]
    return named[0] if named else (min(tags, key=lambda w: w.tag) if tags else None)


def find_tag(model_name: str, tag: str | None = None) -> BundledWeights | None:
    """The bundled weights of ``model_name`` with ``tag`` (None: the default tag), or None."""
    tags = bundled_tags(model_name)
    if tag is None:
        return tags[0] if tags else None
    return next((w for w in tags if w.tag == tag), None)


def bundled_weights(model_name: str, tag: str | None = None) -> Path | None:
    """Path of the checkpoint bundled for ``model_name`` (default tag), or None."""
    found = find_tag(model_name, tag)
    return None if found is None else found.path


def list_bundled() -> list[str]:
    """Names of the models that have bundled weights."""
    return sorted({w.model for w in all_bundled()})


def looks_like_tag(weights: str) -> bool:
    """A bare word (no folder, no weights suffix) that is not an existing file."""
    text = str(weights)
    return ("/" not in text and "\\" not in text and not Path(text).exists()
            and not text.lower().endswith(WEIGHT_SUFFIXES))


def resolve_weights(model_name: str, weights: str | None) -> str | None:
    """``--weights`` as a file path, ``"random"``, or None (no bundled weights).

    A tag becomes its bundled file; no ``--weights`` the default tag's file.
    An unknown tag is a ModelError naming the tags that exist.
    """
    if weights is not None and str(weights) == "random":
        return "random"
    if weights is None:
        path = bundled_weights(model_name)
        return None if path is None else str(path)
    if not looks_like_tag(str(weights)):
        return str(weights)
    found = find_tag(model_name, str(weights))
    if found is not None:
        return str(found.path)
    raise ModelError(f"no bundled weights tagged {weights!r} for model {model_name!r}; "
                     f"{_tags_text(model_name)}; or give --weights PATH or random")


def _tags_text(model_name: str) -> str:
    tags = [w.tag for w in bundled_tags(model_name)]
    here = f"its tags: {', '.join(tags)}" if tags else "it has no bundled weights"
    elsewhere = sorted({f"{w.model} {w.tag}" for w in all_bundled() if w.model != model_name})
    return here + (f" (other bundled weights: {', '.join(elsewhere)})" if elsewhere else "")


@functools.lru_cache(maxsize=32)
def describe_checkpoint(path: Path) -> dict:
    """Classes, bands and input channels stored in a bundled checkpoint (read once)."""
    from rsseg.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    bands = list(ckpt.bands.names) if ckpt.bands else [f"B{i + 1}" for i in range(ckpt.in_channels)]
    return {"classes": list(ckpt.classes.names), "bands": bands,
            "in_channels": ckpt.in_channels, "note": ckpt.note, "scheme": ckpt.classes,
            "gsd_m": ckpt.training.get("gsd_m")}


def tags_fitting(in_channels: int) -> list[str]:
    """``model tag`` of every bundled checkpoint that takes ``in_channels`` bands."""
    return [f"{w.model} --weights {w.tag}" for w in all_bundled()
            if describe_checkpoint(w.path)["in_channels"] == in_channels]


def weights_record(w: BundledWeights, default: bool) -> dict:
    """The ``rsseg models --json`` entry of one bundled checkpoint."""
    info = describe_checkpoint(w.path)
    return {"tag": w.tag, "default": default, "file": w.path.name,
            "classes": info["classes"], "bands": info["bands"], "trained_on": w.trained_on,
            "gsd_m": w.gsd_m if w.gsd_m is not None else info["gsd_m"], "metrics": w.metrics}


def training_gsd_m(ckpt, path=None) -> float | None:
    """The pixel size of a checkpoint's training imagery in metres: what ``rsseg train``
    recorded (``training.gsd_m``), else the card's when ``path`` is a bundled checkpoint."""
    gsd = (ckpt.training or {}).get("gsd_m")
    if gsd is not None:
        return float(gsd)
    if path is not None:
        target = Path(path).resolve()
        for w in all_bundled():
            if w.path.resolve() == target:
                return w.gsd_m
    return None
