"""LWGANet: light-weight grouped attention backbone, with a UNetFormer decoder for segmentation.

Paper: Wei Lu, Xue Yang, Si-Bao Chen, "LWGANet: Addressing Spatial and Channel
Redundancy in Remote Sensing Visual Tasks with Light-Weight Grouped Attention",
arXiv 2501.10040 (AAAI 2026). Segmentation decoder: Libo Wang et al.,
"UNetFormer: A UNet-like transformer for efficient semantic segmentation of
remote sensing urban scene imagery", arXiv 2109.08937 (the paper pairs
LWGANet-L2 with it for UAVid / LoveDA). Built from our SPEC section 2 / 0b.

Each LWGA block splits its channels in four groups, each with its own operator:
gated point attention (GPA), a regular 3x3 conv (RLA), sparse medium-range
strip attention on a stride-3 blur-pooled map (SMA), and sparse global attention
(SGA: large-kernel selective attention on 2x2 max-pooled tokens in stages 1-2,
MHSA on pooled tokens in stage 3, full MHSA in stage 4); max-pool indices put
the processed tokens back (TGFI). A channel MLP and one residual close the
block. DRFD modules downsample between stages.

Verified (tests/models/test_models_bafnet_lwganet.py; MACs of conv/matmul layers from
``torch.utils.flop_counter``, the papers' "FLOPs" are thop-style MACs):

======================  ============  ===========  ==============================
model                   paper params  our params   GMACs ours / paper
======================  ============  ===========  ==============================
L0 classifier, 45 cls   1.72 M        1,717,423    0.182 / 0.186 at 224x224
L1 classifier, 45 cls   5.90 M        5,906,975    0.701 / 0.709 at 224x224
L2 classifier, 45 cls   13.0 M        13,040,667   1.856 / 1.87  at 224x224
L2 + UNetFormer, 8 cls  12.58 M       12,582,304   49.48 / 50.3  at 1024x1024
======================  ============  ===========  ==============================

(exact figures in docs/models/lwganet.md; the segmentation count includes the
auxiliary head, ``aux_head=True``, as the paper's total does). Any input size: reflect-padded to a
multiple of 32 and cropped back. Batch 1 works in eval mode, and in train mode
when one side of the input exceeds 96 px (SMA's BatchNorm at stage 4 runs on a
map pooled to 1/96 of the input and needs more than one value per channel).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._pretrained import load_renamed
from ._registry import register_model
from .layers.attention import GlobalLocalAttention, GlobalSelfAttention
from .layers.conv import ConvBNAct
from .layers.mlp import PreNormResidual
from .layers.padding import pad_to_multiple


@dataclass(frozen=True)
class Variant:
    width: int
    depths: tuple[int, int, int, int]
    act: type[nn.Module]
    drop_path: float


VARIANTS = {
    "l0": Variant(32, (1, 2, 4, 2), nn.GELU, 0.0),
    "l1": Variant(64, (1, 2, 4, 2), nn.GELU, 0.1),
    "l2": Variant(96, (1, 4, 4, 2), nn.ReLU, 0.1),
}
MLP_RATIO = 2
STRIP_KERNEL = 11


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples of a residual branch (rescaled) while training."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


def bn_act(ch: int, act: type[nn.Module]) -> list[nn.Module]:
    return [nn.BatchNorm2d(ch), act()]


class PointAttention(nn.Module):
    """GPA: x * sigmoid(1x1 s->4s, BN, act, 1x1 4s->s); the block adds x again."""

    def __init__(self, dim: int, act: type[nn.Module]):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(dim, 4 * dim, 1, bias=False), *bn_act(4 * dim, act),
                                 nn.Conv2d(4 * dim, dim, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.net(x).sigmoid()


class BlurPool(nn.Module):
    """Anti-aliased downsampling: binomial [1,3,3,1]² low-pass, reflect pad (1, 2), stride 3."""

    def __init__(self, dim: int, stride: int = 3):
        super().__init__()
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
        kernel = taps[:, None] * taps[None, :]
        self.register_buffer("kernel", (kernel / kernel.sum()).expand(dim, 1, 4, 4).clone(),
                             persistent=False)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        small = min(x.shape[-2:]) < 3  # reflect needs 2 < size
        x = F.pad(x, (1, 2, 1, 2), mode="replicate" if small else "reflect")
        return F.conv2d(x, self.kernel, stride=self.stride, groups=x.shape[1])


def shear_rows(x: torch.Tensor) -> torch.Tensor:
    """Shift row i right by i: (..., H, W) -> (..., H, W+H-1), zeros elsewhere."""
    h, w = x.shape[-2:]
    flat = F.pad(x, (0, h)).flatten(-2)[..., : h * (w + h - 1)]
    # reshape, not unflatten: the ONNX tracer keeps reshape's sizes symbolic
    return flat.reshape(flat.shape[:-1] + (h, w + h - 1))


def unshear_rows(x: torch.Tensor, width: int) -> torch.Tensor:
    """Inverse of :func:`shear_rows`: (..., H, W+H-1) -> (..., H, W)."""
    h = x.shape[-2]
    flat = F.pad(x.flatten(-2), (0, h))
    return flat.reshape(flat.shape[:-1] + (h, x.shape[-1] + 1))[..., :width]


def shear_cols(x: torch.Tensor) -> torch.Tensor:
    """Shift column j down by j: (..., H, W) -> (..., H+W-1, W)."""
    return shear_rows(x.transpose(-2, -1)).transpose(-2, -1)


def unshear_cols(x: torch.Tensor, height: int) -> torch.Tensor:
    """Inverse of :func:`shear_cols`."""
    return unshear_rows(x.transpose(-2, -1), height).transpose(-2, -1)


class StripAttention(nn.Module):
    """SMA: medium-range attention from strip convs on a stride-3 pooled map.

    Vertical (k x 3) and horizontal (3 x k) depthwise strips, plus the same two
    on a sheared copy (rows shifted by their index, resp. columns) which turns
    them into diagonal strips; BN, sigmoid, nearest upsample, gate x.
    """

    def __init__(self, dim: int, kernel: int = STRIP_KERNEL):
        super().__init__()
        pad = kernel // 2
        self.pool = nn.MaxPool2d(3, 1, 1)
        self.blur = BlurPool(dim, 3)
        self.strip_v = nn.Conv2d(dim, dim, (kernel, 3), padding=(pad, 1), groups=dim, bias=False)
        self.strip_h = nn.Conv2d(dim, dim, (3, kernel), padding=(1, pad), groups=dim, bias=False)
        self.diag_v = nn.Conv2d(dim, dim, (kernel, 3), padding=(pad, 1), groups=dim, bias=False)
        self.diag_h = nn.Conv2d(dim, dim, (3, kernel), padding=(1, pad), groups=dim, bias=False)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.blur(self.pool(x))
        h, w = t.shape[-2:]
        diag_v = unshear_rows(self.diag_v(shear_rows(t)), w)
        diag_h = unshear_cols(self.diag_h(shear_cols(t)), h)
        att = self.bn(self.strip_v(t) + self.strip_h(t) + diag_v + diag_h).sigmoid()
        return x * F.interpolate(att, size=x.shape[-2:], mode="nearest")


class SelectiveKernelAttention(nn.Module):
    """SGA of stages 1-2 (LSK-style), applied to 2x2 max-pooled tokens; every conv has a bias."""

    def __init__(self, dim: int, act: type[nn.Module]):
        super().__init__()
        half = dim // 2
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.act = act()
        self.dw = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.dw_dilated = nn.Conv2d(dim, dim, 7, padding=9, dilation=3, groups=dim)
        self.reduce_dw = nn.Conv2d(dim, half, 1)
        self.reduce_dilated = nn.Conv2d(dim, half, 1)
        self.squeeze = nn.Conv2d(2, 2, 7, padding=3)
        self.expand = nn.Conv2d(half, dim, 1)
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.proj_in(x))
        small = self.dw(x)
        large = self.dw_dilated(small)
        small, large = self.reduce_dw(small), self.reduce_dilated(large)
        both = torch.cat([small, large], dim=1)
        stats = torch.cat([both.mean(dim=1, keepdim=True), both.amax(dim=1, keepdim=True)], dim=1)
        w = self.squeeze(stats).sigmoid()
        attn = self.expand(small * w[:, :1] + large * w[:, 1:])
        return self.proj_out(x * attn)


def _pooled(fn, x: torch.Tensor) -> torch.Tensor:
    """TGFI: keep the max of each 2x2 region, process those tokens, put them back (zeros elsewhere)."""
    tokens, index = F.max_pool2d(x, 2, 2, return_indices=True)
    # Max-unpool written as a scatter into the flat H*W plane (exactly what
    # F.max_unpool2d does): unlike max_unpool2d it traces and exports to ONNX
    # with symbolic sizes.
    out = torch.zeros_like(x).flatten(2)
    return out.scatter(2, index.flatten(2), fn(tokens).flatten(2)).view_as(x)


class SparseGlobalAttention(nn.Module):
    """SGA for stage ``stage`` (0-based): selective kernels (0-1), pooled MHSA (2), full MHSA (3)."""

    def __init__(self, dim: int, stage: int, act: type[nn.Module]):
        super().__init__()
        self.stage = stage
        self.attn = SelectiveKernelAttention(dim, act) if stage < 2 else GlobalSelfAttention(dim, 4)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stage < 2:
            return self.bn(x + _pooled(self.attn, x))
        if self.stage == 2:
            return x + _pooled(lambda t: self.bn(self.attn(t)), x)
        return self.bn(x + self.attn(x))


class LWGABlock(nn.Module):
    """Four heterogeneous channel groups, a channel MLP and one residual around the block."""

    def __init__(self, dim: int, stage: int, act: type[nn.Module], drop_path_rate: float = 0.0):
        super().__init__()
        split = dim // 4
        self.split = split
        self.gpa = PointAttention(split, act)
        self.rla = nn.Sequential(nn.Conv2d(split, split, 3, padding=1, bias=False), *bn_act(split, act))
        self.sma = StripAttention(split)
        self.sga = SparseGlobalAttention(split, stage, act)
        hidden = dim * MLP_RATIO
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1, bias=False), *bn_act(hidden, act),
                                 nn.Conv2d(hidden, dim, 1, bias=False))
        self.norm = nn.BatchNorm2d(dim)
        self.drop_path_rate = drop_path_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2, x3, x4 = torch.split(x, self.split, dim=1)
        mixed = torch.cat([x1 + self.gpa(x1), self.rla(x2), self.sma(x3), self.sga(x4)], dim=1)
        return x + self.norm(drop_path(self.mlp(mixed), self.drop_path_rate, self.training))


class DRFD(nn.Module):
    """Downsampler: grouped 3x3 doubles width, then [dw 3x3 s2 -> act -> BN, maxpool s2 -> BN], 1x1 fuse."""

    def __init__(self, dim: int, act: type[nn.Module]):
        super().__init__()
        out = 2 * dim
        self.expand = nn.Conv2d(dim, out, 3, padding=1, groups=dim)
        self.conv_down = nn.Conv2d(out, out, 3, stride=2, padding=1, groups=out)
        self.conv_act = act()
        self.conv_bn = nn.BatchNorm2d(out)
        self.pool_bn = nn.BatchNorm2d(out)
        self.fuse = nn.Conv2d(2 * out, out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.expand(x)
        conv = self.conv_bn(self.conv_act(self.conv_down(x)))
        pool = self.pool_bn(F.max_pool2d(x, 3, 2, 1))
        return self.fuse(torch.cat([conv, pool], dim=1))


class LWGANetBackbone(nn.Module):
    """Stem (4x4 s4 conv + BN), four stages of LWGA blocks, DRFD between them.

    ``forward`` returns the four stage outputs (strides 4/8/16/32); with
    ``out_norms`` each goes through its own BN (dense-prediction variant).
    Input H and W must be multiples of 32.
    """

    def __init__(self, in_channels: int, variant: Variant, out_norms: bool = False,
                 drop_path_rate: float | None = None):
        super().__init__()
        c = variant.width
        dims = [c * 2 ** i for i in range(4)]
        self.dims = dims
        rate = variant.drop_path if drop_path_rate is None else drop_path_rate
        total = sum(variant.depths)
        rates = [rate * i / max(total - 1, 1) for i in range(total)]  # linear schedule
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 4, 4, bias=False), nn.BatchNorm2d(c))
        self.stages = nn.ModuleList()
        for i, depth in enumerate(variant.depths):
            first = sum(variant.depths[:i])
            self.stages.append(nn.Sequential(*(LWGABlock(dims[i], i, variant.act, rates[first + j])
                                               for j in range(depth))))
        self.downsamples = nn.ModuleList(DRFD(d, variant.act) for d in dims[:-1])
        self.out_norms = nn.ModuleList(nn.BatchNorm2d(d) for d in dims) if out_norms else None
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for i, stage in enumerate(self.stages):
            if i:
                x = self.downsamples[i - 1](x)
            x = stage(x)
            feats.append(self.out_norms[i](x) if self.out_norms is not None else x)
        return feats


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


# Official LWGANet names (``classification/models/LWGANet.py``) -> our backbone names.
_BLOCK_RENAMES = {
    "PA.p_conv.": "gpa.net.", "LA.conv.": "rla.", "MRA.H_att1.": "sma.strip_v.",
    "MRA.V_att1.": "sma.strip_h.", "MRA.H_att2.": "sma.diag_v.", "MRA.V_att2.": "sma.diag_h.",
    "MRA.norm.": "sma.bn.", "GA12.proj_1.": "sga.attn.proj_in.", "GA12.conv0.": "sga.attn.dw.",
    "GA12.conv_spatial.": "sga.attn.dw_dilated.", "GA12.conv1.": "sga.attn.reduce_dw.",
    "GA12.conv2.": "sga.attn.reduce_dilated.", "GA12.conv_squeeze.": "sga.attn.squeeze.",
    "GA12.conv.": "sga.attn.expand.", "GA12.proj_2.": "sga.attn.proj_out.",
    "GA3.norm.": "sga.bn.", "GA3.attn.": "sga.attn.", "GA4.": "sga.attn.", "norm.": "sga.bn.",
    "norm1.": "norm.", "mlp.": "mlp.",
}
_DRFD_RENAMES = {"conv.": "expand.", "conv_c.": "conv_down.", "norm_c.": "conv_bn.",
                 "norm_m.": "pool_bn.", "fusion.": "fuse."}


def lwganet_official_key(key: str) -> str | None:
    """Our :class:`LWGANetBackbone` name for an official LWGANet key (None: not part of it)."""
    parts = key.split(".")
    if parts[0] == "Stem":
        return {"proj": "stem.0.", "norm": "stem.1."}.get(parts[1], "?") + ".".join(parts[2:])
    if parts[0] in ("norm0", "norm2", "norm4", "norm6"):  # dense-prediction output norms
        return f"out_norms.{int(parts[0][4]) // 2}." + ".".join(parts[1:])
    if parts[0] != "stages" or len(parts) < 4:
        return None
    index, rest = int(parts[1]), ".".join(parts[2:])
    if index % 2:  # odd entries of the official Sequential are the DRFDs
        return _rename_prefix(rest, _DRFD_RENAMES, f"downsamples.{index // 2}.")
    if parts[2] != "blocks":
        return None
    return _rename_prefix(".".join(parts[4:]), _BLOCK_RENAMES, f"stages.{index // 2}.{parts[3]}.")


def _rename_prefix(rest: str, table: dict[str, str], prefix: str) -> str | None:
    for old, new in table.items():
        if rest.startswith(old):
            return prefix + new + rest[len(old):]
    return None


class _PretrainedMixin:
    backbone: LWGANetBackbone

    def load_pretrained_encoder(self, state_dict) -> tuple[list[str], list[str]]:
        """Load an official LWGANet ImageNet checkpoint (bare, or under ``state_dict``/``model``)
        into the backbone.

        The stem conv is adapted to ``in_channels`` (extra bands get the RGB mean).
        Returns ``(missing_keys, unexpected_keys)``: missing in our backbone's names
        (the output BNs of the segmentation backbone are not in ImageNet
        checkpoints), unexpected in the checkpoint's (classifier head, blur filters).
        """
        return load_renamed(self.backbone, state_dict, lwganet_official_key, input_conv="stem.0.weight",
                            optional=("out_norms.",))


class LWGANetClassifier(_PretrainedMixin, nn.Module):
    """Backbone + global pool + 1x1 conv to 1280 (no bias) + act + Linear: (N, C, H, W) -> (N, classes)."""

    stride = 32

    def __init__(self, in_channels: int = 3, num_classes: int = 45, variant: str = "l0",
                 drop_path_rate: float | None = None):
        super().__init__()
        v = VARIANTS[variant]
        self.backbone = LWGANetBackbone(in_channels, v, out_norms=False, drop_path_rate=drop_path_rate)
        self.pre_head = nn.Sequential(nn.Conv2d(self.backbone.dims[-1], 1280, 1, bias=False), v.act())
        self.head = nn.Linear(1280, num_classes)
        _init_weights(self.pre_head[0])
        _init_weights(self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = pad_to_multiple(x, self.stride)
        pooled = self.backbone(x)[-1].mean(dim=(2, 3), keepdim=True)
        return self.head(self.pre_head(pooled).flatten(1))


class LWGANetSeg(_PretrainedMixin, nn.Module):
    """LWGANet backbone (with output BNs) + UNetFormer decoder: logits at the input size.

    ``aux_head=True`` adds UNetFormer's auxiliary head (~37 k parameters, counted
    in the paper's 12.58 M total); ``forward_with_aux`` then also returns its
    logits for an auxiliary loss. It is off by default because it only learns
    through that loss: a plain ``loss(model(x), y)`` training loop would carry
    it along untrained.
    """

    stride = 32

    def __init__(self, in_channels: int = 3, num_classes: int = 8, variant: str = "l2",
                 decoder_width: int = 64, window: int = 8, drop_path_rate: float | None = None,
                 aux_head: bool = False):
        super().__init__()
        self.backbone = LWGANetBackbone(in_channels, VARIANTS[variant], out_norms=True,
                                        drop_path_rate=drop_path_rate)
        self.decoder = UNetFormerDecoder(self.backbone.dims, num_classes, decoder_width, window,
                                         aux_head=aux_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_aux(x, aux=False)[0]

    def forward_with_aux(self, x: torch.Tensor, aux: bool = True):
        """``(logits, aux_logits)``, both (N, classes, H, W); aux_logits is None when not
        asked or when the model was built without ``aux_head``."""
        xp, (h, w) = pad_to_multiple(x, self.stride)
        logits, aux_logits = self.decoder(self.backbone(xp), aux=aux)
        outs = [None if t is None else
                F.interpolate(t, size=xp.shape[-2:], mode="bilinear", align_corners=False)[..., :h, :w]
                for t in (logits, aux_logits)]
        return outs[0], outs[1]


# ---------------------------------------------------------------- UNetFormer decoder


class WeightedFusion(nn.Module):
    """WF: mix the upsampled decoder map with a 1x1-projected skip by two learnt non-negative weights."""

    def __init__(self, skip_ch: int, dim: int):
        super().__init__()
        self.skip_proj = nn.Conv2d(skip_ch, dim, 1, bias=False)
        self.weights = nn.Parameter(torch.ones(2))
        self.post = ConvBNAct(dim, dim, 3, act=nn.ReLU6)

    def fuse(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        w = F.relu(self.weights)
        w = w / (w.sum() + 1e-8)
        return w[0] * self.skip_proj(skip) + w[1] * x

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.post(self.fuse(x, skip))


class FeatureRefinementHead(WeightedFusion):
    """FRH at 1/4: weighted fusion, then pixel attention + channel attention, separable projection."""

    def __init__(self, skip_ch: int, dim: int):
        super().__init__(skip_ch, dim)
        self.shortcut = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))
        self.pixel_attn = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.channel_attn = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, dim // 16, 1),
                                          nn.ReLU6(), nn.Conv2d(dim // 16, dim, 1))
        self.proj = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False),
                                  nn.BatchNorm2d(dim), nn.Conv2d(dim, dim, 1, bias=False))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.post(self.fuse(x, skip))
        y = self.pixel_attn(x).sigmoid() * x + self.channel_attn(x).sigmoid() * x
        return F.relu6(self.proj(y) + self.shortcut(x))


class UNetFormerDecoder(nn.Module):
    """Global-local transformer blocks at 1/32, 1/16, 1/8, weighted fusions, FRH at 1/4, head.

    Returns ``(logits, aux_logits)`` at 1/4 resp. 1/8 of the input; aux_logits
    (sum of the three upsampled transformer outputs through a small head, used
    for the auxiliary loss) is computed only when asked.
    """

    def __init__(self, enc_dims, num_classes: int, dim: int = 64, window: int = 8, heads: int = 8,
                 aux_head: bool = True):
        super().__init__()
        self.entry = nn.Sequential(nn.Conv2d(enc_dims[3], dim, 1, bias=False), nn.BatchNorm2d(dim))
        self.block32, self.block16, self.block8 = (
            PreNormResidual(dim, GlobalLocalAttention(dim, heads, window), mlp_ratio=4.0) for _ in range(3))
        self.fuse16 = WeightedFusion(enc_dims[2], dim)
        self.fuse8 = WeightedFusion(enc_dims[1], dim)
        self.refine4 = FeatureRefinementHead(enc_dims[0], dim)
        self.head = nn.Sequential(ConvBNAct(dim, dim, 3, act=nn.ReLU6), nn.Dropout2d(0.1),
                                  nn.Conv2d(dim, num_classes, 1))
        self.aux_head = nn.Sequential(ConvBNAct(dim, dim, 3, act=nn.ReLU6), nn.Dropout2d(0.1),
                                      nn.Conv2d(dim, num_classes, 1)) if aux_head else None
        self.register_load_state_dict_pre_hook(_drop_unused_aux_head)

    def forward(self, feats, aux: bool = False):
        f4, f8, f16, f32 = feats
        d32 = self.block32(self.entry(f32))
        d16 = self.block16(self.fuse16(d32, f16))
        d8 = self.block8(self.fuse8(d16, f8))
        logits = self.head(self.refine4(d8, f4))
        aux_logits = None
        if aux and self.aux_head is not None:
            up = lambda t: F.interpolate(t, size=d8.shape[-2:], mode="bilinear", align_corners=False)
            aux_logits = self.aux_head(up(d32) + up(d16) + d8)
        return logits, aux_logits


def _drop_unused_aux_head(module: "UNetFormerDecoder", state_dict, prefix, *args) -> None:
    """Let weights trained with the auxiliary head load into a decoder without one.

    The head only serves the training loss, so deployment (and checkpoints saved
    before it became opt-in) can ignore its tensors instead of failing a strict load.
    """
    if module.aux_head is None:
        for key in [k for k in state_dict if k.startswith(prefix + "aux_head.")]:
            del state_dict[key]


_PAPER = ("Lu, Yang, Chen, LWGANet: Addressing Spatial and Channel Redundancy in Remote Sensing "
          "Visual Tasks with Light-Weight Grouped Attention, arXiv 2501.10040 (AAAI 2026)")
_CLS_FIGURES = {"l0": (1.72, 0.186), "l1": (5.90, 0.709), "l2": (13.0, 1.87)}


def _register(variant: str) -> None:
    params, gflops = _CLS_FIGURES[variant]

    def build_cls(in_channels: int = 3, num_classes: int = 45, **cfg) -> LWGANetClassifier:
        return LWGANetClassifier(in_channels, num_classes, variant, **cfg)

    def build_seg(in_channels: int = 3, num_classes: int = 6, **cfg) -> LWGANetSeg:
        return LWGANetSeg(in_channels, num_classes, variant, **cfg)

    build_cls.__doc__ = f"LWGANet-{variant.upper()} ImageNet-style classifier (checks the backbone's size)."
    build_seg.__doc__ = (f"LWGANet-{variant.upper()} backbone + UNetFormer decoder (width 64, "
                         "window 8); ``aux_head=True`` adds the training-only auxiliary head.")
    register_model(f"lwganet_{variant}_cls", paper=_PAPER, listed=False, stride=32,
                   task="classification",
                   paper_figures={"params_m": params, "gflops": gflops},
                   paper_config={"num_classes": 45, "in_channels": 3, "input": [224, 224]})(build_cls)
    if variant == "l2":  # the paper reports segmentation for L2 only
        seg_figures = {"params_m": 12.58, "gflops": 50.3, "miou_uavid": 69.1, "miou_loveda": 53.6}
        seg_config = {"num_classes": 8, "in_channels": 3, "input": [1024, 1024], "aux_head": True,
                      "dataset": "UAVid / LoveDA"}
    else:
        seg_figures = {}
        seg_config = {"note": f"no segmentation figures in the paper; its backbone figures are "
                              f"those of lwganet_{variant}_cls ({params} M, {gflops} G at 224x224, "
                              "45 classes)"}
    register_model(f"lwganet_{variant}", paper=_PAPER + "; decoder: UNetFormer, arXiv 2109.08937",
                   stride=32, paper_figures=seg_figures, paper_config=seg_config)(build_seg)


for _variant in VARIANTS:
    _register(_variant)
