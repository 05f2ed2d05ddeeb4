"""Learnable upsampling: transposed convs initialised as bilinear interpolation."""

from __future__ import annotations

import torch
import torch.nn as nn


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weights making a ``channels -> channels`` transposed conv a bilinear upsampler.

    Each output channel reads only its own input channel (identity across channels),
    with the separable tent filter of the FCN papers.
    """
    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(kernel_size, dtype=torch.float32) - centre).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = ramp[:, None] * ramp[None, :]
    return weight


def learnable_upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """Transposed conv (kernel 2*factor, stride factor, no bias) that upsamples exactly
    by ``factor`` and starts as bilinear interpolation; it stays trainable."""
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2,
                            bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, 2 * factor))
    return up
