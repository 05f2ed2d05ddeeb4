"""Classified regions to raw band files: band gathering, class counts and the
classifying thread (issue 14: the pipeline's own cost)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rsseg.classes import NODATA
from rsseg.predict.sinks import RawBandWriter, ThreadedSink, class_counts
from test_pipeline import OneHot, predict, unit_norm
from rsseg.predict.predictor import TorchPredictor


def test_blocks_gathered_into_bands_give_the_same_file_as_direct_writes(tmp_path):
    rng = np.random.default_rng(0)
    h, w = 50, 37
    image = rng.integers(0, 256, (h, w)).astype(np.uint8)
    bands_seen = []
    writer = RawBandWriter(tmp_path / "a.raw", w, h,
                           on_band=lambda r, rows: bands_seen.append((r, rows.copy())))
    # band 0-20 in three blocks, out of column order; band 20-30 full width;
    # band 30-50 in two blocks, the second never arrives before close (a partial band)
    for c0, c1 in [(10, 25), (0, 10), (25, 37)]:
        writer.write(0, c0, image[0:20, c0:c1])
    writer.write(20, 0, image[20:30])
    writer.write(30, 0, image[30:50, 0:20])
    writer.close()
    got = np.fromfile(tmp_path / "a.raw", np.uint8).reshape(h, w)
    np.testing.assert_array_equal(got[:30], image[:30])
    np.testing.assert_array_equal(got[30:, :20], image[30:, :20])
    assert (got[30:, 20:] == 0).all()  # never written: the sparse file's zeros
    # on_band saw the complete bands only, as written
    assert [r for r, _ in bands_seen] == [0, 20]
    np.testing.assert_array_equal(bands_seen[0][1], image[0:20])
    np.testing.assert_array_equal(bands_seen[1][1], image[20:30])


@pytest.mark.parametrize("k", [1, 6, 16, 17, 200])
def test_class_counts_equal_bincount(k):
    rng = np.random.default_rng(k)
    cls = rng.integers(0, k, (61, 83)).astype(np.uint8)
    cls[rng.random(cls.shape) < 0.1] = NODATA
    np.testing.assert_array_equal(class_counts(cls, k), np.bincount(cls.ravel(), minlength=256))


def test_threaded_sink_raises_the_sinks_error_in_the_callers_thread():
    stop = threading.Event()
    calls = []

    def sink(r, c, scores, valid):
        calls.append(r)
        if r == 2:
            raise OSError("disk full")

    threaded = ThreadedSink(sink, stop)
    for r in range(2):
        threaded(r, 0, None, None).wait()
    assert calls == [0, 1]
    with pytest.raises(OSError, match="disk full"):  # waiting on the failed region
        threaded(2, 0, None, None).wait()
    with pytest.raises(OSError, match="disk full"):
        threaded(3, 0, None, None)
    with pytest.raises(OSError, match="disk full"):
        threaded.close()
    assert calls == [0, 1, 2]  # nothing ran after the failure


def test_threaded_sink_error_fails_the_prediction_and_writes_nothing(make_geotiff, tmp_path):
    ids = np.random.default_rng(1).integers(0, 6, (300, 280)).astype(np.uint16)
    scene = make_geotiff(ids)
    seen = []

    def on_scores(r, c, scores, valid):  # runs on the classifying thread
        seen.append(threading.current_thread().name)
        if len(seen) == 3:
            raise RuntimeError("diagnostic hook failed")

    out = tmp_path / "out.tif"
    with pytest.raises(RuntimeError, match="diagnostic hook failed"):
        predict(scene, out, TorchPredictor(OneHot(), "cpu"), unit_norm(1), tile=64,
                overlap=16, on_scores=on_scores)
    assert seen[0] == "rsseg-classify"
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temporaries
