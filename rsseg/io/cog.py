"""Class rasters as Cloud-Optimized GeoTIFFs.

The pipeline writes class ids into a raw band file described by a VRT
(:func:`rsseg.io.vrt.write_raw_vrt`), then :func:`finish_cog` converts it with GDAL's COG driver (overviews resampled with
MODE for class ids, AVERAGE for confidences; DEFLATE level 5; 512-pixel blocks). Class
names and colours are embedded in the file: a colour table, and metadata that
``gdalinfo`` prints (dataset ``CLASS_NAMES``/``CLASS_COLOURS``, band
``CLASS_<id>=<name>``); :func:`rsseg.io.classes.read_classes` reads them back.
"""

from __future__ import annotations

import json
import os
import struct

import rasterio
import rasterio.shutil

from rsseg.classes import NODATA, ClassScheme
from rsseg.io.classes import read_classes  # noqa: F401 - where the batch merge finds it

BLOCK = 512
# DEFLATE effort. Level 5 compresses class rasters ~3x faster than GDAL's default 6 for
# files ~12 % larger (three real Dubai predictions, 11 Mpx: 0.24 -> 0.07 CPU-s, 603 ->
# 674 kB; confidences +1 %), and a class raster is 1-2 % of its scene's raw bytes. At 6
# the COG finish was a fifth of the pipeline's own time (docs/benchmarks/predict.md).
DEFLATE_LEVEL = 5


def class_metadata(classes: ClassScheme) -> dict:
    """Band description, colour table and class-name metadata of a class raster."""
    return dict(
        description="class", colormap=classes.colormap(),
        tags={"CLASS_NAMES": ",".join(classes.names),
              "CLASS_COLOURS": json.dumps([list(c) for c in classes.colours]),
              "NODATA_VALUE": str(NODATA)},
        band_tags={f"CLASS_{i}": name for i, name in enumerate(classes.names)})


def confidence_metadata() -> dict:
    return dict(description="confidence", colormap=None,
                tags={"CONFIDENCE": "maximum class probability * 255; 0 = no data"},
                band_tags={})


def finish_cog(src, dst, resampling: str = "mode", block: int = BLOCK) -> None:
    """Copy ``src`` to ``dst`` as a COG with overviews (``resampling`` for them).

    The COG driver first writes the overviews to a temporary file beside ``dst``,
    LZW-compressed by default, then reads them back to compress them again:
    leaving that file uncompressed gives the same bytes in ``dst`` in ~60 % of the
    time (8192 x 8192 classes: 3.0 s -> 1.9 s; docs/benchmarks/predict.md), at the
    cost of a third of the raster's size in temporary disk while it runs. DEFLATE at
    ``DEFLATE_LEVEL``; plain readers of DEFLATE TIFFs read it as any other.
    """
    with rasterio.Env(COG_TMP_COMPRESSION="NONE"):
        rasterio.shutil.copy(
            str(src), str(dst), driver="COG", COMPRESS="DEFLATE", PREDICTOR="NO",
            BLOCKSIZE=block, RESAMPLING=resampling.upper(), OVERVIEWS="AUTO",
            BIGTIFF="IF_SAFER", NUM_THREADS="2", LEVEL=str(DEFLATE_LEVEL))


# ---- validation (a minimal re-implementation of the COG layout rules) --------------------

def validate_cog(path) -> list[str]:
    """Problems that make ``path`` not a valid COG (an empty list when it is one).

    Checks: tiled with square blocks; overviews when larger than a block; GDAL's
    ``LAYOUT=COG`` marker; and in the bytes: every IFD before any image data,
    and the data of smaller overviews before larger ones, the full image last.
    """
    errors = []
    with rasterio.open(path) as ds:
        bx, by = ds.block_shapes[0]
        if not ds.profile.get("tiled") or bx != by:
            errors.append("not tiled with square blocks")
        if max(ds.width, ds.height) > bx and not ds.overviews(1):
            errors.append("no overviews although the image is larger than a block")
        if ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") != "COG":
            errors.append("no LAYOUT=COG marker")
    ifds = _tiff_ifds(path)
    first_data = min((min(offs) for _, offs in ifds if offs), default=None)
    if first_data is not None and any(pos > first_data for pos, _ in ifds):
        errors.append("an IFD comes after image data")
    # IFD order: full image first, then overviews by decreasing size (masks aside).
    starts = [min(offs) for _, offs in ifds if offs]
    if starts != sorted(starts, reverse=True):
        errors.append("image data not ordered from the smallest overview to the full image")
    return errors


def _tiff_ifds(path) -> list[tuple[int, list[int]]]:
    """(IFD position, non-zero tile offsets) for every IFD of a classic or Big TIFF."""
    with open(path, "rb") as f:
        head = f.read(16)
        endian = {b"II": "<", b"MM": ">"}[head[:2]]
        version = struct.unpack(endian + "H", head[2:4])[0]
        big = version == 43
        pos = struct.unpack(endian + "Q", head[8:16])[0] if big else struct.unpack(endian + "I", head[4:8])[0]
        size = os.fstat(f.fileno()).st_size
        ifds = []
        while pos and pos < size and len(ifds) < 64:
            ifds.append((pos, _tile_offsets(f, endian, big, pos)))
            f.seek(pos)
            count = struct.unpack(endian + ("Q" if big else "H"), f.read(8 if big else 2))[0]
            f.seek(pos + (8 if big else 2) + count * (20 if big else 12))
            pos = struct.unpack(endian + ("Q" if big else "I"), f.read(8 if big else 4))[0]
    return ifds


def _tile_offsets(f, endian: str, big: bool, pos: int) -> list[int]:
    f.seek(pos)
    count = struct.unpack(endian + ("Q" if big else "H"), f.read(8 if big else 2))[0]
    entry = 20 if big else 12
    raw = f.read(count * entry)
    types = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}
    for k in range(count):
        e = raw[k * entry:(k + 1) * entry]
        tag, typ = struct.unpack(endian + "HH", e[:4])
        if tag not in (324, 273):  # TileOffsets, StripOffsets
            continue
        n = struct.unpack(endian + ("Q" if big else "I"), e[4:12] if big else e[4:8])[0]
        fmt, width = types[typ]
        inline = e[12:20] if big else e[8:12]
        if n * width <= len(inline):
            data = inline[:n * width]
        else:
            off = struct.unpack(endian + ("Q" if big else "I"), inline)[0]
            here = f.tell()
            f.seek(off)
            data = f.read(n * width)
            f.seek(here)
        return [v for v in struct.unpack(endian + fmt * n, data) if v]
    return []
