"""From blended scores to class ids and confidences, written region by region.

:class:`RegionSink` receives the final regions from the blender, turns scores
into ``uint8`` class ids (255 where the input has no data) and confidences, and
writes them with :class:`RawBandWriter` straight into a raw, pre-sized band
file (``pwrite`` per row). Nothing is buffered: memory does not depend on the
scene's size, and GDAL's block cache stays out of the write path. A VRT
describing the raw file (grid, CRS, colour table, class names; see
:func:`rsseg.io.vrt.write_raw_vrt`) is then converted to the COG.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from rsseg.classes import NODATA

CONFIDENCE_NODATA = 0  # max probability * 255 is never 0 for <= 255 classes


class RawBandWriter:
    """A ``height x width`` uint8 band stored row-major in a raw file."""

    def __init__(self, path, width: int, height: int):
        self.path, self.width, self.height = str(path), width, height
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(self.fd, width * height)  # sparse: costs no disk until written

    def write(self, row_off: int, col_off: int, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=np.uint8)
        h, w = block.shape
        if w == self.width:  # full rows: one contiguous write
            os.pwrite(self.fd, block.tobytes(), row_off * self.width)
            return
        for r in range(h):
            os.pwrite(self.fd, block[r].tobytes(), (row_off + r) * self.width + col_off)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class RegionSink:
    """Classify each final region and write it (classes and, optionally, confidence)."""

    def __init__(self, classes_writer: RawBandWriter | None,
                 confidence_writer: RawBandWriter | None = None,
                 on_scores: Callable | None = None):
        self.classes_writer, self.confidence_writer = classes_writer, confidence_writer
        self.on_scores = on_scores

    def __call__(self, row_off: int, col_off: int, scores: np.ndarray, valid: np.ndarray) -> None:
        if self.on_scores is not None:
            self.on_scores(row_off, col_off, scores, valid)
        cls, conf = classify(scores, valid, self.confidence_writer is not None)
        if self.classes_writer is not None:
            self.classes_writer.write(row_off, col_off, cls)
        if conf is not None:
            self.confidence_writer.write(row_off, col_off, conf)


def classify(scores: np.ndarray, valid: np.ndarray, with_confidence: bool = True):
    """``(K, h, w)`` scores -> class ids (uint8, 255 = nodata) and confidence (uint8 or None)."""
    cls = np.argmax(scores, axis=0).astype(np.uint8)
    cls[~valid] = NODATA
    if not with_confidence:
        return cls, None
    top = scores.max(axis=0)
    conf = np.clip(np.rint(top * 255.0), 1, 255).astype(np.uint8)
    conf[~valid] = CONFIDENCE_NODATA
    return cls, conf
