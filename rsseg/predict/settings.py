"""How a scene is predicted: the one settings object and the one tile/overlap default.

Nothing heavy is imported here: ``rsseg --help`` reads :data:`DEFAULT_TILE` for its
help text without paying for torch or rasterio.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

from rsseg.errors import InputError, UsageError

DEFAULT_TILE = 512
DEFAULT_OVERLAP_FRACTION = 4  # overlap = tile / 4 (128 px for 512-px tiles)
BLENDS = ("crop", "mean", "linear", "cosine", "spline")  # = rsseg.tiling.BLEND_MODES (tested)
TTA_MODES = ("none", "flip", "d4")  # test-time augmentation views (rsseg.predict.tta)
ZOOM_RANGE = (0.25, 4.0)  # --zoom factors (rsseg.predict.zoom)
AUTO = "auto"  # --batch-size auto, --zoom auto
# A plan with more windows than this many times those of the default (tile/4) grid is
# refused: an overlap close to the tile makes the stride tiny and the run practically endless.
MAX_WINDOW_FACTOR = 4


@dataclass(frozen=True)
class PredictSettings:
    """Everything about *how* a scene is predicted, apart from the model and the paths.

    Tiling: ``tile`` and ``overlap`` in pixels (None: the predictor's own, e.g. the
    checkpoint's training tile, else :data:`DEFAULT_TILE` and tile/4; see
    :func:`resolve_tiling`) and ``blend`` (how overlapping windows are combined).
    Batching: ``batch_size`` windows per forward pass (or ``"auto"``, see
    :func:`rsseg.predict.runners.resolve_batch_size`); GDAL decodes on ``readers`` threads.
    Outputs: ``probs`` (a confidence COG), ``vector`` (a GeoPackage of the class
    raster's polygons), ``overwrite``, ``progress`` (``off``, ``bar`` or ``json``).
    ``region`` ``(row_off, col_off, height, width)`` predicts only that part of the
    scene, exactly as the whole-scene prediction cut to it (see
    :mod:`rsseg.predict.regions`); ``on_scores(row_off, col_off, scores, valid)``
    receives every blended region (tests, diagnostics; on the classifying thread).
    """

    tile: int | None = None
    overlap: int | None = None
    blend: str = "cosine"
    batch_size: int | str = 1
    readers: int = 1
    probs: str | os.PathLike | None = None
    vector: str | os.PathLike | None = None
    overwrite: bool = False
    progress: str = "off"
    region: tuple[int, int, int, int] | None = None
    on_scores: Callable | None = None


class Tiling(NamedTuple):
    tile: int
    overlap: int


def resolve_tiling(tile: int | None, overlap: int | None, preferred: dict | None = None) -> Tiling:
    """The one tile/overlap default, for predict, batch, the demo and QGIS alike.

    ``preferred`` is what the model was trained with (a checkpoint's ``tile`` dict:
    ``size``, ``overlap``). An explicit ``tile`` wins over it; a missing overlap is the
    model's when it fits the tile (at most half of it), else tile/4 with a warning.
    An explicit overlap must be smaller than the tile.
    """
    preferred = preferred or {}
    tile = int(tile or preferred.get("size") or DEFAULT_TILE)
    if tile < 16:
        raise InputError(f"tile size must be at least 16, got {tile}")
    if overlap is None:
        overlap = _default_overlap(tile, preferred.get("overlap"))
    if not 0 <= overlap < tile:
        raise UsageError(f"--overlap must be between 0 and the tile size - 1 ({tile - 1}), "
                         f"got {overlap}")
    return Tiling(tile, int(overlap))


def _default_overlap(tile: int, preferred: int | None) -> int:
    fallback = tile // DEFAULT_OVERLAP_FRACTION
    if preferred is None:
        return fallback
    if 2 * int(preferred) <= tile:
        return int(preferred)
    warnings.warn(f"the model's overlap ({preferred} px) does not fit a {tile}-px tile; "
                  f"using tile/{DEFAULT_OVERLAP_FRACTION} = {fallback} px (set --overlap to "
                  "choose)", stacklevel=3)
    return fallback


def check_plan(height: int, width: int, tiling: Tiling, source=None) -> None:
    """Refuse a window plan far larger than the default grid's (a tiny stride)."""
    from rsseg.tiling.grid import axis_starts  # imported here: --help needs none of this

    def count(overlap: int) -> int:
        return (len(axis_starts(height, tiling.tile, overlap))
                * len(axis_starts(width, tiling.tile, overlap)))

    planned = count(tiling.overlap)
    quarter = tiling.tile // DEFAULT_OVERLAP_FRACTION
    usual = count(quarter)
    if planned > MAX_WINDOW_FACTOR * usual:
        raise InputError(f"tile {tiling.tile} with overlap {tiling.overlap} plans {planned:,} "
                         f"windows, {planned / usual:.0f}x those of a {quarter}-px overlap "
                         f"({usual:,}); use a smaller --overlap (e.g. {quarter})", source)


def check_zoom(zoom: float) -> float:
    """``zoom`` as a float, or ValueError when it is out of :data:`ZOOM_RANGE`."""
    zoom = float(zoom)
    lo, hi = ZOOM_RANGE
    if not lo <= zoom <= hi:
        raise ValueError(f"--zoom must be between {lo:g} and {hi:g}, got {zoom:g}")
    return zoom


def check_settings(settings: PredictSettings) -> None:
    """Values that need no scene: fail before anything is read or written."""

    if settings.tile is not None:  # an overlap alone is checked against the model's tile
        resolve_tiling(settings.tile, settings.overlap or 0)  # tile >= 16, overlap < tile
    if settings.blend not in BLENDS:
        raise InputError(f"unknown blend mode {settings.blend!r}; choose from {', '.join(BLENDS)}")
    if settings.batch_size != AUTO and settings.batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {settings.batch_size}")


def check_outputs(output, settings: PredictSettings, inputs=()) -> None:
    """Every output path, once, before work starts: writable, not existing (unless
    ``overwrite``), distinct from each other and from every input (even with overwrite)."""
    from rsseg.atomic import check_output_path

    seen = {os.path.realpath(p): "input" for p in inputs if p}
    for path, role in _outputs(output, settings):
        other = seen.get(os.path.realpath(path))
        if other:
            raise UsageError(f"the {role} path is also the {other} path", path)
        seen[os.path.realpath(path)] = role
        check_output_path(path, settings.overwrite)


def _outputs(output, settings: PredictSettings):
    yield Path(output), "output"
    if settings.probs is not None:
        yield Path(settings.probs), "--probs"
    if settings.vector is not None:
        from rsseg.vectorize.streaming import qml_sidecar_path

        yield Path(settings.vector), "--vector"
        yield Path(qml_sidecar_path(settings.vector)), "--vector style (.qml)"
