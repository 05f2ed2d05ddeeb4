"""Building blocks shared by several networks (defined once, imported everywhere)."""

from .conv import ConvBNAct, DepthwiseSeparableConv
from .padding import PadCropWrapper, pad_to_multiple

__all__ = ["ConvBNAct", "DepthwiseSeparableConv", "PadCropWrapper", "pad_to_multiple"]
