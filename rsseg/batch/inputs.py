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
    fingerprint: str = ""  # size:mtime_ns when its grid was read ("" for virtual paths)
    mosaic: int = -1  # index of its mosaic, -1 when unreadable
    col: int = 0  # pixel offset of the tile inside its mosaic
    row: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def stem(self) -> str:
        # os.path, not pathlib: planning asks this of 100,000 tiles several times
        return os.path.splitext(os.path.basename(self.path))[0]


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


def is_virtual(path: str) -> bool:
    """A GDAL virtual path (``/vsis3/bucket/a.tif``, ``/vsicurl/https://...``): kept as
    written (normalising it would break the URL), read by GDAL on every worker."""
    return path.startswith("/vsi")


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
            paths.append(line if is_virtual(line) else os.path.abspath(base / line))
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
        if is_virtual(name):
            paths.append(name)
        else:
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
    if is_virtual(location):
        return location
    if os.path.isabs(location):
        return os.path.abspath(location)
    beside_index = os.path.abspath(base / location)
    if not os.path.exists(beside_index) and os.path.exists(location):
        return os.path.abspath(location)
    return beside_index


# Below this many tiles one process opens them all (a pool costs more than it saves).
PARALLEL_OPEN_MIN = 4000
OPEN_CHUNK = 1000


def open_tiles(paths: list[str], processes: int | None = None,
               known: dict | None = None) -> list[Tile]:
    """Read every tile's grid; unreadable tiles keep their error instead of failing the job.

    Opening is GDAL's work (about 0.5 ms a tile): many tiles are opened by
    ``processes`` worker processes (default: one per CPU, at most 8), in order.
    ``known`` maps paths to ``(fingerprint, grid record)`` read earlier (the job
    database keeps them): a file whose size and mtime are unchanged is not
    opened again, so resuming a national job costs a ``stat`` per tile.
    """
    known = known or {}
    fingerprints = {path: file_fingerprint(path) for path in paths}
    records = {path: known[path][1] for path in paths
               if fingerprints[path] and known.get(path, ("",))[0] == fingerprints[path]}
    missing = [path for path in paths if path not in records]
    records.update((r[0], r) for r in _open_records(missing, processes))
    tiles = _tiles([records[path] for path in paths])
    for tile in tiles:
        tile.fingerprint = fingerprints[tile.path]
    return tiles


def file_fingerprint(path: str) -> str:
    """``size:mtime_ns`` of a file ("" when it has none: missing, or a GDAL virtual path)."""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}"


def _open_records(paths: list[str], processes: int | None) -> list[tuple]:
    processes = processes or min(os.cpu_count() or 1, 8)
    if len(paths) < PARALLEL_OPEN_MIN or processes < 2:
        return _grid_records(paths)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: the planner has started no thread yet, and children need no imports
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    chunks = [paths[i:i + OPEN_CHUNK] for i in range(0, len(paths), OPEN_CHUNK)]
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context(method)) as pool:
        return [r for chunk in pool.map(_grid_records, chunks) for r in chunk]


def grid_record(tile: Tile, wkt: str) -> tuple:
    """The record :func:`_tiles` rebuilds ``tile`` from (``wkt``: its CRS as WKT)."""
    return (tile.path, None, tile.width, tile.height, wkt, tuple(tile.transform.to_gdal()),
            tile.count, tuple(tile.dtypes), tile.nodata, tuple(tile.descriptions))


def _tiles(records: list[tuple]) -> list[Tile]:
    """Tiles from :func:`_grid_records`, sharing one CRS object per distinct CRS."""
    from affine import Affine
    from rasterio.crs import CRS

    crs_by_wkt: dict[str, object] = {}
    tiles = []
    for path, error, width, height, wkt, gdal_transform, count, dtypes, nodata, names in records:
        if error is not None:
            tiles.append(Tile(path, error=error))
            continue
        crs = None
        if wkt:
            crs = crs_by_wkt.get(wkt)
            if crs is None:
                crs = crs_by_wkt[wkt] = CRS.from_wkt(wkt)
        tiles.append(Tile(path, width, height, crs, Affine.from_gdal(*gdal_transform), count,
                          tuple(dtypes), nodata, tuple(names)))
    return tiles


def _grid_records(paths: list[str]) -> list[tuple]:
    """``(path, error, width, height, crs wkt, GDAL transform, count, dtypes, nodata,
    descriptions)`` of each file: plain values, cheap to send between processes."""
    import rasterio
    from rasterio.errors import RasterioIOError

    records = []
    # Listing the folder at every open (GDAL's default, to find side files) costs
    # O(files in the folder) per tile: quadratic for 100,000 tiles in one folder.
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="TRUE"):
        for path in paths:
            if not is_virtual(path) and not os.path.isfile(path):
                records.append((path, f"{path}: input file not found") + (None,) * 8)
                continue
            try:
                with _open_tile(path) as ds:
                    records.append((path, None, ds.width, ds.height,
                                    ds.crs.to_wkt() if ds.crs else "", ds.transform.to_gdal(),
                                    ds.count, tuple(ds.dtypes), ds.nodata,
                                    tuple(ds.descriptions)))
            except (RasterioIOError, OSError) as exc:
                reason = " ".join(str(exc).replace(path, "").split()).strip(": ")[:160]
                records.append((path, f"{path}: not a raster GDAL can read ({reason})")
                               + (None,) * 8)
    return records


def _open_tile(path: str):
    """Open a tile with rasterio (not :func:`rsseg.io.scene.open_raster`: an unreadable
    tile is recorded, not refused), asking GDAL's GeoTIFF driver first for a ``.tif``:
    GDAL otherwise probes its drivers in turn (measured: 1.1 -> 0.83 ms per tiny
    tile); a ``.tif`` that is something else is opened as usual."""
    import rasterio
    from rasterio.errors import RasterioIOError

    if path.lower().endswith((".tif", ".tiff")):
        try:
            return rasterio.open(path, driver="GTiff")
        except RasterioIOError:
            pass
    return rasterio.open(path)


def group_mosaics(tiles: list[Tile]) -> list[Mosaic]:
    """Group readable tiles into mosaics (connected tiles on one pixel grid).

    Tiles are first sorted onto their pixel grids (one comparison per tile with
    each grid's first tile), then the touching pairs of each grid come from an
    R-tree of the tiles' pixel boxes: n log n in the tile count, never all pairs.
    """
    ok = [t for t in tiles if t.ok]
    parent = list(range(len(ok)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for members in _grids(ok):
        first, second = _touching_pairs([ok[i] for i in members])
        for a, b in zip(first.tolist(), second.tolist()):
            ra, rb = find(members[a]), find(members[b])
            if ra != rb:
                parent[ra] = rb
    groups: dict[int, list[Tile]] = {}
    for i, tile in enumerate(ok):
        groups.setdefault(find(i), []).append(tile)
    return [_place(k, members) for k, members in enumerate(groups.values())]


def _grids(tiles: list[Tile]) -> list[list[int]]:
    """Indices of ``tiles`` by pixel grid and band layout (tiles one VRT can read together)."""
    grids: dict[tuple, list[tuple[Tile, list[int]]]] = {}
    for i, tile in enumerate(tiles):
        candidates = grids.setdefault(_band_layout(tile), [])
        for reference, members in candidates:
            if aligned(reference, tile):
                members.append(i)
                break
        else:
            candidates.append((tile, [i]))
    return [members for candidates in grids.values() for _, members in candidates]


def _band_layout(tile: Tile) -> tuple:
    """Band count, types and nodata (NaN equal to NaN): what one VRT needs to be the same."""
    nodata = tile.nodata
    return tile.count, tuple(tile.dtypes), "nan" if nodata is not None and nodata != nodata else nodata


def share_a_vrt(a: Tile, b: Tile) -> bool:
    """Aligned, with the same bands (count, types, nodata): one VRT can read both."""
    return _band_layout(a) == _band_layout(b) and aligned(a, b)


def pixel_boxes(tiles: list[Tile], grow: float = 0.0):
    """Shapely boxes of the tiles in pixel units of the first tile's grid, grown by ``grow``."""
    import numpy as np
    import shapely

    ref = tiles[0].transform
    cols = np.array([round((t.transform.c - ref.c) / ref.a) for t in tiles], dtype=float)
    rows = np.array([round((t.transform.f - ref.f) / ref.e) for t in tiles], dtype=float)
    widths = np.array([t.width for t in tiles], dtype=float)
    heights = np.array([t.height for t in tiles], dtype=float)
    return shapely.box(cols - grow, rows - grow, cols + widths + grow, rows + heights + grow)


def _touching_pairs(tiles: list[Tile]):
    """Index pairs ``(i, j)``, ``i < j``, of tiles (on one grid) that overlap or share an edge."""
    import shapely

    boxes = pixel_boxes(tiles)
    first, second = shapely.STRtree(boxes).query(boxes, predicate="intersects")
    keep = first < second
    return first[keep], second[keep]


def aligned(a: Tile, b: Tile) -> bool:
    """Same CRS and pixel size, no rotation, offsets a whole number of pixels apart."""
    ta, tb = a.transform, b.transform
    if a.crs != b.crs or ta.b or ta.d or tb.b or tb.d:
        return False
    if abs(ta.a - tb.a) > GRID_TOLERANCE * abs(ta.a) or abs(ta.e - tb.e) > GRID_TOLERANCE * abs(ta.e):
        return False
    dx, dy = (tb.c - ta.c) / ta.a, (tb.f - ta.f) / ta.e
    return abs(dx - round(dx)) < 1e-3 and abs(dy - round(dy)) < 1e-3


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


def context_tiles(mosaic: Mosaic, margin: int) -> list[list[Tile]]:
    """For each tile of ``mosaic``, the tiles within ``margin`` pixels of it (itself included).

    A prediction of a tile reads no pixel farther than one window from it, so
    these are the files whose content it depends on (recorded in the job
    database). One R-tree query for the whole mosaic.
    """
    import numpy as np
    import shapely

    tiles = mosaic.tiles
    boxes = pixel_boxes(tiles)
    # Pixel boxes have integer corners: sharing pixels within the margin (open
    # intervals) is intersecting the margin box shrunk by half a pixel.
    reach = pixel_boxes(tiles, grow=margin - 0.5)
    query, found = shapely.STRtree(boxes).query(reach, predicate="intersects")
    order = np.lexsort((found, query))
    query, found = query[order], found[order]
    bounds = np.searchsorted(query, np.arange(len(tiles) + 1))
    return [[tiles[j] for j in found[bounds[i]:bounds[i + 1]].tolist()] for i in range(len(tiles))]
