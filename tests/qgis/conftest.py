"""Real headless QGIS for the plugin tests (run with /usr/bin/python3, see `make test`).

Where PyQGIS is missing these tests are skipped with the reason shown; with
``CI=true`` any skipped test fails the run, so CI cannot pass without QGIS.

QGIS runs offscreen with a throwaway settings profile; the plugin folder is made
importable under its installed name ``rsseg_qgis`` through a temporary plugin path.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN_SOURCE = REPO / "qgis_plugin"
PLUGIN_NAME = "rsseg_qgis"
CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# QGIS and Qt write settings, profiles and caches under the user's home (XDG dirs);
# point them at a folder of this session, removed at the end.
# tests/qgis/run.sh passes a folder it removes after Python has exited (Qt still
# writes there while the interpreter shuts down).
APP_NAME = f"rsseg-qgis-tests-{os.getpid()}"
SESSION_HOME = Path(os.environ.get("RSSEG_QGIS_TEST_HOME") or
                    tempfile.mkdtemp(prefix=APP_NAME + "-"))
for _var, _sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"),
                   ("XDG_CACHE_HOME", "cache"), ("XDG_RUNTIME_DIR", "runtime")):
    os.environ[_var] = str(SESSION_HOME / _sub)
    (SESSION_HOME / _sub).mkdir(mode=0o700, parents=True, exist_ok=True)

try:
    import qgis.core  # noqa: F401
    QGIS_MISSING = None
    # QGIS's bundled Python plugins (Processing) live outside site-packages.
    for _prefix in (os.environ.get("QGIS_PREFIX_PATH", ""), "/usr", "/usr/local"):
        _plugins = os.path.join(_prefix or "/", "share", "qgis", "python", "plugins")
        if os.path.isdir(os.path.join(_plugins, "processing")):
            sys.path.append(_plugins)
            break
except ImportError as exc:
    QGIS_MISSING = (f"PyQGIS is not importable by {sys.executable} ({exc}); install QGIS "
                    "(Debian: apt install qgis python3-qgis qgis-providers) to run the plugin tests")

# Every module but the availability check needs PyQGIS at import time.
collect_ignore = [p.name for p in Path(__file__).parent.glob("test_*.py")
                  if p.name != "test_available.py"] if QGIS_MISSING else []

_SKIPPED = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if CI and _SKIPPED:
        session.exitstatus = 1


def pytest_unconfigure(config):
    shutil.rmtree(SESSION_HOME, ignore_errors=True)
    # Qt names its temporary files and folders after the application; QGIS would
    # remove them in destructors that do not run (no exitQgis, see qgis_app).
    for leftover in Path(tempfile.gettempdir()).glob(APP_NAME + "[.-]*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter):
    if CI and _SKIPPED:
        terminalreporter.write_line(
            f"FAILED: CI=true and {len(_SKIPPED)} QGIS plugin test(s) were skipped: "
            + ", ".join(_SKIPPED), red=True)


def rsseg_executable():
    """<repo>/.venv/bin/rsseg unless RSSEG_EXECUTABLE says otherwise."""
    return os.environ.get("RSSEG_EXECUTABLE") or str(REPO / ".venv" / "bin" / "rsseg")


@pytest.fixture(scope="session")
def rsseg_exe():
    exe = rsseg_executable()
    if not os.access(exe, os.X_OK):
        pytest.fail(f"no rsseg executable at {exe}: run `make venv` (or set RSSEG_EXECUTABLE)")
    return exe


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory):
    """A plugin search path holding the repository's plugin as ``rsseg_qgis``."""
    root = tmp_path_factory.mktemp("plugins")
    (root / PLUGIN_NAME).symlink_to(PLUGIN_SOURCE, target_is_directory=True)
    return root


@pytest.fixture(scope="session")
def qgis_app(tmp_path_factory, plugin_dir, rsseg_exe):
    """QgsApplication with Processing initialised and the rsseg provider registered."""
    if QGIS_MISSING:
        pytest.skip(QGIS_MISSING)
    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QCoreApplication

    profile = tmp_path_factory.mktemp("qgis-profile")
    QCoreApplication.setOrganizationName(APP_NAME)
    QCoreApplication.setApplicationName(APP_NAME)
    app = QgsApplication([], True, str(profile))
    QgsApplication.setPrefixPath("/usr", True)
    app.initQgis()
    sys.path.insert(0, str(plugin_dir))
    os.environ["RSSEG_EXECUTABLE"] = rsseg_exe

    from processing.core.Processing import Processing
    Processing.initialize()
    ensure_provider()
    yield app
    # No exitQgis(): PyQGIS tends to crash at interpreter exit when it is called
    # from a fixture finaliser; the process ends right after the session anyway.


def ensure_provider():
    """Register the rsseg provider unless a test (plugin load/unload) left it out."""
    from qgis.core import QgsApplication

    if QgsApplication.processingRegistry().providerById("rsseg") is None:
        from rsseg_qgis.provider import RssegProvider

        provider = RssegProvider()
        assert QgsApplication.processingRegistry().addProvider(provider)
        _PROVIDERS.append(provider)
    return QgsApplication.processingRegistry().providerById("rsseg")


_PROVIDERS = []


@pytest.fixture(scope="module")
def provider(qgis_app):
    return ensure_provider()


@pytest.fixture(scope="session")
def scene(tmp_path_factory):
    """A 300 x 200 RGB GeoTIFF in EPSG:32632."""
    from qgis_helpers import make_scene

    return make_scene(tmp_path_factory.mktemp("scene") / "ortho.tif")


@pytest.fixture(scope="session")
def cli_prediction(tmp_path_factory, scene, rsseg_exe):
    """What `rsseg predict` writes for the settings the plugin tests use."""
    from qgis_helpers import MODEL, OVERLAP, TILE, run_cli

    out = tmp_path_factory.mktemp("cli") / "classes.tif"
    run_cli(rsseg_exe, "predict", scene, "--model", MODEL, "--weights", "random",
            "--tile", TILE, "--overlap", OVERLAP, "-o", out)
    return str(out)
