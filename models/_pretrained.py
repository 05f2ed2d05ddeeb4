"""Loading ImageNet-pretrained encoder weights from official checkpoint layouts.

Each network maps the official key names to its own with a ``rename`` function
and calls :func:`load_renamed`. Input convs trained on RGB are adapted to any
band count by :func:`adapt_input_conv`.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn as nn


def unwrap_state_dict(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint: accepts a bare state dict or one wrapped
    under ``state_dict`` / ``model``, and strips a DataParallel ``module.`` prefix."""
    for wrapper in ("state_dict", "model"):
        if wrapper in checkpoint and isinstance(checkpoint[wrapper], Mapping):
            checkpoint = checkpoint[wrapper]
            break
    return {(k[7:] if k.startswith("module.") else k): v for k, v in checkpoint.items()
            if isinstance(v, torch.Tensor)}


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Fit an RGB-trained ``(out, 3, kh, kw)`` conv weight to ``in_channels`` bands.

    The first three bands keep the RGB filters in order (so IR-R-G imagery uses
    them as a false-colour RGB); every extra band (IR, DSM, ...) gets the mean of
    the three RGB filters. With fewer than three bands the first ones are kept.
    """
    if weight.shape[1] == in_channels:
        return weight
    kept = min(in_channels, weight.shape[1])
    out = weight.new_empty(weight.shape[0], in_channels, *weight.shape[2:])
    out[:, :kept] = weight[:, :kept]
    if in_channels > kept:
        out[:, kept:] = weight.mean(dim=1, keepdim=True)
    return out


def load_renamed(module: nn.Module, checkpoint: Mapping, rename: Callable[[str], str | None],
                 input_conv: str | None = None,
                 optional: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """Load ``checkpoint`` into ``module`` through ``rename`` (official key -> ours or None).

    ``input_conv`` names the module's first conv weight, adapted to its band count.
    Returns ``(missing_keys, unexpected_keys)`` in the module's and the checkpoint's
    names; keys whose shape does not fit count as unexpected. Every tensor of the
    module must be filled except BatchNorm counters (``num_batches_tracked``,
    absent from old checkpoints) and keys starting with an ``optional`` prefix
    (parts that ImageNet checkpoints do not have). Otherwise ValueError is raised
    and nothing is loaded, so a checkpoint of another network, variant or width
    cannot pass as "loaded" with a half-random encoder.
    """
    own = module.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in unwrap_state_dict(checkpoint).items():
        ours = rename(key)
        if ours is not None and ours == input_conv and ours in own:
            value = adapt_input_conv(value, own[ours].shape[1])
        if ours is None or ours not in own or own[ours].shape != value.shape:
            unexpected.append(key)
            continue
        mapped[ours] = value.to(own[ours].dtype)
    if not mapped:
        raise ValueError(f"none of the checkpoint's {len(unexpected)} tensors fit this encoder "
                         f"(first: {', '.join(unexpected[:3]) or 'none'}); is it the official layout?")
    missing = sorted(set(own) - set(mapped))
    required = [k for k in missing if not k.endswith("num_batches_tracked") and not k.startswith(optional)]
    if required:
        raise ValueError(f"the checkpoint fills only {len(own) - len(missing)} of the encoder's "
                         f"{len(own)} tensors (not found or of another shape: "
                         f"{', '.join(required[:3])}{', ...' if len(required) > 3 else ''}); "
                         "is it the official checkpoint of this network's variant and width?")
    module.load_state_dict(mapped, strict=False)
    return missing, unexpected
