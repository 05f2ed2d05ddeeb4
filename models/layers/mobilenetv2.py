"""MobileNetV2 encoder returning multi-scale features, plus torchvision key mapping.

Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018.
The layer widths follow the paper's Table 2 with the usual width multiplier rule
(channels rounded to a multiple of 8, never more than 10 % below the scaled
width), so ``width=1.0`` has exactly the tensors of torchvision's
``mobilenet_v2().features`` and ``width=0.5`` those of ``mobilenet_v2(width_mult=0.5)``.

:func:`torchvision_key` translates the key names of torchvision's layout
(``features.0.0.weight`` ... ``features.18.1.bias``) into this module's names; it
is a pure key mapping (the first conv is adapted to ``in_channels != 3`` by
:func:`rsseg.models._pretrained.adapt_input_conv`), so ImageNet weights load
without torchvision installed.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .._pretrained import load_renamed
from .conv import ConvBNAct

# (expansion t, output channels c, repeats n, first stride s): the paper's Table 2.
INVERTED_RESIDUAL_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled width to a multiple of ``divisor``, at most 10 % below ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class InvertedResidual(nn.Module):
    """1x1 expansion (skipped when t = 1), depthwise 3x3, linear 1x1 projection."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_ch * expansion
        self.use_residual = stride == 1 and in_ch == out_ch
        self.expand = ConvBNAct(in_ch, hidden, 1, act=nn.ReLU6) if expansion != 1 else None
        self.depthwise = ConvBNAct(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6)
        self.project = ConvBNAct(hidden, out_ch, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        return x + y if self.use_residual else y


class MobileNetV2Encoder(nn.Module):
    """MobileNetV2 feature extractor.

    ``forward`` returns a dict ``{stride: feature}`` with the output of the last
    block at each output stride 2, 4, 8, 16 and 32 (the 1/32 entry is the output
    of the final 1x1 conv when ``head_conv=True``, else of the 320-channel stage).
    ``channels`` gives the channel count of each entry.
    """

    def __init__(self, in_channels: int = 3, width: float = 1.0, head_conv: bool = True):
        super().__init__()
        self.width = width
        stem_ch = make_divisible(STEM_CHANNELS * width)
        self.stem = ConvBNAct(in_channels, stem_ch, 3, 2, act=nn.ReLU6)
        blocks: list[nn.Module] = []
        self.block_strides: list[int] = []
        in_ch, stride_so_far = stem_ch, 2
        for t, c, n, s in INVERTED_RESIDUAL_SETTINGS:
            out_ch = make_divisible(c * width)
            for i in range(n):
                stride = s if i == 0 else 1
                stride_so_far *= stride
                blocks.append(InvertedResidual(in_ch, out_ch, stride, t))
                self.block_strides.append(stride_so_far)
                in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.head_conv = None
        if head_conv:
            head_ch = make_divisible(HEAD_CHANNELS * max(1.0, width))
            self.head_conv = ConvBNAct(in_ch, head_ch, 1, act=nn.ReLU6)
            in_ch = head_ch
        self.channels = self._channels_per_stride(stem_ch, in_ch)

    def _channels_per_stride(self, stem_ch: int, last_ch: int) -> dict[int, int]:
        channels = {2: stem_ch}
        for block, stride in zip(self.blocks, self.block_strides):
            channels[stride] = block.project[0].out_channels
        channels[32] = last_ch
        return channels

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        x = self.stem(x)
        features = {2: x}
        for block, stride in zip(self.blocks, self.block_strides):
            x = block(x)
            features[stride] = x
        if self.head_conv is not None:
            x = self.head_conv(x)
            features[32] = x
        return features

    def load_torchvision_state_dict(self, state_dict) -> tuple[list[str], list[str]]:
        """Copy torchvision-layout weights in; returns ``(missing, unexpected)``.

        ``missing`` are our keys left at their initial values (at most BatchNorm
        counters), ``unexpected`` the given keys not loaded (the ImageNet
        ``classifier.*`` always, ``features.18.*`` when this encoder has no final
        1x1 conv). The first conv is adapted to ``in_channels`` (RGB filters kept,
        extra bands get their mean). Weights of another width multiplier do not
        fit and raise ValueError before anything is loaded.
        """
        expansions = [block.expand is not None for block in self.blocks]

        def rename(key: str) -> str | None:
            return torchvision_key(key, expansions)

        return load_renamed(self, state_dict, rename, input_conv="stem.0.weight")


# Sub-module names of one torchvision InvertedResidual ``conv`` Sequential, in order.
_TV_BLOCK_PARTS_EXPANDED = ("expand.0", "expand.1", "depthwise.0", "depthwise.1", "project.0", "project.1")
_TV_BLOCK_PARTS_NO_EXPANSION = ("depthwise.0", "depthwise.1", "project.0", "project.1")
# torchvision nests ConvBNActivation as ``conv.<i>.<j>`` and the linear projection as
# ``conv.<k>`` (conv) and ``conv.<k+1>`` (BN): flatten both to one running index.
_TV_EXPANDED_INDEX = {"0.0": 0, "0.1": 1, "1.0": 2, "1.1": 3, "2": 4, "3": 5}
_TV_NO_EXPANSION_INDEX = {"0.0": 0, "0.1": 1, "1": 2, "2": 3}


def torchvision_key(key: str, expanded: list[bool]) -> str | None:
    """Our name for a torchvision ``features.*`` key; None if it has no counterpart.

    ``expanded[i]`` says whether block ``i`` has a 1x1 expansion conv (t != 1),
    which shifts torchvision's indices inside the block.
    """
    num_blocks = len(expanded)
    parts = key.split(".")
    if len(parts) < 3 or parts[0] != "features" or not parts[1].isdigit():
        return None
    index, rest = int(parts[1]), parts[2:]
    if index == 0:
        return "stem." + ".".join(rest)
    if index == num_blocks + 1:
        return "head_conv." + ".".join(rest)
    if not 1 <= index <= num_blocks or rest[0] != "conv":
        return None
    block = index - 1
    table = _TV_EXPANDED_INDEX if expanded[block] else _TV_NO_EXPANSION_INDEX
    names = _TV_BLOCK_PARTS_EXPANDED if expanded[block] else _TV_BLOCK_PARTS_NO_EXPANSION
    for depth in (2, 1):  # "0.0.weight" (nested) before "2.weight" (flat)
        position = ".".join(rest[1:1 + depth])
        if position in table and len(rest) == 1 + depth + 1:
            return f"blocks.{block}.{names[table[position]]}.{rest[-1]}"
    return None
