"""DABNet encoder parts (Li et al., "DABNet: Depth-wise Asymmetric Bottleneck for
Real-time Semantic Segmentation", BMVC 2019, arXiv:1907.11357).

Every conv has no bias and is followed by BatchNorm (eps 1e-3) and a per-channel
PReLU, as in the paper's released configuration. The encoder re-injects the
input image, average-pooled to each resolution, at the end of every stage.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ExportFriendlyPReLU(nn.PReLU):
    """Per-channel PReLU with nn.PReLU's ``weight`` parameter (same state-dict key/shape).

    Eager keeps torch's PReLU kernel. During ONNX export it is written as
    ``a * x + (1 - a) * relu(x)`` (the same function: x for x > 0, a * x otherwise),
    which ONNX Runtime runs as per-channel Mul/Add and Relu in its blocked NCHWc
    layout instead of its slow element-wise PRelu kernel (LSA-BiNet: ~1.2x faster).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            a = self.weight.view(1, -1, 1, 1) if self.weight.numel() > 1 else self.weight
            return a * x + (1 - a) * F.relu(x)
        return super().forward(x)


class BNPReLU(nn.Sequential):
    def __init__(self, channels: int):
        super().__init__(nn.BatchNorm2d(channels, eps=1e-3), ExportFriendlyPReLU(channels))


class ConvBNPReLU(nn.Sequential):
    """Conv (no bias) -> BN (eps 1e-3) -> PReLU; ``kernel``/``dilation`` may be (kh, kw)."""

    def __init__(self, in_ch: int, out_ch: int, kernel=3, stride: int = 1, dilation=1,
                 groups: int = 1):
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
        padding = (dh * (kh - 1) // 2, dw * (kw - 1) // 2)
        super().__init__(nn.Conv2d(in_ch, out_ch, (kh, kw), stride, padding, dilation=(dh, dw),
                                   groups=groups, bias=False),
                         BNPReLU(out_ch))


class DownsamplingBlock(nn.Module):
    """Halve H and W: [3x3 s2 conv, 2x2 max-pool] concatenated when widening, else a
    3x3 s2 conv; then BN-PReLU. The max-pool uses ceil mode so odd sizes match the conv."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.pool = in_ch < out_ch
        conv_out = out_ch - in_ch if self.pool else out_ch
        self.conv = nn.Conv2d(in_ch, conv_out, 3, 2, 1, bias=False)
        self.bn_prelu = BNPReLU(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.pool:
            y = torch.cat([y, F.max_pool2d(x, 2, 2, ceil_mode=True)], dim=1)
        return self.bn_prelu(y)


class DABModule(nn.Module):
    """Depth-wise asymmetric bottleneck: halve the width with a 3x3 conv, run a plain
    and a dilated depthwise (3x1, 1x3) pair in parallel, sum, restore the width with a
    1x1 conv and add the input."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        half = channels // 2
        self.pre = BNPReLU(channels)
        self.reduce = ConvBNPReLU(channels, half, 3)
        self.local = nn.Sequential(ConvBNPReLU(half, half, (3, 1), groups=half),
                                   ConvBNPReLU(half, half, (1, 3), groups=half))
        self.dilated = nn.Sequential(
            ConvBNPReLU(half, half, (3, 1), dilation=(dilation, 1), groups=half),
            ConvBNPReLU(half, half, (1, 3), dilation=(1, dilation), groups=half))
        self.post = BNPReLU(half)
        self.expand = nn.Conv2d(half, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(self.pre(x))
        y = self.post(self.local(y) + self.dilated(y))
        return self.expand(y) + x


def downsample_input(image: torch.Tensor, times: int) -> torch.Tensor:
    """The input image average-pooled (3x3, stride 2, pad 1) ``times`` times."""
    for _ in range(times):
        image = F.avg_pool2d(image, 3, 2, 1)
    return image


class DABEncoder(nn.Module):
    """DABNet's encoder: init block (1/2), stage 1 (1/4), stage 2 (1/8).

    ``forward`` returns ``(stage1, stage2)``: the 1/4 feature with ``2*w1 + in``
    channels (131 for RGB) and the 1/8 feature with ``2*w2 + in`` (259 for RGB).
    """

    def __init__(self, in_channels: int = 3, init_width: int = 32, widths: tuple[int, int] = (64, 128),
                 blocks1: int = 3, dilation1: int = 2, dilations2: tuple[int, ...] = (4, 4, 8, 8, 16, 16)):
        super().__init__()
        w1, w2 = widths
        self.init = nn.Sequential(ConvBNPReLU(in_channels, init_width, 3, 2),
                                  ConvBNPReLU(init_width, init_width, 3),
                                  ConvBNPReLU(init_width, init_width, 3))
        init_out = init_width + in_channels
        self.init_bn = BNPReLU(init_out)
        self.down1 = DownsamplingBlock(init_out, w1)
        self.stage1 = nn.Sequential(*[DABModule(w1, dilation1) for _ in range(blocks1)])
        self.stage1_channels = 2 * w1 + in_channels
        self.stage1_bn = BNPReLU(self.stage1_channels)
        self.down2 = DownsamplingBlock(self.stage1_channels, w2)
        self.stage2 = nn.Sequential(*[DABModule(w2, d) for d in dilations2])
        self.stage2_channels = 2 * w2 + in_channels
        self.stage2_bn = BNPReLU(self.stage2_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image2 = downsample_input(x, 1)
        image4 = downsample_input(image2, 1)
        image8 = downsample_input(image4, 1)
        y = self.init_bn(torch.cat([self.init(x), image2], dim=1))
        entry1 = self.down1(y)
        stage1 = self.stage1_bn(torch.cat([self.stage1(entry1), entry1, image4], dim=1))
        entry2 = self.down2(stage1)
        stage2 = self.stage2_bn(torch.cat([self.stage2(entry2), entry2, image8], dim=1))
        return stage1, stage2
