"""The batch manifest: ``out/manifest.json``, what is finished and from what.

The manifest is rewritten atomically (temporary file, ``fsync``, rename) by the
process that drives the job after every tile, so after a crash or SIGKILL it
always holds a complete, consistent state. Layout (``version`` 1)::

    {
      "format": "rsseg-batch-manifest", "version": 1,
      "settings": {...}, "settings_hash": "<sha256 of the settings>",
      "runs": [{"id": "...", "started": "...", "pid": 123, "workers": 2, "scheduler": "..."}],
      "tiles": {
        "<absolute input path>": {
          "status": "done" | "failed",
          "checksum": "<sha256 of the input fingerprints and the settings>",
          "inputs": {"<path>": "<size>:<mtime_ns>", ...},   # the tile and its context tiles
          "outputs": {"classes": "tile.tif", "vector": "tile.gpkg"},   # relative to out/
          "run_id": "...", "finished": "<UTC ISO time>", "seconds": 1.2,
          "attempts": 1, "worker": "tcp://...", "pid": 4567,
          "error": "..."                                      # failed tiles only
        }
      },
      "mosaic": {"vrt": "mosaic.vrt", "vector": "mosaic.gpkg", "checksum": "..."}
    }

A tile's *input fingerprint* is ``size:mtime_ns`` of each file its prediction
reads: the tile itself and, in a mosaic, the neighbours within one window of
it (their pixels are context). Any change to one of those files, or to a
setting (model, weights file fingerprint, tile, overlap, blend, bands, ...),
changes the checksum, and ``--resume`` predicts the tile again.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path

from rsseg.errors import OutputError

FORMAT = "rsseg-batch-manifest"
VERSION = 1
NAME = "manifest.json"


def fingerprint(path: str | os.PathLike) -> str:
    """``size:mtime_ns`` of a file (cheap; a rewrite or touch changes it)."""
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def digest(obj) -> str:
    """SHA-256 of the canonical JSON of ``obj``."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class Manifest:
    """Load, update and atomically save ``out/manifest.json``."""

    def __init__(self, out_dir: str | os.PathLike, settings: dict):
        self.path = Path(out_dir) / NAME
        self.settings = settings
        self.data = {"format": FORMAT, "version": VERSION, "settings": settings,
                     "settings_hash": digest(settings), "runs": [], "tiles": {}, "mosaic": {}}

    @classmethod
    def load(cls, out_dir: str | os.PathLike, settings: dict) -> "Manifest":
        """The manifest in ``out_dir`` (a fresh one when there is none)."""
        manifest = cls(out_dir, settings)
        if not manifest.path.exists():
            return manifest
        try:
            data = json.loads(manifest.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise OutputError(f"cannot read the batch manifest ({exc}); remove it or pass "
                              "--overwrite", manifest.path) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise OutputError("not an rsseg batch manifest", manifest.path)
        if int(data.get("version", 0)) > VERSION:
            raise OutputError(f"manifest version {data['version']} is newer than this rsseg "
                              f"understands ({VERSION})", manifest.path)
        manifest.data["runs"] = list(data.get("runs", []))
        manifest.data["tiles"] = dict(data.get("tiles", {}))
        manifest.data["mosaic"] = dict(data.get("mosaic", {}))
        return manifest

    @property
    def exists(self) -> bool:
        return self.path.exists()

    @property
    def tiles(self) -> dict:
        return self.data["tiles"]

    def is_done(self, key: str, checksum: str, out_dir: Path) -> bool:
        """Finished with the same inputs and settings, and its outputs still there."""
        entry = self.tiles.get(key)
        if not entry or entry.get("status") != "done" or entry.get("checksum") != checksum:
            return False
        return all((out_dir / rel).is_file() for rel in entry.get("outputs", {}).values())

    def start_run(self, run: dict) -> None:
        self.data["runs"].append(run)
        self.data["settings"] = self.settings
        self.data["settings_hash"] = digest(self.settings)
        self.save()

    def record(self, key: str, entry: dict) -> None:
        self.tiles[key] = entry
        self.save()

    def save(self) -> None:
        """Write to a temporary file, flush it to disk, rename over the manifest."""
        tmp = self.path.with_name(f".{NAME}.{os.getpid()}.part")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.data, f, indent=1, sort_keys=False)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise OutputError(f"cannot write the batch manifest: {exc.strerror or exc}",
                              self.path) from None
        finally:
            if tmp.exists():
                tmp.unlink()
