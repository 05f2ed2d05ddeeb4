#!/bin/sh
# Run the QGIS plugin tests under the system Python, where Debian's PyQGIS lives
# (PyQGIS crashes at exit under other Pythons), offscreen.
#
# No PyQGIS or no pytest for that Python: the tests do not run, and the last lines
# say how many and why (`make test-deps-qgis` installs what they need); under CI=true
# that (and any skipped test) fails the run.
# Extra arguments go to pytest, e.g. `sh tests/qgis/run.sh -k cancel`.
QGIS_PYTHON=${QGIS_PYTHON:-/usr/bin/python3}
cd "$(dirname "$0")/../.." || exit 1

in_ci() {
    case "${CI:-}" in 1|true|TRUE|True|yes) return 0 ;; esac
    return 1
}

# Counted from the sources: without pytest for that Python nothing can collect them.
plugin_tests() {
    cat tests/qgis/test_*.py | grep -c '^def test_'
}

skip_all() {
    echo "" >&2
    echo "NOT RUN: $(plugin_tests) QGIS plugin tests (tests/qgis): $1." >&2
    echo "         Install what they need with: make test-deps-qgis" >&2
    if in_ci; then
        echo "FAILED: CI=true and the QGIS plugin tests cannot run" >&2
        exit 1
    fi
    exit 0
}

[ -x "$QGIS_PYTHON" ] || skip_all "$QGIS_PYTHON not found"
"$QGIS_PYTHON" -c "import qgis.core" 2>/dev/null ||
    skip_all "$QGIS_PYTHON cannot import qgis.core (QGIS/PyQGIS not installed)"
"$QGIS_PYTHON" -c "import pytest" 2>/dev/null ||
    skip_all "$QGIS_PYTHON has no pytest"

export QT_QPA_PLATFORM=offscreen
# The tests check rsseg's default output (one-line errors, no GDAL chatter), whatever the
# developer's shell exports (tests/conftest.py does the same for the main suite).
unset RSSEG_DEBUG CPL_LOG CPL_DEBUG
# Settings, profiles and caches of the test QGIS go here, not to the user's home.
RSSEG_QGIS_TEST_HOME=$(mktemp -d "${TMPDIR:-/tmp}/rsseg-qgis-home.XXXXXX") || exit 1
export RSSEG_QGIS_TEST_HOME
trap 'rm -rf "$RSSEG_QGIS_TEST_HOME"' EXIT
# --confcutdir: never load tests/conftest.py (venv-only imports such as rasterio).
"$QGIS_PYTHON" -m pytest -q --confcutdir=tests/qgis -p no:cacheprovider tests/qgis "$@"
