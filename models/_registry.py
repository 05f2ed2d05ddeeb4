"""Model registry and builder (private machinery; the public API is in ``__init__``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about a network besides how to build it.

    ``paper_figures`` are the published numbers (e.g. ``{"params_m": 6.4,
    "gmacs": 12.3, "miou_vaihingen": 83.2}``) and ``paper_config`` the
    configuration they refer to (e.g. ``{"num_classes": 6, "input": [512, 512]}``).
    """

    name: str
    builder: Callable[..., nn.Module]
    paper: str = ""
    paper_figures: dict[str, Any] = field(default_factory=dict)
    paper_config: dict[str, Any] = field(default_factory=dict)
    stride: int = 32  # inputs are padded to a multiple of this inside the network
    listed: bool = True  # False for helpers such as backbone-only classifiers
    task: str = "segmentation"  # "classification": (N, classes) outputs, not per-pixel logits


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, **meta) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: ``@register_model("bafnet", paper=..., paper_figures=...)``."""

    def wrap(builder):
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelEntry(name=name, builder=builder, **meta)
        return builder

    return wrap


def unregister_model(name: str) -> None:
    """Remove a model (tests register throwaway networks)."""
    _REGISTRY.pop(name, None)


def model_entry(name: str) -> ModelEntry:
    _import_networks()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(list_models())
        raise KeyError(f"unknown model {name!r}; available: {known}") from None


def list_models(include_unlisted: bool = False) -> list[str]:
    _import_networks()
    return sorted(n for n, e in _REGISTRY.items() if e.listed or include_unlisted)


def create_model(name: str, in_channels: int = 3, num_classes: int = 6, **cfg) -> nn.Module:
    """Build network ``name`` for ``in_channels`` input bands and ``num_classes`` classes.

    Extra keyword arguments are the network's own configuration (widths, variants).
    The returned module maps ``(N, in_channels, H, W)`` to logits ``(N, num_classes, H, W)``
    for any ``H, W``.
    """
    entry = model_entry(name)
    model = entry.builder(in_channels=in_channels, num_classes=num_classes, **cfg)
    model.rsseg_config = {"name": name, "in_channels": in_channels,
                          "num_classes": num_classes, **cfg}
    return model


_IMPORTED = False


def _import_networks() -> None:
    """Import every network module once so their ``@register_model`` run."""
    global _IMPORTED
    if _IMPORTED:
        return
    _IMPORTED = True
    import importlib
    import pkgutil

    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and info.name != "layers":
            importlib.import_module(f"{__package__}.{info.name}")
