"""The one reader of the class scheme embedded in a class raster.

``rsseg predict`` writes (see :func:`rsseg.io.cog.class_metadata`) dataset tags
``CLASS_NAMES`` (comma-separated) and ``CLASS_COLOURS`` (JSON list of
[r, g, b]), band tags ``CLASS_<id>=<name>`` and a colour table. Rasters made by
other tools are understood too: a tag named ``class_names``, ``classes``,
``rsseg_classes`` or ``class_scheme`` (dataset or band 1) holding a JSON list
of names, a JSON object ``{"names": [...], "colours": [...]}`` or
comma-separated names; ``CLASS_<id>`` band tags alone; GDAL category names in
the ``.aux.xml``. Colours missing from the tags come from the colour table, else
from the built-in scheme with the same names, else distinct generated colours.
"""

from __future__ import annotations

import json
from pathlib import Path

from rsseg.classes import MAX_CLASSES, ClassScheme

CLASS_TAG_KEYS = ("class_names", "classes", "rsseg_classes", "class_scheme")


def read_raster_classes(src) -> tuple[ClassScheme | None, str]:
    """(scheme, where it came from) of an open rasterio dataset; (None, why) without names."""
    found = _names_and_colours(src)
    if found is None:
        return None, "default classes (no class names in the raster)"
    names, colours, where = found
    names = names[:MAX_CLASSES]
    if colours is None or len(colours) != len(names):
        colours = _colours_for(src, names)
    return ClassScheme(tuple(names), tuple(colours)), where


def read_classes(path) -> ClassScheme | None:
    """The class scheme embedded in the raster at ``path``, or None."""
    import rasterio

    with rasterio.open(path) as ds:
        return read_raster_classes(ds)[0]


def _names_and_colours(src):
    dataset, band = src.tags(), src.tags(1)
    if dataset.get("CLASS_NAMES"):
        names = [n.strip() for n in dataset["CLASS_NAMES"].split(",")]
        return names, _colour_list(dataset.get("CLASS_COLOURS")), "dataset tags (CLASS_NAMES)"
    for tags, where in ((dataset, "dataset tags"), (band, "band 1 tags")):
        for key, value in tags.items():
            if key.lower() in CLASS_TAG_KEYS:
                names, colours = _parse_class_tag(value)
                if names:
                    colours = colours or _colour_list(_get_any(tags, ("class_colours",
                                                                      "class_colors")))
                    return names, colours, f"{where} ({key})"
    numbered = {int(k[6:]): v for k, v in band.items() if k.startswith("CLASS_")
                and k[6:].isdigit()}
    if numbered:
        names = [numbered.get(i, f"class_{i}") for i in range(max(numbered) + 1)]
        return names, None, "band 1 tags (CLASS_<id>)"
    names = _category_names(src)
    if names:
        return names, None, "GDAL category names"
    return None


def _get_any(tags: dict, keys: tuple) -> str | None:
    for key, value in tags.items():
        if key.lower() in keys:
            return value
    return None


def _colour_list(text) -> list | None:
    if not text:
        return None
    try:
        return [tuple(int(v) for v in c[:3]) for c in json.loads(text)]
    except (ValueError, TypeError):
        return None


def _parse_class_tag(value: str) -> tuple[list[str], list | None]:
    text = value.strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]
    if isinstance(parsed, dict):
        names = [str(n) for n in parsed.get("names", [])]
        colours = parsed.get("colours") or parsed.get("colors")
        if colours and len(colours) == len(names):
            return names, [tuple(int(v) for v in c[:3]) for c in colours]
        return names, None
    if isinstance(parsed, list):
        return [str(n) for n in parsed], None
    return [], None


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


def _colours_for(src, names: list[str]) -> list[tuple[int, int, int]]:
    """Colours from the colour table, else a built-in scheme with these names, else generated."""
    try:
        table = src.colormap(1)
    except ValueError:  # no colour table
        table = None
    known = _builtin_with_names(names)
    colours = []
    for i in range(len(names)):
        if table is not None and i in table and table[i][3] > 0:
            colours.append(tuple(int(v) for v in table[i][:3]))
        elif known is not None:
            colours.append(known.colours[i])
        else:
            colours.append(fallback_colour(i))
    return colours


def _builtin_with_names(names: list[str]) -> ClassScheme | None:
    from rsseg.classes import builtin_schemes, load_scheme

    for name in builtin_schemes():
        scheme = load_scheme(name)
        if list(scheme.names) == list(names):
            return scheme
    return None


def fallback_colour(i: int) -> tuple[int, int, int]:
    """Distinct, deterministic colours for classes without one."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.65, 0.9)
    return int(r * 255), int(g * 255), int(b * 255)
