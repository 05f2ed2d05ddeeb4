"""Model, device and precision choices for a training run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rsseg.errors import InputError, ModelError


def build_model(name: str, in_channels: int, num_classes: int,
                config: dict[str, Any] | None = None) -> torch.nn.Module:
    from rsseg.models import create_model
    from rsseg.predict.load import check_model_name

    check_model_name(name)  # unknown names and backbone-only classifiers fail here
    try:
        return create_model(name, in_channels=in_channels, num_classes=num_classes,
                            **(config or {}))
    except TypeError as exc:
        raise ModelError(f"bad configuration for model {name!r}: {exc}") from None


def load_pretrained(model: torch.nn.Module, path: str | Path) -> None:
    """Load an ImageNet checkpoint into the model's encoder.

    The network maps the checkpoint onto its own encoder (and its band count) in
    ``load_pretrained_encoder``; whatever it cannot map is reported against the file.
    """
    name = getattr(model, "rsseg_config", {}).get("name", type(model).__name__)
    loader = getattr(model, "load_pretrained_encoder", None)
    if loader is None:
        raise ModelError(f"model {name} has no pretrained encoder to load (--pretrained is "
                         "not supported for it)", path)
    path = Path(path)
    if not path.is_file():
        raise InputError("pretrained checkpoint not found", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and format errors alike
        raise ModelError(f"cannot read pretrained checkpoint safely ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:120] if str(exc) else ''})", path) from None
    state = _unwrap_state_dict(state)
    if not isinstance(state, dict):
        raise ModelError("pretrained checkpoint holds no state dict", path)
    try:
        loader(state)
    except (ValueError, RuntimeError, KeyError) as exc:
        msg = " ".join(str(exc).split())[:300]
        raise ModelError(f"cannot load the pretrained encoder into {name} with "
                         f"{model.rsseg_config.get('in_channels', '?')} input band(s): {msg}",
                         path) from None


def _unwrap_state_dict(obj):
    """Official checkpoints nest the weights under various keys."""
    for key in ("state_dict", "model", "model_state", "net"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return obj[key]
    return obj


def use_amp(setting: str, device: torch.device) -> torch.dtype | None:
    """Mixed precision dtype or None. On CPU it rarely pays and breaks bit-exact resumes."""
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def use_channels_last(setting: str, device: torch.device) -> bool:
    """channels_last speeds up convolutions on tensor cores; on CPU it is often slower."""
    if setting == "auto":
        return device.type == "cuda"
    return setting == "on"
