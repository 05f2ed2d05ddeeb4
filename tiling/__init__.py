"""Window grids and blend weights for tiled inference (pure NumPy, no I/O)."""

from .grid import Window, WindowGrid, axis_starts
from .weights import BLEND_MODES, BlendWeights, axis_weights, ramp, raw_axis_weights

__all__ = ["BLEND_MODES", "BlendWeights", "Window", "WindowGrid", "axis_starts", "axis_weights",
           "ramp", "raw_axis_weights"]
