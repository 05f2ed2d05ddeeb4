"""rsseg:vectorize - class raster to styled class polygons (GeoPackage)."""

from qgis.core import (QgsProcessing, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterVectorDestination)

from .base import RssegAlgorithm


class VectorizeAlgorithm(RssegAlgorithm):
    INPUT = "INPUT"
    SIMPLIFY = "SIMPLIFY"
    MIN_AREA = "MIN_AREA"
    OUTPUT = "OUTPUT"

    def name(self):
        return "vectorize"

    def displayName(self):  # noqa: N802
        return self.tr("Vectorize class raster")

    def shortHelpString(self):  # noqa: N802
        return self.tr(
            "Turns an rsseg class raster into polygons, one per connected patch of a class, "
            "written to a GeoPackage that carries the class names and colours.\n\n"
            "Simplify: tolerance in map units of a coverage simplification (polygons stay "
            "gap- and overlap-free; 0: none). "
            "Minimum area: polygons smaller than this (m²) are merged into the neighbour "
            "they share the longest border with (0: keep all).")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Class raster")))
        self.addParameter(QgsProcessingParameterNumber(
            self.SIMPLIFY, self.tr("Simplify tolerance (map units)"),
            QgsProcessingParameterNumber.Double, defaultValue=0.0, minValue=0.0, optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.MIN_AREA, self.tr("Minimum polygon area (m²)"),
            QgsProcessingParameterNumber.Double, defaultValue=0.0, minValue=0.0, optional=True))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, self.tr("Land-cover polygons"), type=QgsProcessing.TypeVectorPolygon))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        args = [self.raster_path(parameters, self.INPUT, context), "-o", output, "--overwrite"]
        for name, option in ((self.SIMPLIFY, "--simplify"), (self.MIN_AREA, "--min-area")):
            value = self.optional_number(parameters, name, context, float)
            if value:  # 0 and empty both mean "off": leave rsseg's default alone
                args += [option, repr(value)]
        self.run_cli("vectorize", args, feedback)
        uri, = self.load_outputs_styled(context, vectors=[output])
        return {self.OUTPUT: uri}
