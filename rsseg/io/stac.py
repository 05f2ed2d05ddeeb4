"""STAC Items (and a Collection for batch mosaics) describing rsseg outputs (``--stac``).

An Item sits beside the outputs it describes (``classes.tif`` ->
``classes.stac.json``), with asset hrefs relative to it, so the folder can move
or be uploaded as it is. It carries:

* the footprint in WGS 84 (``geometry``, ``bbox``) and, from the projection
  extension, the grid: ``proj:epsg`` (``proj:wkt2`` when the CRS has no EPSG
  code), ``proj:shape`` (rows, columns), ``proj:transform`` and ``proj:bbox``;
* the classification extension's ``classification:classes`` on the class raster
  and GeoPackage assets: value, name and colour hint of every class, plus the
  nodata value 255 flagged ``nodata: true``;
* ``rsseg:model``, ``rsseg:weights`` and ``rsseg:version`` in the properties;
* assets ``classes`` (COG), ``confidence`` (COG) and ``vector`` (GeoPackage),
  whichever exist.

Extension versions: projection v1.1.0 and classification v1.1.0, whose JSON
schemas are vendored under ``tests/data/stac`` so the tests validate offline.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

import rasterio

from rsseg.atomic import atomic_output, check_output_path
from rsseg.classes import ISPRS, NODATA, ClassScheme
from rsseg.errors import InputError

PROJECTION = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"
CLASSIFICATION = "https://stac-extensions.github.io/classification/v1.1.0/schema.json"
EXTENSIONS = [PROJECTION, CLASSIFICATION]
ITEM_SUFFIX = ".stac.json"
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
GPKG_TYPE = "application/geopackage+sqlite3"
FOOTPRINT_DENSIFY = 5  # points per footprint edge: reprojected edges may curve


@dataclass
class Provenance:
    """Where a result came from, for the Item's properties."""

    model: str | None = None  # network name
    weights: str | None = None  # weights tag or file name
    source: str | os.PathLike | None = None  # the input scene
    tta: str | None = None  # test-time augmentation, when one was used
    zoom: float | None = None  # --zoom, when not 1


def provenance(model: str | None, weights: str | os.PathLike | None,
               source: str | os.PathLike | None, tta: str = "none",
               zoom: float = 1.0) -> Provenance:
    """What ``predict``/``batch`` know: the weights as a tag (``bundled``, ``random``) or
    the file name of a checkpoint or ONNX model, and ``--tta`` and ``--zoom`` when used."""
    if weights is None:
        tag = f"bundled:{model}" if model else "bundled"
    elif str(weights) == "random":
        tag = "random"
    else:
        tag = Path(weights).name
    return Provenance(model, tag, source, None if tta == "none" else tta,
                      None if zoom == 1.0 else float(zoom))


def item_path(output: str | os.PathLike) -> Path:
    """The Item beside ``output``: ``dir/classes.tif`` -> ``dir/classes.stac.json``."""
    output = Path(output)
    return output.with_name(output.stem + ITEM_SUFFIX)


def check_item_path(output: str | os.PathLike, overwrite: bool, classes=None) -> Path:
    """Fail early if the Item cannot be written; an rsseg Item of the same class raster
    (from ``predict --stac``) may be replaced, as the new one keeps what it said."""
    path = item_path(output)
    if path.exists() and not overwrite and classes and _same_classes_item(path, classes):
        return path
    return check_output_path(path, overwrite)


def write_output_item(output: str | os.PathLike, *, classes_raster: str | os.PathLike,
                      confidence: str | os.PathLike | None = None,
                      vector: str | os.PathLike | None = None,
                      classes: ClassScheme | None = None,
                      provenance: Provenance | None = None,
                      overwrite: bool = False, extend: bool = False) -> Path:
    """Write the Item describing ``output``'s result beside it; returns its path.

    ``classes_raster`` gives the grid and footprint (it is also the ``classes``
    asset); ``classes`` defaults to the scheme embedded in it. With ``extend``, an
    existing rsseg Item of the same class raster (at this path, or beside the
    raster) lends what this call does not know (model, weights, date, the
    confidence asset), so ``vectorize --stac`` completes what ``predict --stac`` said.
    """
    path = check_item_path(output, overwrite, classes_raster)
    previous = None
    if extend:
        previous = (_previous_item(path, classes_raster)
                    or _previous_item(item_path(classes_raster), classes_raster))
    item = build_item(path, classes_raster=classes_raster, confidence=confidence,
                      vector=vector, classes=classes, provenance=provenance, previous=previous)
    _write_json(path, item.to_dict(include_self_link=False), overwrite=True)
    return path


def build_item(path: Path, *, classes_raster, confidence=None, vector=None,
               classes: ClassScheme | None = None, provenance: Provenance | None = None,
               previous: dict | None = None):
    """The :class:`pystac.Item` that :func:`write_output_item` writes to ``path``."""
    import pystac

    provenance = provenance or Provenance()
    grid = _grid(classes_raster)
    scheme = classes or _embedded_classes(classes_raster)
    old = (previous or {}).get("properties", {})
    when = _acquired(provenance.source) or _parse_datetime(old.get("datetime")) or _now()
    geometry = _footprint(grid)
    item = pystac.Item(
        id=path.name[: -len(ITEM_SUFFIX)], geometry=geometry,
        bbox=None if geometry is None else _bbox(geometry), datetime=when,
        properties=_properties(grid, provenance, old), stac_extensions=list(EXTENSIONS))
    base = path.parent
    item.add_asset("classes", _asset(classes_raster, base, COG_TYPE, "Land-cover classes",
                                     "uint8 class ids; 255 is no data", scheme))
    confidence = confidence or _previous_asset(previous, "confidence")
    if confidence:
        item.add_asset("confidence", _asset(confidence, base, COG_TYPE, "Confidence",
                                            "maximum class probability x 255; 0 is no data"))
    vector = vector or _previous_asset(previous, "vector")
    if vector:
        item.add_asset("vector", _asset(vector, base, GPKG_TYPE, "Class polygons",
                                        "layer 'classes', field class_id; embedded QGIS style",
                                        scheme))
    return item


def write_collection(items: list[str | os.PathLike], path: str | os.PathLike, *,
                     collection_id: str, description: str, overwrite: bool = False,
                     assets: dict | None = None) -> Path:
    """A Collection over the Items ``items`` (written by :func:`write_output_item`), with
    their union extent and ``item`` links relative to ``path``; for ``batch`` mosaics.
    ``assets`` maps keys to ``(file, media type, title)`` (e.g. the mosaic VRT)."""
    import pystac

    path = check_output_path(path, overwrite)
    dicts = [json.loads(Path(p).read_text()) for p in items]
    boxes = [d["bbox"] for d in dicts if d.get("bbox")]
    bbox = ([min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
             max(b[3] for b in boxes)] if boxes else [-180.0, -90.0, 180.0, 90.0])
    times = sorted(_parse_datetime(d["properties"]["datetime"]) for d in dicts) or [_now()]
    collection = pystac.Collection(
        id=collection_id, description=description, license="other",
        extent=pystac.Extent(pystac.SpatialExtent([bbox]),
                             pystac.TemporalExtent([[times[0], times[-1]]])),
        stac_extensions=[CLASSIFICATION])
    classes = _first_classes(dicts)
    if classes:
        collection.summaries.add("classification:classes", classes)
    for key, (href, media_type, title) in (assets or {}).items():
        collection.add_asset(key, _asset(href, path.parent, media_type, title, title))
    for p in items:
        collection.add_link(pystac.Link("item", _relative(p, path.parent),
                                        media_type="application/json"))
    _write_json(path, collection.to_dict(include_self_link=False), overwrite=True)
    return path


def write_batch_stac(out_dir: str | os.PathLike, model: str | None,
                     weights: str | os.PathLike | None, tta: str = "none",
                     zoom: float = 1.0) -> Path:
    """Items for every finished tile of a ``rsseg batch`` output directory (from its
    job database ``batch.sqlite``) and ``mosaic.stac.json``, a Collection over them with
    the mosaic VRT, GeoPackage and confidence VRT (``--probs``) as assets; returns the
    Collection's path.

    The directory is batch's own: Items and the Collection are rewritten each run.
    """
    from rsseg.batch.jobdb import JobDB

    out = Path(out_dir)
    db = JobDB.read(out)
    try:
        done = db.tiles("done") if db is not None else {}
    finally:
        if db is not None:
            db.close()
    items = []
    for source, entry in sorted(done.items()):
        outputs = entry.get("outputs", {})
        if "classes" not in outputs:
            continue
        vector = out / outputs["vector"] if "vector" in outputs else None
        confidence = out / outputs["confidence"] if "confidence" in outputs else None
        items.append(write_output_item(out / outputs["classes"], overwrite=True,
                                       classes_raster=out / outputs["classes"], vector=vector,
                                       confidence=confidence,
                                       provenance=provenance(model, weights, source, tta,
                                                             zoom)))
    path = out / ("mosaic" + ITEM_SUFFIX)
    assets = {"mosaic": (out / "mosaic.vrt", "application/xml", "Class mosaic (GDAL VRT)"),
              "vector": (out / "mosaic.gpkg", GPKG_TYPE, "Class polygons, dissolved "
                                                          "across tile borders"),
              "confidence": (out / "confidence.vrt", "application/xml",
                             "Confidence mosaic (GDAL VRT), with --probs")}
    return write_collection(items, path, collection_id=f"rsseg-{out.resolve().name}",
                            description=f"rsseg land-cover classes of {len(items)} tile(s), "
                                        f"model {model}", overwrite=True,
                            assets={k: v for k, v in assets.items() if v[0].is_file()})


# ---------------------------------------------------------------------------- pieces


@dataclass
class _Grid:
    crs: object
    transform: object
    width: int
    height: int
    bounds: tuple[float, float, float, float]


def _grid(raster) -> _Grid:
    try:
        with rasterio.open(raster) as ds:
            return _Grid(ds.crs, ds.transform, ds.width, ds.height, tuple(ds.bounds))
    except rasterio.errors.RasterioIOError:
        raise InputError("not a readable raster; cannot describe it in STAC", raster) from None


def _embedded_classes(raster) -> ClassScheme:
    from rsseg.io.cog import read_classes

    return read_classes(raster) or ISPRS


def _properties(grid: _Grid, provenance: Provenance, old: dict) -> dict:
    import rsseg

    props = {
        "proj:shape": [grid.height, grid.width],
        "proj:transform": [float(v) for v in tuple(grid.transform)[:6]],
        "proj:bbox": [float(v) for v in grid.bounds],
        "gsd": float(abs(grid.transform.a)),
        "created": _now().isoformat().replace("+00:00", "Z"),
        "rsseg:version": rsseg.__version__,
        "rsseg:model": provenance.model or old.get("rsseg:model"),
        "rsseg:weights": provenance.weights or old.get("rsseg:weights"),
    }
    tta = provenance.tta or old.get("rsseg:tta")
    if tta:
        props["rsseg:tta"] = tta
    zoom = provenance.zoom or old.get("rsseg:zoom")
    if zoom:
        props["rsseg:zoom"] = zoom
    epsg = grid.crs.to_epsg() if grid.crs else None
    props["proj:epsg"] = epsg
    if epsg is None and grid.crs is not None:
        props["proj:wkt2"] = grid.crs.to_wkt()
    if provenance.source:
        props["rsseg:source"] = Path(provenance.source).name
    elif old.get("rsseg:source"):
        props["rsseg:source"] = old["rsseg:source"]
    return props


def classification_classes(scheme: ClassScheme) -> list[dict]:
    """``classification:classes`` for a class raster: every class and the nodata value."""
    classes = [{"value": i, "name": name, "description": name.replace("_", " "),
                "color_hint": "{:02X}{:02X}{:02X}".format(*colour)}
               for i, (name, colour) in enumerate(zip(scheme.names, scheme.colours))]
    classes.append({"value": NODATA, "name": "nodata", "description": "no data",
                    "nodata": True})
    return classes


def _asset(href, base: Path, media_type: str, title: str, description: str,
           scheme: ClassScheme | None = None):
    import pystac

    extra = {"classification:classes": classification_classes(scheme)} if scheme else {}
    return pystac.Asset(_relative(href, base), title=title, description=description,
                        media_type=media_type, roles=["data"], extra_fields=extra)


def _relative(href, base: Path) -> str:
    """``href`` relative to the folder ``base``, as STAC writes it (``./a.tif``, ``../a.tif``)."""
    rel = Path(os.path.relpath(os.path.abspath(href), os.path.abspath(base))).as_posix()
    return rel if rel.startswith("../") else "./" + rel


def _footprint(grid: _Grid) -> dict | None:
    """The raster's outline in WGS 84 (densified edges), or None without a CRS."""
    if grid.crs is None:
        return None
    from rasterio.warp import transform_geom

    left, bottom, right, top = grid.bounds
    steps = [i / (FOOTPRINT_DENSIFY - 1) for i in range(FOOTPRINT_DENSIFY)]
    ring = ([(left + (right - left) * t, top) for t in steps]
            + [(right, top - (top - bottom) * t) for t in steps[1:]]
            + [(right - (right - left) * t, bottom) for t in steps[1:]]
            + [(left, bottom + (top - bottom) * t) for t in steps[1:]])
    geometry = transform_geom(grid.crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    # 1e-9 degrees is 0.1 mm: no need for the last digits of float noise.
    coordinates = [[[round(x, 9), round(y, 9)] for x, y in geometry["coordinates"][0]]]
    return {"type": "Polygon", "coordinates": coordinates}


def _bbox(geometry: dict) -> list[float]:
    xs = [p[0] for p in geometry["coordinates"][0]]
    ys = [p[1] for p in geometry["coordinates"][0]]
    return [min(xs), min(ys), max(xs), max(ys)]


def _acquired(source) -> dt.datetime | None:
    """The input scene's TIFF date (``TIFFTAG_DATETIME``), if it has one."""
    if not source:
        return None
    try:
        with rasterio.open(source) as ds:
            stamp = ds.tags().get("TIFFTAG_DATETIME")
    except rasterio.errors.RasterioIOError:
        return None
    try:
        return dt.datetime.strptime(stamp, "%Y:%m:%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)
    except (TypeError, ValueError):
        return None


def _parse_datetime(value) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _previous_item(path: Path, classes_raster) -> dict | None:
    if not _same_classes_item(path, classes_raster):
        return None
    previous = json.loads(path.read_text())
    previous["_dir"] = str(path.parent)  # its asset hrefs are relative to it
    return previous


def _same_classes_item(path: Path, classes_raster) -> bool:
    """Is ``path`` an rsseg Item whose ``classes`` asset is ``classes_raster``?"""
    try:
        d = json.loads(Path(path).read_text())
        href = d["assets"]["classes"]["href"]
        is_rsseg = "rsseg:version" in d["properties"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    target = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(path)), href))
    return is_rsseg and target == os.path.abspath(classes_raster)


def _previous_asset(previous: dict | None, key: str) -> str | None:
    href = ((previous or {}).get("assets", {}).get(key) or {}).get("href")
    if not href:
        return None
    full = Path(previous["_dir"]) / href
    return str(full) if full.exists() else None


def _first_classes(dicts: list[dict]) -> list[dict] | None:
    for d in dicts:
        classes = d.get("assets", {}).get("classes", {}).get("classification:classes")
        if classes:
            return classes
    return None


def _write_json(path: Path, data: dict, overwrite: bool) -> None:
    with atomic_output(path, overwrite, suffix=".json") as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
