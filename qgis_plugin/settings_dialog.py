"""A small dialog (Plugins > rsseg > rsseg settings…) to point the plugin at rsseg."""

import subprocess

from qgis.core import QgsProcessingException
from qgis.PyQt.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout, QLabel,
                                 QLineEdit, QPushButton, QVBoxLayout)

from . import settings


class SettingsDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("rsseg settings")
        self.path_edit = QLineEdit(settings.configured_executable())
        self.path_edit.setPlaceholderText("empty: RSSEG_EXECUTABLE, then rsseg on PATH")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse)
        check = QPushButton("Check")
        check.clicked.connect(self.check)
        refresh = QPushButton("Refresh model list")
        refresh.clicked.connect(self.refresh_models)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)

        row = QHBoxLayout()
        row.addWidget(self.path_edit)
        row.addWidget(browse)
        tools = QHBoxLayout()
        tools.addWidget(check)
        tools.addWidget(refresh)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("rsseg executable, or the Python environment folder it is "
                                "installed in:"))
        layout.addLayout(row)
        layout.addLayout(tools)
        layout.addWidget(self.status)
        layout.addWidget(buttons)

    def browse(self):
        path, _ = QFileDialog.getOpenFileName(self, "rsseg executable", self.path_edit.text())
        if path:
            self.path_edit.setText(path)

    def accept(self):
        settings.set_configured_executable(self.path_edit.text())
        super().accept()

    def check(self):
        """Run ``rsseg --version`` with the path as typed."""
        previous = settings.configured_executable()
        settings.set_configured_executable(self.path_edit.text())
        try:
            exe = settings.resolve_executable()
            proc = subprocess.run([exe, "--version"], capture_output=True, text=True,
                                  timeout=60, env=settings.child_environment(),
                                  stdin=subprocess.DEVNULL, **settings.popen_platform_kwargs())
            text = (proc.stdout or proc.stderr).strip()
            self.status.setText(f"{exe}: {text}" if proc.returncode == 0
                                else f"{exe} failed: {text}")
        except (QgsProcessingException, OSError, subprocess.TimeoutExpired) as exc:
            self.status.setText(str(exc))
        finally:
            settings.set_configured_executable(previous)

    def refresh_models(self):
        previous = settings.configured_executable()
        settings.set_configured_executable(self.path_edit.text())
        try:
            names = settings.refresh_models()
            self.status.setText("Models: " + ", ".join(names))
        except (QgsProcessingException, OSError, subprocess.TimeoutExpired) as exc:
            self.status.setText(str(exc))
        finally:
            settings.set_configured_executable(previous)
