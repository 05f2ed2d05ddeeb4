"""The built plugin zip, installed into a plugin folder, runs headless under qgis_process."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import PLUGIN_NAME, REPO
from qgis_helpers import grid, predict_params, read_band

# Debian's /usr/bin/qgis_process is a shell wrapper adding --noversioncheck, which the
# binary rejects; call the binary itself.
QGIS_PROCESS_CANDIDATES = ("/usr/bin/qgis_process.bin", "/usr/lib/qgis/qgis_process.bin",
                           "/usr/local/bin/qgis_process.bin")


def qgis_process_binary():
    for candidate in QGIS_PROCESS_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("qgis_process.bin") or shutil.which("qgis_process")


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "rsseg_qgis_plugin.zip"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "build_qgis_plugin.py"),
                           "-o", str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return out


def test_zip_has_one_top_folder_with_the_plugin(built_zip):
    names = zipfile.ZipFile(built_zip).namelist()
    assert {n.split("/")[0] for n in names} == {PLUGIN_NAME}
    for required in ("metadata.txt", "__init__.py", "icon.png", "provider.py",
                     "algorithms/predict.py"):
        assert f"{PLUGIN_NAME}/{required}" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


@pytest.fixture(scope="module")
def qgis_process_env(built_zip, tmp_path_factory, rsseg_exe):
    """HOME (QGIS profile) and plugin folder of their own; the zip extracted as a user's
    'Install from ZIP' would; the plugin enabled with `qgis_process plugins enable`."""
    exe = qgis_process_binary()
    if exe is None:
        pytest.skip("qgis_process is not installed")
    root = tmp_path_factory.mktemp("qgis_process")
    plugins, home = root / "plugins", root / "home"
    plugins.mkdir()
    home.mkdir()
    zipfile.ZipFile(built_zip).extractall(plugins)
    env = dict(os.environ, HOME=str(home), QGIS_PLUGINPATH=str(plugins),
               RSSEG_EXECUTABLE=rsseg_exe, QT_QPA_PLATFORM="offscreen",
               XDG_RUNTIME_DIR=str(root))
    env.pop("PYTHONPATH", None)
    enable = subprocess.run([exe, "plugins", "enable", PLUGIN_NAME], env=env,
                            capture_output=True, text=True, timeout=120)
    assert enable.returncode == 0, enable.stdout + enable.stderr
    return exe, env


def test_qgis_process_lists_the_algorithms(qgis_process_env):
    exe, env = qgis_process_env
    proc = subprocess.run([exe, "list"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for alg in ("rsseg:predict", "rsseg:vectorize", "rsseg:score"):
        assert alg in proc.stdout


def test_qgis_process_run_predict_matches_the_cli(qgis_process_env, scene, cli_prediction,
                                                  tmp_path):
    exe, env = qgis_process_env
    out = tmp_path / "classes.tif"
    params = [f"{k}={v}" for k, v in predict_params(scene, out).items()]
    proc = subprocess.run([exe, "--json", "run", "rsseg:predict", "--", *params], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["results"]["OUTPUT"] == str(out)
    assert any("rsseg predict: done" in line for line in report["log"]["info"])
    np.testing.assert_array_equal(read_band(out), read_band(cli_prediction))
    assert grid(out) == grid(cli_prediction)


def test_qgis_process_reports_rsseg_errors(qgis_process_env, scene, tmp_path):
    exe, env = qgis_process_env
    bogus = tmp_path / "not_a_checkpoint.pt"
    bogus.write_text("this is not a checkpoint")
    out = tmp_path / "never.tif"
    params = [f"{k}={v}" for k, v in predict_params(scene, out, WEIGHTS=bogus).items()]
    proc = subprocess.run([exe, "run", "rsseg:predict", "--", *params], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    errors = [line for line in (proc.stdout + proc.stderr).splitlines()
              if "rsseg: error:" in line]
    assert errors and "not_a_checkpoint.pt" in errors[-1], proc.stdout + proc.stderr
    assert not out.exists()
