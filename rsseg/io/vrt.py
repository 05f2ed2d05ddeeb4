"""Mosaic VRTs, written as XML (GDAL's Python bindings are not a dependency).

Two kinds are written by ``rsseg batch``:

- the *input* mosaic of a group of tiles (``out/.rsseg/inputs-<k>.vrt``, absolute
  source paths): every worker reads its tile and the context around it from it;
- the *class* mosaic of all class rasters (``out/mosaic.vrt``, paths relative to
  the VRT, so ``out/`` can be moved): one layer to look at, vectorize or score.

Both are written atomically (temporary name, then rename).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from rsseg.atomic import atomic_output

GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16",
              "uint32": "UInt32", "int32": "Int32", "uint64": "UInt64", "int64": "Int64",
              "float32": "Float32", "float64": "Float64"}


@dataclass
class VrtSource:
    """A file placed at ``(col, row)`` pixels in the mosaic, ``width x height`` pixels."""

    path: str
    col: int
    row: int
    width: int
    height: int


@dataclass
class VrtBand:
    dtype: str
    nodata: float | None = None
    description: str = ""
    colormap: dict | None = None
    tags: dict = field(default_factory=dict)


def write_mosaic_vrt(path, sources: list[VrtSource], width: int, height: int, crs, transform,
                     bands: list[VrtBand], tags: dict | None = None, relative: bool = False,
                     mask: bool = False) -> Path:
    """Write a VRT mosaic of ``sources`` (all with the same bands) and return its path.

    ``relative`` stores source paths relative to the VRT's folder. ``mask`` adds a
    dataset mask made of the sources' masks, so that pixels no source covers are
    nodata even when the sources have no nodata value.
    """
    path = Path(path)
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    if crs is not None:
        ET.SubElement(root, "SRS").text = crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(float(v)) for v in transform.to_gdal())
    _metadata(root, tags)
    for number, band in enumerate(bands, start=1):
        node = _band(root, number, band)
        for src in sources:
            _source(node, src, str(number), band.dtype, path, relative)
    if mask:
        mask_band = ET.SubElement(ET.SubElement(root, "MaskBand"), "VRTRasterBand", dataType="Byte")
        for src in sources:
            _source(mask_band, src, "mask,1", "uint8", path, relative)
    with atomic_output(path, overwrite=True) as tmp:
        ET.ElementTree(root).write(str(tmp), encoding="utf-8")
    return path


def _band(root, number: int, band: VrtBand):
    node = ET.SubElement(root, "VRTRasterBand", dataType=GDAL_TYPES[band.dtype], band=str(number))
    if band.nodata is not None:
        ET.SubElement(node, "NoDataValue").text = repr(float(band.nodata))
    if band.description:
        ET.SubElement(node, "Description").text = band.description
    if band.colormap:
        ET.SubElement(node, "ColorInterp").text = "Palette"
        table = ET.SubElement(node, "ColorTable")
        for i in range(256):
            r, g, b, a = band.colormap.get(i, (0, 0, 0, 0))
            ET.SubElement(table, "Entry", c1=str(r), c2=str(g), c3=str(b), c4=str(a))
    _metadata(node, band.tags)
    return node


def _source(band_node, src: VrtSource, source_band: str, dtype: str, vrt_path: Path,
            relative: bool) -> None:
    node = ET.SubElement(band_node, "SimpleSource")
    if relative:
        name = os.path.relpath(os.path.abspath(src.path), os.path.abspath(vrt_path.parent))
        ET.SubElement(node, "SourceFilename", relativeToVRT="1").text = name
    else:
        ET.SubElement(node, "SourceFilename", relativeToVRT="0").text = os.path.abspath(src.path)
    ET.SubElement(node, "SourceBand").text = source_band
    ET.SubElement(node, "SourceProperties", RasterXSize=str(src.width),
                  RasterYSize=str(src.height), DataType=GDAL_TYPES[dtype])
    size = dict(xSize=str(src.width), ySize=str(src.height))
    ET.SubElement(node, "SrcRect", xOff="0", yOff="0", **size)
    ET.SubElement(node, "DstRect", xOff=str(src.col), yOff=str(src.row), **size)


def _metadata(parent, items: dict | None) -> None:
    if items:
        md = ET.SubElement(parent, "Metadata")
        for key, value in items.items():
            ET.SubElement(md, "MDI", key=key).text = str(value)


def input_mosaic_vrt(path, mosaic) -> Path:
    """The VRT through which the tiles of ``mosaic`` (:class:`rsseg.batch.inputs.Mosaic`) are read."""
    first = mosaic.tiles[0]
    sources = [VrtSource(t.path, t.col, t.row, t.width, t.height) for t in mosaic.tiles]
    bands = [VrtBand(dtype, first.nodata, first.descriptions[k] or "")
             for k, dtype in enumerate(first.dtypes)]
    covered = sum(t.width * t.height for t in mosaic.tiles)
    holes = covered < mosaic.width * mosaic.height or _overlapping(mosaic.tiles)
    return write_mosaic_vrt(path, sources, mosaic.width, mosaic.height, first.crs,
                            mosaic.transform, bands, mask=holes and first.nodata is None)


def _overlapping(tiles) -> bool:
    """Any two tiles sharing pixels (then the area sum says nothing about holes)."""
    for i, a in enumerate(tiles):
        for b in tiles[i + 1:]:
            if (a.col < b.col + b.width and b.col < a.col + a.width
                    and a.row < b.row + b.height and b.row < a.row + a.height):
                return True
    return False
