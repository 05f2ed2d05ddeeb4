"""Colour-coded labels (RGB and palette images) -> class ids, checked pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from rsseg.classes import ClassScheme
from rsseg.errors import InputError
from rsseg.io.colour_labels import read_colour_labels

COLOURS = ((60, 16, 152), (132, 41, 246), (110, 193, 228))
OTHERS = ((155, 155, 155), (0, 0, 0), (61, 16, 152))  # ignore, black, antialiasing
SCHEME = ClassScheme(("building", "land", "road"), COLOURS, ignore_colours=OTHERS[:2])


def _reference(rgb: np.ndarray) -> np.ndarray:
    """Plain loop: the class whose colour a pixel has, else 255."""
    out = np.full(rgb.shape[1:], 255, np.uint8)
    for r in range(rgb.shape[1]):
        for c in range(rgb.shape[2]):
            pixel = tuple(int(v) for v in rgb[:, r, c])
            if pixel in COLOURS:
                out[r, c] = COLOURS.index(pixel)
    return out


def _random_colours(rng, shape) -> tuple[np.ndarray, np.ndarray]:
    palette = np.array(COLOURS + OTHERS, np.uint8)
    index = rng.integers(0, len(palette), shape).astype(np.uint8)
    return index, np.moveaxis(palette[index], -1, 0)


def _write_png(path, data, colormap=None):
    with rasterio.open(path, "w", driver="PNG", width=data.shape[-1], height=data.shape[-2],
                       count=data.shape[0], dtype="uint8") as dst:
        dst.write(data)
        if colormap:
            dst.write_colormap(1, colormap)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_rgb_png_decodes_like_reference(tmp_path):
    _, rgb = _random_colours(np.random.default_rng(0), (23, 31))
    _write_png(tmp_path / "m.png", rgb)
    ids = read_colour_labels(tmp_path / "m.png", SCHEME)
    assert np.array_equal(ids, _reference(rgb))
    assert set(np.unique(ids)) == {0, 1, 2, 255}


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_palette_png_is_expanded_before_matching(tmp_path):
    index, rgb = _random_colours(np.random.default_rng(1), (17, 19))
    cmap = {i: (*c, 255) for i, c in enumerate(COLOURS + OTHERS)}
    _write_png(tmp_path / "p.png", index[None], cmap)
    with rasterio.open(tmp_path / "p.png") as src:
        assert src.count == 1  # really a palette image
    assert np.array_equal(read_colour_labels(tmp_path / "p.png", SCHEME), _reference(rgb))


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_single_band_without_palette_is_refused(tmp_path):
    _write_png(tmp_path / "g.png", np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(InputError, match="needs 3 bands"):
        read_colour_labels(tmp_path / "g.png", SCHEME)
