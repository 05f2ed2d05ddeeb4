"""Score class rasters against label rasters: streamed confusion matrices and reports.

``score_rasters(pred, label)`` scores one scene, ``score_many(pairs)`` several
with one global confusion matrix (the GeoSeg way: pixels of every scene pooled,
metrics computed once) plus a row per scene. Both read window by window, so
memory stays flat whatever the scene size; per window the only work is one
``np.bincount`` of ``label * 256 + prediction`` (see
:func:`rsseg.score.metrics.joint_histogram`), from which the confusion matrix and
every count in the report (ignored, nodata, unknown values) are read off.

Reading happens in one background thread, one window ahead, so decoding the
GeoTIFFs (GDAL releases the GIL) overlaps counting.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from rsseg.classes import NODATA, ClassScheme
from rsseg.errors import InputError
from rsseg.score.labels import UnknownValues
from rsseg.score.metrics import (
    confusion_from_joint,
    joint_histogram,
    scores_from_confusion,
)
from rsseg.score.pairing import pair_by_name, read_pairs_csv  # noqa: F401 - re-exported
from rsseg.score.scene_pair import ReadCounts, ScenePair, ScoreOptions

CONVENTION_CHOICES = ("geoseg", "mmseg", "both")
PREFETCH = 2  # windows read ahead of the counting thread


@dataclass
class Tally:
    """Counts of one scene, or of several pooled: all a report needs, no pixels."""

    confusion: np.ndarray  # (K, K) int64, rows = label
    total: int = 0
    prediction_nodata: int = 0
    label_ignored: int = 0
    label_nodata: int = 0
    eroded_boundary: int = 0
    ignore_value: int = 0
    unknown_label: UnknownValues = field(default_factory=UnknownValues)
    unknown_prediction: UnknownValues = field(default_factory=UnknownValues)

    @classmethod
    def from_joint(cls, joint: np.ndarray, read: ReadCounts, num_classes: int,
                   ignore_index: int) -> "Tally":
        """Read the counts off a scene's (256, 256) joint histogram."""
        tally = cls(confusion_from_joint(joint, num_classes, ignore_index),
                    total=int(joint.sum()), prediction_nodata=int(joint[:, NODATA].sum()),
                    label_ignored=int(joint[ignore_index, :].sum()),
                    label_nodata=read.label_nodata, eroded_boundary=read.boundary,
                    ignore_value=read.ignore_value)
        tally.unknown_label.merge(read.unknown_label)
        tally.unknown_label.merge(_unknown_values(joint.sum(axis=1), num_classes, ignore_index))
        tally.unknown_prediction.merge(_unknown_values(joint.sum(axis=0), num_classes, NODATA))
        return tally

    def add(self, other: "Tally") -> None:
        self.confusion = self.confusion + other.confusion
        for name in ("total", "prediction_nodata", "label_ignored", "label_nodata",
                     "eroded_boundary", "ignore_value"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.unknown_label.merge(other.unknown_label)
        self.unknown_prediction.merge(other.unknown_prediction)

    def counts(self) -> dict:
        """Pixel counts for the report; one pixel may be counted under several reasons."""
        return {"total": self.total, "scored": int(self.confusion.sum()),
                "prediction_nodata": self.prediction_nodata,
                "label_ignored": self.label_ignored, "label_nodata": self.label_nodata,
                "eroded_boundary": self.eroded_boundary, "ignore_value": self.ignore_value,
                "unknown_label": self.unknown_label.to_dict(),
                "unknown_prediction": self.unknown_prediction.to_dict()}


def _unknown_values(per_value: np.ndarray, num_classes: int, allowed: int) -> UnknownValues:
    """Values >= num_classes (other than ``allowed``) with a non-zero count."""
    values = np.array([v for v in range(num_classes, 256) if v != allowed and per_value[v]],
                      np.int64)
    found = UnknownValues()
    if values.size:
        found.add(values, per_value[values])
    return found


@dataclass
class SceneTally:
    """One scene's files, classes and counts."""

    prediction: Path
    label: Path
    scheme: ClassScheme
    scheme_source: str
    tally: Tally

    @property
    def name(self) -> str:
        return self.prediction.stem


# ---------------------------------------------------------------- public API

def score_rasters(pred_path: str | os.PathLike, label_path: str | os.PathLike, *,
                  exclude: Iterable[str | int] = (), conventions: str = "geoseg",
                  progress_mode: str = "off", **options) -> dict:
    """Score one prediction raster against one label raster.

    ``options`` are the fields of :class:`rsseg.score.scene_pair.ScoreOptions`
    (label_format, ignore_index, eroded, erode_radius, erode_shape,
    ignore_unknown, align, window_pixels). Returns the report of
    :func:`score_many` for that single scene (its ``scenes`` list has one row).
    """
    return score_many([(pred_path, label_path)], exclude=exclude, conventions=conventions,
                      progress_mode=progress_mode, **options)


def score_many(pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]], *,
               exclude: Iterable[str | int] = (), conventions: str = "geoseg",
               progress_mode: str = "off", **options) -> dict:
    """Score several (prediction, label) pairs into one global report.

    The global confusion matrix is the sum of the scenes' matrices; metrics are
    computed from it (not averaged over scenes). ``report["scenes"]`` holds one
    row per scene with the same metrics for that scene alone.
    """
    if conventions not in CONVENTION_CHOICES:
        raise ValueError(f"conventions must be one of {CONVENTION_CHOICES}")
    if not pairs:
        raise InputError("no (prediction, label) pairs to score")
    opts = ScoreOptions(**options)
    scenes, exclude = _tally_all(pairs, opts, progress_mode, tuple(exclude))
    scheme = scenes[0].scheme
    pooled = Tally(np.zeros((scheme.num_classes,) * 2, np.int64))
    for scene in scenes:
        pooled.add(scene.tally)
    if pooled.confusion.sum() == 0:
        raise InputError("nothing to score: every pixel is nodata in the prediction or "
                         f"ignored in the label ({_describe_pairs(pairs)})")
    report = _report(pooled, scheme, exclude, conventions, opts)
    report["settings"] = _settings(opts, exclude)
    report["class_names_from"] = scenes[0].scheme_source
    report["scenes"] = [_scene_row(scene, exclude, conventions, opts) for scene in scenes]
    return report


# ---------------------------------------------------------------- accumulation

class _Silent:
    """Progress that shows nothing: spares importing tqdm for ``--no-progress``."""

    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc) -> None:
        pass


def _progress(total: int, mode: str):
    if mode == "off":
        return _Silent()
    from rsseg.progress import Progress

    return Progress(total, "score", mode=mode, unit="window")


def _tally_all(pairs, opts: ScoreOptions, progress_mode: str,
               exclude: tuple) -> tuple[list[SceneTally], tuple[int, ...]]:
    """Every scene's tally, and the ids of the excluded classes.

    Every pair is opened and checked first (and closed again: a thousand
    scenes must not hold two thousand files open), so a bad pair fails before
    hours of counting.
    """
    checked = []
    for pred_path, label_path in pairs:
        with ScenePair(pred_path, label_path, opts) as scene:
            checked.append((scene.pred_path, scene.scheme, len(scene.windows())))
    _check_same_classes(checked)
    exclude_ids = _exclude_ids(exclude, checked[0][1])
    tallies = []
    with _progress(sum(n for _, _, n in checked), progress_mode) as progress:
        for pred_path, label_path in pairs:
            with ScenePair(pred_path, label_path, opts) as scene:
                tallies.append(_tally_scene(scene, scene.windows(), progress))
            _check_unknown(tallies[-1], opts)
    return tallies, exclude_ids


def _tally_scene(scene: ScenePair, windows: list, progress) -> SceneTally:
    """Joint (label, prediction) histogram of a whole scene, window by window."""
    joint = np.zeros((256, 256), np.int64)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rsseg-score-read") as pool:
        pending: deque = deque()
        todo = iter(windows)
        for window in todo:
            pending.append(pool.submit(scene.read, window))
            if len(pending) >= PREFETCH:
                break
        while pending:
            pred, label = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(scene.read, nxt))
            joint += joint_histogram(label, pred)
            progress.update(1)
    tally = Tally.from_joint(joint, scene.counts, scene.scheme.num_classes,
                             scene.options.ignore_index)
    return SceneTally(scene.pred_path, scene.label_path, scene.scheme, scene.scheme_source,
                      tally)


def _check_same_classes(checked: list) -> None:
    first_path, first, _ = checked[0]
    for path, scheme, _ in checked[1:]:
        if scheme.names != first.names:
            raise InputError(f"predictions use different classes: {first_path} has "
                             f"{', '.join(first.names)}; {path} has {', '.join(scheme.names)}")


def _exclude_ids(exclude, scheme: ClassScheme) -> tuple[int, ...]:
    """Class ids of --exclude names (ClassScheme.index rules) or ids."""
    ids = []
    for item in exclude:
        try:
            ids.append(scheme.index(item))
        except KeyError as exc:
            raise InputError(f"--exclude: {exc.args[0]}") from exc
    return tuple(sorted(set(ids)))


def _check_unknown(scene: SceneTally, opts: ScoreOptions) -> None:
    """Unknown label colours/values or prediction values fail unless --ignore-unknown."""
    if opts.ignore_unknown:
        return
    names = ", ".join(f"{i}={n}" for i, n in enumerate(scene.scheme.names))
    labels = scene.tally.unknown_label
    if labels.total:
        what = "colours" if opts.label_format == "rgb" else "values"
        hint = ""
        if opts.label_format == "rgb" and (0, 0, 0) in labels.counts and not opts.eroded:
            hint = " (black marks eroded boundaries in ISPRS *_noBoundary files: pass --eroded)"
        scheme = f" of scheme {scene.scheme.name}" if scene.scheme.name else ""
        raise InputError(f"label has {what} that are no class{scheme} ({names}) nor ignored: "
                         f"{labels.describe()}{hint}; pass --ignore-unknown to skip those "
                         "pixels, or --classes FILE to describe them", scene.label)
    preds = scene.tally.unknown_prediction
    if preds.total:
        raise InputError(f"prediction has values that are no class ({names}; names from "
                         f"{scene.scheme_source}) nor nodata {NODATA}: {preds.describe()}; "
                         "pass --ignore-unknown to skip those pixels", scene.prediction)


# ---------------------------------------------------------------- reports

def _report(tally: Tally, scheme: ClassScheme, exclude: tuple, conventions: str,
            opts: ScoreOptions) -> dict:
    """Metrics and counts of one tally (a scene, or all scenes pooled)."""
    primary = "mmseg" if conventions == "mmseg" else "geoseg"
    report = scores_from_confusion(tally.confusion, scheme.names, exclude, convention=primary)
    report["convention_description"] = describe_convention(primary, report, opts)
    if conventions == "both":
        other = scores_from_confusion(tally.confusion, scheme.names, exclude, convention="mmseg")
        other["convention_description"] = describe_convention("mmseg", other, opts)
        report["mmseg"] = {k: other[k] for k in ("convention", "convention_description",
                                                  "oa", "miou", "mf1", "kappa", "classes")}
    report["counts"] = tally.counts()
    return report


def _settings(opts: ScoreOptions, exclude: tuple) -> dict:
    return {"label_format": opts.label_format, "ignore_index": opts.ignore_index,
            "eroded": opts.eroded, "erode_radius": opts.erode_radius,
            "erode_shape": opts.erode_shape if opts.erode_radius else None,
            "exclude": list(exclude), "align": opts.align,
            "ignore_unknown": opts.ignore_unknown}


def describe_labels(opts: ScoreOptions) -> str:
    if opts.erode_radius:
        return (f"boundaries eroded on the fly: label pixels within {opts.erode_radius} px "
                f"({opts.erode_shape}) of another class ignored")
    if opts.eroded:
        return "eroded-boundary label files (boundary pixels already ignored)"
    return "full labels (no boundary erosion)"


def describe_convention(name: str, scores: dict, opts: ScoreOptions) -> str:
    """One sentence that says how the means were taken and which labels were used."""
    if name == "geoseg":
        left_out = scores["excluded_classes"]
        means = "mIoU/mF1 over the classes present in label or prediction"
        means += f" except {', '.join(left_out)}" if left_out else ""
        means += "; F1 = 2TP/(2TP+FP+FN)"
    else:
        means = ("mIoU/mF1 over all classes, undefined values skipped (NaN-mean); "
                 "F1 = 2PR/(P+R), undefined when P or R is or both are 0")
    return f"{name}: {means}; OA and kappa over all classes; {describe_labels(opts)}"


def _scene_row(scene: SceneTally, exclude: tuple, conventions: str, opts: ScoreOptions) -> dict:
    row = {"name": scene.name, "prediction": str(scene.prediction), "label": str(scene.label)}
    row.update(_report(scene.tally, scene.scheme, exclude, conventions, opts))
    return row


def _describe_pairs(pairs) -> str:
    first = pairs[0]
    more = f" and {len(pairs) - 1} more" if len(pairs) > 1 else ""
    return f"{first[0]} vs {first[1]}{more}"
