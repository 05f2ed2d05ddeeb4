"""Write outputs under a temporary name and rename them into place when complete.

A crash, Ctrl-C or a full disk therefore never leaves a half-written file at
the path the user asked for.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import OutputError


def check_output_path(path: str | os.PathLike, overwrite: bool) -> Path:
    """Fail early, before any work, if ``path`` cannot be written."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError("output exists; pass --overwrite to replace it", path)
    if path.is_dir():
        raise OutputError("output is a directory, not a file", path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output directory {parent} does not exist", path)
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output directory {parent} is not writable", path)
    return path


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
    tmp = temporary_sibling(final, suffix)
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError("writer produced no file", final)
        os.replace(tmp, final)
    except OSError as exc:
        _cleanup(tmp)
        raise OutputError(f"cannot write output: {exc.strerror or exc}", final) from exc
    except BaseException:
        _cleanup(tmp)
        raise
    finally:
        for side in (".aux.xml", ".ovr", "-journal", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                Path(str(tmp) + side).unlink()


def _cleanup(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()
