"""``rsseg batch --band-file/--dsm [--align]``: bands from other files, stacked onto every tile.

As in ``rsseg predict``, each extra file adds bands after the tile's own (``--dsm``
last, named DSM). A batch names them in one of two ways:

- a *pattern* with ``{stem}``, e.g. ``dsm/{stem}_dsm.tif``: one file per tile, found
  by the tile's file name without its suffix. Without ``--align`` each file must be
  on its tile's grid; each tile then reads them through a VRT on its mosaic's grid
  that lists the files of its context tiles only, as its pixels are read
  (``out/.rsseg/inputs/extra-<k>/<stem>.vrt``, written just before the tile runs):
  its border windows see its neighbours' extra bands, and opening it costs the
  same in a mosaic of 100,000 tiles as in one of nine. With
  ``--align`` they may be on another grid (a coarser DSM): the VRT is then built
  on their own grid and reprojected onto the mosaic's on the fly (WarpedVRT,
  bilinear), as predict does for one file;
- a *mosaic*: one raster (a big GeoTIFF, or a VRT of the per-tile files) covering
  the tiles on their pixel grid (same CRS and pixel size, whole-pixel offsets);
  each mosaic of tiles reads the matching part of it through a VRT. With
  ``--align`` it may be on any grid and is reprojected onto each mosaic's.

Either way a tile's bands are those predict reads for the same files, and the
class rasters stay seamless across tile borders.

A tile whose own file is missing or wrong is recorded as failed with predict's
message while the others go on; when every tile has such a problem (a typo in
the pattern, a file on another grid without ``--align``), or the one mosaic
file is wrong, the job is refused before any cluster starts.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from rsseg.batch.inputs import Mosaic, Tile, aligned, open_tiles, share_a_vrt
from rsseg.errors import InputError
from rsseg.io.scene import BandFile, NoCRSWarning, Scene, open_raster

STEM_FIELD = "{stem}"


def is_pattern(extra: BandFile) -> bool:
    return STEM_FIELD in extra.path


def tile_file(extra: BandFile, tile: Tile) -> str:
    """The file ``extra`` names for ``tile`` (its pattern filled in), as an absolute path."""
    return os.path.abspath(extra.path.replace(STEM_FIELD, tile.stem))


def option_name(extra: BandFile) -> str:
    return "--dsm" if extra.name == "DSM" else "--band-file"


def _role(extra: BandFile) -> str:
    return extra.name or "band file"


@dataclass
class _Source:
    """How mosaic ``k`` reads extra ``i``: straight from ``path``, or from a VRT of ``mosaic``."""

    path: str
    vrt_of: Mosaic | None = None  # the tiles of the VRT to write at ``path``
    # per-tile files on the tiles' own grids: each tile gets a VRT of its context's files
    file_of: dict | None = None  # tile path -> its file (a Tile placed in ``vrt_of``)
    mask: bool = False  # does the whole VRT need a coverage mask


class TileExtras:
    """The extra files of a batch, checked, and what each tile's worker stacks from them."""

    def __init__(self, extras, bands, align: bool, tiles: list[Tile]):
        self.extras: tuple[BandFile, ...] = tuple(extras or ())
        self.align = align
        self.channels = 0  # bands the extras add to each tile
        self._sources: dict[tuple[int, int], _Source] = {}
        self._tile_dir: Path | None = None  # where per-tile VRTs go (the job's inputs folder)
        if self.extras or bands:
            self._check_tiles(tiles, bands)
        for extra in self.extras:
            self.channels += self._band_count(extra, tiles)

    def __bool__(self) -> bool:
        return bool(self.extras)

    # ---- checks (nothing is written) ----------------------------------------------------

    def _check_tiles(self, tiles: list[Tile], bands) -> None:
        """Open each readable tile with its own files as predict would (same checks, same
        messages); a tile with a problem is marked failed. All of them failing is refused."""
        readable = [t for t in tiles if t.ok]
        first = None
        for tile in readable:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", NoCRSWarning)
                    Scene(tile.path, bands=list(bands) if bands else None,
                          band_files=self._own_files(tile), align=self.align)
            except InputError as exc:
                tile.error = str(exc)
                first = first or exc
        if readable and all(not t.ok for t in readable):
            raise first

    def _own_files(self, tile: Tile) -> list[BandFile]:
        """The tile's per-tile files (the patterns filled in); mosaic files are checked apart."""
        return [replace(e, path=tile_file(e, tile)) for e in self.extras if is_pattern(e)]

    def _band_count(self, extra: BandFile, tiles: list[Tile]) -> int:
        if extra.bands:
            return len(extra.bands)
        if is_pattern(extra):
            ok = [t for t in tiles if t.ok]
            if not ok:
                return 0
            path = tile_file(extra, ok[0])
        else:
            path = extra.path
        with open_raster(path, role=_role(extra)) as ds:
            return ds.count

    def check_mosaics(self, mosaics: list[Mosaic], folder: Path, tile_dir: Path) -> None:
        """Decide how each mosaic reads each extra file (VRTs of a whole mosaic go under
        ``folder``, a tile's own under ``tile_dir/extra-<k>/``)."""
        self._tile_dir = tile_dir
        for i, extra in enumerate(self.extras):
            if not is_pattern(extra):
                self._check_mosaic_file(extra)
            for mosaic in mosaics:
                vrt = folder / f"extra-{mosaic.index}-{i}.vrt"
                if is_pattern(extra):
                    source = self._per_tile_source(extra, mosaic, vrt)
                else:
                    source = self._mosaic_file_source(extra, mosaic, vrt)
                self._sources[(mosaic.index, i)] = source

    def _check_mosaic_file(self, extra: BandFile) -> None:
        with open_raster(extra.path, role=_role(extra)) as ds:
            count = ds.count
            if self.align and ds.crs is None:
                raise InputError(f"--align needs a CRS on both the scene and the {_role(extra)}",
                                 extra.path)
        bad = [b for b in extra.bands or () if not 1 <= b <= count]
        if bad:
            raise InputError(f"band {bad[0]} does not exist: the file has {count} band(s)",
                             extra.path)

    def _per_tile_source(self, extra: BandFile, mosaic: Mosaic, vrt: Path) -> _Source:
        files = open_tiles([tile_file(extra, t) for t in mosaic.tiles])
        if len(files) == 1:
            return _Source(files[0].path)  # predict's own case: Scene checks or warps it
        if not self.align:  # each file is on its tile's grid (checked): same places
            from rsseg.io.vrt import needs_mask

            for file, tile in zip(files, mosaic.tiles):
                file.col, file.row = tile.col, tile.row
            placed = Mosaic(mosaic.index, files, mosaic.width, mosaic.height, mosaic.transform)
            return _Source(str(vrt), placed,
                           file_of={t.path: f for t, f in zip(mosaic.tiles, files)},
                           mask=needs_mask(placed))
        odd = [f for f in files[1:] if not share_a_vrt(files[0], f)]
        if odd:
            raise InputError(f"the {option_name(extra)} files of neighbouring tiles are not on "
                             f"one pixel grid (also {files[0].path}); --align reprojects a "
                             "mosaic of them, so they must fit together", odd[0].path)
        from rsseg.batch.inputs import layout

        offsets, width, height, transform = layout(files)
        for file, (col, row) in zip(files, offsets):
            file.col, file.row = col, row
        return _Source(str(vrt), Mosaic(mosaic.index, files, width, height, transform))

    def _mosaic_file_source(self, extra: BandFile, mosaic: Mosaic, vrt: Path) -> _Source:
        path = os.path.abspath(extra.path)
        if self.align:
            return _Source(path)  # Scene reprojects it onto the mosaic's grid
        file = open_tiles([path])[0]
        base = mosaic.tiles[0]
        if not aligned(base, file):
            raise InputError(
                f"{_role(extra)} grid ({file.width}x{file.height}, {file.crs}, "
                f"{tuple(file.transform)[:6]}) is not the tiles' pixel grid ({base.crs}, "
                f"{tuple(base.transform)[:6]} for {base.path}); pass --align to reproject it "
                f"on the fly, or name one file per tile with {STEM_FIELD} in the path",
                extra.path)
        ref = mosaic.transform
        file.col = round((file.transform.c - ref.c) / ref.a)
        file.row = round((file.transform.f - ref.f) / ref.e)
        for tile in mosaic.tiles:
            if not (file.col <= tile.col and file.row <= tile.row
                    and file.col + file.width >= tile.col + tile.width
                    and file.row + file.height >= tile.row + tile.height):
                raise InputError(f"{_role(extra)} does not cover the tile {tile.path}; it must "
                                 "cover every tile (or pass --align to reproject it, leaving "
                                 "what it does not cover as no data)", extra.path)
        if (file.col, file.row, file.width, file.height) == (0, 0, mosaic.width, mosaic.height):
            return _Source(path)
        return _Source(str(vrt), Mosaic(mosaic.index, [file], mosaic.width, mosaic.height,
                                        mosaic.transform))

    # ---- what the workers read ------------------------------------------------------------

    def write_vrts(self) -> None:
        """The VRTs read by every tile of a mosaic (per-tile ones: :meth:`write_tile_vrts`)."""
        from rsseg.io.vrt import input_mosaic_vrt

        for source in self._sources.values():
            if source.vrt_of is not None and source.file_of is None:
                input_mosaic_vrt(source.path, source.vrt_of)

    def _tile_vrt(self, i: int, tile: Tile) -> str:
        return str(self._tile_dir / f"extra-{i}" / f"{tile.stem}.vrt")

    def write_tile_vrts(self, tile: Tile, context: list[Tile]) -> list[str]:
        """Write ``tile``'s VRTs of per-tile files (those of its ``context`` tiles only);
        returns their paths, to remove once the tile is done."""
        from rsseg.io.vrt import input_mosaic_vrt

        written = []
        for i in range(len(self.extras)):
            source = self._sources.get((tile.mosaic, i)) if tile.ok else None
            if source is None or source.file_of is None:
                continue
            path = Path(self._tile_vrt(i, tile))
            path.parent.mkdir(parents=True, exist_ok=True)
            input_mosaic_vrt(path, source.vrt_of, [source.file_of[t.path] for t in context],
                             source.mask)
            written.append(str(path))
        return written

    def for_tile(self, tile: Tile) -> tuple[BandFile, ...]:
        """What the worker predicting ``tile`` stacks onto its pixels, in option order.

        A tile in no mosaic (it failed a check) gets its own files as given, so that
        the worker reports the same problem predict would.
        """
        stacked = []
        for i, extra in enumerate(self.extras):
            source = self._sources.get((tile.mosaic, i)) if tile.ok else None
            if source is not None and source.file_of is not None:
                stacked.append(replace(extra, path=self._tile_vrt(i, tile)))
            elif source is not None:
                stacked.append(replace(extra, path=source.path))
            else:
                path = tile_file(extra, tile) if is_pattern(extra) else os.path.abspath(extra.path)
                stacked.append(replace(extra, path=path))
        return tuple(stacked)

    def files(self, tiles: list[Tile]) -> list[str]:
        """The extra files whose content the prediction of ``tiles`` reads (for fingerprints)."""
        paths = []
        for extra in self.extras:
            if is_pattern(extra):
                paths.extend(tile_file(extra, t) for t in tiles)
            else:
                paths.append(os.path.abspath(extra.path))
        return paths

    def settings(self) -> dict:
        """What the manifest's settings record (empty without extra files: older runs match)."""
        if not self.extras:
            return {}
        return {"band_files": [[e.path, list(e.bands or []), e.name] for e in self.extras],
                "align": self.align}
