"""rsseg:predict - segment an orthophoto into a land-cover class raster (and polygons)."""

from qgis.core import (QgsProcessing, QgsProcessingParameterDefinition, QgsProcessingParameterEnum,
                       QgsProcessingParameterFile, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterVectorDestination)

from ..settings import available_models
from .base import RssegAlgorithm

# Passed through as --weights: rsseg initialises the network randomly (tests, timing).
RANDOM_WEIGHTS = "random"
# rsseg predict --tta: none, 4 flipped views, or all 8 flipped and turned views
TTA_MODES = ("none", "flip", "d4")
# rsseg predict --zoom: how much each window is magnified before the network; 0 stands
# for `--zoom auto` (the layer's pixel size over the one the weights were trained on)
ZOOM_RANGE = (0.25, 4.0)
ZOOM_AUTO = 0.0


class PredictAlgorithm(RssegAlgorithm):
    INPUT = "INPUT"
    MODEL = "MODEL"
    WEIGHTS = "WEIGHTS"
    DSM = "DSM"
    TILE = "TILE"
    OVERLAP = "OVERLAP"
    TTA = "TTA"
    ZOOM = "ZOOM"
    OUTPUT = "OUTPUT"
    VECTOR_OUTPUT = "VECTOR_OUTPUT"

    def name(self):
        return "predict"

    def displayName(self):  # noqa: N802
        return self.tr("Segment orthophoto")

    def shortHelpString(self):  # noqa: N802
        return self.tr(
            "Segments a georeferenced orthophoto into land-cover classes with an rsseg "
            "network, tile by tile with blended overlaps, and writes a class raster "
            "(Cloud Optimized GeoTIFF with the class colours), optionally also the class "
            "polygons (GeoPackage).\n\n"
            "Weights: leave empty for the model's default bundled weights, type a bundled "
            "tag (`rsseg models` lists them, e.g. isprs-synthetic), choose a checkpoint "
            "file, or type 'random' for an untrained network (testing only). The class "
            "names and colours come from the weights.\n"
            "DSM: a one-band surface model appended as the last input band, for networks "
            "trained with one; resampled onto the orthophoto's grid when its grid differs.\n"
            "Tile and overlap are in pixels; larger tiles are faster but use more memory.\n"
            "Test-time augmentation: each tile is also predicted flipped (flip: 4 views) or "
            "flipped and turned (d4: 8 views) and the answers averaged: a steadier map for "
            "4x or 8x the network's time.\n\n"
            "Runs the rsseg program configured in Processing > Options > Providers > rsseg.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.INPUT, self.tr("Orthophoto")))
        models = list(available_models())
        default = "bafnet" if "bafnet" in models else models[0]  # rsseg's own default
        model = QgsProcessingParameterEnum(self.MODEL, self.tr("Model"), options=models,
                                           defaultValue=default)
        model.setUsesStaticStrings(True)  # store names, not indexes: lists may change
        self.addParameter(model)
        self.addParameter(QgsProcessingParameterFile(
            self.WEIGHTS, self.tr("Weights (empty: bundled weights)"),
            behavior=QgsProcessingParameterFile.File,
            # "(*)", not "(*.*)": QGIS then accepts names without an extension ("random").
            fileFilter="Checkpoints (*.pt *.pth *.ckpt *.onnx);;All files (*)",
            optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.DSM, self.tr("Digital surface model (for models that use one)"),
            optional=True))
        # Unset: rsseg uses the checkpoint's training tile (else 512) and its overlap when
        # it fits the tile, else tile/4 (rsseg.predict.settings.resolve_tiling).
        self.addParameter(QgsProcessingParameterNumber(
            self.TILE, self.tr("Tile size (pixels; empty: the checkpoint's)"),
            QgsProcessingParameterNumber.Integer, minValue=16, maxValue=16384, optional=True))
        overlap = QgsProcessingParameterNumber(
            self.OVERLAP, self.tr("Tile overlap (pixels; empty: a quarter of the tile)"),
            QgsProcessingParameterNumber.Integer, minValue=0, maxValue=8192, optional=True)
        overlap.setFlags(overlap.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(overlap)
        tta = QgsProcessingParameterEnum(self.TTA, self.tr("Test-time augmentation"),
                                         options=list(TTA_MODES), defaultValue="none")
        tta.setUsesStaticStrings(True)
        tta.setFlags(tta.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(tta)
        zoom = QgsProcessingParameterNumber(
            self.ZOOM, self.tr("Zoom (the layer's pixel size over the model's training "
                               "imagery's; 1: as is; 0: from both, when known)"),
            QgsProcessingParameterNumber.Double, defaultValue=1.0, minValue=ZOOM_AUTO,
            maxValue=ZOOM_RANGE[1])
        zoom.setFlags(zoom.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(zoom)
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT, self.tr("Land-cover classes")))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.VECTOR_OUTPUT, self.tr("Land-cover polygons"),
            type=QgsProcessing.TypeVectorPolygon, optional=True, createByDefault=False))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        tile = self.optional_int(parameters, self.TILE, context)
        overlap = self.optional_int(parameters, self.OVERLAP, context)
        if tile is not None and overlap is not None and overlap >= tile:
            return False, self.tr("Tile overlap must be smaller than the tile size.")
        zoom = self.parameterAsDouble(parameters, self.ZOOM, context)
        if zoom != ZOOM_AUTO and not ZOOM_RANGE[0] <= zoom <= ZOOM_RANGE[1]:
            return False, self.tr("Zoom must be 0 (automatic) or between 0.25 and 4.")
        return True, ""

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        vector = self.parameterAsOutputLayer(parameters, self.VECTOR_OUTPUT, context)
        args = [self.raster_path(parameters, self.INPUT, context),
                "--model", self.parameterAsEnumString(parameters, self.MODEL, context),
                "-o", output, "--overwrite"]
        for name, option in ((self.TILE, "--tile"), (self.OVERLAP, "--overlap")):
            value = self.optional_int(parameters, name, context)
            if value is not None:
                args += [option, value]
        tta = self.parameterAsEnumString(parameters, self.TTA, context)
        if tta and tta != "none":
            args += ["--tta", tta]
        zoom = self.parameterAsDouble(parameters, self.ZOOM, context)
        if zoom == ZOOM_AUTO:
            args += ["--zoom", "auto"]
        elif zoom != 1.0:
            args += ["--zoom", repr(float(zoom))]
        weights = self.parameterAsFile(parameters, self.WEIGHTS, context).strip()
        if weights:
            args += ["--weights", weights]
        dsm = self.raster_path(parameters, self.DSM, context, optional=True)
        if dsm:
            # A DSM rarely shares the orthophoto's grid (other resolution or extent): rsseg
            # resamples it onto the scene's grid then (bilinear); on the same grid it is
            # read as it is.
            args += ["--dsm", dsm, "--align"]
        if vector:
            args += ["--vector", vector]
        self.run_cli("predict", args, feedback)
        uris = self.load_outputs_styled(context, raster=output, vectors=[vector] if vector else [])
        return {self.OUTPUT: output, self.VECTOR_OUTPUT: uris[0] if uris else None}
