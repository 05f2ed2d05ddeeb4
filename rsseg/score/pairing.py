"""Pair prediction rasters with label rasters: by file name, or from a CSV file.

Name matching (``--labels-dir``), for each prediction, among the raster files
directly inside the labels directory:

1. a label with exactly the same file stem (``area1.tif`` <-> ``area1.tif``)
   wins;
2. otherwise stems are compared after removing, case-insensitively and
   repeatedly, known suffixes introduced by ``_``, ``-`` or ``.``:
   :data:`KNOWN_SUFFIXES` (so ``top_potsdam_2_10_RGB_classes.tif`` pairs with
   ``top_potsdam_2_10_label.tif`` and ``area1_pred.tif`` with
   ``area1_noBoundary.tif``);
3. when several labels still match, ``*_noBoundary`` files are preferred with
   ``--eroded`` and avoided without it; if that does not settle it, or nothing
   matches, it is an error naming the prediction.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Sequence

from rsseg.errors import InputError

KNOWN_SUFFIXES = ("noboundary", "label", "labels", "gt", "mask", "classes", "class",
                  "pred", "prediction", "rgb", "irrg", "rgbir")
RASTER_EXTENSIONS = (".tif", ".tiff", ".vrt", ".png", ".jp2", ".img")
_SUFFIX_RE = re.compile(r"[_.\-](" + "|".join(KNOWN_SUFFIXES) + r")$", re.IGNORECASE)


def match_key(stem: str) -> str:
    """A file stem without its known suffixes, lower-cased."""
    key = stem.lower()
    while True:
        shorter = _SUFFIX_RE.sub("", key)
        if shorter == key or not shorter:
            return key
        key = shorter


def _is_raster_name(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in RASTER_EXTENSIONS


def pair_by_name(predictions: Sequence[str | os.PathLike], labels_dir: str | os.PathLike,
                 eroded: bool = False) -> list[tuple[Path, Path]]:
    """(prediction, label) pairs found by the rules in this module's docstring."""
    labels_dir = Path(labels_dir)
    if not labels_dir.is_dir():
        raise InputError("labels directory not found", labels_dir)
    labels = sorted(p for p in labels_dir.iterdir() if _is_raster_name(p))
    if not labels:
        raise InputError("labels directory holds no raster files "
                         f"({', '.join(RASTER_EXTENSIONS)})", labels_dir)
    by_key: dict[str, list[Path]] = {}
    for label in labels:
        by_key.setdefault(match_key(label.stem), []).append(label)
    return [(Path(pred), _label_for(Path(pred), labels, by_key, labels_dir, eroded))
            for pred in predictions]


def _label_for(pred: Path, labels, by_key, labels_dir: Path, eroded: bool) -> Path:
    same = [label for label in labels if label.stem == pred.stem]
    if len(same) == 1:
        return same[0]
    candidates = same or by_key.get(match_key(pred.stem), [])
    if len(candidates) > 1:
        preferred = [c for c in candidates if ("noboundary" in c.stem.lower()) == eroded]
        candidates = preferred or candidates
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(f"no label for it in {labels_dir} (looked for the stem "
                         f"{pred.stem!r} or {match_key(pred.stem)!r} plus a known suffix)", pred)
    names = ", ".join(c.name for c in candidates)
    raise InputError(f"several labels in {labels_dir} match it: {names}; use --pairs", pred)


def read_pairs_csv(path: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Pairs from a CSV file: columns ``prediction,label`` (header optional).

    Relative paths are relative to the CSV file's directory. Blank lines and
    lines starting with ``#`` are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("pairs file not found", path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [row for row in csv.reader(f)
                    if row and any(c.strip() for c in row) and not row[0].startswith("#")]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read pairs file: {exc}", path) from exc
    columns = (0, 1)
    if rows and _is_header(rows[0]):
        columns = _header_columns(rows.pop(0))
    pairs = []
    for number, row in enumerate(rows, start=1):
        if len(row) <= max(columns):
            raise InputError(f"row {number} has {len(row)} column(s); expected prediction,label",
                             path)
        pred, label = (Path(row[c].strip()) for c in columns)
        pairs.append((path.parent / pred, path.parent / label))
    if not pairs:
        raise InputError("pairs file lists no (prediction, label) pairs", path)
    return pairs


def _is_header(row: list[str]) -> bool:
    lowered = {c.strip().lower() for c in row}
    return bool(lowered & {"prediction", "pred", "predictions"}) and bool(
        lowered & {"label", "labels", "gt", "reference"})


def _header_columns(header: list[str]) -> tuple[int, int]:
    lowered = [c.strip().lower() for c in header]
    pred = next(i for i, c in enumerate(lowered) if c in {"prediction", "pred", "predictions"})
    label = next(i for i, c in enumerate(lowered) if c in {"label", "labels", "gt", "reference"})
    return pred, label
