"""Any-size inputs: pad to the network's stride multiple, crop the logits back."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the bottom/right of ``x`` so H and W are multiples of ``multiple``.

    Returns the padded tensor and the original ``(H, W)``. Reflect padding needs
    the pad to be smaller than the size; tiny inputs fall back to replicate.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    # Under tracing (ONNX export) always pad, by zero if need be: a skipped pad would be
    # frozen into the graph and break every input size that is not a multiple.
    if ph or pw or torch.jit.is_tracing():
        if mode == "reflect" and (ph >= h or pw >= w):
            mode = "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


class PadCropWrapper(nn.Module):
    """Wrap a fixed-stride network so it accepts any H, W.

    The inner network may return logits at a reduced resolution; they are
    upsampled (bilinear) to the padded size and cropped to the input size.
    """

    def __init__(self, net: nn.Module, multiple: int = 32):
        super().__init__()
        self.net = net
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp, (h, w) = pad_to_multiple(x, self.multiple)
        y = self.net(xp)
        if y.shape[-2:] != xp.shape[-2:]:
            y = F.interpolate(y, size=xp.shape[-2:], mode="bilinear", align_corners=False)
        return y[..., :h, :w]
