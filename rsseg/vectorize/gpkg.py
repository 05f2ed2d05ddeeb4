"""Inputs and outputs of :mod:`rsseg.vectorize.streaming`: class names, measurements, GeoPackage writes."""

from __future__ import annotations

import warnings

import numpy as np
import shapely

from rsseg.classes import ClassScheme

#: Features / vertices buffered before one append to the GeoPackage: bounds memory
#: (a few tens of MB at most) while amortising the cost of reopening the file.
FLUSH_EVERY = 20000
FLUSH_VERTICES = 250_000


def read_class_scheme(src) -> ClassScheme:
    """Class names and colours of an open class raster (:mod:`rsseg.io.classes`).

    A raster without class names gets the default scheme (``isprs``), as ``rsseg score``.
    """
    from rsseg.classes import load_scheme
    from rsseg.io.classes import read_raster_classes

    scheme, _ = read_raster_classes(src)
    return scheme if scheme is not None else load_scheme()


class Measurer:
    """Pixel -> map coordinates, and areas (m²) / perimeters (m) in the raster's CRS.

    Projected CRS: planar measures scaled by the unit's metres. Geographic CRS:
    geodesic measures on the CRS's ellipsoid.
    """

    def __init__(self, transform, crs_wkt: str | None):
        from pyproj import CRS

        self.matrix = np.array([[transform.a, transform.d], [transform.b, transform.e]])
        self.offset = np.array([transform.c, transform.f])
        crs = CRS.from_wkt(crs_wkt) if crs_wkt else None  # None: planar, in the grid's units
        self.geod = crs.get_geod() if crs is not None and crs.is_geographic else None
        self.metres = 1.0
        if crs is not None and self.geod is None and crs.axis_info:
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

    def __init__(self, path, layer: str, crs_wkt: str | None, scheme: ClassScheme,
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
        with warnings.catch_warnings():
            # Without a CRS (pixel coordinates) pyogrio warns on every batch; the
            # command has said so once already.
            warnings.filterwarnings("ignore", "'crs' was not provided")
            pyogrio.raw.write(self.path, shapely.to_wkb(geoms), data, fields, layer=self.layer,
                              driver="GPKG", geometry_type=self.geometry_type,
                              crs=self.crs_wkt, append=self._created, encoding="UTF-8",
                              **options)
        self._created = True
        self.count += len(geoms)
        for cid, n in zip(*np.unique(class_ids, return_counts=True)):
            self.per_class[int(cid)] = self.per_class.get(int(cid), 0) + int(n)

    def close(self) -> None:
        self.flush()

    def _name(self, class_id: int) -> str:
        return self.scheme.names[class_id] if 0 <= class_id < self.scheme.num_classes \
            else f"class_{class_id}"
