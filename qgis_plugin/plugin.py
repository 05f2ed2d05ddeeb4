"""The QGIS plugin object: registers the Processing provider, adds a settings menu."""

from qgis.core import QgsApplication

from .provider import RssegProvider

MENU = "&rsseg"


class RssegPlugin:
    """What ``classFactory`` returns; QGIS calls initProcessing/initGui/unload."""

    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.actions = []

    def initProcessing(self):  # noqa: N802 - also called by qgis_process
        if self.provider is None:
            self.provider = RssegProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        self.initProcessing()
        from qgis.PyQt.QtGui import QIcon
        from qgis.PyQt.QtWidgets import QAction

        from .algorithms.base import ICON_PATH

        action = QAction(QIcon(ICON_PATH), "rsseg settings…", self.iface.mainWindow())
        action.triggered.connect(self.show_settings)
        self.iface.addPluginToMenu(MENU, action)
        self.actions.append(action)

    def unload(self):
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
            action.deleteLater()
        self.actions = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    def show_settings(self):
        from .settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.iface.mainWindow())
        if dialog.exec_() and self.provider is not None:
            self.provider.refreshAlgorithms()  # the model list may have changed
