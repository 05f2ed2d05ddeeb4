"""Self-attention blocks on (N, C, H, W) maps.

* :class:`WindowAttention`: multi-head self-attention inside non-overlapping
  ws x ws windows with a learnable (Swin-style) relative-position bias; each
  spatial dimension is padded separately to the window multiple and cropped back.
  BAFNet's ERAM and the UNetFormer decoder use it.
* :class:`GlobalSelfAttention`: plain multi-head self-attention over all
  positions with a fixed head dimension (LWGANet's SGA in stages 3-4).

Attention is written as explicit matmuls (not ``scaled_dot_product_attention``)
so ``torch.utils.flop_counter`` counts it the same way in every code path.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .padding import pad_to_multiple


def relative_position_index(window: int) -> torch.Tensor:
    """(window², window²) index into a ((2·window-1)², heads) bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    coords = coords.flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)
    return rel[0] * (2 * window - 1) + rel[1]


class WindowAttention(nn.Module):
    """Windowed MHSA; qkv from one 1x1 conv, channels ordered (qkv, head, head_dim)."""

    def __init__(self, dim: int, num_heads: int, window: int = 8, qkv_bias: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.window = window
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=qkv_bias)
        self.rel_bias = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.rel_bias, std=0.02)
        self.register_buffer("rel_index", relative_position_index(window), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws, heads = self.window, self.num_heads
        xp, _ = pad_to_multiple(x, ws)
        hp, wp = xp.shape[-2:]
        nh, nw = hp // ws, wp // ws
        qkv = self.qkv(xp).reshape(b, 3, heads, c // heads, nh, ws, nw, ws)
        # -> (3, b·nh·nw, heads, ws·ws, head_dim)
        qkv = qkv.permute(1, 0, 4, 6, 2, 5, 7, 3).reshape(3, b * nh * nw, heads, ws * ws, c // heads)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = self.rel_bias[self.rel_index.reshape(-1)].reshape(ws * ws, ws * ws, heads)
        logits = (q * self.scale) @ k.transpose(-2, -1) + bias.permute(2, 0, 1)
        out = logits.softmax(dim=-1) @ v
        out = out.reshape(b, nh, nw, heads, ws, ws, c // heads)
        out = out.permute(0, 3, 6, 1, 4, 2, 5).reshape(b, c, hp, wp)
        return out[..., :h, :w]


class GlobalSelfAttention(nn.Module):
    """MHSA over every position of the map: Linear qkv and projection (no biases), no positions.

    Heads = dim // head_dim (at least 1). Cost grows with (H·W)², so use it on
    small (pooled or 1/32) maps only.
    """

    def __init__(self, dim: int, head_dim: int = 4):
        super().__init__()
        self.num_heads = max(dim // head_dim, 1)
        self.head_dim = head_dim
        inner = self.num_heads * head_dim
        self.scale = head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (b, hw, c)
        qkv = self.qkv(tokens).reshape(b, h * w, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, h * w, -1)
        return self.proj(out).transpose(1, 2).reshape(b, c, h, w)


def pad_reflect_or_replicate(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """``F.pad`` in reflect mode, replicate where the map is too small to reflect (tiny inputs)."""
    left, right, top, bottom = pads
    small = max(left, right) >= x.shape[-1] or max(top, bottom) >= x.shape[-2]
    return F.pad(x, pads, mode="replicate" if small else "reflect")


class WindowProjection(nn.Module):
    """Separable ws x ws projection after window attention: depthwise ws x ws (no bias), BN, 1x1.

    The kernel is even, so the map is reflect-padded by one pixel right/bottom
    and the output cropped to H x W: the receptive field spans a whole window,
    which lets neighbouring windows exchange information without shifting.
    """

    def __init__(self, dim: int, window: int = 8):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, window, padding=window // 2 - 1, groups=dim, bias=False)
        self.bn = nn.BatchNorm2d(dim)
        self.pw = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = self.pw(self.bn(self.dw(pad_reflect_or_replicate(x, (0, 1, 0, 1)))))
        return y[..., :h, :w]


class GlobalLocalAttention(nn.Module):
    """UNetFormer's global-local attention (Wang et al., arXiv 2109.08937, GeoSeg).

    global = window MHSA followed by window-long average pooling along columns
    and along rows (stride 1, reflect padded, size kept); local = 3x3 conv-BN +
    1x1 conv-BN; their sum goes through :class:`WindowProjection`.
    """

    def __init__(self, dim: int, num_heads: int = 8, window: int = 8):
        super().__init__()
        self.window = window
        self.local3 = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, bias=False), nn.BatchNorm2d(dim))
        self.local1 = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))
        self.window_attn = WindowAttention(dim, num_heads, window)
        self.proj = WindowProjection(dim, window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.local3(x) + self.local1(x)
        g = self.window_attn(x)
        before, after = self.window // 2 - 1, self.window // 2  # 3 and 4 for ws = 8
        cols = F.avg_pool2d(pad_reflect_or_replicate(g, (0, 0, before, after)), (self.window, 1), 1)
        rows = F.avg_pool2d(pad_reflect_or_replicate(g, (before, after, 0, 0)), (1, self.window), 1)
        return self.proj(cols + rows + local)
