"""Inputs and outputs of :mod:`rsseg.vectorize.streaming`: class names, measurements, GeoPackage writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import shapely

from rsseg.classes import ISPRS, ClassScheme

#: Features / vertices buffered before one append to the GeoPackage: bounds memory
#: (a few tens of MB at most) while amortising the cost of reopening the file.
FLUSH_EVERY = 20000
FLUSH_VERTICES = 250_000


def read_class_scheme(src) -> ClassScheme:
    """Class names and colours of an open class raster.

    Understands what ``rsseg predict`` writes (:func:`rsseg.io.cog.class_metadata`:
    dataset tags ``CLASS_NAMES`` (comma-separated) and ``CLASS_COLOURS`` (JSON), band
    tags ``CLASS_<id>``), a JSON ``class_names`` list or ``class_scheme`` object tag,
    and GDAL category names. Colours missing from the tags come from the band's
    colour table, else the ISPRS palette. Without any names the ISPRS scheme is assumed.
    """
    tags = {**src.tags(), **src.tags(1)}
    names = colours = None
    if tags.get("CLASS_NAMES"):
        names = [n.strip() for n in tags["CLASS_NAMES"].split(",")]
        parsed = _json(tags.get("CLASS_COLOURS"))
        if isinstance(parsed, list) and len(parsed) == len(names):
            colours = [tuple(int(v) for v in c[:3]) for c in parsed]
    if names is None:
        numbered = {int(k[6:]): v for k, v in tags.items() if k.startswith("CLASS_")
                    and k[6:].isdigit()}
        if numbered:
            names = [numbered.get(i, f"class_{i}") for i in range(max(numbered) + 1)]
    if names is None:
        parsed = _json(tags.get("class_scheme"))
        if isinstance(parsed, dict) and "names" in parsed:
            names = [str(n) for n in parsed["names"]]
            if len(parsed.get("colours", [])) == len(names):
                colours = [tuple(int(v) for v in c[:3]) for c in parsed["colours"]]
    if names is None:
        parsed = _json(tags.get("class_names"))
        if isinstance(parsed, list) and parsed:
            names = [str(n) for n in parsed]
    if names is None:
        names = _category_names(src)
    if names is None:
        return ISPRS
    names = names[:255]
    if colours is None:
        colours = _colours_from_table(src, len(names))
    return ClassScheme(tuple(names), tuple(colours))


def _json(text):
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _category_names(src) -> list[str] | None:
    """GDAL category names (``GetCategoryNames``), read from the PAM ``.aux.xml`` if any."""
    aux = Path(str(src.name) + ".aux.xml")
    if not aux.is_file():
        return None
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(aux).getroot()
    except ET.ParseError:
        return None
    cats = root.find("./PAMRasterBand/CategoryNames")
    if cats is None:
        return None
    names = [c.text or "" for c in cats.findall("Category")]
    return names if any(names) else None


def _colours_from_table(src, n: int) -> list[tuple[int, int, int]]:
    try:
        table = src.colormap(1)
    except ValueError:  # no colour table
        table = None
    colours = []
    for i in range(n):
        if table is not None and i in table and table[i][3] > 0:
            colours.append(tuple(int(v) for v in table[i][:3]))
        elif i < ISPRS.num_classes:
            colours.append(ISPRS.colours[i])
        else:
            colours.append(_fallback_colour(i))
    return colours


def _fallback_colour(i: int) -> tuple[int, int, int]:
    """Distinct, deterministic colours for classes beyond the palette."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.65, 0.9)
    return int(r * 255), int(g * 255), int(b * 255)


class Measurer:
    """Pixel -> map coordinates, and areas (m²) / perimeters (m) in the raster's CRS.

    Projected CRS: planar measures scaled by the unit's metres. Geographic CRS:
    geodesic measures on the CRS's ellipsoid.
    """

    def __init__(self, transform, crs_wkt: str):
        from pyproj import CRS

        self.matrix = np.array([[transform.a, transform.d], [transform.b, transform.e]])
        self.offset = np.array([transform.c, transform.f])
        crs = CRS.from_wkt(crs_wkt)
        self.geod = crs.get_geod() if crs.is_geographic else None
        self.metres = 1.0
        if self.geod is None and crs.axis_info:
            self.metres = float(crs.axis_info[0].unit_conversion_factor or 1.0)

    def to_map(self, geoms: np.ndarray) -> np.ndarray:
        return shapely.transform(geoms, lambda xy: xy @ self.matrix + self.offset)

    def measure(self, map_geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(area_m2, perimeter_m) of geometries in map coordinates."""
        if self.geod is None:
            return (shapely.area(map_geoms) * self.metres ** 2,
                    shapely.length(map_geoms) * self.metres)
        area = np.empty(len(map_geoms))
        perim = np.empty(len(map_geoms))
        for i, g in enumerate(map_geoms):
            a, p = self.geod.geometry_area_perimeter(g)
            area[i], perim[i] = abs(a), p
        return area, perim


class GpkgWriter:
    """Append polygons with their attributes to one GeoPackage layer, in batches."""

    def __init__(self, path, layer: str, crs_wkt: str, scheme: ClassScheme,
                 measurer: Measurer, multi: bool, with_confidence: bool):
        self.path = str(path)
        self.layer = layer
        self.crs_wkt = crs_wkt
        self.scheme = scheme
        self.measurer = measurer
        self.geometry_type = "MultiPolygon" if multi else "Polygon"
        self.with_confidence = with_confidence
        self.count = 0
        self.per_class: dict[int, int] = {}
        self._buffer: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._buffered = 0
        self._vertices = 0
        self._created = False

    def add(self, map_geoms: np.ndarray, class_ids: np.ndarray,
            confidence: np.ndarray | None = None) -> None:
        """Queue polygons in map coordinates; ``confidence`` is the 0-1 mean per polygon."""
        if not len(map_geoms):
            return
        if confidence is None:
            confidence = np.full(len(map_geoms), np.nan)
        self._buffer.append((map_geoms, class_ids, confidence))
        self._buffered += len(map_geoms)
        self._vertices += int(shapely.get_num_coordinates(map_geoms).sum())
        if self._buffered >= FLUSH_EVERY or self._vertices >= FLUSH_VERTICES:
            self.flush()

    def flush(self) -> None:
        if not self._buffer and self._created:
            return
        import pyogrio.raw

        geoms = np.concatenate([b[0] for b in self._buffer]) if self._buffer else np.empty(0, object)
        class_ids = (np.concatenate([b[1] for b in self._buffer]).astype(np.int32)
                     if self._buffer else np.empty(0, np.int32))
        conf = np.concatenate([b[2] for b in self._buffer]) if self._buffer else np.empty(0)
        self._buffer, self._buffered, self._vertices = [], 0, 0
        if self.geometry_type == "MultiPolygon":
            polys = shapely.get_type_id(geoms) == shapely.GeometryType.POLYGON
            geoms = geoms.copy()
            if polys.any():
                geoms[polys] = shapely.multipolygons(geoms[polys], indices=np.arange(polys.sum()))
        area, perimeter = self.measurer.measure(geoms)
        names = np.array([self._name(c) for c in class_ids], dtype=object)
        fields = ["class_id", "class_name", "area_m2", "perimeter_m"]
        data = [class_ids, names, area, perimeter]
        if self.with_confidence:
            fields.append("mean_confidence")
            data.append(conf.astype(np.float64))
        # GeoPackage 1.3 rather than the 1.4 of recent GDAL: older GDAL/QGIS read it
        # without warnings and nothing of 1.4 is needed.
        options = {} if self._created else {"dataset_options": {"VERSION": "1.3"}}
        pyogrio.raw.write(self.path, shapely.to_wkb(geoms), data, fields, layer=self.layer,
                          driver="GPKG", geometry_type=self.geometry_type, crs=self.crs_wkt,
                          append=self._created, encoding="UTF-8", **options)
        self._created = True
        self.count += len(geoms)
        for cid, n in zip(*np.unique(class_ids, return_counts=True)):
            self.per_class[int(cid)] = self.per_class.get(int(cid), 0) + int(n)

    def close(self) -> None:
        self.flush()

    def _name(self, class_id: int) -> str:
        return self.scheme.names[class_id] if 0 <= class_id < self.scheme.num_classes \
            else f"class_{class_id}"
