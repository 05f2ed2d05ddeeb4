"""Shared fixtures: small real GeoTIFFs written with rasterio, throwaway registered models.

Keep fixtures generic; other test modules may append theirs below.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

DEFAULT_CRS = "EPSG:32632"

# The suite checks rsseg's default behaviour, whatever the developer's shell exports:
# RSSEG_DEBUG=1 would add tracebacks to every one-line error, CPL_LOG would silence the
# GDAL warnings that tests assert absent. Tests that want them set them explicitly.
SCRUBBED_ENV = ("RSSEG_DEBUG", "CPL_LOG", "CPL_DEBUG")
for _name in SCRUBBED_ENV:
    os.environ.pop(_name, None)

# ``rsseg`` as a child process, exactly as the console script runs it.
RSSEG = [sys.executable, "-c", "from rsseg.cli import main; main()"]
CAUGHT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def rsseg_env(**extra: str) -> dict[str, str]:
    """The environment of an ``rsseg`` child: one OpenMP thread, unbuffered progress lines."""
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)


def _default_signals() -> None:
    """preexec_fn: SIGINT/SIGTERM at their defaults in the child, as in a foreground shell.

    A suite launched with SIGINT ignored (``nohup make test &``, cron, CI runners) would
    otherwise hand that down: Python then installs no KeyboardInterrupt handler and a
    child sent SIGINT keeps running, which is POSIX-correct but not what a test of Ctrl-C
    means to start.
    """
    for sig in CAUGHT_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)


def _ignore_sigint() -> None:
    _default_signals()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_rsseg(argv, *, cwd=None, sigint: str = "default", new_session: bool = False,
                env: dict | None = None, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                command=RSSEG) -> subprocess.Popen:
    """Start ``rsseg ARGV`` with known signal dispositions (``sigint``: default|ignored).

    ``new_session``: its own process group, so a test can signal the group as a terminal
    signals its foreground job. ``command``: what runs ``rsseg`` (a script that registers
    a test network first, say).
    """
    preexec = {"default": _default_signals, "ignored": _ignore_sigint}[sigint]
    return subprocess.Popen(list(command) + [str(a) for a in argv], cwd=cwd, env=env or rsseg_env(),
                            text=True, stdout=stdout, stderr=stderr, preexec_fn=preexec,
                            start_new_session=new_session)


def read_until_progress(proc: subprocess.Popen, task: str = "") -> bool:
    """Read a ``--progress-json`` child's stdout up to its first progress event of a task
    whose name starts with ``task``; False if the child ended first."""
    import json

    for line in proc.stdout:
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "progress" and event.get("task", "").startswith(task):
                return True
    return False


@pytest.fixture(autouse=True)
def _isolated_process_state():
    """Undo what an in-process ``rsseg.cli.main`` (or any test) changes process-wide.

    ``main`` sets CPL_LOG (silencing GDAL), replaces ``warnings.showwarning`` and installs a
    SIGTERM handler; left behind, they would make later tests unable to fail.
    """
    env = dict(os.environ)
    showwarning = warnings.showwarning
    handlers = {sig: signal.getsignal(sig) for sig in CAUGHT_SIGNALS}
    yield
    if os.environ != env:
        os.environ.clear()
        os.environ.update(env)
    warnings.showwarning = showwarning
    for sig, handler in handlers.items():
        if handler is not None and signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)


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


# ---- the reliability matrix's evidence line (tests/cli/test_bad_inputs.py, test_process_stops.py)
# Rows record their outcome as a user property; the line is built from the reports, so it
# does not depend on test order and works under pytest-xdist (reports travel to the main
# process with their properties).
RELIABILITY_PROPERTY = "rsseg_reliability_row"
PLACES_PROPERTY = "rsseg_reliability_places"


def in_ci() -> bool:
    return os.environ.get("CI", "") in ("1", "true", "TRUE", "True", "yes")


def require_tool(name: str) -> str:
    """The path of GDAL's command-line tool ``name``; its absence is a failure, never a
    silent pass (Debian: apt install gdal-bin, or `make test-deps-qgis`)."""
    import shutil

    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: the tests compare with GDAL's own tools "
                    "(Debian: apt install gdal-bin)")
    return path


def record_reliability(record_property, case_id: str, **result) -> None:
    """One row's outcome (error, clear, partial[, line]) for the summary line below."""
    import json

    record_property(RELIABILITY_PROPERTY, json.dumps({"id": case_id, **result}))


_RELIABILITY_ROWS: dict[str, dict] = {}
_RELIABILITY_PLACES: dict[str, str] = {}


def pytest_runtest_logreport(report):
    import json

    for name, value in getattr(report, "user_properties", ()):
        if name == RELIABILITY_PROPERTY:
            row = json.loads(value)
            _RELIABILITY_ROWS[row.pop("id")] = row
        elif name == PLACES_PROPERTY:
            _RELIABILITY_PLACES.update(json.loads(value))


def reliability_summary() -> str | None:
    """"N cases, N clear errors, 0 partial outputs; ..." over the rows that ran."""
    if not _RELIABILITY_ROWS:
        return None
    errors = [r for r in _RELIABILITY_ROWS.values() if r["error"]]
    documented = [r for r in _RELIABILITY_ROWS.values() if not r["error"]]
    line = (f"{len(errors)} cases, {sum(r['clear'] for r in errors)} clear errors, "
            f"{sum(r['partial'] for r in errors)} partial outputs; "
            f"{sum(r['clear'] for r in documented)}/{len(documented)} documented successes "
            f"as documented")
    if _RELIABILITY_PLACES:
        line += (f" (read-only dir: {_RELIABILITY_PLACES['read_only']}; "
                 f"disk full: {_RELIABILITY_PLACES['full']})")
    if os.environ.get("RSSEG_MATRIX_TABLE") == "1":  # every row's stderr, for review
        rows = [f"{k}: {v.get('line', '(documented success)')}"
                for k, v in sorted(_RELIABILITY_ROWS.items())]
        line = "\n".join(rows + [line])
    return line


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    line = reliability_summary()
    if line:
        terminalreporter.section("reliability matrix")
        terminalreporter.write_line(line)
