"""rsseg.score.metrics: confusion matrices and metrics against references and hand computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from rsseg.score.metrics import (
    cohen_kappa,
    confusion_from_joint,
    confusion_matrix,
    joint_histogram,
    scores_from_confusion,
)


def _reference(label, pred, k, ignore_index=255):
    """Pixel-by-pixel count, the slow obvious way."""
    cm = np.zeros((k, k), np.int64)
    for lab, prd in zip(np.ravel(label).tolist(), np.ravel(pred).tolist()):
        if lab == ignore_index or prd == 255 or not (0 <= lab < k and 0 <= prd < k):
            continue
        cm[lab, prd] += 1
    return cm


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.int16, np.uint16])
def test_confusion_matrix_equals_pixel_count(dtype):
    rng = np.random.default_rng(1)
    label = rng.integers(0, 8, (37, 41)).astype(dtype)  # 6 classes + 6, 7 out of range
    pred = rng.integers(0, 7, (37, 41)).astype(dtype)
    label[rng.random(label.shape) < 0.1] = 255
    pred[rng.random(pred.shape) < 0.1] = 255
    if np.issubdtype(dtype, np.signedinteger):
        label[0, :5] = -3  # negative values are out of range, not wrapped around
    cm = confusion_matrix(label, pred, 6)
    assert cm.dtype == np.int64 and cm.shape == (6, 6)
    np.testing.assert_array_equal(cm, _reference(label, pred, 6))


def test_uint8_fast_path_equals_sklearn_on_kept_pixels():
    rng = np.random.default_rng(2)
    label = rng.integers(0, 7, (300, 400), dtype=np.uint8)  # 120000 px: joint-histogram path
    pred = rng.integers(0, 6, (300, 400), dtype=np.uint8)
    label[label == 6] = 255
    pred[rng.random(pred.shape) < 0.05] = 255
    keep = (label != 255) & (pred != 255)
    expected = sk_confusion_matrix(label[keep], pred[keep], labels=range(6))
    np.testing.assert_array_equal(confusion_matrix(label, pred, 6), expected)
    np.testing.assert_array_equal(confusion_matrix(label.astype(np.int64), pred, 6), expected)


def test_ignore_index_inside_class_range_drops_that_row():
    label = np.array([0, 1, 2, 0, 1, 2])
    pred = np.array([0, 1, 2, 1, 1, 0])
    cm = confusion_matrix(label, pred, 3, ignore_index=0)
    np.testing.assert_array_equal(cm, [[0, 0, 0], [0, 2, 0], [1, 0, 1]])


def test_joint_histogram_holds_every_pair():
    rng = np.random.default_rng(3)
    label = rng.integers(0, 256, 5000).astype(np.uint8)
    pred = rng.integers(0, 256, 5000).astype(np.uint8)
    joint = joint_histogram(label, pred)
    assert joint.sum() == 5000
    assert joint[label[17], pred[17]] >= 1
    expected = np.zeros((256, 256), np.int64)
    np.add.at(expected, (label, pred), 1)
    np.testing.assert_array_equal(joint, expected)
    np.testing.assert_array_equal(confusion_from_joint(joint, 4, 255), expected[:4, :4])


@pytest.mark.parametrize("run", [1, 3, 8, 50, 10**6])
def test_joint_histogram_on_patchy_maps(run):
    # Long runs of equal (label, prediction) pairs take the run-counting path.
    rng = np.random.default_rng(run)
    n = 700_000
    label = np.repeat(rng.integers(0, 6, n // run + 1), run)[:n].astype(np.uint8)
    pred = np.repeat(rng.integers(0, 6, n // run + 1), run)[:n].astype(np.uint8)
    pred[rng.random(n) < 0.01] = 255  # isolated noise splits runs
    expected = np.zeros((256, 256), np.int64)
    np.add.at(expected, (label, pred), 1)
    np.testing.assert_array_equal(joint_histogram(label, pred), expected)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), 3)
    with pytest.raises(TypeError, match="integer"):
        confusion_matrix(np.zeros(4, float), np.zeros(4, int), 3)
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(np.zeros(4, int), np.zeros(4, int), 0)


# ---- a worked example, by hand ------------------------------------------------------
#
# label: 0 0 0 0 1 1 1 2 2 2      4 classes; class 3 appears in neither.
# pred:  0 0 0 1 1 1 2 2 2 0
#
# cm (rows label) = [[3,1,0,0],[0,2,1,0],[1,0,2,0],[0,0,0,0]]
# TP = 3,2,2  FP = 1,1,1  FN = 1,1,1
# IoU = 3/5, 2/4, 2/4    F1 = 6/8, 4/6, 4/6    precision = recall = 3/4, 2/3, 2/3
# OA = 7/10; chance agreement = (4*4 + 3*3 + 3*3) / 100 = 0.34; kappa = 0.36 / 0.66

LABEL = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
PRED = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])
NAMES = ["road", "house", "grass", "water"]


def test_worked_example_by_hand():
    cm = confusion_matrix(LABEL, PRED, 4)
    np.testing.assert_array_equal(cm, [[3, 1, 0, 0], [0, 2, 1, 0], [1, 0, 2, 0], [0, 0, 0, 0]])
    s = scores_from_confusion(cm, NAMES)
    assert s["oa"] == pytest.approx(0.7)
    assert s["kappa"] == pytest.approx(0.36 / 0.66)
    assert [c["iou"] for c in s["classes"][:3]] == pytest.approx([0.6, 0.5, 0.5])
    assert [c["f1"] for c in s["classes"][:3]] == pytest.approx([0.75, 2 / 3, 2 / 3])
    assert [c["precision"] for c in s["classes"][:3]] == pytest.approx([0.75, 2 / 3, 2 / 3])
    assert [c["recall"] for c in s["classes"][:3]] == pytest.approx([0.75, 2 / 3, 2 / 3])
    assert [c["support"] for c in s["classes"]] == [4, 3, 3, 0]
    assert s["miou"] == pytest.approx((0.6 + 0.5 + 0.5) / 3)
    assert s["mf1"] == pytest.approx((0.75 + 2 / 3 + 2 / 3) / 3)
    water = s["classes"][3]
    assert water["included_in_mean"] is False
    assert water["iou"] is None and water["f1"] is None
    assert water["precision"] is None and water["recall"] is None
    assert "absent" in water["note"]
    assert all(c["included_in_mean"] for c in s["classes"][:3])
    json.dumps(s, allow_nan=False)  # no NaN anywhere


def test_exclude_drops_a_class_from_the_means_only():
    cm = confusion_matrix(LABEL, PRED, 4)
    s = scores_from_confusion(cm, NAMES, exclude=["grass"])
    assert s["miou"] == pytest.approx((0.6 + 0.5) / 2)
    assert s["mf1"] == pytest.approx((0.75 + 2 / 3) / 2)
    assert s["oa"] == pytest.approx(0.7)  # OA still counts grass
    assert s["classes"][2]["included_in_mean"] is False
    assert s["classes"][2]["iou"] == pytest.approx(0.5)  # still reported
    assert s["excluded_classes"] == ["grass"]
    assert scores_from_confusion(cm, NAMES, exclude=[2])["miou"] == s["miou"]
    with pytest.raises(ValueError, match="unknown class"):
        scores_from_confusion(cm, NAMES, exclude=["lava"])


def test_geoseg_and_mmseg_differ_on_never_right_classes():
    # class 0: labelled 2x, predicted 1x, never right; class 1: labelled, never predicted;
    # class 2: predicted, never labelled.
    label = np.array([0, 0, 1, 1, 3, 3])
    pred = np.array([2, 3, 0, 3, 3, 3])
    cm = confusion_matrix(label, pred, 4)
    geo = scores_from_confusion(cm, NAMES, convention="geoseg")
    mm = scores_from_confusion(cm, NAMES, convention="mmseg")
    assert [c["iou"] for c in geo["classes"]] == [0.0, 0.0, 0.0, pytest.approx(0.5)]
    assert [c["iou"] for c in mm["classes"]] == [c["iou"] for c in geo["classes"]]
    # F1 = 2TP/(2TP+FP+FN) is 0 for the never-right classes ...
    assert [c["f1"] for c in geo["classes"]] == [0.0, 0.0, 0.0, pytest.approx(2 / 3)]
    # ... mmseg's 2PR/(P+R) is undefined there and skipped by its NaN-mean.
    assert [c["f1"] for c in mm["classes"]] == [None, None, None, pytest.approx(2 / 3)]
    assert geo["mf1"] == pytest.approx((2 / 3) / 4)
    assert mm["mf1"] == pytest.approx(2 / 3)
    assert geo["classes"][1]["precision"] is None and geo["classes"][2]["recall"] is None
    # mmseg ignores exclude: every class takes part in its means.
    assert scores_from_confusion(cm, NAMES, exclude=["water"], convention="mmseg")["miou"] \
        == mm["miou"]


def test_kappa_undefined_for_a_single_class_and_empty_matrix():
    assert cohen_kappa(np.array([[5, 0], [0, 0]])) is None
    s = scores_from_confusion(np.zeros((2, 2), np.int64), ["a", "b"])
    assert s["oa"] is None and s["miou"] is None and s["kappa"] is None
    assert not any(c["included_in_mean"] for c in s["classes"])


def test_perfect_prediction():
    label = np.repeat(np.arange(3), 5)
    s = scores_from_confusion(confusion_matrix(label, label, 3), ["a", "b", "c"])
    assert s["oa"] == 1.0 and s["miou"] == 1.0 and s["mf1"] == 1.0 and s["kappa"] == 1.0
