"""Class colours on the layers Processing loads when an rsseg algorithm finishes.

rsseg writes the colours into its outputs: the class COG carries a GDAL colour
table, the GeoPackage a default QGIS style in its ``layer_styles`` table plus a
``.qml`` sidecar. QGIS usually picks these up by itself; the post-processor
below makes sure it did (and falls back to the sidecar or the colour table).
"""

import os

from qgis.core import (QgsPalettedRasterRenderer, QgsProcessingLayerPostProcessorInterface,
                       QgsRasterLayer, QgsVectorLayer)

# QGIS calls post-processors after the algorithm object may be gone, and holds them
# only by a C++ pointer: keep the Python objects alive here.
_ALIVE = []


class ClassStylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies rsseg's class colours to a loaded output layer."""

    @classmethod
    def create(cls):
        instance = cls()
        _ALIVE.append(instance)
        del _ALIVE[:-32]  # plenty for the runs in flight; older ones have been applied
        return instance

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API name)
        if isinstance(layer, QgsRasterLayer):
            apply_palette(layer)
        elif isinstance(layer, QgsVectorLayer):
            apply_vector_style(layer)


def apply_palette(layer):
    """Paletted rendering with one entry per class, labelled with the class names.

    QGIS's default for a paletted band lists all 256 colour table entries; rsseg
    names its classes in band 1's metadata (CLASS_0=impervious_surfaces, ...), so
    only those are kept. Without names, transparent entries are dropped.
    Returns True when the layer ends up paletted.
    """
    provider = layer.dataProvider()
    table = provider.colorTable(1) if provider is not None else []
    entries = QgsPalettedRasterRenderer.colorTableToClassData(table)
    names = class_names(layer.source())
    if names:
        classes = [QgsPalettedRasterRenderer.Class(e.value, e.color, names[int(e.value)])
                   for e in entries if int(e.value) in names]
    else:
        classes = [e for e in entries if e.color.alpha() > 0]
    if not classes:
        renderer = layer.renderer()
        return renderer is not None and renderer.type() == "paletted"
    layer.setRenderer(QgsPalettedRasterRenderer(provider, 1, classes))
    layer.triggerRepaint()
    return True


def class_names(source):
    """{class id: name} from band 1's CLASS_<id> metadata items ({} when absent)."""
    try:
        from osgeo import gdal
    except ImportError:  # GDAL's Python bindings ship with QGIS; be safe anyway
        return {}
    try:  # GDAL may be in exception mode or not, depending on other code in QGIS
        dataset = gdal.OpenEx(source.split("|", 1)[0], gdal.OF_RASTER)
    except RuntimeError:
        return {}
    if dataset is None:
        return {}
    names = {}
    for key, value in (dataset.GetRasterBand(1).GetMetadata() or {}).items():
        prefix, _, number = key.partition("_")
        if prefix == "CLASS" and number.isdigit() and value:
            names[int(number)] = value
    return names


def apply_vector_style(layer):
    """The style stored in the GeoPackage, else the ``.qml`` next to it. True when styled."""
    if layer.renderer() is not None and layer.renderer().type() != "singleSymbol":
        return True  # QGIS already applied the embedded default style
    _message, loaded = layer.loadDefaultStyle()
    if loaded and layer.renderer().type() != "singleSymbol":
        return True
    for qml in sidecar_styles(layer.source()):
        _message, loaded = layer.loadNamedStyle(qml)
        if loaded:
            layer.triggerRepaint()
            return True
    return False


def sidecar_styles(source):
    """Candidate ``.qml`` files for a layer source such as ``/x/out.gpkg|layername=a``."""
    path = source.split("|", 1)[0]
    base = os.path.splitext(path)[0]
    candidates = [base + ".qml", path + ".qml"]
    return [c for c in candidates if os.path.isfile(c)]
