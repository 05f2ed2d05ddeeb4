"""Colour-coded label images (RGB or palette PNG/JPEG/TIFF) -> class ids.

A pixel whose colour is a class colour gets that class's id; every other colour
(an ignore colour, antialiasing between two classes, black borders) becomes
``NODATA`` (255) so losses and metrics leave it out. Kept small on purpose: the
class-scheme files of issue 13 (branch ``schemes``) bring the general decoder
with named ignore colours and unknown-colour errors; this one serves the
bundled Dubai weights, their training script and the demo until that lands.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import rasterio

from rsseg.classes import NODATA
from rsseg.errors import InputError


def colour_key(rgb: np.ndarray) -> np.ndarray:
    """(3, ...) uint8 colours -> one int32 per pixel (0xRRGGBB)."""
    rgb = rgb.astype(np.int32, copy=False)
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]


def decode_colours(rgb: np.ndarray, colours: Sequence[Sequence[int]]) -> np.ndarray:
    """(3, H, W) colours -> (H, W) uint8 ids: class ``i`` where the colour is ``colours[i]``."""
    keys = colour_key(rgb)
    out = np.full(keys.shape, NODATA, np.uint8)
    for i, (r, g, b) in enumerate(colours):
        out[keys == ((r << 16) | (g << 8) | b)] = i
    return out


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """(3, H, W) uint8 colours of a label image: RGB(A) bands, or a palette expanded."""
    try:
        with rasterio.open(path) as src:
            if src.count >= 3:
                return src.read((1, 2, 3))
            band = src.read(1)
            try:
                cmap = src.colormap(1)
            except ValueError:
                raise InputError("a colour label needs 3 bands or a palette; this has "
                                 f"{src.count} band(s) and no palette", path) from None
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot read the label image ({exc})", path) from None
    lut = np.zeros((256, 3), np.uint8)
    for value, rgba in cmap.items():
        if 0 <= value < 256:
            lut[value] = rgba[:3]
    return np.moveaxis(lut[band], -1, 0)


def read_colour_labels(path: str | os.PathLike, colours: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W) uint8 class ids of a colour-coded label file (other colours: 255)."""
    return decode_colours(read_rgb(path), colours)
