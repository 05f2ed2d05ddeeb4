"""What a batch job reads: input tiles and the mosaics they form.

Inputs are given as a glob (``"city/*.tif"``), a list file (one path per line,
``#`` comments, paths relative to the list file), a VRT mosaic (its source
files are the tiles) or a tile index (a vector file as written by
``gdaltindex``, with the tile paths in a ``location`` field).

Tiles that share a CRS, pixel size, band layout and pixel grid and that touch
or overlap form a *mosaic* (a connected group). Each mosaic is read through a
VRT of its tiles (:mod:`rsseg.io.vrt`), so windows near a tile edge see the
neighbouring tiles. A tile that fits no other is a mosaic of its own; a tile
that cannot be opened is kept with its error, so the job reports it as failed
while the others run.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from rsseg.errors import InputError

VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb")
LIST_SUFFIXES = (".txt", ".lst", ".list")
TILE_INDEX_FIELDS = ("location", "path", "filename", "file")
# Offsets closer than this fraction of a pixel count as on the same pixel grid.
GRID_TOLERANCE = 1e-6


@dataclass
class Tile:
    """One input file, its grid (None when it cannot be opened) and its place in a mosaic."""

    path: str
    width: int = 0
    height: int = 0
    crs: object = None
    transform: object = None
    count: int = 0
    dtypes: tuple = ()
    nodata: float | None = None
    descriptions: tuple = ()
    error: str | None = None
    mosaic: int = -1  # index of its mosaic, -1 when unreadable
    col: int = 0  # pixel offset of the tile inside its mosaic
    row: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def stem(self) -> str:
        return Path(self.path).stem


@dataclass
class Mosaic:
    """Tiles on one pixel grid that touch each other; ``width x height`` pixels from ``transform``."""

    index: int
    tiles: list[Tile] = field(default_factory=list)
    width: int = 0
    height: int = 0
    transform: object = None


def resolve_inputs(spec) -> list[str]:
    """Absolute tile paths named by ``spec`` (glob, list file, VRT or tile index), in order.

    ``spec`` may also be several of these (a list): an unquoted glob, which the shell
    expanded into the files it matches, arrives that way. Their tiles are joined.
    """
    if not isinstance(spec, (str, os.PathLike)):
        specs = [str(s) for s in spec]
        if not specs:
            raise InputError("no input given (a glob, a list file, a VRT or a tile index)")
        return _unique([p for one in specs for p in resolve_inputs(one)])
    spec = str(spec)
    path = Path(spec)
    if any(ch in spec for ch in "*?[") and not path.exists():
        found = sorted(glob.glob(spec, recursive=True))
        files = [f for f in found if Path(f).is_file()]
        if not files:
            raise InputError("the pattern matches no file", spec)
        return _unique([os.path.abspath(f) for f in files])
    if not path.exists():
        raise InputError("input not found (expected a glob, a list file, a VRT or a tile index)",
                         spec)
    if path.is_dir():
        raise InputError("input is a directory; quote a glob such as 'dir/*.tif'", spec)
    suffix = path.suffix.lower()
    if suffix == ".vrt":
        return _unique(vrt_sources(path))
    if suffix in LIST_SUFFIXES:
        return _unique(_list_file(path))
    if suffix in VECTOR_SUFFIXES:
        return _unique(_tile_index(path))
    return [os.path.abspath(path)]


def _unique(paths: list[str]) -> list[str]:
    seen, out = set(), []
    for p in paths:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _list_file(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the list file ({exc})", path) from None
    base = path.resolve().parent
    paths = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            paths.append(os.path.abspath(base / line))
    if not paths:
        raise InputError("the list file names no tile", path)
    return paths


def vrt_sources(path: str | os.PathLike) -> list[str]:
    """The source files of a VRT mosaic, in the order they first appear."""
    import xml.etree.ElementTree as ET

    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise InputError(f"not a readable VRT ({exc})", path) from None
    base = path.resolve().parent
    paths = []
    for node in root.iter("SourceFilename"):
        name = (node.text or "").strip()
        if not name:
            continue
        relative = node.get("relativeToVRT", "0") == "1"
        paths.append(os.path.abspath(base / name) if relative else os.path.abspath(name))
    if not paths:
        raise InputError("the VRT has no source files", path)
    return paths


def _tile_index(path: Path) -> list[str]:
    import pyogrio

    try:
        columns = pyogrio.read_info(path)["fields"]
    except Exception as exc:  # noqa: BLE001 - pyogrio raises several kinds
        raise InputError(f"not a readable tile index ({' '.join(str(exc).split())[:160]})",
                         path) from None
    names = [c for c in columns if c.lower() in TILE_INDEX_FIELDS]
    if not names:
        raise InputError(f"tile index has no {' / '.join(TILE_INDEX_FIELDS)} field "
                         f"(fields: {', '.join(columns) or 'none'})", path)
    table = pyogrio.read_dataframe(path, columns=[names[0]], read_geometry=False)
    base = path.resolve().parent
    paths = [_index_location(str(v), base) for v in table[names[0]] if v]
    if not paths:
        raise InputError("the tile index lists no tile", path)
    return paths


def _index_location(location: str, base: Path) -> str:
    """A tile index entry as an absolute path.

    ``gdaltindex`` stores paths exactly as they were typed, so a relative entry is
    relative to the folder it was run in, which may not be the index's own folder.
    The index's folder is tried first (an index moved with its tiles), then the
    current folder; when neither holds the file, the index's folder is reported.
    """
    if os.path.isabs(location):
        return os.path.abspath(location)
    beside_index = os.path.abspath(base / location)
    if not os.path.exists(beside_index) and os.path.exists(location):
        return os.path.abspath(location)
    return beside_index


def open_tiles(paths: list[str]) -> list[Tile]:
    """Read every tile's grid; unreadable tiles keep their error instead of failing the job."""
    import rasterio
    from rasterio.errors import RasterioIOError

    tiles = []
    for path in paths:
        tile = Tile(path)
        if not os.path.isfile(path):
            tile.error = f"{path}: input file not found"
            tiles.append(tile)
            continue
        try:
            with rasterio.open(path) as ds:
                tile.width, tile.height = ds.width, ds.height
                tile.crs, tile.transform = ds.crs, ds.transform
                tile.count, tile.dtypes = ds.count, tuple(ds.dtypes)
                tile.nodata = ds.nodata
                tile.descriptions = tuple(ds.descriptions)
        except (RasterioIOError, OSError) as exc:
            reason = " ".join(str(exc).replace(path, "").split()).strip(": ")[:160]
            tile.error = f"{path}: not a raster GDAL can read ({reason})"
        tiles.append(tile)
    return tiles


def group_mosaics(tiles: list[Tile]) -> list[Mosaic]:
    """Group readable tiles into mosaics (connected tiles on one pixel grid)."""
    ok = [t for t in tiles if t.ok]
    parent = list(range(len(ok)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(ok)):
        for j in range(i + 1, len(ok)):
            if share_a_vrt(ok[i], ok[j]) and touching(ok[i], ok[j]):
                parent[find(i)] = find(j)
    groups: dict[int, list[Tile]] = {}
    for i, tile in enumerate(ok):
        groups.setdefault(find(i), []).append(tile)
    mosaics = [_place(k, members) for k, members in enumerate(groups.values())]
    return mosaics


def aligned(a: Tile, b: Tile) -> bool:
    """Same CRS and pixel size, no rotation, offsets a whole number of pixels apart."""
    ta, tb = a.transform, b.transform
    if a.crs != b.crs or ta.b or ta.d or tb.b or tb.d:
        return False
    if abs(ta.a - tb.a) > GRID_TOLERANCE * abs(ta.a) or abs(ta.e - tb.e) > GRID_TOLERANCE * abs(ta.e):
        return False
    dx, dy = (tb.c - ta.c) / ta.a, (tb.f - ta.f) / ta.e
    return abs(dx - round(dx)) < 1e-3 and abs(dy - round(dy)) < 1e-3


def share_a_vrt(a: Tile, b: Tile) -> bool:
    """Aligned, with the same bands (count, types, nodata): one VRT can read both."""
    return (a.count == b.count and a.dtypes == b.dtypes and a.nodata == b.nodata
            and aligned(a, b))


def touching(a: Tile, b: Tile) -> bool:
    """Do the two tiles (on one grid) overlap or share an edge?"""
    ta = a.transform
    dx = round((b.transform.c - ta.c) / ta.a)
    dy = round((b.transform.f - ta.f) / ta.e)
    return dx <= a.width and dx + b.width >= 0 and dy <= a.height and dy + b.height >= 0


def layout(members: list[Tile]):
    """Pixel offsets ``[(col, row)]`` of aligned tiles in their union, its size and transform."""
    from affine import Affine

    ref = members[0].transform
    offsets = [(round((t.transform.c - ref.c) / ref.a), round((t.transform.f - ref.f) / ref.e))
               for t in members]
    left, top = min(o[0] for o in offsets), min(o[1] for o in offsets)
    offsets = [(dx - left, dy - top) for dx, dy in offsets]
    width = max(dx + t.width for t, (dx, _) in zip(members, offsets))
    height = max(dy + t.height for t, (_, dy) in zip(members, offsets))
    transform = Affine(ref.a, 0.0, ref.c + left * ref.a, 0.0, ref.e, ref.f + top * ref.e)
    return offsets, width, height, transform


def _place(index: int, members: list[Tile]) -> Mosaic:
    """Place the tiles in their mosaic (top-left tile corner at 0, 0)."""
    offsets, width, height, transform = layout(members)
    for tile, (col, row) in zip(members, offsets):
        tile.mosaic, tile.col, tile.row = index, col, row
    return Mosaic(index, list(members), width, height, transform)


def context_tiles(tile: Tile, mosaic: Mosaic, margin: int) -> list[Tile]:
    """The tiles of ``mosaic`` within ``margin`` pixels of ``tile`` (itself included).

    A prediction of ``tile`` reads no pixel farther than one window from it, so
    these are the files whose content it depends on (used in the manifest).
    """
    return [t for t in mosaic.tiles
            if t.col < tile.col + tile.width + margin and t.col + t.width > tile.col - margin
            and t.row < tile.row + tile.height + margin and t.row + t.height > tile.row - margin]
