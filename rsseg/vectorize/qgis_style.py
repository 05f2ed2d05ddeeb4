"""QGIS styles for class polygons: QML text, SLD text, and the GeoPackage ``layer_styles`` table.

QGIS looks for a ``layer_styles`` table when it opens a GeoPackage layer and applies
the row with ``useAsDefault`` set for that table and geometry column, so the map
opens coloured by class without any plugin. The same QML is also written as a
``.qml`` sidecar (QGIS loads ``<name>.qml`` next to a file-based layer too).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import sqlite3
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from rsseg.classes import ClassScheme

STYLE_NAME = "rsseg classes"
OUTLINE = "35,35,35,255"

_LAYER_STYLES_DDL = """
CREATE TABLE IF NOT EXISTS "layer_styles" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    "f_table_catalog" TEXT(256),
    "f_table_schema" TEXT(256),
    "f_table_name" TEXT(256),
    "f_geometry_column" TEXT(256),
    "styleName" TEXT(30),
    "styleQML" TEXT,
    "styleSLD" TEXT,
    "useAsDefault" BOOLEAN,
    "description" TEXT,
    "owner" TEXT(30),
    "ui" TEXT(30),
    "update_time" DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
)"""


def _rgba(colour) -> str:
    r, g, b = (int(v) for v in colour[:3])
    return f"{r},{g},{b},255"


def _hex(colour) -> str:
    r, g, b = (int(v) for v in colour[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def _fill_symbol(index: int, colour) -> str:
    """A QGIS simple-fill symbol; both the 3.26+ Option map and the older prop form."""
    props = {
        "color": _rgba(colour), "style": "solid", "outline_color": OUTLINE,
        "outline_style": "solid", "outline_width": "0.1", "outline_width_unit": "MM",
        "joinstyle": "bevel", "offset": "0,0", "offset_unit": "MM",
    }
    options = "".join(f'<Option name="{k}" type="QString" value="{v}"/>' for k, v in props.items())
    legacy = "".join(f'<prop k="{k}" v="{v}"/>' for k, v in props.items())
    return (f'<symbol type="fill" name="{index}" alpha="1" clip_to_extent="1" force_rhr="0">'
            f'<layer class="SimpleFill" enabled="1" locked="0" pass="0">'
            f'<Option type="Map">{options}</Option>{legacy}</layer></symbol>')


def qml(scheme: ClassScheme, attribute: str = "class_id") -> str:
    """QML of a categorized renderer on ``attribute`` with one category per class."""
    categories = "\n      ".join(
        f'<category value="{i}" label={quoteattr(name)} symbol="{i}" render="true"/>'
        for i, name in enumerate(scheme.names))
    symbols = "\n      ".join(_fill_symbol(i, c) for i, c in enumerate(scheme.colours))
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="Symbology">
  <renderer-v2 type="categorizedSymbol" attr={quoteattr(attribute)} symbollevels="0" enableorderby="0" forceraster="0">
    <categories>
      {categories}
    </categories>
    <symbols>
      {symbols}
    </symbols>
    <rotation/>
    <sizescale/>
  </renderer-v2>
  <blendMode>0</blendMode>
  <featureBlendMode>0</featureBlendMode>
  <layerOpacity>1</layerOpacity>
  <layerGeometryType>2</layerGeometryType>
</qgis>
"""


def sld(scheme: ClassScheme, layer: str, attribute: str = "class_id") -> str:
    """An SLD 1.1 equivalent (one rule per class) for clients other than QGIS."""
    rules = "".join(
        f"<se:Rule><se:Name>{escape(name)}</se:Name>"
        f"<se:Description><se:Title>{escape(name)}</se:Title></se:Description>"
        f"<ogc:Filter><ogc:PropertyIsEqualTo><ogc:PropertyName>{escape(attribute)}"
        f"</ogc:PropertyName><ogc:Literal>{i}</ogc:Literal></ogc:PropertyIsEqualTo></ogc:Filter>"
        f'<se:PolygonSymbolizer><se:Fill><se:SvgParameter name="fill">{_hex(colour)}'
        f'</se:SvgParameter></se:Fill><se:Stroke><se:SvgParameter name="stroke">#232323'
        f'</se:SvgParameter><se:SvgParameter name="stroke-width">0.5</se:SvgParameter>'
        f"</se:Stroke></se:PolygonSymbolizer></se:Rule>"
        for i, (name, colour) in enumerate(zip(scheme.names, scheme.colours)))
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            '<StyledLayerDescriptor version="1.1.0" xmlns="http://www.opengis.net/sld" '
            'xmlns:ogc="http://www.opengis.net/ogc" xmlns:se="http://www.opengis.net/se" '
            'xmlns:xlink="http://www.w3.org/1999/xlink" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            f"<NamedLayer><se:Name>{escape(layer)}</se:Name><UserStyle>"
            f"<se:Name>{escape(STYLE_NAME)}</se:Name><se:FeatureTypeStyle>{rules}"
            "</se:FeatureTypeStyle></UserStyle></NamedLayer></StyledLayerDescriptor>")


def gpkg_timestamp(source: str | os.PathLike | None = None) -> str:
    """The time written into a GeoPackage's date columns, in its ISO format.

    ``SOURCE_DATE_EPOCH`` when set (the reproducible-builds convention), else the
    modification time of ``source`` (the raster the layer comes from), else now.
    So the same input gives a byte-identical GeoPackage on every run.
    """
    seconds = os.environ.get("SOURCE_DATE_EPOCH")
    if seconds is None and source is not None:
        try:
            seconds = os.stat(source).st_mtime
        except OSError:
            pass
    when = (_dt.datetime.fromtimestamp(float(seconds), _dt.timezone.utc) if seconds is not None
            else _dt.datetime.now(_dt.timezone.utc))
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@contextlib.contextmanager
def gpkg_dates(timestamp: str):
    """GDAL writes ``timestamp`` (not the clock) into gpkg_contents.last_change meanwhile."""
    import pyogrio

    before = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": timestamp})
    try:
        yield timestamp
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": before})


def embed_style(gpkg: str | os.PathLike, layer: str, scheme: ClassScheme,
                geometry_column: str = "geom", timestamp: str | None = None) -> None:
    """Add (or replace) the default QGIS style of ``layer`` in the GeoPackage's ``layer_styles``.

    ``timestamp`` goes into the date columns (default: now; see :func:`gpkg_timestamp`).
    """
    now = timestamp or gpkg_timestamp()
    con = sqlite3.connect(os.fspath(gpkg))
    try:
        with con:
            con.execute(_LAYER_STYLES_DDL)
            # Registered as an attributes table, as GDAL/QGIS do, so the file stays a valid GPKG.
            con.execute(
                "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, "
                "description, last_change) VALUES ('layer_styles', 'attributes', "
                "'layer_styles', '', ?)", (now,))
            con.execute("DELETE FROM layer_styles WHERE f_table_name = ? AND styleName = ?",
                        (layer, STYLE_NAME))
            con.execute("UPDATE layer_styles SET useAsDefault = 0 WHERE f_table_name = ?",
                        (layer,))
            con.execute(
                "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, "
                "f_geometry_column, styleName, styleQML, styleSLD, useAsDefault, description, "
                "owner, ui, update_time) VALUES ('', '', ?, ?, ?, ?, ?, 1, ?, '', NULL, ?)",
                (layer, geometry_column, STYLE_NAME, qml(scheme), sld(scheme, layer),
                 "Land-cover classes coloured by class_id (written by rsseg)", now))
    finally:
        con.close()


def write_qml_sidecar(path: str | os.PathLike, scheme: ClassScheme) -> Path:
    """Write the QML next to ``path`` (``out.gpkg`` -> ``out.qml``), atomically; return its path."""
    target = Path(path).with_suffix(".qml")
    tmp = target.with_name(f".{target.name}.part")
    try:
        tmp.write_text(qml(scheme), encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
