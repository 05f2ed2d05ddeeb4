"""The rsseg Processing provider (id ``rsseg``)."""

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import ALGORITHMS
from .algorithms.base import ICON_PATH
from .settings import SETTING_KEY

# Name of the entry in Processing > Options > Providers > rsseg.
EXECUTABLE_SETTING = "RSSEG_EXECUTABLE"


class RssegProvider(QgsProcessingProvider):

    def id(self):
        return "rsseg"

    def name(self):
        return "rsseg"

    def longName(self):  # noqa: N802
        return "rsseg land-cover segmentation"

    def icon(self):
        return QIcon(ICON_PATH)

    def svgIconPath(self):  # noqa: N802
        return ICON_PATH

    def load(self):
        _add_options_setting(self.name())
        self.refreshAlgorithms()
        return True

    def unload(self):
        _remove_options_setting()

    def loadAlgorithms(self):  # noqa: N802
        for algorithm in ALGORITHMS:
            self.addAlgorithm(algorithm())

    # rsseg writes GeoTIFF (COG) rasters and GeoPackage vectors only: files, never
    # database tables or memory layers.
    def supportsNonFileBasedOutput(self):  # noqa: N802
        return False

    def supportedOutputRasterLayerExtensions(self):  # noqa: N802
        return ["tif"]

    def supportedOutputVectorLayerExtensions(self):  # noqa: N802
        return ["gpkg"]

    def defaultRasterFileExtension(self):  # noqa: N802
        return "tif"

    def defaultVectorFileExtension(self, hasGeometry=True):  # noqa: N802
        return "gpkg"


def _add_options_setting(group):
    """The executable as an entry of the Processing options dialog, stored under the
    plugin's own QgsSettings key (so the plugin reads it without Processing's help)."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting
    except ImportError:  # Processing's Python part absent: the key still works
        return
    setting = Setting(group, EXECUTABLE_SETTING,
                      "rsseg executable or Python environment folder (empty: "
                      "RSSEG_EXECUTABLE, then PATH)", "", valuetype=Setting.FILE)
    setting.qname = SETTING_KEY
    ProcessingConfig.settingIcons[group] = QIcon(ICON_PATH)
    ProcessingConfig.addSetting(setting)
    setting.read()


def _remove_options_setting():
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
    except ImportError:
        return
    if EXECUTABLE_SETTING in ProcessingConfig.settings:
        ProcessingConfig.removeSetting(EXECUTABLE_SETTING)
