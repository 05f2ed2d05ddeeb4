"""Reports, as a test, whether PyQGIS is there: skipped with the reason when it is not
(a user's laptop), which fails the run under CI=true (see conftest.py)."""

import pytest

from conftest import QGIS_MISSING


def test_pyqgis_is_available():
    if QGIS_MISSING:
        pytest.skip(QGIS_MISSING)
    from qgis.core import Qgis

    major, minor = (int(p) for p in Qgis.QGIS_VERSION.split(".")[:2])
    assert (major, minor) >= (3, 22)
