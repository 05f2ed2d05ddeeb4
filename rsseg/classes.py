"""Class schemes: names and colours.

The default is the six ISPRS Vaihingen/Potsdam classes in GeoSeg order with
the ISPRS colour code used by the benchmark's RGB label files.
"""

from __future__ import annotations

from dataclasses import dataclass

NODATA = 255  # class value written where the input has no data

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


@dataclass(frozen=True)
class ClassScheme:
    names: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...]

    def __post_init__(self):
        if len(self.names) != len(self.colours):
            raise ValueError("one colour per class name is required")
        if len(self.names) > 255:
            raise ValueError("at most 255 classes fit a uint8 class raster with nodata 255")

    @property
    def num_classes(self) -> int:
        return len(self.names)

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
        return {"names": list(self.names), "colours": [list(c) for c in self.colours]}

    @classmethod
    def from_dict(cls, d: dict) -> "ClassScheme":
        return cls(tuple(d["names"]), tuple(tuple(int(v) for v in c) for c in d["colours"]))


ISPRS = ClassScheme(ISPRS_NAMES, ISPRS_COLOURS)
