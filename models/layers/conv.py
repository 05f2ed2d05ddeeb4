"""Convolution + normalisation + activation units."""

from __future__ import annotations

import torch.nn as nn


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> activation; ``act=None`` skips the activation."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU,
                 padding: int | None = None):
        if padding is None:
            padding = dilation * (kernel_size - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, dilation=dilation,
                      groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if act is not None:
            layers.append(act(inplace=True) if act in (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish) else act())
        super().__init__(*layers)


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise kxk ConvBNAct followed by pointwise 1x1 ConvBNAct."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1, act: type[nn.Module] | None = nn.ReLU,
                 dw_act: type[nn.Module] | None = nn.ReLU):
        super().__init__(
            ConvBNAct(in_ch, in_ch, kernel_size, stride, dilation, groups=in_ch, act=dw_act),
            ConvBNAct(in_ch, out_ch, 1, act=act),
        )
