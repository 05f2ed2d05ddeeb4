"""Channel MLPs on (N, C, H, W) maps."""

from __future__ import annotations

import torch
import torch.nn as nn


class ConvMlp(nn.Sequential):
    """1x1 conv dim -> hidden, activation, 1x1 conv hidden -> dim (both with bias).

    The feed-forward half of BAFNet's RLAB and of UNetFormer's transformer blocks
    (activation ReLU6 in both).
    """

    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.ReLU6):
        super().__init__(nn.Conv2d(dim, hidden, 1), act(), nn.Conv2d(hidden, dim, 1))


class PreNormResidual(nn.Module):
    """x + attn(norm1(x)), then x + mlp(norm2(x)) with BatchNorm pre-norms (RLAB, GLTB)."""

    def __init__(self, dim: int, attn: nn.Module, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = attn
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
