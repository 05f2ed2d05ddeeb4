"""Class schemes: names, colours, label values and what labels leave out.

A scheme file is JSON::

    {"classes": [{"name": "building", "colour": "#3C1098"},
                 {"name": "road", "colour": [110, 193, 228], "value": 7}, ...],
     "ignore": ["#9B9B9B", "#000000", 0]}

``value`` is the class's value in index labels (default: its position);
``ignore`` lists label values (index labels) and colours (RGB labels) left out
of the loss and the metrics. Networks always predict class ids 0..K-1 in the
order of ``classes``; values only say how index *labels* code the classes.

Built-in schemes by name (``rsseg/schemes/<name>.json``): ``isprs`` (the
default: the six ISPRS Vaihingen/Potsdam classes in GeoSeg order with the ISPRS
colour code), ``dubai-aerial``, ``loveda``; :func:`load_scheme` takes a name or
a file path.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from rsseg.errors import InputError

NODATA = 255  # class value written where the input has no data
MAX_CLASSES = 255  # a uint8 class raster keeps 255 for nodata
DEFAULT_SCHEME = "isprs"

ISPRS_NAMES = (
    "impervious_surfaces",
    "building",
    "low_vegetation",
    "tree",
    "car",
    "clutter",
)
ISPRS_COLOURS = (
    (255, 255, 255),
    (0, 0, 255),
    (0, 255, 255),
    (0, 255, 0),
    (255, 255, 0),
    (255, 0, 0),
)

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class ClassScheme:
    """Class names and colours; optionally label values, ignored labels and a name."""

    names: tuple[str, ...]
    colours: tuple[Colour, ...]
    values: tuple[int, ...] | None = None  # index-label value per class; None: 0..K-1
    ignore_values: tuple[int, ...] = ()  # index-label values left out
    ignore_colours: tuple[Colour, ...] = ()  # RGB-label colours left out
    name: str = field(default="", compare=False)  # built-in name or file stem, for messages

    def __post_init__(self):
        if len(self.names) != len(self.colours):
            raise ValueError("one colour per class name is required")
        if len(self.names) > MAX_CLASSES:
            raise ValueError(f"{len(self.names)} classes; at most {MAX_CLASSES} fit a uint8 "
                             "class raster with nodata 255")
        if self.values is not None and len(self.values) != len(self.names):
            raise ValueError("one value per class is required")

    def check_labels_decodable(self) -> None:
        """Names, colours and values unique, none both a class and ignored (ValueError).

        Scheme files must pass; a raster's or an old checkpoint's classes need not
        (two classes may share a display colour when no label is decoded by colour).
        """
        _no_duplicates("class name", [n.lower() for n in self.names])
        _no_duplicates("class colour", [colour_hex(c) for c in self.colours])
        _no_duplicates("class value", list(self.label_values))
        for v in self.ignore_values:
            if v in self.label_values:
                raise ValueError(f"value {v} is both a class value and ignored")
        for c in self.ignore_colours:
            if tuple(c) in self.colours:
                raise ValueError(f"colour {colour_hex(c)} is both a class colour and ignored")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def label_values(self) -> tuple[int, ...]:
        """Value of each class in index labels."""
        return self.values if self.values is not None else tuple(range(self.num_classes))

    def index(self, name_or_id: str | int) -> int:
        """Class id from a name (case-insensitive, spaces or underscores) or an id."""
        if isinstance(name_or_id, int) or str(name_or_id).isdigit():
            idx = int(name_or_id)
            if not 0 <= idx < self.num_classes:
                raise KeyError(f"class id {idx} out of range 0..{self.num_classes - 1}")
            return idx
        key = str(name_or_id).strip().lower().replace(" ", "_")
        for i, n in enumerate(self.names):
            if n.lower() == key or n.lower().split("_")[0] == key:
                return i
        raise KeyError(f"unknown class {name_or_id!r}; known: {', '.join(self.names)}")

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """A GDAL colour table: class colours, nodata transparent black."""
        cmap = {i: (0, 0, 0, 0) for i in range(256)}
        for i, (r, g, b) in enumerate(self.colours):
            cmap[i] = (r, g, b, 255)
        return cmap

    def to_dict(self) -> dict:
        """Plain lists (a checkpoint entry); only what differs from the defaults is added."""
        d = {"names": list(self.names), "colours": [list(c) for c in self.colours]}
        if self.values is not None:
            d["values"] = list(self.values)
        if self.ignore_values:
            d["ignore_values"] = list(self.ignore_values)
        if self.ignore_colours:
            d["ignore_colours"] = [list(c) for c in self.ignore_colours]
        if self.name:
            d["scheme"] = self.name
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ClassScheme":
        return cls(tuple(str(n) for n in d["names"]),
                   tuple(tuple(int(v) for v in c[:3]) for c in d["colours"]),
                   values=None if d.get("values") is None else tuple(int(v) for v in d["values"]),
                   ignore_values=tuple(int(v) for v in d.get("ignore_values") or ()),
                   ignore_colours=tuple(tuple(int(v) for v in c[:3])
                                        for c in d.get("ignore_colours") or ()),
                   name=str(d.get("scheme", "")))


def _no_duplicates(what: str, items: list) -> None:
    seen = set()
    for item in items:
        if item in seen:
            raise ValueError(f"duplicate {what} {item}")
        seen.add(item)


def colour_hex(colour) -> str:
    r, g, b = (int(v) for v in colour[:3])
    return f"#{r:02X}{g:02X}{b:02X}"


def parse_colour(value) -> Colour:
    """``"#RRGGBB"`` or ``[r, g, b]`` -> (r, g, b); ValueError otherwise."""
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if len(text) != 6:
            raise ValueError(f"colour {value!r} is not #RRGGBB")
        try:
            return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)
        except ValueError:
            raise ValueError(f"colour {value!r} is not #RRGGBB") from None
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value):
        return tuple(value)
    raise ValueError(f"colour {value!r} is neither #RRGGBB nor [r, g, b] with 0..255")


def scheme_from_json(data, name: str = "") -> ClassScheme:
    """A scheme from the parsed JSON of a scheme file; ValueError says what is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise ValueError('expected a JSON object with a "classes" list')
    entries = data["classes"]
    if not entries:
        raise ValueError('"classes" is empty')
    names, colours, values = [], [], []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) \
                or not entry["name"].strip():
            raise ValueError(f"class {k + 1} needs a non-empty \"name\"")
        names.append(entry["name"].strip())
        if "colour" not in entry and "color" not in entry:
            raise ValueError(f"class {entry['name']!r} needs a \"colour\"")
        colours.append(parse_colour(entry.get("colour", entry.get("color"))))
        value = entry.get("value", k)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 254:
            raise ValueError(f"class {entry['name']!r}: value {value!r} is not an integer "
                             "0..254 (255 is nodata)")
        values.append(value)
    ignore_values, ignore_colours = [], []
    ignore = data.get("ignore", [])
    if not isinstance(ignore, list):
        raise ValueError('"ignore" must be a list of values and colours')
    for item in ignore:
        if isinstance(item, int) and not isinstance(item, bool):
            ignore_values.append(item)
        else:
            ignore_colours.append(parse_colour(item))
    explicit = values != list(range(len(values)))
    scheme = ClassScheme(tuple(names), tuple(colours), tuple(values) if explicit else None,
                         tuple(ignore_values), tuple(ignore_colours), name)
    scheme.check_labels_decodable()
    return scheme


def builtin_schemes() -> list[str]:
    """Names of the schemes shipped in ``rsseg/schemes/``."""
    return sorted(p.name[:-5] for p in _scheme_folder().glob("*.json"))


def _scheme_folder() -> Path:
    return Path(str(resources.files("rsseg") / "schemes"))


def load_scheme(name_or_path: str | os.PathLike | None = None) -> ClassScheme:
    """A built-in scheme by name (default ``isprs``) or a scheme file.

    Problems raise :class:`rsseg.errors.InputError` naming the file.
    """
    text = str(name_or_path or DEFAULT_SCHEME)
    builtin = _scheme_folder() / f"{text.lower()}.json"
    is_name = os.sep not in text and "/" not in text and not text.lower().endswith(".json")
    if is_name and builtin.is_file():
        path, name = builtin, text.lower()
    elif Path(text).is_file():
        path, name = Path(text), Path(text).stem
    elif is_name and _tag_scheme(text) is not None:
        return _tag_scheme(text)
    elif is_name:
        raise InputError(f"unknown class scheme {text!r}: neither a file nor a built-in "
                         f"scheme ({', '.join(builtin_schemes())}) nor a bundled weights tag")
    else:
        raise InputError("class-scheme file not found", text)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError("class-scheme file is not JSON text", path) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"class-scheme file is not valid JSON (line {exc.lineno}: "
                         f"{exc.msg})", path) from None
    try:
        return scheme_from_json(data, name)
    except ValueError as exc:
        raise InputError(f"bad class scheme: {exc}", path) from None


def _tag_scheme(tag: str) -> ClassScheme | None:
    """The classes of a bundled weights tag (``--classes dubai-aerial`` = what that model predicts)."""
    from rsseg.weights.bundled import all_bundled, describe_checkpoint

    for weights in all_bundled():
        if weights.tag == tag:
            scheme = describe_checkpoint(weights.path)["scheme"]
            return ClassScheme(scheme.names, scheme.colours, scheme.values, scheme.ignore_values,
                               scheme.ignore_colours, name=tag)
    return None


ISPRS = ClassScheme(ISPRS_NAMES, ISPRS_COLOURS, name="isprs")
