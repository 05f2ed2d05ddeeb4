"""Write outputs under a temporary name and rename them into place when complete.

A crash, Ctrl-C or a full disk therefore never leaves a half-written file at
the path the user asked for.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from rsseg.errors import OutputError


def check_output_path(path: str | os.PathLike, overwrite: bool) -> Path:
    """Fail early, before any work, if ``path`` cannot be written."""
    path = Path(path)
    if path.is_dir():  # before 'exists': --overwrite would not help
        raise OutputError("output is a directory, not a file", path)
    if path.exists() and not overwrite:
        raise OutputError("output exists; pass --overwrite to replace it", path)
    check_folder_creatable(path.parent if str(path.parent) else Path("."), path)
    return path


def check_folder_creatable(folder: str | os.PathLike, output: str | os.PathLike) -> None:
    """Fail early unless ``folder`` exists or can be created (missing folders are made).

    The rule for every command: a missing output folder (``-o runs/x/best.pt``,
    ``-o pred/a.tif``) is created when the output is written, not refused.
    """
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{existing} is a file, so folder {folder} cannot be created", output)
    if not os.access(existing, os.W_OK):
        raise OutputError(f"output folder {existing} is not writable", output)


def make_folders(folder: str | os.PathLike) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, outermost first."""
    missing = []
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
    return missing[::-1]


def remove_folders(created: list[Path]) -> None:
    """Undo :func:`make_folders` after a failure (only folders still empty)."""
    for path in reversed(created):
        with contextlib.suppress(OSError):
            path.rmdir()


def temporary_sibling(path: str | os.PathLike, suffix: str | None = None) -> Path:
    """A unique hidden name next to ``path`` (same file system, so rename is atomic)."""
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{suffix}", dir=path.parent or ".")
    os.close(fd)
    os.unlink(tmp)  # writers (GDAL) want to create the file themselves
    return Path(tmp)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False,
                  suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to ``path``, on failure delete it.

    GDAL side files written next to the temporary name (``.aux.xml``, ``.ovr``) are
    removed too.
    """
    final = check_output_path(path, overwrite)
    created = make_folders(final.parent)
    tmp = temporary_sibling(final, suffix)
    try:
        yield tmp
        _check_complete(tmp, final)
        os.replace(tmp, final)
        created = []
    except OutputError:
        _cleanup(tmp)
        raise
    except Exception as exc:
        _cleanup(tmp)
        # Whatever failed (GDAL, SQLite, torch.save), a full disk is the cause to report.
        if _disk_full(final.parent, exc):
            raise OutputError(DISK_FULL, final) from exc
        if isinstance(exc, OSError) and not _from_gdal(exc):
            raise OutputError(f"cannot write output: {exc.strerror or exc}", final) from exc
        raise  # GDAL's errors name their file themselves (often an input being read)
    except BaseException:
        _cleanup(tmp)
        raise
    finally:
        for side in (".aux.xml", ".ovr", "-journal", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                Path(str(tmp) + side).unlink()
        remove_folders(created)


DISK_FULL = "no space left on device (disk full); free some space and run again"
_RASTER_SUFFIXES = (".tif", ".tiff")


def _check_complete(tmp: Path, final: Path) -> None:
    """Refuse to publish a file the writer could not finish.

    GDAL reports some write failures (a full disk while flushing a GeoTIFF) only
    through its error log and still closes the file, so success of the writer
    is not enough: a file system left without a free block, or a GeoTIFF that
    GDAL cannot open again, means the output is incomplete.
    """
    if not tmp.exists():
        raise OutputError("writer produced no file", final)
    if _disk_full(final.parent):
        raise OutputError(DISK_FULL, final)
    if final.suffix.lower() in _RASTER_SUFFIXES and "rasterio" in sys.modules:
        import rasterio

        try:
            with rasterio.open(tmp):
                pass
        except Exception as exc:  # noqa: BLE001 - any failure means an unreadable output
            raise OutputError("the written raster cannot be read back (incomplete write: "
                              f"{' '.join(str(exc).split())[:160]})", final) from exc


def _from_gdal(exc: BaseException) -> bool:
    return (type(exc).__module__ or "").startswith(("rasterio", "pyogrio", "fiona"))


def _disk_full(directory: Path, exc: BaseException | None = None) -> bool:
    """True when ``exc`` (or its cause) is ENOSPC, or ``directory`` has no free block left."""
    for _ in range(8):  # the exception and its causes
        if exc is None:
            break
        if getattr(exc, "errno", None) == errno.ENOSPC or any(
                text in str(exc).lower() for text in ("no space left", "disk is full")):
            return True
        exc = exc.__cause__ or exc.__context__
    try:
        fs = os.statvfs(directory)
    except OSError:
        return False
    return fs.f_blocks > 0 and fs.f_bavail == 0


def _cleanup(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()
