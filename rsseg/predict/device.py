"""The device path: windows go to the GPU as read, and only class ids come back.

:class:`DeviceRunner` is the window runner (see :mod:`rsseg.predict.runners`) of a
:class:`~rsseg.predict.predictor.TorchPredictor` on CUDA:

- reader threads only mirror-pad windows smaller than the tile; batches are
  stacked in the input's own dtype (uint8: a quarter of float32's bytes) into
  page-locked (pinned) host buffers, two of them used in turn, so that the
  copy of one batch to the GPU, on its own stream, overlaps the network
  running on the previous batch;
- on the GPU: normalisation (integer bands of up to 16 bits through lookup
  tables holding :meth:`Normalization.apply` of every value, so bit for bit the
  host's values; others by the same float32 formula), nodata and non-finite
  values to 0, the network under autocast, softmax in float32;
- the probabilities stay on the GPU: the blender and the classifier run there
  on :class:`~rsseg.predict.arrays.TorchArrays`, and only uint8 classes and
  confidences are copied back.

On the CPU (``TorchPredictor(..., device_path=True)``) the same code runs on
CPU tensors: the tests use it to check that this path gives byte for byte the
classes and confidences of the host path.
"""

from __future__ import annotations

import numpy as np

from rsseg.checkpoint import Normalization
from rsseg.predict.arrays import TorchArrays

LUT_MAX_BITS = 16


def lookup_tables(norm: Normalization, dtype) -> np.ndarray | None:
    """``(C, 2**bits)`` float32: row ``c``, index ``v`` holds band ``c`` normalised for the
    raw value whose unsigned bit pattern is ``v`` (0 where that is not finite); None
    unless an integer of <= 16 bits."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu" or dtype.itemsize * 8 > LUT_MAX_BITS:
        return None
    values = np.arange(2 ** (8 * dtype.itemsize), dtype=f"u{dtype.itemsize}").view(dtype)
    column = np.broadcast_to(values, (norm.num_bands, values.size))[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        tables = np.ascontiguousarray(norm.apply(column)[:, 0, :])
    # non-finite values (a zero std) become 0, as the host path makes them
    return np.nan_to_num(tables, copy=False, nan=0.0, posinf=0.0, neginf=0.0)


class DeviceRunner:
    """Raw batches to probabilities on ``predictor.device`` (see the module docs)."""

    def __init__(self, predictor, norm: Normalization, dtype, tile: int):
        import torch

        self.torch, self.predictor, self.tile = torch, predictor, tile
        self.device = predictor.device
        self.cuda = self.device.type == "cuda"
        self.arrays = TorchArrays(self.device)
        self.dtype = np.dtype(dtype)
        tables = lookup_tables(norm, self.dtype)
        self.tables = None if tables is None else torch.from_numpy(tables).to(self.device)
        self.mean = torch.tensor(norm.mean, dtype=torch.float32, device=self.device)
        self.std = torch.tensor(norm.std, dtype=torch.float32, device=self.device)
        self.copy_stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.staging: list = [None, None]  # pinned (data, valid) buffers, used in turn
        self.copied: list = [None, None]  # CUDA events: that buffer's copy has finished
        self.turn = 0

    def prepare(self, raw: np.ndarray, valid: np.ndarray):
        """Reader threads: mirror a window smaller than the tile out to the tile (its
        validity too, so the nodata zeroing on the device matches the host's order)."""
        _, h, w = raw.shape
        if h < self.tile or w < self.tile:
            pads = ((0, self.tile - h), (0, self.tile - w))
            raw = np.pad(raw, ((0, 0),) + pads, mode="symmetric")
            valid = np.pad(valid, pads, mode="symmetric")
        return raw, valid

    def __call__(self, tiles: list, clock):
        with clock("batch"):
            data, valid = self._upload(tiles)
        with clock("forward"):
            x = self._normalise(data, valid)
            return self.predictor.probabilities(x)

    def _upload(self, tiles: list):
        """Stack the batch into a pinned buffer and start its copy to the device."""
        torch = self.torch
        n = len(tiles)
        data_host, valid_host = self._staging(n, tiles[0][0].shape[0])
        for k, (raw, valid) in enumerate(tiles):
            data_host[k] = torch.from_numpy(_as_torch_dtype(raw))
            valid_host[k] = torch.from_numpy(valid)
        if not self.cuda:  # used at once by _normalise, before the buffer's next turn
            return data_host[:n], valid_host[:n]
        with torch.cuda.stream(self.copy_stream):
            data = data_host[:n].to(self.device, non_blocking=True)
            valid = valid_host[:n].to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.copy_stream)
        self.copied[self.turn] = event
        torch.cuda.current_stream(self.device).wait_stream(self.copy_stream)
        data.record_stream(torch.cuda.current_stream(self.device))
        valid.record_stream(torch.cuda.current_stream(self.device))
        return data, valid

    def _staging(self, n: int, channels: int):
        """This turn's pinned buffers (grown as needed), once their last copy is done."""
        torch = self.torch
        self.turn = 1 - self.turn
        if self.copied[self.turn] is not None:
            self.copied[self.turn].synchronize()  # never overwrite a batch still in flight
        have = self.staging[self.turn]
        if have is None or have[0].shape[0] < n:
            shape = (n, channels, self.tile, self.tile)
            dtype = _torch_dtype(torch, self.dtype)
            have = (torch.empty(shape, dtype=dtype, pin_memory=self.cuda),
                    torch.empty((n, self.tile, self.tile), dtype=torch.bool,
                                pin_memory=self.cuda))
            self.staging[self.turn] = have
        return have

    def _normalise(self, data, valid):
        """float32 ``(N, C, T, T)``: normalised, nodata and non-finite values at 0."""
        torch = self.torch
        if self.tables is not None:
            unsigned = _torch_dtype(torch, np.dtype(f"u{self.dtype.itemsize}"))
            index = data.view(unsigned).long()
            x = torch.stack([self.tables[c][index[:, c]] for c in range(data.shape[1])], 1)
        else:
            x = (data.float() - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)
            x = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        return x.masked_fill_(~valid[:, None], 0.0)


def _torch_dtype(torch, dtype: np.dtype):
    return {"u1": torch.uint8, "i1": torch.int8, "u2": torch.uint16, "i2": torch.int16,
            "u4": torch.uint32, "i4": torch.int32, "f4": torch.float32,
            "f8": torch.float64}.get(dtype.str[1:], torch.float32)


def _as_torch_dtype(raw: np.ndarray) -> np.ndarray:
    """Types torch cannot hold as they are travel as float32 (exact for <= 24-bit ints)."""
    if raw.dtype.str[1:] in ("u1", "i1", "u2", "i2", "u4", "i4", "f4", "f8"):
        return np.ascontiguousarray(raw)
    return raw.astype(np.float32)
