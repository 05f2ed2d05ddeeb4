"""Confusion matrices and segmentation metrics (pure NumPy).

Conventions used everywhere in rsseg:

* a confusion matrix ``cm`` is ``int64`` of shape ``(K, K)``; rows are the label
  (reference) class, columns the predicted class, so ``cm[i].sum()`` is the
  support of class ``i`` and ``cm[:, i].sum()`` how often ``i`` was predicted;
* label pixels equal to ``ignore_index`` and predictions equal to 255 (the class
  raster nodata value) are not counted, nor are values outside ``0..K-1``;
* metrics are fractions in 0..1; a metric whose denominator is zero is ``None``
  (JSON ``null``), never NaN.

Two ways of averaging per-class numbers are offered (see
:func:`scores_from_confusion`): ``"geoseg"`` (rsseg's default, the GeoSeg code
base's ISPRS protocol) and ``"mmseg"`` (MMSegmentation's ``IoUMetric``).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

NODATA = 255  # prediction value meaning "no data" (rsseg.classes.NODATA)
CONVENTIONS = ("geoseg", "mmseg")
HISTOGRAM_CHUNK = 1 << 19  # pixels per bincount call (measured fastest on 0.25-1 Mpx)
RUN_LENGTH_MIN = 8  # mean run length from which counting runs pays (measured: ~7)


# ---------------------------------------------------------------- accumulation

def joint_histogram(label: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Counts of every (label value, prediction value) pair of two uint8 arrays.

    Returns an ``int64`` array of shape (256, 256): ``h[l, p]`` is the number of
    pixels with label ``l`` and prediction ``p``. One ``np.bincount`` over
    ``label * 256 + pred``; no masks are built, which is what makes it fast.
    Everything a report needs (confusion matrix, ignored, nodata and
    out-of-range counts) can be read off this histogram afterwards.
    """
    label = np.asarray(label)
    pred = np.asarray(pred)
    if label.shape != pred.shape:
        raise ValueError(f"label shape {label.shape} != prediction shape {pred.shape}")
    if label.dtype != np.uint8 or pred.dtype != np.uint8:
        raise TypeError("joint_histogram expects two uint8 arrays")
    label, pred = label.ravel(), pred.ravel()
    counts = np.zeros(65536, np.int64)
    for start in range(0, label.size, HISTOGRAM_CHUNK):
        pair = label[start:start + HISTOGRAM_CHUNK].astype(np.uint16)
        pair <<= 8
        pair |= pred[start:start + HISTOGRAM_CHUNK]
        counts += _count_pairs(pair)
    return counts.reshape(256, 256)


def _count_pairs(pair: np.ndarray) -> np.ndarray:
    """Histogram (65536 bins) of one chunk of uint16 (label, prediction) codes.

    Class maps are made of patches, so the same code repeats along a row: when
    runs are long enough, counting one value per run (weighted by its length)
    beats counting every pixel; on noisy maps the plain count is used.
    """
    change = pair[1:] != pair[:-1]
    runs = int(np.count_nonzero(change)) + 1
    if runs * RUN_LENGTH_MIN > pair.size:
        return np.bincount(pair, minlength=65536)
    starts = np.empty(runs, np.intp)
    starts[0] = 0
    np.add(np.flatnonzero(change), 1, out=starts[1:])
    lengths = np.diff(starts, append=pair.size)
    # float64 weights count exactly: a chunk is far below 2**53 pixels.
    return np.bincount(pair[starts], weights=lengths, minlength=65536).astype(np.int64)


def confusion_from_joint(joint: np.ndarray, num_classes: int,
                         ignore_index: int = 255) -> np.ndarray:
    """The (K, K) confusion matrix contained in a (256, 256) joint histogram."""
    _check_num_classes(num_classes)
    cm = np.array(joint[:num_classes, :num_classes], dtype=np.int64)
    if 0 <= ignore_index < num_classes:
        cm[ignore_index, :] = 0
    return cm


def confusion_matrix(label: np.ndarray, pred: np.ndarray, num_classes: int,
                     ignore_index: int = 255) -> np.ndarray:
    """Confusion matrix of one pair of class arrays (rows = label, columns = prediction).

    Pixels whose label is ``ignore_index``, whose prediction is 255 (nodata), or
    whose label or prediction lies outside ``0..num_classes-1`` are skipped.
    Both arrays must hold integers and have the same shape (any number of
    dimensions, e.g. a training batch ``(N, H, W)``).
    """
    _check_num_classes(num_classes)
    label = np.asarray(label)
    pred = np.asarray(pred)
    if label.shape != pred.shape:
        raise ValueError(f"label shape {label.shape} != prediction shape {pred.shape}")
    for name, arr in (("label", label), ("prediction", pred)):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise TypeError(f"{name} must hold integer class ids, not {arr.dtype}")
    if label.dtype == np.uint8 and pred.dtype == np.uint8 and label.size >= 65536:
        return confusion_from_joint(joint_histogram(label, pred), num_classes, ignore_index)
    lab = label.ravel().astype(np.int64)
    prd = pred.ravel().astype(np.int64)
    keep = (lab >= 0) & (lab < num_classes) & (prd >= 0) & (prd < num_classes)
    keep &= (lab != ignore_index) & (prd != NODATA)
    pairs = lab[keep] * num_classes + prd[keep]
    counts = np.bincount(pairs, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64, copy=False)


def _check_num_classes(num_classes: int) -> None:
    if not 1 <= int(num_classes) <= 255:
        raise ValueError(f"num_classes must be in 1..255, got {num_classes}")


# ---------------------------------------------------------------- metrics

def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(sum(vals) / len(vals)) if vals else None


def overall_accuracy(cm: np.ndarray) -> float | None:
    """Fraction of scored pixels on the diagonal (every class counts)."""
    cm = np.asarray(cm, dtype=np.int64)
    return _ratio(np.trace(cm), cm.sum())


def cohen_kappa(cm: np.ndarray) -> float | None:
    """Cohen's kappa: agreement beyond what the marginals give by chance."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    if total == 0:
        return None
    observed = np.trace(cm) / total
    chance = float((cm.sum(axis=0) * cm.sum(axis=1)).sum()) / (total * total)
    if chance == 1.0:  # a single class everywhere: kappa is undefined
        return None
    return float((observed - chance) / (1.0 - chance))


def per_class_counts(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, false positives and false negatives of every class."""
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm)
    return tp, cm.sum(axis=0) - tp, cm.sum(axis=1) - tp


def _class_metrics_geoseg(tp: int, fp: int, fn: int) -> dict:
    """IoU, F1, precision, recall of one class; F1 = 2TP / (2TP + FP + FN)."""
    return {"iou": _ratio(tp, tp + fp + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn)}


def _class_metrics_mmseg(tp: int, fp: int, fn: int) -> dict:
    """As MMSegmentation computes them: the F-score comes from precision and recall.

    So it is undefined (skipped in the mean) whenever precision or recall is,
    and also when both are 0 (a class labelled and predicted, never right).
    """
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = None
    if precision is not None and recall is not None and precision + recall > 0:
        f1 = 2 * precision * recall / (precision + recall)
    return {"iou": _ratio(tp, tp + fp + fn), "f1": f1,
            "precision": precision, "recall": recall}


def _resolve_classes(exclude: Iterable[str | int], class_names: Sequence[str]) -> set[int]:
    """Class ids from names (case-insensitive, '_' or ' ') or ids."""
    ids = set()
    lowered = [n.lower().replace(" ", "_") for n in class_names]
    for item in exclude:
        if isinstance(item, (int, np.integer)) or str(item).strip().isdigit():
            idx = int(item)
            if not 0 <= idx < len(class_names):
                raise ValueError(f"class id {idx} out of range 0..{len(class_names) - 1}")
        else:
            key = str(item).strip().lower().replace(" ", "_")
            matches = [i for i, n in enumerate(lowered) if n == key]
            if not matches:
                raise ValueError(f"unknown class {item!r}; known: {', '.join(class_names)}")
            idx = matches[0]
        ids.add(idx)
    return ids


def scores_from_confusion(cm: np.ndarray, class_names: Sequence[str],
                          exclude: Iterable[str | int] = (),
                          convention: str = "geoseg") -> dict:
    """Per-class and mean metrics of a confusion matrix, as a JSON-ready dict.

    ``convention="geoseg"`` (default): per-class F1 = 2TP/(2TP+FP+FN); mIoU and
    mF1 average the classes that are neither in ``exclude`` nor absent from
    both label and prediction. ``convention="mmseg"``: every class takes part
    in the means (``exclude`` only marks nothing), and, as in MMSegmentation,
    F1 = 2PR/(P+R) is undefined (skipped) when P or R is, or when both are 0.
    In both, OA and kappa count every class and a class absent from both label
    and prediction has all metrics ``None`` and ``included_in_mean`` False.

    Layout: ``{"oa", "miou", "mf1", "kappa", "convention", "excluded_classes",
    "pixels", "confusion_matrix": [[...]], "classes": [{"id", "name", "iou",
    "f1", "precision", "recall", "support", "predicted", "included_in_mean"}]}``.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; use one of {CONVENTIONS}")
    cm = np.asarray(cm, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(class_names):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match "
                         f"{len(class_names)} class names")
    excluded = _resolve_classes(exclude, class_names) if convention == "geoseg" else set()
    tp, fp, fn = per_class_counts(cm)
    class_metrics = _class_metrics_geoseg if convention == "geoseg" else _class_metrics_mmseg
    classes = []
    for i, name in enumerate(class_names):
        support, predicted = int(tp[i] + fn[i]), int(tp[i] + fp[i])
        absent = support == 0 and predicted == 0
        entry = {"id": i, "name": str(name)}
        entry.update(class_metrics(int(tp[i]), int(fp[i]), int(fn[i])))
        entry.update({"support": support, "predicted": predicted,
                      "included_in_mean": not absent and i not in excluded})
        if absent:
            entry["note"] = "absent from label and prediction"
        elif i in excluded:
            entry["note"] = "excluded from the means"
        classes.append(entry)
    in_mean = [c for c in classes if c["included_in_mean"]]
    return {
        "convention": convention,
        "oa": overall_accuracy(cm),
        "miou": _mean(c["iou"] for c in in_mean),
        "mf1": _mean(c["f1"] for c in in_mean),
        "kappa": cohen_kappa(cm),
        "excluded_classes": [class_names[i] for i in sorted(excluded)],
        "pixels": int(cm.sum()),
        "confusion_matrix": cm.tolist(),
        "classes": classes,
    }
