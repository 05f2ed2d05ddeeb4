"""The plugin through QGIS's own machinery: metadata, loading, unloading, settings."""

import json
import os
import re
import sys
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsSettings
from qgis.PyQt.QtWidgets import QMainWindow

import qgis.utils
from conftest import PLUGIN_NAME, PLUGIN_SOURCE, ensure_provider


class MinimalIface:
    """Just what the plugin calls on QgisInterface (there is no QGIS main window here)."""

    def __init__(self):
        self.window = QMainWindow()
        self.menus = {}

    def mainWindow(self):  # noqa: N802
        return self.window

    def addPluginToMenu(self, menu, action):  # noqa: N802
        self.menus.setdefault(menu, []).append(action)

    def removePluginMenu(self, menu, action):  # noqa: N802
        self.menus[menu].remove(action)


@pytest.fixture
def fresh_registry(qgis_app):
    """No rsseg provider registered during the test; the usual one again afterwards."""
    registry = QgsApplication.processingRegistry()
    if registry.providerById("rsseg") is not None:
        registry.removeProvider("rsseg")
    yield registry
    ensure_provider()


def test_metadata_is_what_qgis_needs(qgis_app, plugin_dir, monkeypatch):
    monkeypatch.setattr(qgis.utils, "plugin_paths", [str(plugin_dir)])
    qgis.utils.updateAvailablePlugins()
    assert PLUGIN_NAME in qgis.utils.available_plugins
    assert qgis.utils.pluginMetadata(PLUGIN_NAME, "qgisMinimumVersion") == "3.22"
    assert qgis.utils.pluginMetadata(PLUGIN_NAME, "hasProcessingProvider") == "yes"
    icon = qgis.utils.pluginMetadata(PLUGIN_NAME, "icon")
    assert (PLUGIN_SOURCE / icon).is_file()


def test_plugin_loads_starts_and_unloads(fresh_registry, plugin_dir, monkeypatch):
    iface = MinimalIface()
    monkeypatch.setattr(qgis.utils, "iface", iface)
    monkeypatch.setattr(qgis.utils, "plugin_paths", [str(plugin_dir)])
    qgis.utils.updateAvailablePlugins()
    assert qgis.utils.loadPlugin(PLUGIN_NAME)
    assert qgis.utils.startPlugin(PLUGIN_NAME)
    try:
        assert PLUGIN_NAME in qgis.utils.active_plugins
        provider = fresh_registry.providerById("rsseg")
        assert provider is not None
        assert {a.id() for a in provider.algorithms()} == {
            "rsseg:predict", "rsseg:vectorize", "rsseg:score"}
        assert fresh_registry.algorithmById("rsseg:predict") is not None
        assert [a.text() for a in iface.menus["&rsseg"]] == ["rsseg settings…"]
    finally:
        assert qgis.utils.unloadPlugin(PLUGIN_NAME)
    assert PLUGIN_NAME not in qgis.utils.active_plugins
    assert fresh_registry.providerById("rsseg") is None
    assert fresh_registry.algorithmById("rsseg:predict") is None
    assert iface.menus["&rsseg"] == []


def test_plugin_never_imports_rsseg_or_torch(provider):
    pattern = re.compile(r"^\s*(import|from)\s+(rsseg|torch)\b", re.MULTILINE)
    offenders = [str(p) for p in PLUGIN_SOURCE.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
    assert not [m for m in sys.modules if m.split(".")[0] in ("rsseg", "torch")]


@pytest.fixture
def clean_settings(qgis_app, monkeypatch):
    from rsseg_qgis import settings

    monkeypatch.delenv(settings.ENV_VAR, raising=False)
    settings.set_configured_executable("")
    yield settings
    settings.set_configured_executable("")
    QgsSettings().remove(settings.MODELS_CACHE_KEY)


def fake_environment(root, rsseg_exe):
    """A folder laid out like a virtualenv whose bin/rsseg is the real one."""
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "rsseg").symlink_to(rsseg_exe)
    return root


def test_executable_setting_beats_environment_beats_path(clean_settings, tmp_path,
                                                         monkeypatch, rsseg_exe):
    settings = clean_settings
    from_setting = fake_environment(tmp_path / "env-setting", rsseg_exe)
    from_env = fake_environment(tmp_path / "env-var", rsseg_exe)
    on_path = fake_environment(tmp_path / "env-path", rsseg_exe)
    monkeypatch.setenv("PATH", str(on_path / "bin"))
    assert settings.resolve_executable() == str(on_path / "bin" / "rsseg")
    monkeypatch.setenv(settings.ENV_VAR, str(from_env / "bin" / "rsseg"))
    assert settings.resolve_executable() == str(from_env / "bin" / "rsseg")
    settings.set_configured_executable(str(from_setting))  # an environment folder
    assert settings.resolve_executable() == str(from_setting / "bin" / "rsseg")


def test_processing_options_entry_writes_the_plugin_setting(clean_settings, provider, tmp_path,
                                                            rsseg_exe):
    from processing.core.ProcessingConfig import ProcessingConfig

    entry = ProcessingConfig.settings["RSSEG_EXECUTABLE"]
    assert entry.group == provider.name() and entry.qname == clean_settings.SETTING_KEY
    env = fake_environment(tmp_path / "venv", rsseg_exe)
    ProcessingConfig.setSettingValue("RSSEG_EXECUTABLE", str(env))  # what the dialog does
    assert clean_settings.resolve_executable() == str(env / "bin" / "rsseg")


def test_no_executable_anywhere_is_explained(clean_settings, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(QgsProcessingException) as info:
        clean_settings.resolve_executable()
    assert "RSSEG_EXECUTABLE" in str(info.value) and "Processing" in str(info.value)
    clean_settings.set_configured_executable(str(tmp_path))  # a folder without rsseg
    with pytest.raises(QgsProcessingException, match="without an rsseg program"):
        clean_settings.resolve_executable()


def test_model_list_follows_rsseg_models_json(clean_settings, provider):
    # The layout `rsseg models --json` prints (a list of objects with a name).
    answer = json.dumps([{"name": "baff_skipnet", "params": 706168},
                         {"name": "my_net", "params": 1}])
    names = clean_settings.parse_models_json(answer)
    assert names == ["baff_skipnet", "my_net"]
    assert "my_net" not in clean_settings.available_models()
    QgsSettings().setValue(clean_settings.MODELS_CACHE_KEY, json.dumps(names))
    provider.refreshAlgorithms()
    options = provider.algorithm("predict").parameterDefinition("MODEL").options()
    assert options == names
    QgsSettings().remove(clean_settings.MODELS_CACHE_KEY)
    provider.refreshAlgorithms()
    assert provider.algorithm("predict").parameterDefinition("MODEL").options() == list(
        clean_settings.STATIC_MODELS)


def test_settings_dialog_builds_offscreen(clean_settings, tmp_path, rsseg_exe):
    from rsseg_qgis.settings_dialog import SettingsDialog

    dialog = SettingsDialog()
    dialog.path_edit.setText(rsseg_exe)
    dialog.check()  # runs `rsseg --version`
    assert "rsseg" in dialog.status.text() and "failed" not in dialog.status.text()
    dialog.accept()
    assert clean_settings.configured_executable() == rsseg_exe
    assert Path(clean_settings.resolve_executable()) == Path(rsseg_exe)
    assert os.access(clean_settings.resolve_executable(), os.X_OK)


def test_rsseg_notes_and_warnings_reach_the_feedback_as_warnings(qgis_app, plugin_dir):
    # "weights trained on synthetic scenes only" must not hide in the console log
    from qgis.core import QgsProcessingFeedback

    sys.path.insert(0, str(PLUGIN_SOURCE.parent))
    try:
        from qgis_plugin.runner import _Relay
    finally:
        sys.path.pop(0)

    class Recorder(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.warnings, self.console = [], []

        def pushWarning(self, text):
            self.warnings.append(text)

        def pushConsoleInfo(self, text):
            self.console.append(text)

    feedback = Recorder()
    relay = _Relay("predict", feedback)
    relay.stderr_line("rsseg: note: best.pt (bafnet): trained on synthetic scenes only\n")
    relay.stderr_line("rsseg: warning: overlap 128 does not fit tile 100\n")
    relay.stderr_line("predict: 50%|#####     | 0.5/1.0 Mpx\n")
    assert feedback.warnings == ["rsseg: note: best.pt (bafnet): trained on synthetic scenes only",
                                 "rsseg: warning: overlap 128 does not fit tile 100"]
    assert feedback.console == ["predict: 50%|#####     | 0.5/1.0 Mpx"]
