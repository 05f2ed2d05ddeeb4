"""Window grids cover every pixel; blend weights sum to 1; the streaming blend is exact."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rsseg.tiling import BLEND_MODES, BlendWeights, WindowGrid, axis_starts, ramp

from rsseg.predict.blend import StreamingBlender, row_groups, window_order


@st.composite
def grids(draw, max_side=200):
    tile = draw(st.integers(1, 64))
    overlap = draw(st.integers(0, tile - 1))
    height = draw(st.integers(1, max_side))
    width = draw(st.integers(1, max_side))
    return WindowGrid(height, width, tile, overlap)


@settings(max_examples=60, deadline=None)
@given(grids())
def test_windows_cover_every_pixel_and_stay_inside(grid):
    covered = np.zeros((grid.height, grid.width), np.int32)
    for w in grid:
        assert w.row_off >= 0 and w.col_off >= 0
        assert w.row_off + w.height <= grid.height and w.col_off + w.width <= grid.width
        assert (w.height, w.width) == (min(grid.tile, grid.height), min(grid.tile, grid.width))
        # padding only where the scene ends, and only when it is smaller than a tile
        assert w.height + w.pad_bottom == grid.tile and w.width + w.pad_right == grid.tile
        assert w.pad_bottom == max(0, grid.tile - grid.height)
        covered[w.slices] += 1
    assert covered.min() >= 1


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 500), st.integers(1, 64), st.data())
def test_axis_starts_step_by_stride_and_end_at_the_edge(length, tile, data):
    overlap = data.draw(st.integers(0, tile - 1))
    starts = axis_starts(length, tile, overlap)
    assert starts[0] == 0
    assert starts[-1] + min(tile, length) == length  # last window shifted inward
    steps = np.diff(starts)
    assert np.all(steps[:-1] == tile - overlap) if len(steps) > 1 else True
    assert np.all(steps >= 1) and np.all(steps <= tile - overlap)


@settings(max_examples=60, deadline=None)
@given(grids(max_side=150), st.sampled_from(BLEND_MODES))
def test_weights_sum_to_one_at_every_pixel(grid, mode):
    weights = BlendWeights(grid, mode)
    total = np.zeros((grid.height, grid.width), np.float64)
    for w in grid:
        ww = weights.window(w.row, w.col)
        assert ww.shape == (w.height, w.width) and ww.min() >= 0
        total[w.slices] += ww
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_one_pixel_scene_and_tile_larger_than_scene():
    grid = WindowGrid(1, 1, 512, 128)
    (w,) = list(grid)
    assert (w.row_off, w.col_off, w.height, w.width, w.pad_bottom, w.pad_right) == (0, 0, 1, 1, 511, 511)
    assert BlendWeights(grid, "cosine").window(0, 0).tolist() == [[1.0]]


def test_last_window_is_shifted_inward():
    assert axis_starts(1000, 512, 128) == [0, 384, 488]
    assert axis_starts(896, 512, 128) == [0, 384]
    assert axis_starts(512, 512, 128) == [0]


def test_ramps_rise_and_modes_differ():
    for mode in ("linear", "cosine", "spline"):
        r = ramp(8, mode)
        assert np.all(np.diff(r) > 0) and 0 < r[0] < 0.5 < r[-1] < 1
        np.testing.assert_allclose(r + r[::-1], 1.0, atol=1e-12)  # partitions unity
    assert ramp(6, "crop").tolist() == [0, 0, 0, 1, 1, 1]
    assert not np.allclose(ramp(8, "linear"), ramp(8, "cosine"))


def test_crop_takes_each_pixel_from_the_nearest_window_centre():
    grid = WindowGrid(1, 20, 8, 4)  # column starts 0, 4, 8, 12
    weights = BlendWeights(grid, "crop")
    assert weights.cols[0].tolist() == [1] * 6 + [0] * 2
    assert weights.cols[1].tolist() == [0] * 2 + [1] * 4 + [0] * 2


def test_scene_border_sides_are_not_tapered():
    grid = WindowGrid(100, 100, 40, 10)
    weights = BlendWeights(grid, "cosine")
    assert weights.rows[0][0] == 1.0 and weights.cols[-1][-1] == 1.0
    assert weights.rows[1][0] < 0.1  # interior side ramps up from near 0


def _dense_blend(grid, weights, scores_of):
    k = scores_of(grid.window(0, 0)).shape[0]
    out = np.zeros((k, grid.height, grid.width), np.float64)
    for w in grid:
        out[(slice(None),) + w.slices] += scores_of(w) * weights.window(w.row, w.col)
    return out


@settings(max_examples=40, deadline=None)
@given(grids(max_side=120), st.sampled_from(BLEND_MODES), st.integers(0, 2**31 - 1))
def test_streaming_blend_equals_dense_blend(grid, mode, seed):
    """Carries across columns and row groups reproduce the whole-scene weighted sum."""
    rng = np.random.default_rng(seed)
    noise = {(w.row, w.col): rng.random((2, w.height, w.width)).astype(np.float32) for w in grid}
    scores_of = lambda w: noise[(w.row, w.col)]  # noqa: E731 - each window its own scores
    weights = BlendWeights(grid, mode)
    expected = _dense_blend(grid, weights, scores_of)
    got = np.full_like(expected, np.nan)
    valid_seen = np.zeros((grid.height, grid.width), np.int32)

    def emit(r, c, scores, valid):
        h, w = valid.shape
        assert np.isnan(got[:, r:r + h, c:c + w]).all(), "a region was emitted twice"
        got[:, r:r + h, c:c + w] = scores
        valid_seen[r:r + h, c:c + w] += valid

    blender = StreamingBlender(grid, weights, 2, emit)
    for w in window_order(grid):
        blender.add(w, scores_of(w), np.ones((w.height, w.width), bool))
    assert blender.done
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert (valid_seen == 1).all()


def test_last_row_joins_the_row_before_it():
    grid = WindowGrid(1000, 300, 512, 128)  # row starts 0, 384, 488
    assert row_groups(grid) == [(0, 0), (1, 2)]
    assert row_groups(WindowGrid(896, 300, 512, 128)) == [(0, 0), (1, 1)]


def test_blender_refuses_windows_out_of_order():
    grid = WindowGrid(100, 100, 40, 10)
    blender = StreamingBlender(grid, BlendWeights(grid, "mean"), 1, lambda *a: None)
    with pytest.raises(ValueError, match="out of order"):
        blender.add(grid.window(0, 1), None, np.ones((40, 40), bool))
