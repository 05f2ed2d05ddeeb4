"""Reading scenes and writing rasters: the first and the last stage of predict.

- :class:`Scene` (:mod:`.scene`): the bands of a scene (selection, stacked files, a DSM),
  read window by window with nodata masks; :func:`open_dataarray` for notebooks;
- :class:`Normalization` (:mod:`.normalization`): per-band scaling the network expects;
- :mod:`.cog`: class and confidence rasters as Cloud-Optimized GeoTIFFs;
- :mod:`.vrt`: VRT mosaics.

Public names are imported on first use (:mod:`rsseg._lazy`).
"""

from rsseg._lazy import lazy_exports

_PUBLIC = {
    "Scene": ".scene",
    "BandFile": ".scene",
    "open_raster": ".scene",
    "same_grid": ".scene",
    "default_normalization": ".scene",
    "open_dataarray": ".scene",
    "NoCRSWarning": ".scene",
    "Normalization": ".normalization",
    "read_classes": ".cog",
    "validate_cog": ".cog",
    "write_mosaic_vrt": ".vrt",
}
__all__ = sorted(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
