"""What the rsseg algorithms share: running the CLI, input paths, loading outputs."""

import os

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..runner import run_rsseg
from ..styling import ClassStylePostProcessor

PLUGIN_DIR = os.path.dirname(os.path.dirname(__file__))
ICON_PATH = os.path.join(PLUGIN_DIR, "icon.svg")


class RssegAlgorithm(QgsProcessingAlgorithm):
    """Base class: subclasses define name/displayName/initAlgorithm/processAlgorithm."""

    def createInstance(self):
        return type(self)()

    def icon(self):
        return QIcon(ICON_PATH)

    def svgIconPath(self):  # noqa: N802
        return ICON_PATH

    def tr(self, text):
        return QCoreApplication.translate("rsseg", text)

    def run_cli(self, command, args, feedback):
        """Run ``rsseg COMMAND ARGS`` and relay its progress; see runner.run_rsseg."""
        return run_rsseg(command, args, feedback)

    def raster_path(self, parameters, name, context, optional=False):
        """File path of a raster layer parameter; rsseg reads files through GDAL."""
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            if optional:
                return ""
            raise QgsProcessingException(self.invalidRasterError(parameters, name))
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"{name}: layer '{layer.name()}' is a {layer.providerType()} layer; rsseg "
                "needs a raster file (GeoTIFF or any file GDAL reads). Export it first.")
        return layer.source()

    def optional_number(self, parameters, name, context, kind=int):
        """The value of an optional number parameter, None when it is not set."""
        if parameters.get(name) in (None, ""):
            return None
        if kind is int:
            return self.parameterAsInt(parameters, name, context)
        return self.parameterAsDouble(parameters, name, context)

    def optional_int(self, parameters, name, context):
        return self.optional_number(parameters, name, context, int)

    def load_outputs_styled(self, context, raster=None, vectors=()):
        """Point the layers Processing loads on completion at rsseg's polygon tables and
        give them (and the class raster) the class colours. Returns the vector URIs.

        Order matters: re-keying the load list (setLayersToLoadOnCompletion) deletes the
        post-processors already attached, so all re-keying happens first.
        """
        uris = [self._pin_vector_layer(context, path) for path in vectors]
        for path in ([raster] if raster else []) + uris:
            if context.willLoadLayerOnCompletion(path):
                details = context.layerToLoadOnCompletionDetails(path)
                details.setPostProcessor(ClassStylePostProcessor.create())
        return uris

    def _pin_vector_layer(self, context, path):
        """``path|layername=NAME`` when the GeoPackage holds more than one table (rsseg's
        polygons next to the ``layer_styles`` table), so QGIS opens the polygons."""
        name = polygon_layer_name(path)
        if not name:
            return path
        uri = f"{path}|layername={name}"
        if context.willLoadLayerOnCompletion(path):
            layers = context.layersToLoadOnCompletion()
            layers[uri] = layers.pop(path)
            context.setLayersToLoadOnCompletion(layers)
        return uri


def polygon_layer_name(path):
    """Name of the first layer with geometry, or None when the file has only one layer."""
    try:
        from osgeo import ogr
    except ImportError:  # GDAL's Python bindings ship with QGIS; be safe anyway
        return None
    try:  # GDAL may be in exception mode or not, depending on other code in QGIS
        dataset = ogr.Open(path)
    except RuntimeError:
        return None
    if dataset is None or dataset.GetLayerCount() <= 1:
        return None
    for i in range(dataset.GetLayerCount()):
        layer = dataset.GetLayerByIndex(i)
        if layer.GetGeomType() != ogr.wkbNone:
            return layer.GetName()
    return None
