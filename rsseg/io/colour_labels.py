"""A whole colour-coded label file (RGB or palette image) -> class ids, in memory.

For small files only (the demo's real mask, the Dubai training script): scenes are
decoded window by window by :mod:`rsseg.training.scenes` and :mod:`rsseg.score`. The
decoding is :class:`rsseg.score.labels.LabelDecoder`'s: a class colour gives its id;
ignore colours and every other colour (antialiasing) give 255.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from rsseg.classes import ClassScheme
from rsseg.errors import InputError
from rsseg.score.labels import LabelDecoder, UnknownValues, label_band_problem, read_label


def read_colour_labels(path: str | os.PathLike, scheme: ClassScheme) -> np.ndarray:
    """(H, W) uint8 class ids of a colour-coded label file (not a class: 255)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # masks rarely have a grid
            with rasterio.open(path) as ds:
                problem = label_band_problem(ds, "rgb")
                if problem:
                    raise InputError(problem, path)
                raw = read_label(ds, "rgb")
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot read the label image ({exc})", path) from None
    return LabelDecoder(scheme, "rgb").decode(raw, UnknownValues())
