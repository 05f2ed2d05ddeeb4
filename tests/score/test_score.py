"""rsseg score: streamed scoring of real GeoTIFFs, label formats, erosion, grids, reports."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from rsseg.classes import ISPRS
from rsseg.cli import run
from rsseg.errors import InputError
from rsseg.score.metrics import scores_from_confusion
from rsseg.score.rasters import score_many, score_rasters
from rsseg.score.labels import boundary_mask
from rsseg.score.pairing import match_key, pair_by_name, read_pairs_csv

def reference_confusion(label, pred, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Confusion matrix counted pixel by pixel with np.add.at: independent of rsseg's
    joint-histogram path. Skipped: label == ignore_index, prediction 255 (nodata), and
    values that are not class ids."""
    label = np.asarray(label).ravel().astype(np.int64)
    pred = np.asarray(pred).ravel().astype(np.int64)
    keep = ((label != ignore_index) & (pred != 255) & (label >= 0) & (label < num_classes)
            & (pred >= 0) & (pred < num_classes))
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (label[keep], pred[keep]), 1)
    return cm


TRANSFORM = from_origin(500000.0, 5400000.0, 0.5, 0.5)
CRS = "EPSG:32632"


def write(path, array, block=None, crs=CRS, transform=TRANSFORM, nodata=None, tags=None):
    """A real GeoTIFF: (H, W) or (bands, H, W); ``block`` = (h, w) tiles, None = strips."""
    data = array if array.ndim == 3 else array[None]
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1],
                   count=data.shape[0], dtype=data.dtype, crs=crs, transform=transform,
                   nodata=nodata, compress="deflate")
    if block:
        profile.update(tiled=True, blockysize=block[0], blockxsize=block[1])
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if tags:
            ds.update_tags(**tags)
    return path


def random_pair(shape, k=6, seed=0):
    """(label, prediction): prediction right 70% of the time, with nodata and ignored pixels."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, k, shape, dtype=np.uint8)
    pred = np.where(rng.random(shape) < 0.7, label, rng.integers(0, k, shape)).astype(np.uint8)
    pred[rng.random(shape) < 0.03] = 255
    label[rng.random(shape) < 0.03] = 255
    return label, pred


def to_rgb(label):
    rgb = np.zeros((3,) + label.shape, np.uint8)
    for i, colour in enumerate(ISPRS.colours):
        rgb[:, label == i] = np.array(colour, np.uint8)[:, None]
    return rgb


def cli(args, capsys):
    code = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ---- the matrix is exact, however the scene is cut --------------------------------------

@pytest.mark.parametrize("block,window_pixels", [
    ((16, 16), 1000),          # many tiny windows
    ((32, 64), 5000),          # rectangular tiles
    (None, 20000),             # striped GeoTIFF
    ((64, 64), 1 << 22),       # one window for the whole scene
])
def test_streamed_matrix_equals_whole_array_numpy(tmp_path, block, window_pixels):
    label, pred = random_pair((157, 211), seed=4)
    write(tmp_path / "pred.tif", pred, block)
    write(tmp_path / "label.tif", label, (32, 32) if block else None)
    report = score_rasters(tmp_path / "pred.tif", tmp_path / "label.tif",
                           window_pixels=window_pixels)
    keep = (label != 255) & (pred != 255)
    expected = np.zeros((6, 6), np.int64)
    np.add.at(expected, (label[keep], pred[keep]), 1)
    np.testing.assert_array_equal(report["confusion_matrix"], expected)
    counts = report["counts"]
    assert counts["total"] == label.size
    assert counts["scored"] == keep.sum()
    assert counts["prediction_nodata"] == (pred == 255).sum()
    assert counts["label_ignored"] == (label == 255).sum()
    assert report["miou"] == pytest.approx(scores_from_confusion(expected, ISPRS.names)["miou"])


def test_class_names_come_from_the_prediction(tmp_path):
    label, pred = random_pair((40, 50), k=3, seed=5)
    tags = {"CLASS_NAMES": "water,forest,field", "CLASS_COLOURS": "[[0,0,255],[0,128,0],[9,9,9]]"}
    write(tmp_path / "pred.tif", pred, tags=tags)
    write(tmp_path / "label.tif", label)
    report = score_rasters(tmp_path / "pred.tif", tmp_path / "label.tif", exclude=["field"])
    assert [c["name"] for c in report["classes"]] == ["water", "forest", "field"]
    assert "CLASS_NAMES" in report["class_names_from"]
    assert report["classes"][2]["included_in_mean"] is False
    np.testing.assert_array_equal(report["confusion_matrix"], reference_confusion(label, pred, 3))


def test_prediction_nodata_value_other_than_255_is_nodata(tmp_path):
    label, pred = random_pair((30, 30), seed=6)
    pred16 = pred.astype(np.int16)
    pred16[pred == 255] = -1
    write(tmp_path / "pred.tif", pred16, nodata=-1)
    write(tmp_path / "label.tif", label)
    report = score_rasters(tmp_path / "pred.tif", tmp_path / "label.tif")
    np.testing.assert_array_equal(report["confusion_matrix"], reference_confusion(label, pred, 6))
    assert report["counts"]["prediction_nodata"] == (pred == 255).sum()


def test_label_nodata_is_ignored_not_unknown(tmp_path):
    label, pred = random_pair((30, 40), seed=17)
    label16 = label.astype(np.int16)
    label16[:4] = -1
    write(tmp_path / "pred.tif", pred)
    write(tmp_path / "label.tif", label16, nodata=-1)
    report = score_rasters(tmp_path / "pred.tif", tmp_path / "label.tif")
    expected = label.copy()
    expected[:4] = 255
    np.testing.assert_array_equal(report["confusion_matrix"],
                                  reference_confusion(expected, pred, 6))
    assert report["counts"]["label_nodata"] == 4 * 40
    assert report["counts"]["unknown_label"]["pixels"] == 0


def test_memory_does_not_grow_with_scene_size(tmp_path):
    import tracemalloc

    peaks = []
    for size in (256, 1536):  # 36x more pixels
        label, pred = random_pair((size, size), seed=18)
        label = np.repeat(np.repeat(label[::16, ::16], 16, axis=0), 16, axis=1)  # patches
        write(tmp_path / f"pred{size}.tif", pred, (64, 64))
        write(tmp_path / f"label{size}.tif", label, (64, 64))
        del label, pred
        score_rasters(tmp_path / f"pred{size}.tif", tmp_path / f"label{size}.tif",
                      erode_radius=2, window_pixels=128 * 128)  # warm up: imports, caches
        tracemalloc.start()
        score_rasters(tmp_path / f"pred{size}.tif", tmp_path / f"label{size}.tif",
                      erode_radius=2, window_pixels=128 * 128)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.25 * peaks[0] + 200_000, peaks
    assert peaks[1] < 1536 * 1536  # less than one whole uint8 band of the big scene


# ---- label formats ------------------------------------------------------------------------

def test_rgb_labels_score_like_their_index_version(tmp_path):
    label, pred = random_pair((90, 70), seed=7)
    label[label == 255] = 3
    write(tmp_path / "pred.tif", pred, (16, 16))
    write(tmp_path / "index.tif", label)
    write(tmp_path / "rgb.tif", to_rgb(label), (32, 32))
    by_index = score_rasters(tmp_path / "pred.tif", tmp_path / "index.tif", window_pixels=900)
    by_rgb = score_rasters(tmp_path / "pred.tif", tmp_path / "rgb.tif",
                           label_format="isprs-rgb", window_pixels=900)
    assert by_rgb["confusion_matrix"] == by_index["confusion_matrix"]
    assert by_rgb["classes"] == by_index["classes"]
    assert (by_rgb["oa"], by_rgb["miou"], by_rgb["mf1"]) == \
        (by_index["oa"], by_index["miou"], by_index["mf1"])


def test_unknown_colour_fails_with_count_and_colour(tmp_path, capsys):
    label, pred = random_pair((40, 40), seed=8)
    label[label == 255] = 0
    rgb = to_rgb(label)
    rgb[:, :3, :4] = np.array([12, 34, 56], np.uint8)[:, None, None]  # 12 odd pixels
    write(tmp_path / "pred.tif", pred)
    write(tmp_path / "rgb.tif", rgb)
    with pytest.raises(InputError) as err:
        score_rasters(tmp_path / "pred.tif", tmp_path / "rgb.tif", label_format="isprs-rgb")
    assert "12 pixels" in str(err.value) and "(12, 34, 56)" in str(err.value)
    assert str(tmp_path / "rgb.tif") in str(err.value)
    report = score_rasters(tmp_path / "pred.tif", tmp_path / "rgb.tif",
                           label_format="isprs-rgb", ignore_unknown=True)
    assert report["counts"]["unknown_label"]["pixels"] == 12
    assert report["counts"]["scored"] == ((pred != 255).sum() - (pred[:3, :4] != 255).sum())
    code, out, err_text = cli(["score", tmp_path / "pred.tif", tmp_path / "rgb.tif",
                               "--label-format", "isprs-rgb", "--no-progress"], capsys)
    assert code == 1 and "12 pixels" in err_text and "Traceback" not in err_text
    assert len(err_text.strip().splitlines()) == 1


def test_eroded_rgb_files_black_is_ignored(tmp_path, capsys):
    label, pred = random_pair((30, 30), seed=9)
    label[label == 255] = 1
    rgb = to_rgb(label)
    rgb[:, 10:12, :] = 0  # boundary pixels of a *_noBoundary file
    write(tmp_path / "pred.tif", pred)
    write(tmp_path / "label_noBoundary.tif", rgb)
    with pytest.raises(InputError, match="--eroded"):
        score_rasters(tmp_path / "pred.tif", tmp_path / "label_noBoundary.tif",
                      label_format="isprs-rgb")
    report = score_rasters(tmp_path / "pred.tif", tmp_path / "label_noBoundary.tif",
                           label_format="isprs-rgb", eroded=True)
    expected = label.copy()
    expected[10:12, :] = 255
    np.testing.assert_array_equal(report["confusion_matrix"],
                                  reference_confusion(expected, pred, 6))
    assert "eroded-boundary label files" in report["convention_description"]
    code, _, err = cli(["score", tmp_path / "pred.tif", tmp_path / "label_noBoundary.tif",
                        "--label-format", "isprs-rgb", "--eroded", "--no-progress", "--json",
                        tmp_path / "r.json"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["confusion_matrix"] == \
        reference_confusion(expected, pred, 6).tolist()


def test_unknown_index_values_fail_unless_ignored(tmp_path, capsys):
    label, pred = random_pair((20, 20), seed=10)
    label[0, :7] = 9
    write(tmp_path / "pred.tif", pred)
    write(tmp_path / "label.tif", label)
    with pytest.raises(InputError, match=r"7 pixels, most frequent: 9 \(7 px\)"):
        score_rasters(tmp_path / "pred.tif", tmp_path / "label.tif")
    report = score_rasters(tmp_path / "pred.tif", tmp_path / "label.tif", ignore_unknown=True)
    assert report["counts"]["unknown_label"]["first_values"] == [{"value": 9, "pixels": 7}]
    argv = ["score", tmp_path / "pred.tif", tmp_path / "label.tif", "--no-progress", "--json",
            tmp_path / "r.json"]
    code, _, err = cli(argv, capsys)
    assert code == 1 and "7 pixels, most frequent: 9 (7 px)" in err and not (tmp_path / "r.json").exists()
    code, _, err = cli(argv + ["--ignore-unknown"], capsys)
    assert code == 0, err
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["confusion_matrix"] == reference_confusion(np.where(label == 9, 255, label),
                                                            pred, 6).tolist()
    assert saved["counts"]["unknown_label"]["first_values"] == [{"value": 9, "pixels": 7}]


def test_ignore_index_other_than_255_is_skipped_and_counted(tmp_path, capsys):
    label, pred = random_pair((40, 30), seed=19)
    label[label == 255] = 6  # this label marks unlabelled pixels with 6
    write(tmp_path / "pred.tif", pred)
    write(tmp_path / "label.tif", label)
    with pytest.raises(InputError, match="most frequent: 6"):
        score_rasters(tmp_path / "pred.tif", tmp_path / "label.tif")
    report = score_rasters(tmp_path / "pred.tif", tmp_path / "label.tif", ignore_index=6)
    np.testing.assert_array_equal(report["confusion_matrix"],
                                  reference_confusion(label, pred, 6, ignore_index=6))
    assert report["counts"]["label_ignored"] == (label == 6).sum() > 0
    assert report["settings"]["ignore_index"] == 6
    code, _, err = cli(["score", tmp_path / "pred.tif", tmp_path / "label.tif",
                        "--ignore-index", "6", "--no-progress", "--json", tmp_path / "r.json"],
                       capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["confusion_matrix"] == \
        report["confusion_matrix"]


# ---- erosion --------------------------------------------------------------------------------

def brute_force_boundary(labels, radius, shape):
    """Pixels with a pixel of another class at distance <= radius (direct double loop)."""
    h, w = labels.shape
    out = np.zeros(labels.shape, bool)
    for y in range(h):
        for x in range(w):
            for dy in range(-radius, radius + 1):
                for dx in range(-radius, radius + 1):
                    inside = dy * dy + dx * dx <= radius * radius if shape == "disc" else True
                    yy, xx = y + dy, x + dx
                    if inside and 0 <= yy < h and 0 <= xx < w and labels[yy, xx] != labels[y, x]:
                        out[y, x] = True
    return out


def test_square_erosion_of_a_rectangle_is_a_ring_of_width_2r():
    labels = np.zeros((30, 40), np.uint8)
    labels[10:20, 12:30] = 1  # rectangle rows 10..19, cols 12..29
    r = 2
    ring = np.zeros(labels.shape, bool)
    ring[10 - r:20 + r, 12 - r:30 + r] = True
    ring[10 + r:20 - r, 12 + r:30 - r] = False
    np.testing.assert_array_equal(boundary_mask(labels, 6, r, "square"), ring)


@pytest.mark.parametrize("shape", ["disc", "square"])
def test_erode_radius_ignores_exactly_the_pixels_near_a_boundary(tmp_path, shape, capsys):
    labels = np.zeros((48, 52), np.uint8)
    labels[9:30, 14:40] = 1           # a rectangle ...
    yy, xx = np.mgrid[:48, :52]
    labels[(yy - 34) ** 2 + (xx - 20) ** 2 <= 36] = 2   # ... and a disc overlapping it
    labels[40:, 45:] = 255            # ignored pixels neither erode nor are eroded
    pred = np.where((yy + xx) % 5 == 0, 3, labels).astype(np.uint8)
    pred[labels == 255] = 0
    write(tmp_path / "pred.tif", pred, (16, 16))
    write(tmp_path / "label.tif", labels, (16, 16))
    r = 3
    expected_edge = _boundary_ignoring(labels, r, shape)
    report = score_rasters(tmp_path / "pred.tif", tmp_path / "label.tif", erode_radius=r,
                           erode_shape=shape, window_pixels=256)  # 16x16 windows + halos
    assert report["counts"]["eroded_boundary"] == expected_edge.sum()
    kept = np.where(expected_edge, 255, labels)
    np.testing.assert_array_equal(report["confusion_matrix"], reference_confusion(kept, pred, 6))
    assert f"within {r} px ({shape})" in report["convention_description"]
    code, _, err = cli(["score", tmp_path / "pred.tif", tmp_path / "label.tif", "--erode-radius",
                        r, "--erode-shape", shape, "--no-progress", "--json", tmp_path / "r.json"],
                       capsys)
    assert code == 0, err
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["counts"]["eroded_boundary"] == expected_edge.sum()
    assert saved["confusion_matrix"] == reference_confusion(kept, pred, 6).tolist()


def _boundary_ignoring(labels, radius, shape):
    """Like brute_force_boundary, but ignored (255) pixels are no class at all."""
    h, w = labels.shape
    out = np.zeros(labels.shape, bool)
    for y, x in zip(*np.nonzero(labels != 255)):
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                if shape == "disc" and dy * dy + dx * dx > radius * radius:
                    continue
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w and labels[yy, xx] not in (255, labels[y, x]):
                    out[y, x] = True
    return out


def test_disc_erosion_on_a_single_pixel_island():
    labels = np.zeros((11, 11), np.uint8)
    labels[5, 5] = 1
    got = boundary_mask(labels, 6, 2, "disc")
    np.testing.assert_array_equal(got, brute_force_boundary(labels, 2, "disc"))
    yy, xx = np.mgrid[:11, :11]
    np.testing.assert_array_equal(got, (yy - 5) ** 2 + (xx - 5) ** 2 <= 4)  # 13 pixels
    assert got.sum() == 13


# ---- grids ----------------------------------------------------------------------------------

def test_grid_mismatch_fails_naming_both_files(tmp_path, capsys):
    label, pred = random_pair((32, 32), seed=11)
    write(tmp_path / "pred.tif", pred)
    write(tmp_path / "label.tif", label, transform=from_origin(500001.0, 5400000.0, 0.5, 0.5))
    write(tmp_path / "label_crs.tif", label, crs="EPSG:32633")
    with pytest.raises(InputError) as err:
        score_rasters(tmp_path / "pred.tif", tmp_path / "label.tif")
    msg = str(err.value)
    assert "pred.tif" in msg and "label.tif" in msg and "transform" in msg and "--align" in msg
    with pytest.raises(InputError, match="CRS EPSG:32632 vs EPSG:32633"):
        score_rasters(tmp_path / "pred.tif", tmp_path / "label_crs.tif")
    write(tmp_path / "label_small.tif", label[:30, :31])  # same origin and pixel size
    with pytest.raises(InputError, match="size 32x32 vs 31x30"):
        score_rasters(tmp_path / "pred.tif", tmp_path / "label_small.tif")
    aligned = score_rasters(tmp_path / "pred.tif", tmp_path / "label_small.tif", align=True)
    cropped = np.full_like(label, 255)
    cropped[:30, :31] = label[:30, :31]
    np.testing.assert_array_equal(aligned["confusion_matrix"],
                                  reference_confusion(cropped, pred, 6))
    code, _, err_text = cli(["score", tmp_path / "pred.tif", tmp_path / "label.tif",
                             "--no-progress"], capsys)
    assert code == 1 and len(err_text.strip().splitlines()) == 1 and "--align" in err_text


def test_align_reprojects_the_label_onto_the_prediction_grid(tmp_path):
    # Label: 1 m pixels, starting 4 m west and 2 m north of the 0.5 m prediction grid
    # and ending inside it, so nearest resampling repeats each label pixel 2x2 and the
    # prediction's last columns fall outside the label (ignored, counted).
    rng = np.random.default_rng(12)
    coarse = rng.integers(0, 6, (40, 30), dtype=np.uint8)
    write(tmp_path / "label.tif", coarse, transform=from_origin(499996.0, 5400002.0, 1.0, 1.0))
    pred = rng.integers(0, 6, (60, 64), dtype=np.uint8)
    write(tmp_path / "pred.tif", pred, (16, 16))
    with pytest.raises(InputError, match="grids differ"):
        score_rasters(tmp_path / "pred.tif", tmp_path / "label.tif")
    report = score_rasters(tmp_path / "pred.tif", tmp_path / "label.tif", align=True,
                           window_pixels=512)
    fine = np.full(pred.shape, 255, np.uint8)
    # prediction pixel (i, j) centre lies in label pixel (2 + i // 2, 4 + j // 2)
    rows, cols = 2 + np.arange(60) // 2, 4 + np.arange(64) // 2
    inside = cols < 30
    fine[:, inside] = coarse[rows][:, cols[inside]]
    np.testing.assert_array_equal(report["confusion_matrix"], reference_confusion(fine, pred, 6))
    assert report["counts"]["label_nodata"] == (~inside).sum() * 60
    # The same label colour-coded: pixels outside it are missing, not unknown colours.
    write(tmp_path / "label_rgb.tif", to_rgb(coarse), transform=from_origin(499996.0, 5400002.0,
                                                                           1.0, 1.0))
    by_rgb = score_rasters(tmp_path / "pred.tif", tmp_path / "label_rgb.tif", align=True,
                           label_format="isprs-rgb")
    assert by_rgb["confusion_matrix"] == report["confusion_matrix"]


def test_align_without_overlap_fails(tmp_path):
    label, pred = random_pair((20, 20), seed=13)
    write(tmp_path / "pred.tif", pred)
    write(tmp_path / "far.tif", label, transform=from_origin(600000.0, 5400000.0, 0.5, 0.5))
    with pytest.raises(InputError, match="does not overlap"):
        score_rasters(tmp_path / "pred.tif", tmp_path / "far.tif", align=True)


# ---- bad input --------------------------------------------------------------------------

def test_bad_inputs_fail_with_one_line_and_no_partial_reports(tmp_path, capsys):
    label, pred = random_pair((20, 20), seed=14)
    write(tmp_path / "pred.tif", pred)
    write(tmp_path / "label.tif", label)
    write(tmp_path / "float.tif", pred.astype(np.float32))
    (tmp_path / "notes.tif").write_text("not a raster")
    write(tmp_path / "rgb.tif", np.stack([pred] * 3))  # an image, not a class raster
    cases = {
        "missing.tif": "file not found",
        "notes.tif": "not a raster",
        "float.tif": "float32 pixels",
        "rgb.tif": "prediction has 3 bands",
    }
    for name, problem in cases.items():
        args = ["score", tmp_path / name, tmp_path / "label.tif", "--no-progress",
                "--json", tmp_path / "r.json", "--csv", tmp_path / "r.csv",
                "--plot", tmp_path / "r.png"]
        code, _, err = cli(args, capsys)
        assert code == 1, name
        assert problem in err and name in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == \
            ["float.tif", "label.tif", "notes.tif", "pred.tif", "rgb.tif"]


def test_usage_errors_exit_2(tmp_path, capsys):
    assert cli(["score", tmp_path / "a.tif"], capsys)[0] == 2
    assert cli(["score", "--pairs", tmp_path / "p.csv", tmp_path / "a.tif"], capsys)[0] == 2
    assert cli(["score", "a.tif", "b.tif", "--conventions", "sklearn"], capsys)[0] == 2


# ---- reports and many scenes --------------------------------------------------------------

def test_cli_writes_json_csv_plot_that_parse_back(tmp_path, capsys):
    label, pred = random_pair((64, 48), seed=15)
    label[label == 4] = 3  # 'car' absent from the label ...
    pred[pred == 4] = 3    # ... and from the prediction
    write(tmp_path / "pred.tif", pred)
    write(tmp_path / "label.tif", label)
    out = {"json": tmp_path / "r.json", "csv": tmp_path / "r.csv", "plot": tmp_path / "r.png"}
    code, stdout, err = cli(["score", tmp_path / "pred.tif", tmp_path / "label.tif",
                             "--exclude", "clutter", "--conventions", "both", "--no-progress",
                             "--json", out["json"], "--csv", out["csv"], "--plot", out["plot"]],
                            capsys)
    assert code == 0, err
    report = json.loads(out["json"].read_text())
    keep = (label != 255) & (pred != 255)
    assert report["confusion_matrix"] == reference_confusion(label, pred, 6).tolist()
    assert report["oa"] == pytest.approx((label[keep] == pred[keep]).mean())
    assert report["convention"] == "geoseg" and report["mmseg"]["convention"] == "mmseg"
    by_name = {c["name"]: c for c in report["classes"]}
    assert by_name["clutter"]["included_in_mean"] is False
    assert by_name["car"]["included_in_mean"] is False and by_name["car"]["iou"] is None
    included = [c["iou"] for c in report["classes"] if c["included_in_mean"]]
    assert len(included) == 4 and report["miou"] == pytest.approx(np.mean(included))
    mm_iou = [c["iou"] for c in report["mmseg"]["classes"] if c["iou"] is not None]
    assert len(mm_iou) == 5 and report["mmseg"]["miou"] == pytest.approx(np.mean(mm_iou))
    assert "mIoU" in stdout and "geoseg" in stdout and "mmseg" in stdout

    rows = list(csv.DictReader(out["csv"].open()))
    geo = [r for r in rows if r["scene"] == "(all)" and r["convention"] == "geoseg"]
    assert [r["class_name"] for r in geo] == list(ISPRS.names) + ["(all)"]
    assert float(geo[0]["iou"]) == pytest.approx(report["classes"][0]["iou"])
    assert float(geo[-1]["miou"]) == pytest.approx(report["miou"])
    assert geo[4]["iou"] == ""  # car: undefined

    assert out["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(out["plot"]).ndim == 3

    code, _, err = cli(["score", tmp_path / "pred.tif", tmp_path / "label.tif", "--no-progress",
                        "--json", out["json"]], capsys)
    assert code == 1 and "--overwrite" in err


def test_progress_json_keeps_stdout_machine_readable(tmp_path, capsys):
    label, pred = random_pair((40, 40), seed=16)
    write(tmp_path / "pred.tif", pred, (16, 16))
    write(tmp_path / "label.tif", label)
    code, stdout, _ = cli(["score", tmp_path / "pred.tif", tmp_path / "label.tif",
                           "--progress-json"], capsys)
    assert code == 0
    events = [json.loads(line) for line in stdout.splitlines()]
    assert events[0]["event"] == "start" and events[0]["task"] == "score"
    assert any(e["event"] == "end" for e in events)
    assert any(e["event"] == "log" and "mIoU" in e["message"] for e in events)


def test_many_scenes_by_name_pool_into_one_matrix(tmp_path, capsys):
    (tmp_path / "preds").mkdir()
    (tmp_path / "gts").mkdir()
    names = [("area1.tif", "area1.tif"), ("top_2_10_RGB_classes.tif", "top_2_10_label.tif"),
             ("area3_pred.tif", "area3_noBoundary.tif")]
    total = np.zeros((6, 6), np.int64)
    for i, (pred_name, label_name) in enumerate(names):
        label, pred = random_pair((30 + 7 * i, 25), seed=20 + i)
        write(tmp_path / "preds" / pred_name, pred)
        write(tmp_path / "gts" / label_name, label)
        total += reference_confusion(label, pred, 6)
    write(tmp_path / "gts" / "area3_label.tif", label)  # full label next to the eroded one
    preds = [tmp_path / "preds" / p for p, _ in names]
    pairs = pair_by_name(preds, tmp_path / "gts", eroded=True)
    assert [p[1].name for p in pairs] == [n[1] for n in names]
    assert pair_by_name(preds[2:], tmp_path / "gts")[0][1].name == "area3_label.tif"
    report = score_many(pairs)
    np.testing.assert_array_equal(report["confusion_matrix"], total)
    assert [s["name"] for s in report["scenes"]] == [p.stem for p in preds]
    assert sum(np.array(s["confusion_matrix"]) for s in report["scenes"]).tolist() == \
        total.tolist()

    (tmp_path / "pairs.csv").write_text(
        "prediction,label\n" + "".join(f"preds/{p},gts/{g}\n" for p, g in names))
    assert read_pairs_csv(tmp_path / "pairs.csv") == pairs
    code, stdout, err = cli(["score", "--pairs", tmp_path / "pairs.csv", "--no-progress",
                             "--json", tmp_path / "all.json"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "all.json").read_text())["confusion_matrix"] == total.tolist()
    assert "area3_pred" in stdout  # per-scene rows printed

    code, _, err = cli(["score", *preds, tmp_path / "preds" / "x.tif", "--labels-dir",
                        tmp_path / "gts", "--no-progress"], capsys)
    assert code == 1 and "x.tif" in err and "no label" in err


def test_match_key_strips_known_suffixes():
    assert match_key("top_potsdam_2_10_RGB_classes") == "top_potsdam_2_10"
    assert match_key("top_potsdam_2_10_label_noBoundary") == "top_potsdam_2_10"
    assert match_key("top_mosaic_09cm_area1") == "top_mosaic_09cm_area1"
    assert match_key("label") == "label"


@pytest.mark.parametrize("eroded", [False, True])
@pytest.mark.parametrize("window_pixels", [64 * 64, 1 << 20])
def test_ignored_pixel_breakdown_adds_up(tmp_path, eroded, window_pixels):
    # Every ignored label pixel is named once: eroded boundary (on the fly, or the ignore
    # value of an eroded file), the ignore value, or label nodata. Counted independently
    # here with NumPy; small windows check that erosion halos are not counted twice.
    label, pred = random_pair((150, 170), seed=4)  # 255 = the ignore value
    label[:5, :] = 7  # label nodata (declared below), never the ignore value
    write(tmp_path / "pred.tif", pred)
    write(tmp_path / "label.tif", label, nodata=7)
    report = score_rasters(tmp_path / "pred.tif", tmp_path / "label.tif", eroded=eroded,
                           erode_radius=1, window_pixels=window_pixels)
    counts = report["counts"]
    in_file = int(np.count_nonzero(label == 255))
    nodata = int(np.count_nonzero(label == 7))
    on_the_fly = counts["label_ignored"] - in_file - nodata
    assert counts["label_nodata"] == nodata
    assert counts["ignore_value"] == (0 if eroded else in_file)
    assert counts["eroded_boundary"] == on_the_fly + (in_file if eroded else 0)
    assert (counts["eroded_boundary"] + counts["ignore_value"] + counts["label_nodata"]
            == counts["label_ignored"])
