"""Building blocks shared by several networks (defined once, imported everywhere)."""

from .conv import ConvBNAct, DepthwiseSeparableConv
from .padding import PadCropWrapper, pad_to_multiple
from .attention import GlobalLocalAttention, GlobalSelfAttention, WindowAttention, WindowProjection
from .lka import LargeKernelAttention, VanEncoder
from .mlp import ConvMlp, PreNormResidual
from .mobilenetv2 import MobileNetV2Encoder
from .upsample import bilinear_kernel, learnable_upsampler
from .dab import DABEncoder, DABModule

__all__ = ["ConvBNAct", "DepthwiseSeparableConv", "PadCropWrapper", "pad_to_multiple",
           "GlobalLocalAttention", "GlobalSelfAttention", "WindowAttention", "WindowProjection",
           "LargeKernelAttention", "VanEncoder", "ConvMlp", "PreNormResidual",
           "MobileNetV2Encoder", "bilinear_kernel", "learnable_upsampler", "DABEncoder", "DABModule"]
