"""Scene access: band selection, bands stacked from other files, nodata masks, tile reads.

A :class:`Scene` is opened once (all checks happen there, before any work) and
then read window by window from any number of threads: every thread gets its
own rasterio handles, because GDAL datasets must not be shared between threads.

Reads are clipped to the raster and padded with ``np.pad`` where a window is
larger than the scene: measured on this project, ``boundless=True`` reads are
5-7x slower.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window as RioWindow

from rsseg.errors import InputError

# JPEG/PNG photos and masks have no geotransform, and rasterio says so on every open (per
# file, per reading thread); rsseg says it once itself where it matters (NoCRSWarning).
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)


class NoCRSWarning(UserWarning):
    """The input has no CRS: outputs keep its pixel grid only."""


@dataclass(frozen=True)
class _Source:
    """One file contributing bands: its path, the 1-based bands read and an optional warp."""

    path: str
    bands: tuple[int, ...]
    warp_to: dict | None = None  # WarpedVRT keyword arguments (--align)


def open_complete(path: str | os.PathLike):
    """``rasterio.open`` that also refuses a GeoTIFF cut short (see :func:`truncation_problem`).

    Every command's raster opener goes through here, so a truncated copy is
    reported when it is opened, naming the file, not as a read error midway.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = rasterio.open(path)
    problem = truncation_problem(ds)
    if problem:  # the warnings (e.g. "no geotransform") are consequences: drop them
        ds.close()
        raise InputError(problem, path)
    for w in caught:
        # JPEG/PNG photos and masks have no geotransform: rasterio says so on every open.
        # Commands that care say it once themselves (predict, vectorize: NoCRSWarning).
        if not issubclass(w.category, NotGeoreferencedWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ds


def truncation_problem(ds) -> str | None:
    """Why ``ds`` is a truncated GeoTIFF (e.g. an interrupted copy), or None.

    GDAL opens such a file when its header survived and fails only when it
    reaches the missing blocks. The last block of the first and last band
    (the end of the image data in every layout GDAL writes, COGs included)
    must lie inside the file.
    """
    if ds.driver != "GTiff" or not os.path.isfile(ds.name):
        return None
    rows = -(-ds.height // ds.block_shapes[0][0])
    cols = -(-ds.width // ds.block_shapes[0][1])
    end = 0
    for band in {1, ds.count}:
        offset = ds.get_tag_item(f"BLOCK_OFFSET_{cols - 1}_{rows - 1}", "TIFF", bidx=band)
        size = ds.get_tag_item(f"BLOCK_SIZE_{cols - 1}_{rows - 1}", "TIFF", bidx=band)
        if offset and size:
            end = max(end, int(offset) + int(size))
    actual = os.path.getsize(ds.name)
    if end > actual:
        return (f"the file is truncated: its image data ends at byte {end} but the file has "
                f"{actual} bytes (an interrupted copy or download?)")
    return None


def open_raster(path: str | os.PathLike, role: str = "input"):
    """Open a raster for reading, or raise an InputError naming the file and the problem.

    The one opener every command uses: missing file, directory, not a raster and
    truncated files all get the same clear messages (``role`` says which input).
    """
    if not str(path).startswith("/vsi"):
        p = Path(path)
        if not p.exists():
            noun = role if role.endswith("file") else f"{role} file"  # not "band file file"
            raise InputError(f"{noun} not found", path)
        if p.is_dir():
            raise InputError(f"{role} is a directory, not a raster", path)
    try:
        return open_complete(path)
    except RasterioIOError as exc:
        first = " ".join(str(exc).split())[:160]
        raise InputError(f"{role} is not a raster GDAL can read ({first})", path) from None


def same_grid(a, b, tolerance: float = 1e-9) -> bool:
    """Same size, CRS and transform (to ``tolerance`` in map units) for two open datasets."""
    return (a.width == b.width and a.height == b.height and a.crs == b.crs
            and a.transform.almost_equals(b.transform, precision=tolerance))


@dataclass(frozen=True)
class BandFile:
    """Bands taken from another file on the scene's grid (``--band-file PATH[:BANDS]``).

    ``bands`` are 1-based (repeats allowed; None: all of the file's bands);
    ``name`` replaces the band descriptions in messages (``"DSM"`` for ``--dsm``).
    """

    path: str
    bands: tuple[int, ...] | None = None
    name: str | None = None


def parse_band_file(text: str) -> BandFile:
    """``'ir.tif'`` -> all bands of ir.tif; ``'rgbi.tif:4'``, ``'x.tif:1,1'`` -> those bands.

    The part after the last ``:`` is read as band numbers only when it is a list
    of integers and the whole text is not itself an existing file.
    """
    text = str(text)
    path, sep, tail = text.rpartition(":")
    if sep and path and re.fullmatch(r"\s*\d+\s*(,\s*\d+\s*)*", tail) and not Path(text).exists():
        bands = tuple(int(v) for v in tail.split(","))
        if min(bands) < 1:
            raise ValueError(f"band numbers start at 1 (in {text!r})")
        return BandFile(path, bands)
    if not text:
        raise ValueError("empty band file path")
    return BandFile(text)


class Scene:
    """A georeferenced scene: the selected bands (repeats allowed), then bands stacked from
    other files on the same grid, then an optional DSM band.

    ``bands`` are 1-based band numbers of ``path`` (default: all). ``band_files``
    are :class:`BandFile` (or ``'PATH[:BANDS]'`` strings) whose bands are appended
    in order, e.g. the IR and DSM files that come beside an RGB orthophoto.
    ``dsm`` is a one-band raster appended as the last channel. Extra files must
    have the scene's grid; with ``align=True`` they are reprojected on the fly
    onto it (GDAL WarpedVRT, bilinear).
    """

    def __init__(self, path: str | os.PathLike, bands: list[int] | None = None,
                 dsm: str | os.PathLike | None = None, align: bool = False,
                 band_files: list[BandFile | str] | tuple = ()):
        self.path = str(path)
        with open_raster(path) as ds:
            self.width, self.height = ds.width, ds.height
            self.crs, self.transform = ds.crs, ds.transform
            bands = _check_bands(ds, bands, path)
            self.dtypes = [ds.dtypes[b - 1] for b in bands]
            self.tiled = _is_tiled(ds)
            # bytes of one pixel of the file's bands as stored (what GDAL caches)
            self.bytes_per_pixel = sum(np.dtype(t).itemsize for t in ds.dtypes)
            self.block_height = ds.block_shapes[0][0]  # rows GDAL decodes at once
            self.names = [ds.descriptions[b - 1] or f"band{b}" for b in bands]
        if self.crs is None:
            warnings.warn(f"{self.path}: no CRS; the output keeps the pixel grid only",
                          NoCRSWarning, stacklevel=2)
        self.sources = [_Source(self.path, tuple(bands))]
        extras = [f if isinstance(f, BandFile) else parse_band_file(f) for f in band_files or ()]
        if dsm is not None:
            extras.append(BandFile(str(dsm), (1,), "DSM"))
        for extra in extras:
            self.sources.append(self._extra_source(extra, align))
        self._local = threading.local()
        self._handles: list = []
        self._lock = threading.Lock()

    def _extra_source(self, extra: BandFile, align: bool) -> _Source:
        """Check a file stacked onto the scene and note its dtypes and band names."""
        role = extra.name or "band file"
        with open_raster(extra.path, role=role) as ds:
            bands = _check_bands(ds, extra.bands, extra.path)
            self.dtypes.extend(ds.dtypes[b - 1] for b in bands)
            self.names.extend(extra.name if extra.name else
                              (ds.descriptions[b - 1] or f"{Path(extra.path).stem}:{b}")
                              for b in bands)
            if same_grid(ds, self):
                self.tiled = self.tiled and _is_tiled(ds)
                self.bytes_per_pixel += sum(np.dtype(t).itemsize for t in ds.dtypes)
                self.block_height = max(self.block_height, ds.block_shapes[0][0])
                return _Source(str(extra.path), bands)
            if not align:
                raise InputError(
                    f"{role} grid ({ds.width}x{ds.height}, {ds.crs}, {tuple(ds.transform)[:6]}) "
                    f"differs from the scene's ({self.width}x{self.height}, {self.crs}, "
                    f"{tuple(self.transform)[:6]}); pass --align to reproject it on the fly",
                    extra.path)
            if ds.crs is None or self.crs is None:
                raise InputError(f"--align needs a CRS on both the scene and the {role}",
                                 extra.path)
        warp = dict(crs=self.crs, transform=self.transform, width=self.width,
                    height=self.height, resampling=Resampling.bilinear)
        return _Source(str(extra.path), bands, warp_to=warp)

    @property
    def channels(self) -> int:
        return sum(len(s.bands) for s in self.sources)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    # ---- reading -------------------------------------------------------------------------

    def _datasets(self) -> list:
        """This thread's open handles, one per source (opened on first use)."""
        handles = getattr(self._local, "handles", None)
        if handles is None:
            handles = []
            for src in self.sources:
                ds = rasterio.open(src.path)
                if src.warp_to is not None:
                    vrt = WarpedVRT(ds, **src.warp_to)
                    with self._lock:
                        self._handles.append(ds)
                    ds = vrt
                handles.append(ds)
            with self._lock:
                self._handles.extend(handles)
            self._local.handles = handles
        return handles

    @property
    def dtype(self) -> np.dtype:
        """The dtype :meth:`read_raw` returns: the bands' own when they share one."""
        return np.result_type(*[np.dtype(t) for t in self.dtypes])

    def read(self, row_off: int, col_off: int, height: int, width: int,
             pad_to: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Channels ``(C, h, w)`` as float32 and a validity mask ``(h, w)`` (bool).

        A pixel is invalid (nodata) when every channel is nodata there (per the
        file's nodata value, its mask or alpha band, or NaN/inf). Invalid values are
        returned as they are in the file (NaN included); callers replace them.
        With ``pad_to`` the arrays are padded on the bottom/right (mirrored data,
        invalid mask) to that size.
        """
        data, valid = self.read_raw(row_off, col_off, height, width)
        data = data.astype(np.float32, copy=False)
        if pad_to is not None and (pad_to[0] > height or pad_to[1] > width):
            pads = ((0, pad_to[0] - height), (0, pad_to[1] - width))
            data = np.pad(data, ((0, 0),) + pads, mode="symmetric")
            valid = np.pad(valid, pads, mode="constant", constant_values=False)
        return data, valid

    def read_raw(self, row_off: int, col_off: int, height: int, width: int,
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`read` but the values keep the file's dtype (:attr:`dtype`).

        The predict engine normalises integer bands through a lookup table, so it
        never makes a float copy of the raw window.
        """
        window = RioWindow(col_off, row_off, width, height)
        channels, invalid = [], None
        for src, ds in zip(self.sources, self._datasets()):
            try:
                data, src_invalid = _read_source(ds, src.bands, window)
            except rasterio.errors.RasterioError as exc:  # a corrupt or truncated file
                raise InputError(f"cannot read pixels at row {row_off}, column {col_off} "
                                 f"({_gdal_reason(exc)})", src.path) from exc
            channels.append(data)
            invalid = src_invalid if invalid is None else (invalid & src_invalid)
        if len(channels) > 1:
            data = np.concatenate([c.astype(self.dtype, copy=False) for c in channels])
        else:
            data = channels[0]
        return data, ~invalid

    def close(self) -> None:
        with self._lock:
            for ds in reversed(self._handles):
                ds.close()
            self._handles.clear()
        self._local = threading.local()

    def __enter__(self) -> "Scene":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_bands(ds, bands, path) -> tuple[int, ...]:
    """The 1-based bands asked for (default: all), each checked to exist."""
    if ds.count < 1:
        raise InputError("the raster has no band", path)
    bands = tuple(bands) if bands else tuple(range(1, ds.count + 1))
    bad = [b for b in bands if not 1 <= b <= ds.count]
    if bad:
        raise InputError(f"band {bad[0]} does not exist: the file has {ds.count} band(s)", path)
    return bands


def _is_tiled(ds) -> bool:
    block_h, block_w = ds.block_shapes[0]
    return block_w < ds.width or (block_h == block_w and block_h > 1)


def _read_source(ds, bands: tuple[int, ...], window) -> tuple[np.ndarray, np.ndarray]:
    """``(len(bands), h, w)`` as stored (repeats allowed) and 'every band invalid' (h, w)."""
    unique = sorted(set(bands))
    raw = ds.read(unique, window=window)
    invalid = np.zeros(raw.shape[1:], bool)
    flags = ds.mask_flag_enums  # a property rasterio recomputes: once per read
    # A band valid everywhere keeps every pixel: then no other band's mask is read
    # (an RGB + alpha file's colour bands would each read the alpha band again).
    if not any(_valid_everywhere(ds, flags[b - 1], b, raw.dtype) for b in unique):
        masks, shared = [], {}
        for k, band in enumerate(unique):
            masks.append(_band_invalid(ds, flags[band - 1], band, raw[k], window, shared))
        invalid = np.logical_and.reduce(masks)
    if unique != list(bands):
        raw = raw[[unique.index(b) for b in bands]]
    return raw, invalid


def _gdal_reason(exc: BaseException) -> str:
    """GDAL's own words: rasterio often puts them in the cause ('See previous exception')."""
    cause = exc.__cause__ or exc.__context__
    text = str(cause if cause is not None and "previous exception" in str(exc) else exc)
    return " ".join(text.split())[:200]


def _valid_everywhere(ds, flags, band: int, dtype) -> bool:
    """No mask, alpha or nodata value, and not a float band (NaN/inf are no data)."""
    if np.dtype(dtype).kind == "f" or MaskFlags.per_dataset in flags or MaskFlags.alpha in flags:
        return False
    return not (MaskFlags.nodata in flags and ds.nodatavals[band - 1] is not None)


def _band_invalid(ds, flags, band: int, values: np.ndarray, window,
                  shared: dict) -> np.ndarray:
    """Where ``band`` has no data (its per-dataset mask read once for all bands: ``shared``)."""
    bad = None
    if MaskFlags.per_dataset in flags:
        bad = shared.get("dataset")
        if bad is None:
            bad = shared["dataset"] = ds.read_masks(band, window=window) == 0
    elif MaskFlags.alpha in flags:
        bad = ds.read_masks(band, window=window) == 0
    elif MaskFlags.nodata in flags and ds.nodatavals[band - 1] is not None:
        nodata = ds.nodatavals[band - 1]
        bad = np.isnan(values) if np.isnan(nodata) else values == values.dtype.type(nodata)
    if values.dtype.kind == "f":  # NaN and +-inf are no data in any float band
        non_finite = ~np.isfinite(values)
        bad = non_finite if bad is None else (bad | non_finite)
    return bad


def default_normalization(scene: Scene):
    """Per-dtype scaling used when a checkpoint carries none (e.g. ``--weights random``).

    Integer bands are divided by their dtype's maximum (uint8 by 255, uint16 by
    65535, ...), so they land in 0..1; float bands are used as they are.
    """
    from rsseg.io.normalization import Normalization

    std = []
    for dtype in scene.dtypes:
        dt = np.dtype(dtype)
        std.append(float(np.iinfo(dt).max) if dt.kind in "iu" else 1.0)
    return Normalization(list(scene.names), [0.0] * len(std), std)


def open_dataarray(path: str | os.PathLike, bands: list[int] | None = None, *,
                   band_files: list[BandFile | str] | tuple = (),
                   dsm: str | os.PathLike | None = None, align: bool = False,
                   chunks: int | dict = 512, masked: bool = False):
    """The bands a :class:`Scene` reads, as one lazy, Dask-backed ``xarray.DataArray``.

    For notebooks and library users: the same band selection, stacking of other
    files and ``align`` reprojection as ``rsseg predict`` (and the same checks and
    messages), opened with rioxarray so that nothing is read until computed.
    Dimensions ``(band, y, x)``; ``band`` is numbered 1..C and the coordinate
    ``band_name`` holds the names; ``.rio.crs`` and ``.rio.transform()`` are the
    scene's. ``chunks`` is the Dask chunk side in pixels (or a rioxarray chunks
    dict). Values keep their dtype (promoted to a common one across files); with
    ``masked=True`` they are floats with NaN where a band has no data.

    The predict pipeline itself reads through :meth:`Scene.read` (per-thread
    rasterio handles, clipped reads): measured faster for its window pattern.
    """
    import rioxarray
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoCRSWarning)
        scene = Scene(path, bands, dsm=dsm, align=align, band_files=band_files)
    if isinstance(chunks, int):
        chunks = {"band": -1, "y": chunks, "x": chunks}
    parts = []
    with warnings.catch_warnings():  # rioxarray's own use of affine's deprecated '*'
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning, module="rioxarray")
        for src in scene.sources:
            if src.warp_to is None:
                da = rioxarray.open_rasterio(src.path, chunks=chunks, masked=masked)
            else:  # rioxarray reopens the VRT from its parameters; our handles may close
                with rasterio.open(src.path) as ds, WarpedVRT(ds, **src.warp_to) as vrt:
                    da = rioxarray.open_rasterio(vrt, chunks=chunks, masked=masked)
            parts.append(da.isel(band=[b - 1 for b in src.bands]))
    stacked = xr.concat(parts, dim="band", join="override", coords="minimal",
                        compat="override", combine_attrs="drop_conflicts")
    stacked = stacked.assign_coords(band=np.arange(1, scene.channels + 1),
                                    band_name=("band", list(scene.names)))
    for key in [k for k in stacked.attrs if k == "long_name" or k.startswith("STATISTICS_")]:
        del stacked.attrs[key]  # per-file descriptions and statistics; see band_name
    if scene.crs is not None:
        stacked = stacked.rio.write_crs(scene.crs)
    return stacked.rio.write_transform(scene.transform)


def pixel_size_m(crs, transform) -> float | None:
    """A grid's pixel size in metres (the larger side), or None when its CRS is not
    projected in metres (or missing): training records it, ``--zoom auto`` compares it."""
    if crs is None or transform is None or not crs.is_projected or (
            crs.linear_units or "").lower() not in ("metre", "meter", "m"):
        return None
    return float(max(abs(transform.a), abs(transform.e)))
