"""The class raster does not depend on how the work is cut up (issue 9).

With the same tile, overlap and blend, ``predict_scene`` on CPU must write the
same class raster, pixel for pixel and byte for byte, whatever the batch size,
the number of Dask reader threads, the number of torch threads, and the way
the input file is chunked on disk (strips of one or many rows, small or large
tiles, compressed or not). ``rsseg batch`` must give the same pixels with one
or two Dask worker processes.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from rsseg import PredictSettings, predict_scene

NET = "baff_skipnet"
SHAPE = (4, 200, 260)
NODATA = -9999.0
LAYOUTS = {  # how the same pixels are stored: chunking of the input file
    "strips-1-row": dict(tiled=False, blockysize=1),
    "strips-16-rows": dict(tiled=False, blockysize=16, compress="deflate"),
    "tiles-32": dict(tiled=True, blockxsize=32, blockysize=32),
    "tiles-128-lzw": dict(tiled=True, blockxsize=128, blockysize=128, compress="lzw"),
}
BASE = dict(layout="strips-16-rows", batch_size=1, readers=2, threads=1)
VARIANTS = ([("batch_size", b) for b in (2, 3, 8)] + [("readers", r) for r in (1, 4)]
            + [("threads", 2)] + [("layout", name) for name in LAYOUTS if name != BASE["layout"]])


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """A synthetic town (IR, R, G, DSM; a nodata corner) stored with every layout."""
    from rsseg.synth.scene import write_synthetic_scene

    d = tmp_path_factory.mktemp("layouts")
    write_synthetic_scene(d / "synth.tif", SHAPE[2], SHAPE[1], seed=2)
    with rasterio.open(d / "synth.tif") as src:
        data, crs, transform = src.read(), src.crs, src.transform
    data[:, :20, :30] = NODATA
    paths = {}
    for name, layout in LAYOUTS.items():
        paths[name] = d / f"{name}.tif"
        with rasterio.open(paths[name], "w", driver="GTiff", width=SHAPE[2], height=SHAPE[1],
                           count=data.shape[0], dtype=data.dtype, crs=crs, transform=transform,
                           nodata=NODATA, **layout) as ds:
            ds.write(data)
    return paths


@pytest.fixture(scope="module")
def network():
    """The bundled weights (a trained net: several classes, many class borders), else random."""
    from rsseg.predict.load import load_predictor
    from rsseg.weights.bundled import bundled_weights

    weights = "random" if bundled_weights(NET) is None else None
    return load_predictor(NET, weights, channels=4, device="cpu", seed=4)


def _predict(scenes, network, out, blend, layout, batch_size, readers, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        settings = PredictSettings(tile=64, overlap=16, blend=blend, batch_size=batch_size,
                                   readers=readers)
        predict_scene(scenes[layout], out, network, settings)
    finally:
        torch.set_num_threads(before)
    with rasterio.open(out) as ds:
        return ds.read(1), out.read_bytes()


@pytest.mark.parametrize("blend", ["cosine"])
def test_class_raster_independent_of_batching_threads_and_chunking(scenes, network, tmp_path,
                                                                   blend):
    ref_pixels, ref_bytes = _predict(scenes, network, tmp_path / "base.tif", blend, **BASE)
    assert (ref_pixels[:20, :30] == 255).all()
    assert len(np.unique(ref_pixels[20:])) >= 3, "too few classes to test class borders"
    differ = []
    for key, value in VARIANTS:
        settings = {**BASE, key: value}
        pixels, data = _predict(scenes, network, tmp_path / f"{key}-{value}.tif", blend,
                                **settings)
        if not np.array_equal(pixels, ref_pixels):
            differ.append(f"{key}={value}: {(pixels != ref_pixels).sum()} pixels")
        elif data != ref_bytes:
            differ.append(f"{key}={value}: same pixels, different file bytes")
    assert not differ, differ


@pytest.mark.slow
def test_batch_independent_of_worker_count(scenes, tmp_path):
    """``rsseg batch`` with 1 and 2 local Dask worker processes: the same class raster."""
    from rsseg.cli import run

    pixels = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        argv = ["batch", str(scenes["tiles-32"]), "-o", str(out), "--model", NET, "--weights",
                "random", "--tile", "64", "--overlap", "16", "--workers", str(workers),
                "--threads", "1", "--no-progress"]
        assert run(argv) == 0
        with rasterio.open(out / "tiles-32.tif") as ds:
            pixels.append(ds.read(1))
    np.testing.assert_array_equal(pixels[0], pixels[1])
