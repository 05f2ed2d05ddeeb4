"""Class schemes (issue 13): scheme files, label decoding, a custom 3-class RGB PNG dataset
trained end to end whose predictions carry exactly its names and colours."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from rsseg.classes import ISPRS, ClassScheme, builtin_schemes, load_scheme
from rsseg.cli import run as run_cli
from rsseg.errors import InputError
from rsseg.models import register_model, unregister_model
from rsseg.score.labels import LabelDecoder, UnknownValues, read_label
from rsseg.training.inputs import dataset_pairs, resolve_pairs

TINY = "_test_schemes_tiny"
# Three classes with their own colours; grey is "not labelled".
SCHEME = {"classes": [{"name": "roof", "colour": "#C83214"},
                      {"name": "lawn", "colour": [30, 160, 40]},
                      {"name": "pool", "colour": "#1E64DC"}],
          "ignore": ["#808080"]}
COLOURS = np.array([[200, 50, 20], [30, 160, 40], [30, 100, 220]], np.uint8)
GREY = np.array([128, 128, 128], np.uint8)
# Image brightness per class: one band separates them, as in a real photo a colour would.
CLASS_RGB = np.array([[180, 90, 60], [60, 150, 60], [50, 90, 200]], np.float32)


@pytest.fixture(scope="module", autouse=True)
def tiny_model():
    @register_model(TINY, listed=False)
    def _build(in_channels, num_classes, width=8):
        return torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, width, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(width, num_classes, 1))

    yield TINY
    unregister_model(TINY)


def write_png(path: Path, data: np.ndarray, colormap: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PNG has no georeferencing: rasterio warns
        with rasterio.open(path, "w", driver="PNG", width=data.shape[2], height=data.shape[1],
                           count=data.shape[0], dtype="uint8") as ds:
            ds.write(data)
            if colormap:
                ds.write_colormap(1, colormap)
    return path


def blocks(seed: int, size: int = 48) -> np.ndarray:
    """A label layout of class blocks, some pixels unlabelled (255)."""
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 3, (size // 8, size // 8)).repeat(8, 0).repeat(8, 1).astype(np.uint8)
    lab[rng.random(lab.shape) < 0.02] = 255
    return lab


def write_dataset(root: Path) -> Path:
    """tileA/, tileB/ each with images/*.png (RGB photo) and masks/*.png (RGB colours)."""
    for tile, seeds in (("tileA", (1, 2, 3)), ("tileB", (4,))):
        for seed in seeds:
            lab = blocks(seed)
            rgb = np.where(lab[..., None] == 255, GREY, COLOURS[np.minimum(lab, 2)])
            rng = np.random.default_rng(seed + 50)
            img = CLASS_RGB[np.minimum(lab, 2)] + rng.normal(0, 6, lab.shape + (3,))
            write_png(root / tile / "images" / f"part_{seed}.png",
                      np.clip(img, 0, 255).astype(np.uint8).transpose(2, 0, 1))
            write_png(root / tile / "masks" / f"part_{seed}.png", rgb.transpose(2, 0, 1))
    return root


# ---- scheme files ---------------------------------------------------------------------------

def test_builtin_schemes_and_isprs_default():
    assert {"isprs", "dubai-aerial", "loveda"} <= set(builtin_schemes())
    assert load_scheme() == ISPRS and load_scheme("isprs") == ISPRS
    dubai = load_scheme("dubai-aerial")
    assert dubai.names == ("building", "land", "road", "vegetation", "water")
    assert dubai.colours[0] == (0x3C, 0x10, 0x98) and (0x9B, 0x9B, 0x9B) in dubai.ignore_colours
    loveda = load_scheme("loveda")
    assert loveda.num_classes == 7 and loveda.label_values == tuple(range(1, 8))
    assert loveda.ignore_values == (0,)


def test_scheme_file_round_trip(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(SCHEME))
    scheme = load_scheme(str(path))
    assert scheme.names == ("roof", "lawn", "pool") and scheme.name == "mine"
    assert scheme.colours == tuple(map(tuple, COLOURS.tolist()))
    assert scheme.ignore_colours == ((128, 128, 128),)
    assert ClassScheme.from_dict(scheme.to_dict()) == scheme


@pytest.mark.parametrize("text, problem", [
    ("{not json", "not valid JSON"),
    (json.dumps({"classes": [{"name": "a", "colour": "#000001"},
                             {"name": "A", "colour": "#000002"}]}), "duplicate class name"),
    (json.dumps({"classes": [{"name": "a", "colour": "#000001"},
                             {"name": "b", "colour": [0, 0, 1]}]}), "duplicate class colour"),
    (json.dumps({"classes": [{"name": f"c{i}", "colour": [i % 256, i // 256, 7], "value": 0}
                             for i in range(256)]}), "at most 255"),
    (json.dumps({"classes": [{"name": "a", "colour": "red"}]}), "#RRGGBB"),
    (json.dumps({"classes": []}), "empty"),
])
def test_bad_scheme_files_name_the_file_and_problem(tmp_path, text, problem):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputError, match=problem) as err:
        load_scheme(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_unknown_scheme_name_lists_the_builtins():
    with pytest.raises(InputError, match="dubai-aerial"):
        load_scheme("no_such_scheme")


# ---- decoding against an independent reference ----------------------------------------------

def _reference_index(raw, values, ignore, ignore_index=255):
    """Pixel by pixel with a dict: value -> class id; ignore/255 -> ignore_index; else None."""
    table = {v: i for i, v in enumerate(values)}
    out, unknown = np.empty(raw.shape, np.uint8), {}
    for pos, v in np.ndenumerate(raw):
        v = int(v)
        if v in table:
            out[pos] = table[v]
        elif v in ignore or v == 255:
            out[pos] = ignore_index
        else:
            out[pos] = ignore_index
            unknown[v] = unknown.get(v, 0) + 1
    return out, unknown


def test_index_decoding_with_values_and_ignore_equals_reference():
    scheme = load_scheme("loveda")  # values 1..7, ignore 0
    rng = np.random.default_rng(3)
    raw = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 9, 12, 255], (37, 41)).astype(np.uint8)
    unknown = UnknownValues()
    got = LabelDecoder(scheme, "index").decode(raw, unknown)
    want, want_unknown = _reference_index(raw, scheme.label_values, {0})
    np.testing.assert_array_equal(got, want)
    assert unknown.counts == want_unknown and unknown.total == sum(want_unknown.values())
    # Wider integer labels: the same answer, and out-of-range values are unknown too.
    wide = raw.astype(np.int32)
    wide[0, :3] = [-1, 300, 70000]
    unknown = UnknownValues()
    got = LabelDecoder(scheme, "index").decode(wide, unknown)
    want, want_unknown = _reference_index(wide, scheme.label_values, {0})
    np.testing.assert_array_equal(got, want)
    assert unknown.counts == want_unknown


def test_rgb_decoding_with_ignore_colours_equals_reference():
    scheme = ClassScheme(("roof", "lawn", "pool"), tuple(map(tuple, COLOURS.tolist())),
                         ignore_colours=((128, 128, 128), (0, 0, 0)))
    palette = np.vstack([COLOURS, [[128, 128, 128], [0, 0, 0], [1, 2, 3], [200, 50, 21]]]).astype(np.uint8)
    rng = np.random.default_rng(5)
    rgb = palette[rng.integers(0, len(palette), (29, 31))].transpose(2, 0, 1).copy()
    unknown = UnknownValues()
    got = LabelDecoder(scheme, "rgb").decode(rgb, unknown)
    colour_to_id = {tuple(c): i for i, c in enumerate(COLOURS.tolist())}
    want, want_unknown = np.empty(rgb.shape[1:], np.uint8), {}
    for (y, x), _ in np.ndenumerate(want):
        c = tuple(int(v) for v in rgb[:, y, x])
        want[y, x] = colour_to_id.get(c, 255)
        if c not in colour_to_id and c not in scheme.ignore_colours:
            want_unknown[c] = want_unknown.get(c, 0) + 1
    np.testing.assert_array_equal(got, want)
    assert unknown.counts == want_unknown
    assert unknown.describe().startswith(f"{sum(want_unknown.values())} pixels")


def test_palette_png_decodes_like_rgb(tmp_path):
    """Palette masks (as in two Dubai tiles) are expanded through their colour table."""
    lab = blocks(7, 32)
    ids = np.minimum(lab, 3)  # 3 = grey in the palette below
    table = {i: (*c, 255) for i, c in enumerate(COLOURS.tolist())}
    table[3] = (128, 128, 128, 255)
    pal = write_png(tmp_path / "pal.png", ids[None].astype(np.uint8), colormap=table)
    rgb_colours = np.vstack([COLOURS, [GREY]])[ids].transpose(2, 0, 1)
    rgb = write_png(tmp_path / "rgb.png", rgb_colours.astype(np.uint8))
    scheme = load_scheme_from(SCHEME, tmp_path)
    decoded = []
    for path in (pal, rgb):
        with rasterio.open(path) as ds:
            decoded.append(LabelDecoder(scheme, "rgb").decode(read_label(ds, "rgb"),
                                                              UnknownValues()))
    np.testing.assert_array_equal(decoded[0], decoded[1])
    np.testing.assert_array_equal(decoded[0], np.where(ids == 3, 255, ids))


def load_scheme_from(data: dict, folder: Path) -> ClassScheme:
    path = folder / "scheme.json"
    path.write_text(json.dumps(data))
    return load_scheme(str(path))


# ---- dataset folders ------------------------------------------------------------------------

def test_dataset_folder_pairs_by_tile_and_stem(tmp_path):
    root = write_dataset(tmp_path / "data")
    pairs = dataset_pairs(root)
    assert [(Path(i).parent.parent.name, Path(i).name, Path(m).parent.name) for i, m in pairs] == \
        [("tileA", "part_1.png", "masks"), ("tileA", "part_2.png", "masks"),
         ("tileA", "part_3.png", "masks"), ("tileB", "part_4.png", "masks")]
    images, labels, val_images, val_labels = resolve_pairs(root, val_pattern="tileB/*")
    assert len(images) == 3 and [Path(p).name for p in val_images] == ["part_4.png"]
    assert all("tileB" in p for p in val_labels)


def test_quoted_globs_are_expanded_sorted(tmp_path):
    root = write_dataset(tmp_path / "data")
    images, labels, val_images, _ = resolve_pairs(
        images=[str(root / "tileA" / "images" / "*.png")],
        labels=[str(root / "tileA" / "masks" / "*.png")],
        val_images=[str(root / "tileB" / "images" / "part_4.png")],
        val_labels=[str(root / "tileB" / "masks" / "part_4.png")])
    assert [Path(p).name for p in images] == ["part_1.png", "part_2.png", "part_3.png"]
    assert [Path(p).parent.name for p in labels] == ["masks"] * 3 and len(val_images) == 1
    with pytest.raises(InputError, match="pattern matches no file"):
        resolve_pairs(images=[str(root / "*.tif")], labels=[], val_images=["x"],
                      val_labels=["y"])


def test_dataset_folder_problems(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no training images found"):
        dataset_pairs(tmp_path / "empty")
    root = write_dataset(tmp_path / "data")
    (root / "tileA" / "masks" / "part_2.png").unlink()
    with pytest.raises(InputError, match="no label for this image") as err:
        dataset_pairs(root)
    assert "part_2.png" in str(err.value)
    with pytest.raises(InputError, match="matches none"):
        resolve_pairs(write_dataset(tmp_path / "d2"), val_pattern="tileZ/*")


# ---- end to end: train, predict, vectorize --------------------------------------------------

def _cli(argv, capsys):
    code = run_cli([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("schemes")
    root = write_dataset(d / "data")
    scheme = d / "garden.json"
    scheme.write_text(json.dumps(SCHEME))
    code = run_cli(["train", "--data", str(root), "--val-pattern", "tileB/*",
                    "--classes", str(scheme), "--label-format", "rgb", "--model", TINY,
                    "-o", str(d / "run"), "--crop", "32", "--batch-size", "4", "--epochs", "3",
                    "--steps-per-epoch", "12", "--lr", "0.02", "--min-class-pixels", "10",
                    "--device", "cpu", "--no-progress"])
    assert code == 0
    return d, root


def test_trained_checkpoint_carries_the_scheme(trained):
    from rsseg.checkpoint import load_checkpoint

    d, _ = trained
    ckpt = load_checkpoint(d / "run" / "best.pt")
    assert ckpt.classes.names == ("roof", "lawn", "pool")
    assert ckpt.classes.colours == tuple(map(tuple, COLOURS.tolist()))
    assert ckpt.classes.ignore_colours == ((128, 128, 128),)
    assert ckpt.bands.num_bands == 3
    assert ckpt.training["val_scenes"] == ["part_4.png"]


def test_predictions_carry_the_names_and_colours(trained, capsys):
    """COG palette and CLASS_NAMES, then the GeoPackage's QGIS style: the scheme's, not ISPRS."""
    from rsseg.io.classes import read_classes

    d, root = trained
    image = root / "tileB" / "images" / "part_4.png"
    out = d / "pred.tif"
    code, _, err = _cli(["predict", image, "-o", out, "--model", TINY, "--weights",
                         d / "run" / "best.pt", "--no-progress"], capsys)
    assert code == 0, err
    with rasterio.open(out) as ds:
        assert ds.tags()["CLASS_NAMES"] == "roof,lawn,pool"
        cmap = ds.colormap(1)
        assert [cmap[i][:3] for i in range(3)] == [tuple(c) for c in COLOURS.tolist()]
        pred = ds.read(1)
    lab = blocks(4)
    labelled = lab != 255
    assert (pred[labelled] == lab[labelled]).mean() > 0.9  # it learnt the photo's colours
    assert read_classes(out).names == ("roof", "lawn", "pool")
    gpkg = d / "pred.gpkg"
    code, _, err = _cli(["vectorize", out, "-o", gpkg, "--no-progress"], capsys)
    assert code == 0, err
    assert "no CRS" in err  # a PNG has no georeferencing: pixel coordinates, said once
    import pyogrio

    table = pyogrio.read_dataframe(gpkg, layer="classes")
    assert set(table.class_name) == {"roof", "lawn", "pool"}
    assert table.crs is None
    assert table.area_m2.sum() == pytest.approx(float((pred != 255).sum()))  # pixels
    qml = (d / "pred.qml").read_text()
    for name, colour in zip(("roof", "lawn", "pool"), COLOURS.tolist()):
        assert f'label="{name}"' in qml and ",".join(map(str, colour)) + ",255" in qml
    assert "impervious" not in qml


def test_score_with_the_scheme_on_png_labels(trained, capsys):
    """score on ungeoreferenced rasters, RGB-coded labels read with --classes."""
    d, root = trained
    report = d / "score.json"
    code, _, err = _cli(["score", d / "pred.tif", root / "tileB" / "masks" / "part_4.png",
                         "--classes", d / "garden.json", "--label-format", "rgb",
                         "--json", report, "--no-progress"], capsys)
    assert code == 0, err
    result = json.loads(report.read_text())
    assert [c["name"] for c in result["classes"]] == ["roof", "lawn", "pool"]
    assert result["oa"] > 0.9
    # A scheme that names other classes than the prediction carries is refused.
    code, _, err = _cli(["score", d / "pred.tif", root / "tileB" / "masks" / "part_4.png",
                         "--classes", "isprs", "--label-format", "rgb", "--no-progress"], capsys)
    assert code == 1 and "differ from --classes isprs" in err and "pred.tif" in err


def test_score_index_labels_with_scheme_values(tmp_path):
    """LoveDA-style labels (values 1-7, 0 = no data) scored against class ids 0-6."""
    from rsseg.score.rasters import score_rasters

    scheme = load_scheme("loveda")
    rng = np.random.default_rng(11)
    ids = rng.integers(0, 7, (40, 50)).astype(np.uint8)
    label = ids + 1
    label[:5] = 0  # no data: ignored
    pred = ids.copy()
    pred[10, :10] = (pred[10, :10] + 1) % 7  # 10 wrong pixels
    profile = dict(driver="GTiff", width=50, height=40, count=1, dtype="uint8")
    with rasterio.open(tmp_path / "pred.tif", "w", nodata=255, **profile) as ds:
        ds.write(pred, 1)
        ds.update_tags(CLASS_NAMES=",".join(scheme.names))
    with rasterio.open(tmp_path / "label.tif", "w", **profile) as ds:
        ds.write(label, 1)
    report = score_rasters(tmp_path / "pred.tif", tmp_path / "label.tif", classes="loveda")
    scored = 35 * 50
    assert report["counts"]["scored"] == scored
    assert report["oa"] == pytest.approx((scored - 10) / scored)
    with pytest.raises(InputError, match="most frequent: 7"):  # without the scheme: 7 is unknown
        score_rasters(tmp_path / "pred.tif", tmp_path / "label.tif")
