"""BAFF-SkipNet: MobileNetV2 encoder, SkipNet decoder, block-adaptive feature fusion.

Paper: Huang Tinghong, Nie Zhuoyun, Wang Qingguo, Li Shuai, Yan Laicheng, Guo
Dongsheng, "Real-time semantic segmentation based on block adaptive feature
fusion", Acta Automatica Sinica 47(5): 1137-1148, 2021 (DOI 10.16383/j.aas.c180645).
Verified against: 0.82 M parameters (19 Cityscapes classes); we count 817,241 + 38
(BAFF) = 817,279 (within 0.4 %). The paper also reports 70.5 % mIoU on Cityscapes and
19.01 ms per 1024x2048 frame on a Titan XP (not reproduced here).

No full text or code is public; the layout follows rsseg's architecture spec
(section 4 candidate A, with the BAFF of section 0b): MobileNetV2 at width 0.5
with its final 1x1 conv to 1280 channels, RTSeg's SkipNet decoder (class-score
skips at 1/32, 1/16, 1/8; learnable bilinear-initialised transposed convs), and
one BAFF weight net per skip: a depth-2 3-D convolution over the stacked
(shallow, deep) score pair of each class, shared by all classes, averaged over
classes, pooled to 8x8 blocks and squashed by a sigmoid, so each block decides
how much to trust the shallow score.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import register_model
from .layers.mobilenetv2 import MobileNetV2Encoder
from .layers.padding import pad_to_multiple
from .layers.upsample import learnable_upsampler


class BlockAdaptiveFusion(nn.Module):
    """BAFF: ``W * shallow + (1 - W) * deep`` with a learned per-block weight map W.

    For each class channel the pair (shallow, deep) forms a depth-2 volume; one
    3-D conv with kernel (2, 3, 3), shared by every class, reduces it to one map
    (18 weights + 1 bias). Since the kernel spans the whole depth, it is applied
    as the equivalent 2-input-channel 2-D conv (same weights, ONNX-friendly).
    The per-class maps are averaged, average-pooled over ``block x block``
    blocks (partial blocks at the border average what they cover), broadcast
    back to every pixel of the block and passed through a sigmoid.
    """

    def __init__(self, block: int = 8):
        super().__init__()
        self.block = block
        self.volume_conv = nn.Conv2d(2, 1, 3, padding=1)

    def weight_map(self, shallow: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        n, k, h, w = shallow.shape
        pairs = torch.stack([shallow, deep], dim=2).reshape(n * k, 2, h, w)
        per_class = self.volume_conv(pairs).reshape(n, k, h, w)
        score = per_class.mean(dim=1, keepdim=True)
        blocks = F.avg_pool2d(score, self.block, self.block, ceil_mode=True)
        spread = F.interpolate(blocks, scale_factor=float(self.block), mode="nearest")
        return torch.sigmoid(spread[..., :h, :w])

    def forward(self, shallow: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        weight = self.weight_map(shallow, deep)
        return weight * shallow + (1 - weight) * deep


class BAFFSkipNet(nn.Module):
    """MobileNetV2 (x0.5) + SkipNet score decoder with BAFF at the 1/16 and 1/8 skips."""

    stride = 32

    def __init__(self, in_channels: int = 3, num_classes: int = 19, width: float = 0.5,
                 block: int = 8, fusion: str = "baff"):
        super().__init__()
        if fusion not in ("baff", "add"):
            raise ValueError(f"fusion must be 'baff' or 'add' (plain SkipNet), not {fusion!r}")
        self.encoder = MobileNetV2Encoder(in_channels, width, head_conv=True)
        ch = self.encoder.channels
        self.score32 = nn.Conv2d(ch[32], num_classes, 1)
        self.score16 = nn.Conv2d(ch[16], num_classes, 1)
        self.score8 = nn.Conv2d(ch[8], num_classes, 1)
        self.up32 = learnable_upsampler(num_classes, 2)
        self.up16 = learnable_upsampler(num_classes, 2)
        self.up8 = learnable_upsampler(num_classes, 8)
        self.fuse16 = BlockAdaptiveFusion(block) if fusion == "baff" else None
        self.fuse8 = BlockAdaptiveFusion(block) if fusion == "baff" else None

    @staticmethod
    def _fuse(fusion: BlockAdaptiveFusion | None, shallow, deep):
        return shallow + deep if fusion is None else fusion(shallow, deep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, (h, w) = pad_to_multiple(x, self.stride)
        feats = self.encoder(padded)
        deep16 = self.up32(self.score32(feats[32]))
        fused16 = self._fuse(self.fuse16, self.score16(feats[16]), deep16)
        deep8 = self.up16(fused16)
        fused8 = self._fuse(self.fuse8, self.score8(feats[8]), deep8)
        return self.up8(fused8)[..., :h, :w]

    def load_pretrained_encoder(self, state_dict: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
        """Load torchvision-layout MobileNetV2 (width 0.5) weights into the encoder."""
        return self.encoder.load_torchvision_state_dict(state_dict)


@register_model(
    "baff_skipnet",
    paper="Huang et al., Real-time semantic segmentation based on block adaptive feature "
          "fusion, Acta Automatica Sinica 47(5), 2021",
    paper_figures={"params_m": 0.82, "miou_cityscapes": 70.5, "ms_1024x2048_titan_xp": 19.01},
    paper_config={"num_classes": 19, "in_channels": 3, "input": [1024, 2048],
                  "dataset": "Cityscapes", "backbone": "MobileNetV2"},
    stride=32,
)
def baff_skipnet(in_channels: int = 3, num_classes: int = 19, **cfg) -> BAFFSkipNet:
    """``cfg``: ``width`` (0.5), ``block`` (BAFF block size, 8), ``fusion`` ('baff' | 'add')."""
    return BAFFSkipNet(in_channels, num_classes, **cfg)
