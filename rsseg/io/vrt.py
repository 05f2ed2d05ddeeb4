"""VRT files, written as XML (GDAL's Python bindings are not a dependency).

The one VRT writer of rsseg. Three kinds are written:

- the *input* mosaic of a group of tiles (absolute source paths): an ``rsseg
  batch`` worker reads its tile and the context around it from one that keeps
  the mosaic's grid but lists only the tiles near it
  (``out/.rsseg/inputs/<tile>.vrt``);
- the *class* mosaic of all class rasters (``out/mosaic.vrt``, paths relative to
  the VRT, so ``out/`` can be moved): one layer to look at, vectorize or score;
- the *raw* band VRT through which the prediction engine hands its raw class
  file to GDAL's COG driver (:func:`write_raw_vrt`).

The XML is streamed to the file source by source, so a national mosaic of
100,000 tiles costs no more memory than its list of sources. Every VRT is
written atomically (temporary name, then rename).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable
from xml.sax.saxutils import escape, quoteattr

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
    names = [_source_name(src.path, path, relative) for src in sources]

    def band_sources(number: int, dtype: str):
        return lambda: _simple_sources(sources, names, str(number), dtype)

    layers = [(band, {}, band_sources(number, band.dtype))
              for number, band in enumerate(bands, start=1)]
    mask_sources = band_sources("mask,1", "uint8") if mask else None
    return _write_vrt(path, width, height, crs, transform, tags, layers, mask_sources)


def write_raw_vrt(vrt_path, raw_path, width: int, height: int, crs, transform, nodata: int,
                  description: str = "", colormap: dict | None = None,
                  tags: dict | None = None, band_tags: dict | None = None,
                  overviews: list | None = None) -> Path:
    """A VRT that presents a raw row-major uint8 file (beside it) as a georeferenced band.

    ``overviews``: datasets beside it (e.g. raw VRTs of the overview levels, largest
    first) listed as the band's overviews, which GDAL's COG driver then copies."""
    band = VrtBand("uint8", nodata, description, colormap, band_tags or {})
    raw = (f'<SourceFilename relativeToVRT="1">{escape(os.path.basename(str(raw_path)))}'
           f"</SourceFilename><ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset>"
           f"<LineOffset>{width}</LineOffset>\n")
    levels = [f'<Overview><SourceFilename relativeToVRT="1">'
              f"{escape(os.path.basename(str(p)))}</SourceFilename>"
              f"<SourceBand>1</SourceBand></Overview>\n" for p in overviews or []]
    layers = [(band, {"subClass": "VRTRawRasterBand"}, lambda: [raw] + levels)]
    return _write_vrt(Path(vrt_path), width, height, crs, transform, tags, layers)


def _write_vrt(path: Path, width: int, height: int, crs, transform, tags: dict | None,
               layers: list[tuple[VrtBand, dict, Callable[[], Iterable[str]]]],
               mask_sources: Callable[[], Iterable[str]] | None = None) -> Path:
    """Stream the VRT: dataset header, then each band's properties and its sources."""
    with atomic_output(path, overwrite=True) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n')
        if crs is not None:
            f.write(f"<SRS>{escape(crs.to_wkt())}</SRS>\n")
        if transform is not None:
            numbers = ", ".join(repr(float(v)) for v in transform.to_gdal())
            f.write(f"<GeoTransform>{numbers}</GeoTransform>\n")
        f.write(_metadata(tags))
        for number, (band, attributes, body) in enumerate(layers, start=1):
            extra = "".join(f" {k}={quoteattr(v)}" for k, v in attributes.items())
            f.write(f'<VRTRasterBand dataType="{GDAL_TYPES[band.dtype]}" band="{number}"'
                    f"{extra}>\n{_band_properties(band)}")
            f.writelines(body())
            f.write("</VRTRasterBand>\n")
        if mask_sources is not None:
            f.write('<MaskBand><VRTRasterBand dataType="Byte">\n')
            f.writelines(mask_sources())
            f.write("</VRTRasterBand></MaskBand>\n")
        f.write("</VRTDataset>\n")
    return path


def _band_properties(band: VrtBand) -> str:
    parts = []
    if band.nodata is not None:
        parts.append(f"<NoDataValue>{float(band.nodata)!r}</NoDataValue>")
    if band.description:
        parts.append(f"<Description>{escape(band.description)}</Description>")
    if band.colormap:
        entries = "".join('<Entry c1="%d" c2="%d" c3="%d" c4="%d"/>' % tuple(band.colormap.get(i, (0, 0, 0, 0)))
                          for i in range(256))
        parts.append(f"<ColorInterp>Palette</ColorInterp><ColorTable>{entries}</ColorTable>")
    parts.append(_metadata(band.tags))
    return "\n".join(p for p in parts if p) + "\n"


def _metadata(items: dict | None) -> str:
    if not items:
        return ""
    md = ET.Element("Metadata")
    for key, value in items.items():
        ET.SubElement(md, "MDI", key=key).text = str(value)
    return ET.tostring(md, encoding="unicode") + "\n"


def _source_name(source: str, vrt_path: Path, relative: bool) -> str:
    if relative:
        name = os.path.relpath(os.path.abspath(source), os.path.abspath(vrt_path.parent))
        return f'<SourceFilename relativeToVRT="1">{escape(name)}</SourceFilename>'
    return f'<SourceFilename relativeToVRT="0">{escape(os.path.abspath(source))}</SourceFilename>'


def _simple_sources(sources: list[VrtSource], names: list[str], source_band: str,
                    dtype: str) -> Iterable[str]:
    gdal_type = GDAL_TYPES[dtype]
    for src, name in zip(sources, names):
        size = f'xSize="{src.width}" ySize="{src.height}"'
        yield (f"<SimpleSource>{name}<SourceBand>{source_band}</SourceBand>"
               f'<SourceProperties RasterXSize="{src.width}" RasterYSize="{src.height}" '
               f'DataType="{gdal_type}"/><SrcRect xOff="0" yOff="0" {size}/>'
               f'<DstRect xOff="{src.col}" yOff="{src.row}" {size}/></SimpleSource>\n')


def input_mosaic_vrt(path, mosaic, tiles=None, mask: bool | None = None) -> Path:
    """The VRT through which the tiles of ``mosaic`` (:class:`rsseg.batch.inputs.Mosaic`) are read.

    ``tiles`` (default: all of them) limits the sources to the tiles a reader
    needs; the VRT keeps the mosaic's size and grid, so pixel offsets are the
    mosaic's. ``mask`` (default: :func:`needs_mask` of the mosaic) adds the
    coverage mask; pass the whole mosaic's answer for a partial VRT, so that it
    reads exactly like the whole one where it has sources.
    """
    first = mosaic.tiles[0]
    tiles = mosaic.tiles if tiles is None else tiles
    sources = [VrtSource(t.path, t.col, t.row, t.width, t.height) for t in tiles]
    bands = [VrtBand(dtype, first.nodata, first.descriptions[k] or "")
             for k, dtype in enumerate(first.dtypes)]
    mask = needs_mask(mosaic) if mask is None else mask
    return write_mosaic_vrt(path, sources, mosaic.width, mosaic.height, first.crs,
                            mosaic.transform, bands, mask=mask)


def needs_mask(mosaic) -> bool:
    """Without a nodata value, holes between tiles (or overlaps, which hide them from
    an area count) need a coverage mask to read as no data."""
    if mosaic.tiles[0].nodata is not None:
        return False
    covered = sum(t.width * t.height for t in mosaic.tiles)
    return covered < mosaic.width * mosaic.height or _overlapping(mosaic.tiles)


def _overlapping(tiles) -> bool:
    """Any two tiles sharing pixels (then the area sum says nothing about holes)?

    An R-tree query, not all pairs: boxes shrunk by a quarter pixel intersect only
    where the (integer-cornered) tiles share pixels, not where they merely touch.
    """
    import numpy as np
    import shapely

    cols = np.array([t.col for t in tiles], dtype=float)
    rows = np.array([t.row for t in tiles], dtype=float)
    widths = np.array([t.width for t in tiles], dtype=float)
    heights = np.array([t.height for t in tiles], dtype=float)
    boxes = shapely.box(cols + 0.25, rows + 0.25, cols + widths - 0.25, rows + heights - 0.25)
    first, second = shapely.STRtree(boxes).query(boxes, predicate="intersects")
    return bool((first != second).any())
