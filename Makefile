# Two entry points for a fresh machine: `make demo` and `make test`.
# Both build .venv with the CPU wheel of torch pinned by constraints.txt.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-qgis test-deps-qgis mutation docs-check check-wheel qgis-plugin bench \
        clean

# What the QGIS plugin tests need (Debian/Ubuntu): QGIS, PyQGIS, GDAL tools, pytest for
# the system Python. The same list as .ci/run installs.
QGIS_TEST_PACKAGES := qgis python3-qgis qgis-providers python3-gdal python3-pytest gdal-bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rsseg demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q tests
	sh tests/qgis/run.sh

# The QGIS plugin's tests alone (system Python with PyQGIS; see tests/qgis/run.sh).
test-qgis: $(STAMP)
	sh tests/qgis/run.sh

# Developer machine: install what the plugin tests need (asks for sudo unless root).
test-deps-qgis:
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y $(QGIS_TEST_PACKAGES)

# Slow, not part of `make test`: flip named library lines one at a time in a temporary
# copy and show the relevant tests fail for each (docs/testing.md).
mutation: $(STAMP)
	sh scripts/mutation_smoke.sh

# Every fenced shell command of README.md and docs/, run on generated data (scripts/docs_check.py).
docs-check: $(STAMP)
	$(PY) scripts/docs_check.py

# The wheel installed (not editable) in a fresh venv, every subcommand run from outside.
check-wheel:
	bash scripts/check_wheel.sh

qgis-plugin:
	$(PYTHON) scripts/build_qgis_plugin.py

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) demo_out build dist *.egg-info
