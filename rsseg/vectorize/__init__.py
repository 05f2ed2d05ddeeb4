"""Class raster -> GeoPackage polygons, streamed block by block (``rsseg vectorize``).

:func:`vectorize_raster` (:mod:`.streaming`) polygonizes blocks (:mod:`.blocks`),
joins polygons across block seams (:mod:`.seams`), optionally simplifies the coverage
and merges small polygons (:mod:`.coverage`), writes the GeoPackage (:mod:`.gpkg`) with
its QGIS style (:mod:`.qgis_style`).

Public names are imported on first use (:mod:`rsseg._lazy`).
"""

from rsseg._lazy import lazy_exports

_PUBLIC = {
    "vectorize_raster": ".streaming",
    "qml_sidecar_path": ".streaming",
}
__all__ = sorted(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
