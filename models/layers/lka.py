"""Large-kernel attention (LKA) and the VAN encoder built from it.

VAN ("Visual Attention Network", Guo, Lu, Liu, Cheng, Hu; arXiv 2202.09741)
decomposes a large receptive field into a depthwise 5x5 conv, a depthwise 7x7
conv with dilation 3 and a 1x1 conv, and uses the result as an element-wise
gate. :class:`VanEncoder` is the four-stage hierarchy (strides 4/8/16/32);
``VanEncoder.b0(in_channels)`` is VAN-B0 ("van_tiny"), BAFNet's dependency
path. :func:`van_official_key` translates the key names of the official VAN
ImageNet checkpoints to this module's names.
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn


class LargeKernelAttention(nn.Module):
    """x * pw(dw_dilated(dw(x))): a 23x23-ish receptive field for the cost of ~80 weights per channel."""

    def __init__(self, dim: int):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.dw_dilated = nn.Conv2d(dim, dim, 7, padding=9, dilation=3, groups=dim)
        self.pw = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.pw(self.dw_dilated(self.dw(x)))


class VanAttention(nn.Module):
    """1x1 -> GELU -> LKA -> 1x1, with a shortcut around the whole branch."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.act = nn.GELU()
        self.lka = LargeKernelAttention(dim)
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj_out(self.lka(self.act(self.proj_in(x))))


class VanMlp(nn.Module):
    """1x1 expansion, depthwise 3x3, GELU, 1x1 back (all convs with bias)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.dw(self.fc1(x))))


class VanBlock(nn.Module):
    """Two pre-norm (BatchNorm) residual branches, each scaled per channel (layer scale 0.01)."""

    def __init__(self, dim: int, mlp_ratio: float, layer_scale: float = 1e-2):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = VanAttention(dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = VanMlp(dim, int(dim * mlp_ratio))
        self.scale_attn = nn.Parameter(torch.full((dim,), layer_scale))
        self.scale_mlp = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.scale_attn.view(1, -1, 1, 1) * self.attn(self.norm1(x))
        return x + self.scale_mlp.view(1, -1, 1, 1) * self.mlp(self.norm2(x))


class VanPatchEmbed(nn.Module):
    """Overlapping patch embedding: strided conv (with bias) then BatchNorm."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of an (N, C, H, W) map (VAN's per-stage norm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class VanStage(nn.Module):
    """Patch embedding, ``depth`` VAN blocks, channel LayerNorm."""

    def __init__(self, in_ch: int, dim: int, depth: int, mlp_ratio: float, first: bool):
        super().__init__()
        self.embed = VanPatchEmbed(in_ch, dim, 7 if first else 3, 4 if first else 2)
        self.blocks = nn.Sequential(*(VanBlock(dim, mlp_ratio) for _ in range(depth)))
        self.norm = ChannelLayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(self.embed(x)))


class VanEncoder(nn.Module):
    """Four VAN stages; ``forward`` returns the feature maps at strides 4, 8, 16 and 32.

    Callers that interleave work between stages (BAFNet) call ``stages[i]``
    directly. Input H and W must be multiples of 32.
    """

    def __init__(self, in_channels: int, dims=(32, 64, 160, 256), depths=(3, 3, 5, 2),
                 mlp_ratios=(8, 8, 4, 4)):
        super().__init__()
        chans = (in_channels, *dims[:-1])
        self.dims = tuple(dims)
        self.stages = nn.ModuleList(
            VanStage(c_in, dim, depth, ratio, first=(i == 0))
            for i, (c_in, dim, depth, ratio) in enumerate(zip(chans, dims, depths, mlp_ratios)))
        self.apply(_init_van)

    @classmethod
    def b0(cls, in_channels: int = 3) -> "VanEncoder":
        """VAN-B0 ("van_tiny"): widths 32/64/160/256, depths 3/3/5/2, MLP ratios 8/8/4/4."""
        return cls(in_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


def _init_van(m: nn.Module) -> None:
    # He-style fan-out init for convs as VAN does; LayerNorm/BN keep torch defaults.
    if isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


# Official VAN names (VAN-Classification ``van.py``) -> ours. Indices in the
# official names are 1-based stages; ``{s}`` below is the 0-based stage.
_VAN_RULES = [
    (r"patch_embed(\d)\.proj\.(.+)", "stages.{s}.embed.conv.{1}"),
    (r"patch_embed(\d)\.norm\.(.+)", "stages.{s}.embed.bn.{1}"),
    (r"block(\d)\.(\d+)\.attn\.proj_1\.(.+)", "stages.{s}.blocks.{1}.attn.proj_in.{2}"),
    (r"block(\d)\.(\d+)\.attn\.proj_2\.(.+)", "stages.{s}.blocks.{1}.attn.proj_out.{2}"),
    (r"block(\d)\.(\d+)\.attn\.spatial_gating_unit\.conv0\.(.+)", "stages.{s}.blocks.{1}.attn.lka.dw.{2}"),
    (r"block(\d)\.(\d+)\.attn\.spatial_gating_unit\.conv_spatial\.(.+)",
     "stages.{s}.blocks.{1}.attn.lka.dw_dilated.{2}"),
    (r"block(\d)\.(\d+)\.attn\.spatial_gating_unit\.conv1\.(.+)", "stages.{s}.blocks.{1}.attn.lka.pw.{2}"),
    (r"block(\d)\.(\d+)\.mlp\.dwconv\.dwconv\.(.+)", "stages.{s}.blocks.{1}.mlp.dw.{2}"),
    (r"block(\d)\.(\d+)\.mlp\.(fc1|fc2)\.(.+)", "stages.{s}.blocks.{1}.mlp.{2}.{3}"),
    (r"block(\d)\.(\d+)\.(norm1|norm2)\.(.+)", "stages.{s}.blocks.{1}.{2}.{3}"),
    (r"block(\d)\.(\d+)\.layer_scale_1", "stages.{s}.blocks.{1}.scale_attn"),
    (r"block(\d)\.(\d+)\.layer_scale_2", "stages.{s}.blocks.{1}.scale_mlp"),
    (r"norm(\d)\.(weight|bias)", "stages.{s}.norm.{1}"),
]


def van_official_key(key: str) -> str | None:
    """Our :class:`VanEncoder` name for an official VAN checkpoint key, or None (e.g. ``head.*``)."""
    for pattern, template in _VAN_RULES:
        match = re.fullmatch(pattern, key)
        if match:
            groups = match.groups()
            return template.format(None, *groups[1:], s=int(groups[0]) - 1)
    return None
