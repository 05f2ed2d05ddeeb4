"""CANet: Cross Attention Network (spatial branch + MobileNetV2 context branch + FCA).

Paper: Mengyu Liu and Hujun Yin, "Cross Attention Network for Semantic
Segmentation", ICIP 2019, arXiv:1907.10958. Verified against: 4.8 M parameters
with MobileNetV2 and 19 Cityscapes classes (figure quoted from the paper in
zh320/realtime-semantic-segmentation-pytorch's README); we count 4,784,853
(within 0.4 %). The paper reports 73.4 % / 73.5 % mIoU on Cityscapes val / test
(not reproduced here).

Layout (rsseg architecture spec, sections 5 and 0b): a shallow spatial branch of
three 3x3 stride-2 conv-BN-ReLU layers (64, 128, 256 channels, 1/8); a context
branch on ImageNet MobileNetV2 without its last 1x1 conv, whose 1/32 output is
upsampled by a 3x3 transposed conv to 192 channels, concatenated with the 1/16
feature and upsampled again to 256 channels at 1/8; the Feature Cross Attention
module fuses both branches: a 3x3 conv of their concatenation, modulated by a
spatial attention map computed from the *spatial* branch and a channel attention
vector computed from the *context* branch (CBAM-style max + average pooling
through one shared Linear), plus a residual; a 3x3 classifier and a learnable
x8 transposed conv (16x16 kernel, bilinear initialised) to the input size.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ._registry import register_model
from .layers.conv import ConvBNAct
from .layers.mobilenetv2 import MobileNetV2Encoder
from .layers.padding import pad_to_multiple
from .layers.upsample import learnable_upsampler


class DeconvBNReLU(nn.Sequential):
    """x2 transposed conv (kernel 3, stride 2, output padding 1, no bias), BN, ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class SpatialBranch(nn.Sequential):
    """Three 3x3 stride-2 conv-BN-ReLU layers: full resolution -> 1/8, ``widths[-1]`` channels."""

    def __init__(self, in_channels: int, widths: tuple[int, ...] = (64, 128, 256)):
        layers, prev = [], in_channels
        for width in widths:
            layers.append(ConvBNAct(prev, width, 3, 2))
            prev = width
        super().__init__(*layers)


class ContextBranch(nn.Module):
    """MobileNetV2 (no final 1x1 conv); its 1/32 and 1/16 features decoded to 1/8."""

    def __init__(self, in_channels: int, out_channels: int = 256, mid_channels: int = 192,
                 width: float = 1.0):
        super().__init__()
        self.encoder = MobileNetV2Encoder(in_channels, width, head_conv=False)
        ch = self.encoder.channels
        self.up32 = DeconvBNReLU(ch[32], mid_channels)
        self.up16 = DeconvBNReLU(mid_channels + ch[16], out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        y = torch.cat([self.up32(feats[32]), feats[16]], dim=1)
        return self.up16(y)


class FeatureCrossAttention(nn.Module):
    """FCA: ``F * A_s(spatial) * A_c(context) + F`` with ``F = conv([spatial, context])``."""

    def __init__(self, spatial_ch: int, context_ch: int, out_ch: int = 256):
        super().__init__()
        self.fuse = ConvBNAct(spatial_ch + context_ch, out_ch, 3)
        # Spatial attention from the shallow branch: where things are.
        self.spatial_attention = ConvBNAct(spatial_ch, 1, 3, act=nn.Sigmoid)
        # Channel attention from the deep branch: what is there (one Linear shared by
        # the max- and average-pooled descriptors, as in CBAM without its bottleneck).
        self.channel_mlp = nn.Linear(context_ch, out_ch)

    def channel_attention(self, context: torch.Tensor) -> torch.Tensor:
        max_desc = torch.amax(context, dim=(2, 3))
        avg_desc = torch.mean(context, dim=(2, 3))
        weights = torch.sigmoid(self.channel_mlp(max_desc) + self.channel_mlp(avg_desc))
        return weights[:, :, None, None]

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        fused = self.fuse(torch.cat([spatial, context], dim=1))
        attended = fused * self.spatial_attention(spatial) * self.channel_attention(context)
        return attended + fused


class CANet(nn.Module):
    """Two-branch network fused by Feature Cross Attention; output stride 8."""

    stride = 32

    def __init__(self, in_channels: int = 3, num_classes: int = 19, width: float = 1.0,
                 channels: int = 256):
        super().__init__()
        self.spatial = SpatialBranch(in_channels, (64, 128, channels))
        self.context = ContextBranch(in_channels, channels, width=width)
        self.fca = FeatureCrossAttention(channels, channels, channels)
        self.classifier = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.upsample = learnable_upsampler(num_classes, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, (h, w) = pad_to_multiple(x, self.stride)
        fused = self.fca(self.spatial(padded), self.context(padded))
        return self.upsample(self.classifier(fused))[..., :h, :w]

    def load_pretrained_encoder(self, state_dict: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
        """Load torchvision-layout ImageNet MobileNetV2 weights into the context branch."""
        return self.context.encoder.load_torchvision_state_dict(state_dict)


@register_model(
    "canet",
    paper="Liu and Yin, Cross Attention Network for Semantic Segmentation, ICIP 2019, "
          "arXiv:1907.10958",
    paper_figures={"params_m": 4.8, "miou_cityscapes_val": 73.4, "miou_cityscapes_test": 73.5},
    paper_config={"num_classes": 19, "in_channels": 3, "input": [1024, 2048],
                  "dataset": "Cityscapes", "backbone": "MobileNetV2"},
    stride=32,
)
def canet(in_channels: int = 3, num_classes: int = 19, **cfg) -> CANet:
    """``cfg``: ``width`` (MobileNetV2 width multiplier, 1.0), ``channels`` (256)."""
    return CANet(in_channels, num_classes, **cfg)
