"""Export a checkpoint to a self-describing ONNX model.

The graph maps ``image`` (N, C, H, W) float32, already normalised, to
``logits`` (N, K, H, W) float32: :class:`rsseg.predict.onnx_predictor.OnnxPredictor`
applies the softmax exactly where :class:`rsseg.predict.predictor.TorchPredictor` does.
Everything else ``rsseg predict --backend onnx`` needs travels in the model's
``metadata_props`` as JSON strings (see :data:`METADATA_KEYS`), so the
``.onnx`` file is all a user has to ship.

Export uses the TorchScript-based exporter (``torch.onnx.export(dynamo=False)``):
the dynamo exporter needs ``onnxscript``, which rsseg does not depend on. The
tracer freezes Python-level decisions taken on the trace input's sizes (reflect
or replicate padding of tiny feature maps, for instance), so the trace input is
chosen large enough that every such decision goes the way it goes for real
tiles, and the exported graph is then checked against torch at two sizes and
two batch sizes, and probed at smaller sizes for the smallest input it still
reproduces (``min_size`` in the metadata; the predictor pads smaller windows up).
A network whose graph fails the check, or whose ``min_size`` exceeds the tile,
is exported again with a fixed spatial size (the tile); batch stays dynamic.

Every export also carries the metadata keys Deepness and GeoDeep read
(:mod:`rsseg.export.interop`); ``target="deepness"|"geodeep"`` (``rsseg export
--for``) exports the input/output contract those tools need instead: RGB scaled
to 0..1 with the normalisation baked in, softmax probabilities, a fixed tile.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsseg.atomic import atomic_output, check_output_path
from rsseg.checkpoint import Checkpoint, load_checkpoint
from rsseg.errors import ModelError
from rsseg.export import interop

FORMAT = "rsseg-onnx"
FORMAT_VERSION = 1
DEFAULT_OPSET = 17
OPSETS = (11, 20)  # the range the TorchScript exporter in torch 2.x supports and we test
INPUT_NAME, OUTPUT_NAME = "image", "logits"
DEFAULT_TILE = 512
# Every metadata value is a JSON string; "rsseg" holds the format marker.
METADATA_KEYS = ("rsseg", "model", "classes", "bands", "tile", "input", "output", "note")
MIN_TRACE_SIDE = 64  # LSA-BiNet's SoftPool needs 56 px; keep a margin for every network
# Feature maps at 1/stride must be at least this many pixels for the reflect padding of
# window attention (8 px windows) and LWGANet's blur pool not to fall back to replicate.
MIN_DEEPEST_SIDE = 5
# Square sizes tried, largest first, to find how small an input the dynamic graph takes.
PROBE_SIDES = (160, 128, 96, 80, 64)


@dataclass
class ExportResult:
    path: Path
    model_name: str
    dynamic_spatial: bool
    min_size: tuple[int, int]
    tile: dict
    max_abs_diff: float  # largest |ONNX - torch| logit difference seen while checking
    opset: int


def trace_shape(stride: int) -> tuple[int, int]:
    """Height, width of the trace input: large enough for the real-tile code paths.

    Not a multiple of the stride, and unequal, so a padding or reshape frozen at the
    trace size shows up as a mismatch in the check instead of passing by luck.
    """
    side = max(MIN_TRACE_SIDE, MIN_DEEPEST_SIDE * stride)
    return side + 3, side + 7


def export_checkpoint(checkpoint: str | os.PathLike | Checkpoint, output: str | os.PathLike, *,
                      opset: int = DEFAULT_OPSET, tile: int | None = None,
                      overwrite: bool = False, check: bool = True, on_step=None,
                      source: str | None = None, target: str | None = None,
                      resolution: float | None = None) -> ExportResult:
    """Write the network of ``checkpoint`` (a path or a loaded checkpoint) as ONNX to ``output``.

    ``tile`` (default: the checkpoint's tile size, else 512) is stored as the
    predict tile; the overlap keeps the checkpoint's overlap/tile ratio. A graph
    whose dynamic sizes do not cover the tile is exported at the tile size.
    ``check=False`` skips comparing the graph with torch (and the fallback).
    ``on_step(message)`` is called after each stage; ``source`` names the checkpoint
    in messages when a loaded one is passed.

    ``target`` ("deepness" or "geodeep") exports the fixed contract those tools
    need instead (:mod:`rsseg.export.interop`): RGB scaled to 0..1 in, softmax
    probabilities out, a fixed tile x tile input. ``resolution`` (cm/px) overrides
    the checkpoint's training GSD in the tools' ``resolution`` key.
    """
    if not OPSETS[0] <= opset <= OPSETS[1]:
        raise ModelError(f"ONNX opset {opset} is not supported; choose {OPSETS[0]}..{OPSETS[1]}")
    check_output_path(output, overwrite)
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    if source is None:
        source = "checkpoint" if isinstance(checkpoint, Checkpoint) else str(checkpoint)
    tile_meta = _tile_settings(ckpt, tile)
    if tile_meta["size"] < 16:
        raise ModelError(f"tile size must be at least 16, got {tile_meta['size']}")
    resolution = interop.resolution_cm(
        ckpt, resolution, None if isinstance(checkpoint, Checkpoint) else checkpoint)
    contract = _contract(ckpt, target, tile_meta, resolution)
    model = ckpt.build_model()
    step = on_step or (lambda message: None)
    step(f"loaded {ckpt.model_name} from {source}")

    with atomic_output(output, overwrite) as tmp:
        if target is None:
            min_size, dynamic, diff = _export_checked(model, ckpt, tmp, opset,
                                                      tile_meta["size"], check, step, source)
        else:
            graph = interop.tool_input_graph(model, ckpt, contract.order)
            min_size, dynamic = (tile_meta["size"], tile_meta["size"]), False
            diff = _export_fixed(graph, ckpt, tmp, opset, tile_meta["size"], check, source)
        step(f"exported {ckpt.model_name} (opset {opset})")
        _write_metadata(tmp, ckpt, tile_meta, min_size, dynamic, contract,
                        None if resolution is None else resolution / 100.0)
    return ExportResult(Path(output), ckpt.model_name, dynamic, min_size, tile_meta, diff, opset)


@dataclass
class _Contract:
    """What the exported graph takes and returns, and the tools' metadata keys."""

    bands: dict | None  # rsseg's normalisation for this graph's input
    output_kind: str  # "logits" (rsseg applies the softmax) or "probabilities"
    target: str | None
    tool_keys: dict[str, str]
    order: list[int] | None = None  # tool R, G, B band feeding each network band


def _contract(ckpt: Checkpoint, target: str | None, tile: dict,
              cm: float | None) -> _Contract:
    """``cm``: the training pixel size in cm/px (:func:`interop.resolution_cm`) or None."""
    if target is None:
        keys = interop.tool_metadata(ckpt.classes, tile, interop.default_standardization(ckpt), cm)
        bands = None if ckpt.bands is None else ckpt.bands.to_dict()
        return _Contract(bands, "logits", None, keys)
    order, norm = interop.tool_contract(ckpt, target)
    identity = ([0.0] * 3, [1.0] * 3)  # the normalisation is inside the graph
    keys = interop.tool_metadata(ckpt.classes, tile, identity, cm)
    return _Contract(norm.to_dict(), "probabilities", target, keys, order)


def _export_fixed(graph, ckpt: Checkpoint, path: Path, opset: int, size: int, check: bool,
                  source: str) -> float:
    """Export ``graph`` at a fixed ``size`` x ``size`` (dynamic batch), checked against torch."""
    _export_graph(graph, ckpt, path, opset, (size, size), dynamic_spatial=False, source=source)
    if not check:
        return 0.0
    import onnx

    # The tools feed RGB scaled to 0..1: check on such inputs (standard-normal values, x255
    # inside the graph, would saturate an undertrained network's softmax and test nothing).
    diff = _compare(graph, _session(onnx.load(str(path))), ckpt.in_channels,
                    [(2, size, size)], unit_range=True)
    if diff is None:
        raise ModelError(f"the ONNX graph of {ckpt.model_name} does not reproduce torch at "
                         f"{size}x{size}; cannot export it", source)
    return diff


def _export_checked(model, ckpt: Checkpoint, path: Path, opset: int, size: int, check: bool,
                    step, source: str) -> tuple[tuple[int, int], bool, float]:
    """Export with dynamic sizes if the graph reproduces torch, else at a fixed tile size.

    Returns the smallest valid input size, whether H and W are dynamic, and the
    largest logit difference seen.
    """
    stride = _model_stride(ckpt.model_name)
    shape = trace_shape(stride)
    graph = _export_graph(model, ckpt, path, opset, shape, dynamic_spatial=True, source=source)
    if not check:
        return shape, True, 0.0
    session = _session(graph)
    diff = _compare(model, session, ckpt.in_channels,
                    [(2, *shape), (1, shape[0] + 37, shape[1] + 21)])
    if diff is not None:
        min_size = _smallest_valid(model, session, ckpt.in_channels, shape, stride)
        if size >= max(min_size):
            return min_size, True, diff
        why = f"reproduces torch only from {min_size[0]}x{min_size[1]} px up"
    else:
        why = "does not reproduce torch at other sizes"
    step(f"{ckpt.model_name}: the dynamic-size graph {why}; exporting at a fixed "
         f"{size}x{size} (dynamic batch)")
    graph = _export_graph(model, ckpt, path, opset, (size, size), dynamic_spatial=False,
                          source=source)
    diff = _compare(model, _session(graph), ckpt.in_channels, [(2, size, size)])
    if diff is None:
        raise ModelError(f"the ONNX graph of {ckpt.model_name} does not reproduce torch even "
                         "at a fixed size; cannot export it", source)
    return (size, size), False, diff


def _tile_settings(ckpt: Checkpoint, tile: int | None) -> dict:
    size = int((ckpt.tile or {}).get("size") or DEFAULT_TILE)
    overlap = int((ckpt.tile or {}).get("overlap", size // 4))
    if tile is not None and int(tile) != size:
        overlap = int(round(overlap * int(tile) / size))
        size = int(tile)
    return {"size": size, "overlap": min(overlap, size - 1)}


def _model_stride(name: str) -> int:
    from rsseg.models import model_entry

    try:
        return int(model_entry(name).stride)
    except KeyError as exc:
        raise ModelError(str(exc.args[0])) from None


def _export_graph(model, ckpt: Checkpoint, path: Path, opset: int, shape: tuple[int, int], *,
                  dynamic_spatial: bool, source: str):
    """Trace ``model`` at ``shape`` into ``path``; returns the loaded ``onnx.ModelProto``."""
    import onnx
    import torch

    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_spatial else {0: "batch"}
    example = torch.randn(1, ckpt.in_channels, *shape, generator=torch.Generator().manual_seed(0))
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # TracerWarnings are expected (frozen branches); the check below is the judge.
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
                              do_constant_folding=True)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"cannot export {ckpt.model_name} to ONNX opset {opset}: {first}",
                         source) from None
    return onnx.load(str(path))


def _session(graph):
    import onnxruntime as ort

    return ort.InferenceSession(graph.SerializeToString(), _quiet_options(),
                                providers=["CPUExecutionProvider"])


def _compare(model, session, channels: int, cases, unit_range: bool = False) -> float | None:
    """Largest |ONNX - torch| logit difference over ``cases`` (N, H, W), None if one fails.

    A case fails when ORT cannot run it, the shapes differ or the difference exceeds
    1e-4 of the logits' scale (float32 reassociation stays far below that).
    """
    import torch

    rng = np.random.default_rng(1)
    worst = 0.0
    for n, h, w in cases:
        x = (rng.random((n, channels, h, w)) if unit_range
             else rng.standard_normal((n, channels, h, w))).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        try:
            got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        except Exception:  # noqa: BLE001 - ORT raises its own error types for shape failures
            return None
        if got.shape != expected.shape:
            return None
        diff = float(np.abs(got - expected).max())
        if not diff <= 1e-4 * max(1.0, float(np.abs(expected).max())):
            return None
        worst = max(worst, diff)
    return worst


def _smallest_valid(model, session, channels: int, shape: tuple[int, int],
                    stride: int) -> tuple[int, int]:
    """The smallest square input the dynamic graph still reproduces, probing downward.

    The decisions the tracer freezes (reflect or replicate padding of a feature map,
    SoftPool's edge padding) flip once as the input shrinks, so the first probe that
    fails bounds the valid sizes from below; everything larger is valid. Probes stop
    at 64 px and twice the stride: below that a frozen pooling can produce an empty
    map, which ONNX Runtime answers with a crash (SIGFPE), not an error.
    """
    best = shape
    floor = max(MIN_TRACE_SIDE, 2 * stride)
    for side in PROBE_SIDES:
        if side >= min(best) or side < floor:
            continue
        if _compare(model, session, channels, [(1, side, side)]) is None:
            break
        best = (side, side)
    return best


def _quiet_options():
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # shape failures are expected while checking; no log spam
    options.intra_op_num_threads = _torch_threads()
    return options


def _torch_threads() -> int:
    import torch

    return max(1, torch.get_num_threads())


def _write_metadata(path: Path, ckpt: Checkpoint, tile: dict, shape: tuple[int, int],
                    dynamic_spatial: bool, contract: _Contract, gsd_m: float | None) -> None:
    """Store everything predict needs as JSON strings in ``metadata_props`` (and the
    training pixel size when known, for ``predict --zoom auto``), then the keys Deepness
    and GeoDeep read (:mod:`rsseg.export.interop`)."""
    import onnx

    graph = onnx.load(str(path))
    marker = {"format": FORMAT, "format_version": FORMAT_VERSION}
    if contract.target:
        marker["for"] = contract.target
    values = {
        "rsseg": marker,
        "model": {"name": ckpt.model_name, "config": dict(ckpt.model_config)},
        "classes": ckpt.classes.to_dict(),
        "bands": contract.bands,
        "tile": tile,
        "input": {"name": INPUT_NAME, "channels": ckpt.in_channels, "dynamic_batch": True,
                  "dynamic_spatial": dynamic_spatial, "min_size": list(shape)},
        "output": {"name": OUTPUT_NAME, "kind": contract.output_kind,
                   "activation": "softmax" if contract.output_kind == "logits" else None},
        "note": ckpt.note,
    }
    del graph.metadata_props[:]
    for key in METADATA_KEYS:
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, json.dumps(values[key])
    if gsd_m is not None:  # optional: readers that do not know it ignore it
        entry = graph.metadata_props.add()
        entry.key, entry.value = "gsd_m", json.dumps(gsd_m)
    for key, value in contract.tool_keys.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    what = ("RGB 0..1 -> class probabilities" if contract.target
            else "normalised image -> class logits")
    graph.doc_string = f"rsseg {ckpt.model_name}: {what}"
    onnx.save(graph, str(path))
