"""BAFNet: bilateral attention fusion network.

Paper: Wentao Wang, Xili Wang, "BAFNet: Bilateral Attention Fusion Network for
Lightweight Semantic Segmentation of Urban Remote Sensing Images",
arXiv 2409.10269 (2024). Architecture per the official ``BAFNet.py``
(github.com/vincentwwt/BAFNet) as described in our SPEC section 1 / 0b.

Two paths: a VAN-B0 *dependency path* (large-kernel attention, strides 4..32)
and a *remote-local path* at 1/8 with 128 channels made of RLABs (window
self-attention + depthwise conv = ERAM, multi-scale inverted bottleneck =
MSLAM). The paths exchange features after VAN stages 3 and 4; a feature
aggregation module (FAM, ECA-style channel gate) fuses the 1/8 maps and a head
predicts at 1/8, upsampled x8.

Verified (tests/models/test_models_bafnet_lwganet.py), 6 classes, 3 input bands:
params 6,384,379 (paper 6.4 M, -0.2 %); 12.22 GMACs at 1x3x512x512 counted with
``torch.utils.flop_counter`` (paper 12.3 G "FLOPs", -0.6 %).

Any input size: the input is reflect-padded to a multiple of 32, the 1/8 map
is padded per dimension to the 8x8 window inside ERAM, logits are cropped back.
Batch 1 works in eval mode, and in train mode too: the FAM's BatchNorm over the
pooled (N, 256, 1, 1) vector (which makes the official code fail with N = 1)
falls back to its running statistics for such a step.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._pretrained import load_renamed
from ._registry import register_model
from .layers.attention import WindowAttention, WindowProjection
from .layers.conv import ConvBNAct
from .layers.lka import ChannelLayerNorm, VanEncoder, van_official_key
from .layers.mlp import PreNormResidual
from .layers.padding import pad_to_multiple

RL_WIDTH = 128  # "det_planes": width of the remote-local path
WINDOW = 8
HEADS = 4


def conv_bn(in_ch: int, out_ch: int, kernel_size: int = 1, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm, no activation: BAFNet's exchange/compression unit."""
    return ConvBNAct(in_ch, out_ch, kernel_size, stride, act=None)


class MultiScaleLocalAttention(nn.Module):
    """MSLAM: inverted bottleneck with parallel depthwise 7/5/3 kernels, gated by a 1x1 of the input."""

    def __init__(self, dim: int):
        super().__init__()
        hidden = 2 * dim
        self.norm = ChannelLayerNorm(dim, eps=1e-6)
        self.expand = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.dw7 = nn.Conv2d(hidden, hidden, 7, padding=3, groups=hidden)
        self.dw5 = nn.Conv2d(hidden, hidden, 5, padding=2, groups=hidden)
        self.dw3 = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.reduce = nn.Conv2d(hidden, dim, 1)
        self.gate = nn.Conv2d(dim, dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.expand(self.norm(x)))
        y = self.reduce(self.dw7(y) + self.dw5(y) + self.dw3(y)) * self.gate(x)
        return self.proj(y) + x


class RemoteLocalAttention(nn.Module):
    """RLA = ERAM (window MHSA + depthwise 7x7) + MSLAM, then a ws x ws separable projection."""

    def __init__(self, dim: int, num_heads: int = HEADS, window: int = WINDOW):
        super().__init__()
        self.window_attn = WindowAttention(dim, num_heads, window)
        self.remote_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.local = MultiScaleLocalAttention(dim)
        self.proj = WindowProjection(dim, window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.remote_dw(self.window_attn(x)) + self.local(x))


def rlab(dim: int = RL_WIDTH) -> PreNormResidual:
    """Remote-local attention block: x + RLA(BN(x)), then x + MLP(BN(x)) (ratio 4, ReLU6)."""
    return PreNormResidual(dim, RemoteLocalAttention(dim), mlp_ratio=4.0)


class PooledBatchNorm(nn.BatchNorm2d):
    """BatchNorm of a pooled (N, C, 1, 1) vector that also trains with a batch of one.

    With N = 1 there is a single value per channel and no batch statistic (plain
    BatchNorm raises); that step then normalises with the running statistics, as
    in eval mode, and leaves them unchanged. Same parameters and buffers as
    ``nn.BatchNorm2d``, so checkpoints are interchangeable.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        return super().forward(x)


class FeatureAggregation(nn.Module):
    """FAM: 1x1 conv-BN-ReLU on [semantic, remote-local], then an ECA channel gate (k=5) with BN."""

    def __init__(self, in_ch: int, out_ch: int, eca_kernel: int = 5):
        super().__init__()
        self.fuse = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch),
                                  nn.ReLU(inplace=True))
        self.eca = nn.Conv1d(1, 1, eca_kernel, padding=eca_kernel // 2, bias=False)
        self.gate_bn = PooledBatchNorm(out_ch)

    def forward(self, semantic: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
        f = self.fuse(torch.cat([semantic, detail], dim=1))
        pooled = f.mean(dim=(2, 3)).unsqueeze(1)  # (N, 1, C): 1-D conv across channels
        weights = self.gate_bn(self.eca(pooled).transpose(1, 2).unsqueeze(-1))  # (N, C, 1, 1)
        return f * weights.sigmoid()


class BAFNet(nn.Module):
    """BAFNet; maps (N, in_channels, H, W) to logits (N, num_classes, H, W) for any H, W."""

    stride = 32

    def __init__(self, in_channels: int = 3, num_classes: int = 6):
        super().__init__()
        self.encoder = VanEncoder.b0(in_channels)
        d1, d2, d3, d4 = self.encoder.dims  # 32, 64, 160, 256
        c = RL_WIDTH
        self.rl_entry = conv_bn(d2, c)
        self.rl_init = nn.Sequential(rlab(c), rlab(c))
        self.down3 = conv_bn(c, d3, 3, stride=2)
        self.compress3 = conv_bn(d3, c)
        self.rl_mid = rlab(c)
        self.down4 = nn.Sequential(conv_bn(c, d3, 3, stride=2), nn.ReLU(inplace=True),
                                   conv_bn(d3, d4, 3, stride=2))
        self.compress4 = conv_bn(d4, c)
        self.rl_final = rlab(c)
        self.semantic = conv_bn(d4, c)
        self.fam = FeatureAggregation(2 * c, 2 * c)
        self.head = nn.Sequential(
            nn.BatchNorm2d(2 * c), nn.ReLU(inplace=True), nn.Conv2d(2 * c, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(x, self.stride)
        stages = self.encoder.stages
        s2 = stages[1](stages[0](x))
        s3 = stages[2](s2)
        rl = self.rl_init(self.rl_entry(F.relu(s2)))
        # Exchange 1: both directions read the pre-exchange tensors.
        s3, rl = s3 + self.down3(F.relu(rl)), rl + _resize(self.compress3(F.relu(s3)), rl)
        s4 = stages[3](s3)
        rl = self.rl_mid(F.relu(rl))
        # Exchange 2, again simultaneous.
        s4, rl = s4 + self.down4(F.relu(rl)), rl + _resize(self.compress4(F.relu(s4)), rl)
        rl = self.rl_final(F.relu(rl))
        semantic = _resize(self.semantic(F.relu(s4)), rl)
        logits = self.head(self.fam(semantic, rl))
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :h, :w]

    def load_pretrained_encoder(self, state_dict) -> tuple[list[str], list[str]]:
        """Load an official VAN-B0 ImageNet checkpoint (e.g. ``van_tiny_754.pth.tar``,
        bare or under ``state_dict``) into the dependency path.

        The RGB patch-embedding weights are adapted to ``in_channels`` (extra bands
        get the RGB mean). Returns ``(missing_keys, unexpected_keys)``: missing in our
        encoder's names, unexpected (e.g. ``head.weight``) in the checkpoint's.
        """
        return load_renamed(self.encoder, state_dict, van_official_key,
                            input_conv="stages.0.embed.conv.weight")


def _resize(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


@register_model(
    "bafnet",
    paper="Wang & Wang, BAFNet: Bilateral Attention Fusion Network for Lightweight Semantic "
          "Segmentation of Urban Remote Sensing Images, arXiv 2409.10269",
    paper_figures={"params_m": 6.4, "gflops": 12.3, "miou_vaihingen": 83.20, "miou_potsdam": 86.53},
    paper_config={"num_classes": 6, "in_channels": 3, "input": [512, 512]},
    stride=32,
)
def build_bafnet(in_channels: int = 3, num_classes: int = 6) -> BAFNet:
    """BAFNet with a VAN-B0 dependency path (the paper's only configuration)."""
    return BAFNet(in_channels, num_classes)
