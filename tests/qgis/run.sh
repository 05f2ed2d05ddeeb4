#!/bin/sh
# Run the QGIS plugin tests under the system Python, where Debian's PyQGIS lives
# (PyQGIS crashes at exit under other Pythons), offscreen.
#
# No PyQGIS or no pytest for that Python: the tests are SKIPPED with the reason
# printed, except under CI=true, where that (and any skipped test) fails the run.
# Extra arguments go to pytest, e.g. `sh tests/qgis/run.sh -k cancel`.
QGIS_PYTHON=${QGIS_PYTHON:-/usr/bin/python3}
cd "$(dirname "$0")/../.." || exit 1

in_ci() {
    case "${CI:-}" in 1|true|TRUE|True|yes) return 0 ;; esac
    return 1
}

skip_all() {
    echo "SKIPPED QGIS plugin tests: $1" >&2
    if in_ci; then
        echo "FAILED: CI=true and the QGIS plugin tests cannot run" >&2
        exit 1
    fi
    exit 0
}

[ -x "$QGIS_PYTHON" ] || skip_all "$QGIS_PYTHON not found (install QGIS: apt install qgis python3-qgis qgis-providers)"
"$QGIS_PYTHON" -c "import pytest" 2>/dev/null ||
    skip_all "$QGIS_PYTHON has no pytest (Debian: apt install python3-pytest)"

export QT_QPA_PLATFORM=offscreen
# Settings, profiles and caches of the test QGIS go here, not to the user's home.
RSSEG_QGIS_TEST_HOME=$(mktemp -d "${TMPDIR:-/tmp}/rsseg-qgis-home.XXXXXX") || exit 1
export RSSEG_QGIS_TEST_HOME
trap 'rm -rf "$RSSEG_QGIS_TEST_HOME"' EXIT
# --confcutdir: never load tests/conftest.py (venv-only imports such as rasterio).
"$QGIS_PYTHON" -m pytest -q --confcutdir=tests/qgis -p no:cacheprovider tests/qgis "$@"
