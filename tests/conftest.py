"""Shared fixtures: small real GeoTIFFs written with rasterio, throwaway registered models.

Keep fixtures generic; other test modules may append theirs below.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DEFAULT_CRS = "EPSG:32632"


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread per test: bit-exact CPU results and fair use of a 2-core machine.

    Tests that vary the thread count set it themselves; it is restored afterwards.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
PIXEL = 0.5


def write_geotiff(path, data: np.ndarray, *, crs=DEFAULT_CRS, transform=None, nodata=None,
                  tiled: bool = False, descriptions=None) -> Path:
    """Write ``data`` ((bands, h, w) or (h, w)) as a GeoTIFF; returns the path."""
    import rasterio
    from affine import Affine

    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    count, height, width = data.shape
    if transform is None:
        transform = Affine(PIXEL, 0.0, 500000.0, 0.0, -PIXEL, 5300000.0)
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=data.dtype.name,
                   crs=crs, transform=transform, nodata=nodata)
    if tiled:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        for k, d in enumerate(descriptions or []):
            ds.set_band_description(k + 1, d)
    return Path(path)


@pytest.fixture
def make_geotiff(tmp_path):
    """Factory: ``make_geotiff(data, name="scene.tif", **kw)`` -> path of a real GeoTIFF."""

    def make(data, name: str = "scene.tif", **kw) -> Path:
        return write_geotiff(tmp_path / name, data, **kw)

    return make


@pytest.fixture
def register_test_model():
    """Factory: ``register_test_model(name, builder)`` registers a network for one test."""
    from rsseg.models import register_model, unregister_model

    names = []

    def register(name: str, builder, **meta):
        register_model(name, **meta)(builder)
        names.append(name)
        return name

    yield register
    for name in names:
        unregister_model(name)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The bad-input matrix's evidence line (tests/cli/test_bad_inputs.py), shown even without -s."""
    line = getattr(config, "rsseg_reliability_summary", None)
    if line:
        terminalreporter.section("reliability matrix")
        terminalreporter.write_line(line)
