"""From blended scores to class ids and confidences, written region by region.

:class:`RegionSink` receives the final regions from the blender, turns scores
into ``uint8`` class ids (255 where the input has no data) and confidences, and
writes them with :class:`RawBandWriter` into a raw, pre-sized band file (one
``pwrite`` per band of rows). Only one band of rows is buffered: memory grows with
the scene's width, never its height, and GDAL's block cache stays out of the
write path. A VRT
describing the raw file (grid, CRS, colour table, class names; see
:func:`rsseg.io.vrt.write_raw_vrt`) is then converted to the COG.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Callable

import numpy as np

from rsseg.classes import NODATA
from rsseg.predict.arrays import NUMPY

CONFIDENCE_NODATA = 0  # max probability * 255 is never 0 for <= 255 classes


class RawBandWriter:
    """A ``height x width`` uint8 band stored row-major in a raw file.

    Blocks arrive as the blender emits them: a band of rows, column after column.
    They are gathered into one full-width band buffer (the width times the band's
    height: memory grows with the width only, as the blender's carry does) and
    written with one ``pwrite`` once the band is complete: a ``pwrite`` per row of
    every block cost more than the copy. ``on_band(row_off, rows)`` (optional) sees
    each complete band before it is written (views valid during the call).
    """

    def __init__(self, path, width: int, height: int, on_band: Callable | None = None):
        self.path, self.width, self.height = str(path), width, height
        self.on_band = on_band
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(self.fd, width * height)  # sparse: costs no disk until written
        self.buffer = np.empty(0, np.uint8)
        self.band = None  # the rows being gathered: (row_off, rows view)
        self.filled: list[tuple[int, int]] = []  # column ranges of the band written to

    def write(self, row_off: int, col_off: int, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.uint8)
        h, w = block.shape
        if w == self.width:  # full rows: one contiguous write
            self._write_rows(row_off, np.ascontiguousarray(block))
            return
        if self.band is not None and (self.band[0], self.band[1].shape[0]) != (row_off, h):
            self._flush()
        if self.band is None:
            if self.buffer.size < h * self.width:
                self.buffer = np.empty(h * self.width, np.uint8)
            self.band = (row_off, self.buffer[:h * self.width].reshape(h, self.width))
        self.band[1][:, col_off:col_off + w] = block
        self.filled.append((col_off, col_off + w))
        if sum(b - a for a, b in self.filled) >= self.width:
            self._flush()

    def _write_rows(self, row_off: int, rows: np.ndarray) -> None:
        if self.on_band is not None:
            self.on_band(row_off, rows)
        os.pwrite(self.fd, rows, row_off * self.width)

    def _flush(self) -> None:
        """Write the band gathered so far: at once when complete, else its pieces."""
        if self.band is None:
            return
        row_off, rows = self.band
        self.band = None
        filled, self.filled = self.filled, []
        if sum(b - a for a, b in filled) >= self.width:
            self._write_rows(row_off, rows)
            return
        for a, b in filled:  # an incomplete band (a write failed midway): what there is
            for r in range(rows.shape[0]):
                os.pwrite(self.fd, rows[r, a:b], (row_off + r) * self.width + a)

    def close(self) -> None:
        if self.fd is not None:
            try:
                self._flush()
            finally:
                os.close(self.fd)
                self.fd = None


class RegionSink:
    """Classify each final region and write it (classes and, optionally, confidence).

    ``arrays`` is the backend the scores live on (:mod:`rsseg.predict.arrays`): on a
    GPU the classes and confidences are computed there and only they come back.
    ``clock`` (optional) times the classification and the writes separately.
    """

    def __init__(self, classes_writer: RawBandWriter | None,
                 confidence_writer: RawBandWriter | None = None,
                 on_scores: Callable | None = None, arrays=NUMPY, clock=None):
        self.classes_writer, self.confidence_writer = classes_writer, confidence_writer
        self.on_scores, self.arrays, self.clock = on_scores, arrays, clock or _no_clock
        self.class_pixels = np.zeros(256, np.int64)  # by class id (255: nodata)

    def __call__(self, row_off: int, col_off: int, scores, valid) -> None:
        if self.on_scores is not None:
            self.on_scores(row_off, col_off, self.arrays.to_host(scores),
                           self.arrays.to_host(valid))
        with self.clock("classify"):
            cls, conf = classify(scores, valid, self.confidence_writer is not None, self.arrays)
            cls = self.arrays.to_host(cls)
            conf = None if conf is None else self.arrays.to_host(conf)
            self.class_pixels += class_counts(cls, scores.shape[0])
        with self.clock("write"):
            if self.classes_writer is not None:
                self.classes_writer.write(row_off, col_off, cls)
            if conf is not None:
                self.confidence_writer.write(row_off, col_off, conf)


def class_counts(cls: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixels per value (256 counts) of a class block whose values are below
    ``num_classes`` or NODATA. For a few classes a comparison per class counts them
    several times faster than ``np.bincount`` (which first widens every byte to 64
    bits: 0.2 of the 0.55 ms a 384 x 384 region took to classify)."""
    if num_classes > 16:
        return np.bincount(cls.ravel(), minlength=256)
    counts = np.zeros(256, np.int64)
    for c in range(num_classes):
        counts[c] = np.count_nonzero(cls == c)
    counts[NODATA] = cls.size - counts[:num_classes].sum()
    return counts


def classify(scores, valid, with_confidence: bool = True, arrays=NUMPY):
    """``(K, h, w)`` scores -> class ids (uint8, 255 = nodata) and confidence (uint8 or None).

    The class is the first index of the highest score (as ``argmax``). Computed in one
    sweep over the classes, keeping the running maximum (which is also the confidence):
    a comparison and a maximum per class, no index array, no axis transposition
    (``np.argmax`` over the first axis copies the scores to move it last: measured
    12x slower for 6 x 512 x 512). ``arrays`` runs it on NumPy or torch alike.
    """
    k, h, w = scores.shape
    top = arrays.copy(scores[0])
    cls = arrays.zeros((h, w), "uint8")
    better = arrays.empty((h, w), "bool")
    for c in range(1, k):
        arrays.greater(scores[c], top, better)  # strictly: ties keep the first class
        arrays.maximum(top, scores[c], top)
        # cls < c everywhere so far, so max(cls, c * better) sets c exactly where better
        arrays.maximum(cls, arrays.as_uint8(better) * c, cls)
    if arrays.isnan_any(top):  # maximum propagates NaN: argmax's rule (first NaN) there
        _nan_argmax(scores, top, cls, arrays)
    cls[~valid] = NODATA
    if not with_confidence:
        return cls, None
    conf = arrays.to_uint8(arrays.clip(arrays.rint(top * 255.0), 1, 255))
    conf[~valid] = CONFIDENCE_NODATA
    return cls, conf


def _nan_argmax(scores, top, cls, arrays) -> None:
    """Where a score is NaN, ``np.argmax`` picks the first NaN class: do the same."""
    host = arrays.to_host(scores)
    where = np.isnan(arrays.to_host(top))
    ids = np.argmax(host[:, where], axis=0).astype(np.uint8)
    fixed = arrays.to_host(cls).copy()
    fixed[where] = ids
    cls[...] = arrays.asarray(fixed)


class ThreadedSink:
    """Run ``sink`` on a thread of its own, so classification and writes overlap the
    blending of the next columns (the blender's thread was the pipeline's critical
    path: blend + classify + write, while a core waited; see docs/benchmarks/predict.md).

    Calling it queues the region and returns a token; the blender calls the token's
    ``wait()`` before it reuses the buffers the views point into. An error of ``sink``
    is raised again in the blender's thread (by the next call, a ``wait()`` or
    :meth:`close`); once ``stop`` (an event) is set, waits raise ``stopped`` and the
    regions still queued are dropped. :meth:`close` (on success) or :meth:`shutdown`
    (always) ends the thread.
    """

    def __init__(self, sink, stop: threading.Event, clock=None, stopped=InterruptedError):
        self.sink, self.stop, self.clock = sink, stop, clock or _no_clock
        self.stopped = stopped
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="rsseg-classify", daemon=True)
        self.thread.start()

    def __call__(self, row_off: int, col_off: int, scores, valid) -> "_Done":
        self._raise()
        done = _Done(self)
        self.queue.put((row_off, col_off, scores, valid, done))
        return done

    def _work(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            *region, done = item
            try:
                if self.error is None and not self.stop.is_set():
                    self.sink(*region)
            except BaseException as exc:  # noqa: BLE001 (raised again in the blender's thread)
                self.error = exc
            finally:
                done.event.set()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Wait for every queued region to be written (raising the sink's error)."""
        self.shutdown()
        self._raise()

    def shutdown(self) -> None:
        """End the thread once it has handled what is queued (dropped after ``stop``)."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()


class _Done:
    """Set when :class:`ThreadedSink` has finished with one region."""

    def __init__(self, owner: ThreadedSink):
        self.owner, self.event = owner, threading.Event()

    def wait(self) -> None:
        with self.owner.clock("wait for classify"):
            while not self.event.wait(0.1):
                if self.owner.stop.is_set():
                    raise self.owner.stopped()
        self.owner._raise()


class _NoClock:
    def __call__(self, stage: str):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


_no_clock = _NoClock()
