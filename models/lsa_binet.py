"""LSA-BiNet: DABNet encoder with LRFA and SVFM, decoded by RCAD.

Paper: Man Yuan Gui, Jinlai Zhang, Yonghen Hu, Sheng Wu, Du Xu, Bo Ouyang,
Shaosheng Fan, Zhenzhen Jin, "Local-Semantic Attentive Bidirectional Bottleneck
Network with Residual Feature Augmentation for Real-time Semantic Segmentation",
ICIC 2025. Verified against the paper's Table 4 parameter column (19 classes):
full 1.84 M (we count 1,841,522), -RCAD 1.48 M (1,481,608), -LRFA -SVFM 1.12 M
(1,116,576), -LRFA -RCAD 1.44 M (1,437,573), -SVFM -RCAD 0.80 M (800,697),
all three off 0.75 M (756,662, DABNet); and
8.81 GFLOPs at 360x480 (we count 8.67 GMACs of conv/matmul; thop-style counters
add 1.5-3.5 %). Reported accuracy (not reproduced): 72.74 % Cityscapes test,
68.53 % CamVid test, without ImageNet pretraining.

The modules follow the paper's equations: LRFA (eq. 1-2) is a local importance
map (1x1 compression, SoftPool 7x7 stride 3, 3x3 stride-2 conv, 3x3 conv,
sigmoid, bilinear upsampling) times a gate from the sigmoid of the first
channel; SVFM (eq. 3-8) splits a 1x1 expansion into an EASA branch (max-pooled
1/8 map through a depthwise 3x3, plus the spatial variance, mixed by learnable
alpha/beta, 1x1, GELU, upsampled, multiplying the branch) and an LDE inverted
bottleneck, summed and fused by a 1x1 conv; RCAD (eq. 9-12) projects the deep
feature to the shallow width, gates the shallow feature with
sigmoid(sigmoid(X) + Yc), adds ResAtt(X*Att)*Yc and classifies through a
depthwise-separable mixer and a 1x1 conv. Where the paper is silent (rsseg's
architecture spec, section 0b): LRFA and SVFM sit once on the 1/8 encoder
output, RCAD fuses it into the 1/4 feature, SVFM has an outer residual, the
variance is the population variance, ResAtt is conv-BN-ReLU-conv-BN plus the
input.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import register_model
from .layers.conv import DepthwiseSeparableConv
from .layers.dab import DABEncoder
from .layers.padding import pad_to_multiple


def soft_pool(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """SoftPool (eq. 1): the exp-weighted mean of each window, ``sum(e^x x) / sum(e^x)``.

    The per-map maximum is subtracted inside the exponent (the ratio is unchanged)
    so large activations cannot overflow. Maps smaller than the window are
    edge-padded to one window.
    """
    h, w = x.shape[-2:]
    if h < kernel or w < kernel:
        x = F.pad(x, (0, max(0, kernel - w), 0, max(0, kernel - h)), mode="replicate")
    peak = torch.amax(x.detach(), dim=(2, 3), keepdim=True)
    weights = torch.exp(x - peak)
    numerator = F.avg_pool2d(weights * x, kernel, stride)
    denominator = F.avg_pool2d(weights, kernel, stride)
    return numerator / denominator.clamp_min(torch.finfo(x.dtype).tiny)


class LocalReceptiveFieldAttention(nn.Module):
    """LRFA: ``X * W * G`` with W a regional importance map, G = sigmoid(X[:, :1])."""

    def __init__(self, channels: int, compressed: int = 16, pool_kernel: int = 7,
                 pool_stride: int = 3):
        super().__init__()
        self.pool_kernel, self.pool_stride = pool_kernel, pool_stride
        self.compress = nn.Conv2d(channels, compressed, 1)
        self.reduce = nn.Conv2d(compressed, compressed, 3, 2, 1)
        self.expand = nn.Conv2d(compressed, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        importance = soft_pool(self.compress(x), self.pool_kernel, self.pool_stride)
        importance = torch.sigmoid(self.expand(self.reduce(importance)))
        weight = F.interpolate(importance, size=x.shape[-2:], mode="bilinear", align_corners=False)
        gate = torch.sigmoid(x[:, :1])
        return x * weight * gate


class SpatialVarianceFusion(nn.Module):
    """SVFM: EASA (non-local, variance-modulated) + LDE (local detail), 1x1 fusion, residual.

    The EASA pooling to 1/8 is a max-pool over 8x8 windows (ceil mode): identical to
    ``AdaptiveMaxPool2d((H/8, W/8))`` when 8 divides the map, and defined (and
    exportable to ONNX) for every size; the upsampling repeats each pooled value
    over its window, the exact inverse of that pooling.
    """

    def __init__(self, channels: int, down: int = 8):
        super().__init__()
        self.down = down
        self.split = nn.Conv2d(channels, 2 * channels, 1)
        self.structure_dw = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels)
        self.alpha = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.structure_mix = nn.Conv2d(channels, channels, 1)
        self.detail = nn.Sequential(
            nn.Conv2d(channels, 2 * channels, 3, 1, 1, groups=channels),
            nn.Conv2d(2 * channels, 2 * channels, 1),
            nn.GELU(),
            nn.Conv2d(2 * channels, channels, 1),
        )
        self.fuse = nn.Conv2d(channels, channels, 1)

    def structure(self, x: torch.Tensor) -> torch.Tensor:
        """EASA branch (eq. 4-6)."""
        h, w = x.shape[-2:]
        low = self.structure_dw(F.max_pool2d(x, self.down, self.down, ceil_mode=True))
        mean = x.mean(dim=(2, 3), keepdim=True)
        variance = (x - mean).square().mean(dim=(2, 3), keepdim=True)
        modulation = F.gelu(self.structure_mix(low * self.alpha + variance * self.beta))
        modulation = F.interpolate(modulation, scale_factor=float(self.down), mode="nearest")
        return x * modulation[..., :h, :w]

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        x, y = self.split(f).chunk(2, dim=1)
        return self.fuse(self.structure(x) + self.detail(y)) + f


class ResidualConvBlock(nn.Module):
    """ResAtt of RCAD: ``z + BN(conv3x3(ReLU(BN(conv3x3(z)))))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.body(z)


class ResidualCrossLevelDecoder(nn.Module):
    """RCAD (eq. 9-12): shallow X, deep Y -> class logits at X's resolution."""

    def __init__(self, shallow_channels: int, deep_channels: int, num_classes: int):
        super().__init__()
        self.project = nn.Conv2d(deep_channels, shallow_channels, 1)
        self.res_att = ResidualConvBlock(shallow_channels)
        self.mixer = DepthwiseSeparableConv(shallow_channels, shallow_channels)
        self.classifier = nn.Conv2d(shallow_channels, num_classes, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Project at the deep (cheap) resolution, then upsample to the shallow one.
        yc = F.interpolate(self.project(y), size=x.shape[-2:], mode="bilinear", align_corners=False)
        gated = x * torch.sigmoid(torch.sigmoid(x) + yc)
        out = gated + self.res_att(gated) * yc
        return self.classifier(self.mixer(out))


class LSABiNet(nn.Module):
    """DABNet encoder -> LRFA -> SVFM on the 1/8 feature -> RCAD with the 1/4 feature.

    ``lrfa``, ``svfm``, ``rcad`` switch the modules off for the paper's ablation
    (without RCAD the DABNet head is used: a 1x1 classifier on the 1/8 feature).
    """

    stride = 8

    def __init__(self, in_channels: int = 3, num_classes: int = 19, lrfa_width: int = 16,
                 lrfa: bool = True, svfm: bool = True, rcad: bool = True):
        super().__init__()
        self.encoder = DABEncoder(in_channels)
        shallow, deep = self.encoder.stage1_channels, self.encoder.stage2_channels
        self.lrfa = LocalReceptiveFieldAttention(deep, lrfa_width) if lrfa else nn.Identity()
        self.svfm = SpatialVarianceFusion(deep) if svfm else nn.Identity()
        if rcad:
            self.decoder = ResidualCrossLevelDecoder(shallow, deep, num_classes)
            self.head = None
        else:
            self.decoder = None
            self.head = nn.Conv2d(deep, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, (h, w) = pad_to_multiple(x, self.stride)
        shallow, deep = self.encoder(padded)
        deep = self.svfm(self.lrfa(deep))
        logits = self.head(deep) if self.decoder is None else self.decoder(shallow, deep)
        logits = F.interpolate(logits, size=padded.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :h, :w]


@register_model(
    "lsa_binet",
    paper="Gui et al., Local-Semantic Attentive Bidirectional Bottleneck Network with Residual "
          "Feature Augmentation for Real-time Semantic Segmentation, ICIC 2025",
    paper_figures={"params_m": 1.84, "gflops": 8.81, "miou_cityscapes_test": 72.74,
                   "miou_camvid_test": 68.53, "fps_cityscapes": 51.08, "fps_camvid": 79.62},
    paper_config={"num_classes": 19, "in_channels": 3, "input": [360, 480],
                  "note": "params with 19 classes; GFLOPs at the CamVid input 360x480",
                  "pretrained": False},
    stride=8,
)
def lsa_binet(in_channels: int = 3, num_classes: int = 19, **cfg) -> LSABiNet:
    """``cfg``: ``lrfa_width`` (16) and the ablation switches ``lrfa``, ``svfm``, ``rcad``."""
    return LSABiNet(in_channels, num_classes, **cfg)
