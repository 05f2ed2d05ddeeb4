"""The batch job's state: ``out/batch.sqlite``, what is finished and from what.

An SQLite database (standard library ``sqlite3``) in WAL mode, written by the
process that drives the job. A tile's completion is one small transaction
(one row updated, nothing else rewritten), so a job of 100,000 tiles costs
the driver the same per tile as a job of ten, and a kill -9 at any moment
leaves the database as it was after the last committed tile (SQLite's
journal rolls back a half-written transaction when the file is next opened).
``synchronous=NORMAL``: a power cut may forget the last few completions
(``--resume`` then redoes them), never corrupt the file.

Tables (``rsseg batch-status OUT --json`` prints a readable summary):

- ``meta``: ``format``, ``version``, ``settings`` (JSON), ``settings_hash``,
  ``mosaic`` (JSON: the class mosaic and merged GeoPackage last written);
- ``crs``, ``grids``: each input file's grid (size, transform, bands, CRS) with
  the fingerprint it had, so planning a resumed job opens only changed files;
- ``runs``: one row per ``rsseg batch`` invocation (id, start and end time,
  host, pid, workers, scheduler, tiles to do, phase timings);
- ``tiles``: one row per input tile: ``status`` (``pending``: planned by a run,
  not finished; ``done``; ``failed``), ``checksum`` (SHA-256 of the input
  fingerprints and the settings), ``inputs`` (JSON ``{path: "size:mtime_ns"}``:
  the tile and the context tiles whose pixels its prediction reads),
  ``outputs`` (JSON, relative to ``out/``), the run, finish time, timings,
  attempts, worker, pid and, for failed tiles, the error.

A tile's checksum changes when one of its input files or a setting (model,
weights file fingerprint, tile, overlap, blend, bands, ...) changes, and
``--resume`` predicts it again.

A ``manifest.json`` written by an older rsseg (the JSON manifest, ``version``
1) is migrated into the database on the first run that opens the folder and
kept as ``manifest.json.migrated``; one that cannot be read is refused.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import socket
import sqlite3
from pathlib import Path

from rsseg.errors import OutputError

NAME = "batch.sqlite"
FORMAT = "rsseg-batch-db"
VERSION = 1
LEGACY_NAME = "manifest.json"
LEGACY_FORMAT = "rsseg-batch-manifest"
LEGACY_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, started TEXT NOT NULL, finished TEXT, host TEXT, pid INTEGER,
    workers INTEGER, threads INTEGER, scheduler TEXT, tiles INTEGER, timings TEXT);
CREATE TABLE IF NOT EXISTS tiles (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    checksum TEXT NOT NULL, inputs TEXT NOT NULL, outputs TEXT NOT NULL,
    run_id TEXT, finished TEXT, seconds REAL, forward_seconds REAL, windows INTEGER,
    attempts INTEGER, worker TEXT, pid INTEGER, threads INTEGER, model_loads INTEGER,
    bands TEXT, error TEXT);
CREATE INDEX IF NOT EXISTS tiles_status ON tiles (status);
CREATE TABLE IF NOT EXISTS crs (id INTEGER PRIMARY KEY, wkt TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS grids (
    path TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, crs INTEGER REFERENCES crs (id),
    grid TEXT NOT NULL);
"""
# Columns of ``tiles`` stored as JSON text.
_JSON_COLUMNS = ("inputs", "outputs", "bands")
_TILE_COLUMNS = ("key", "status", "checksum", "inputs", "outputs", "run_id", "finished",
                 "seconds", "forward_seconds", "windows", "attempts", "worker", "pid",
                 "threads", "model_loads", "bands", "error")
_UPSERT_TILE = (
    f"INSERT INTO tiles ({', '.join(_TILE_COLUMNS)}) "
    f"VALUES ({', '.join(':' + name for name in _TILE_COLUMNS)}) ON CONFLICT (key) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _TILE_COLUMNS[1:]))


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


class JobDB:
    """One batch job's database: the tiles' state, the runs, the settings."""

    def __init__(self, conn: sqlite3.Connection, path: Path, writer: bool = False):
        self.conn, self.path, self.writer = conn, path, writer
        self._done: dict[str, tuple[str, dict]] | None = None

    # ---- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, out_dir: str | os.PathLike) -> "JobDB":
        """The database of ``out_dir`` for writing, created (or migrated from
        ``manifest.json``) when missing."""
        out = Path(out_dir)
        path = out / NAME
        legacy = None if path.exists() else read_legacy_manifest(out)
        try:
            if not path.exists():
                _create_file(path)
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=10000")
            db = cls(conn, path, writer=True)
            db._create()
        except sqlite3.Error as exc:
            raise OutputError(f"cannot open the batch database ({exc}); remove it or choose "
                              "another -o", path) from None
        if legacy is not None:
            db._import_legacy(legacy)
            os.replace(out / LEGACY_NAME, out / f"{LEGACY_NAME}.migrated")
        return db

    @classmethod
    def read(cls, out_dir: str | os.PathLike) -> "JobDB | None":
        """The database of ``out_dir`` read-only (an old ``manifest.json`` is read into
        memory), or None when the folder holds no batch. Never writes to ``out_dir``."""
        out = Path(out_dir)
        path = out / NAME
        if path.exists():
            try:
                conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                       isolation_level=None)
                conn.execute("PRAGMA busy_timeout=10000")
                db = cls(conn, path)
                db.meta("format")
                return db
            except sqlite3.Error as exc:
                raise OutputError(f"not a readable batch database ({exc})", path) from None
        legacy = read_legacy_manifest(out)
        if legacy is None:
            return None
        db = cls(sqlite3.connect(":memory:", isolation_level=None), out / LEGACY_NAME)
        db._create()
        db._import_legacy(legacy)
        return db

    def close(self) -> None:
        if self.writer:
            # Back to a plain journal when the job stops: an idle output folder holds one
            # file (no -wal/-shm), which readers open without writing anything beside it.
            # Skipped while a reader has it open (busy): WAL mode then simply stays.
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("PRAGMA busy_timeout=0")
                self.conn.execute("PRAGMA journal_mode=DELETE")
        self.conn.close()

    def _create(self) -> None:
        with self._transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.conn.execute(statement)
            fmt = self.meta("format")
            if fmt is None:
                self._set_meta("format", FORMAT)
                self._set_meta("version", str(VERSION))
            elif fmt != FORMAT:
                raise OutputError("not an rsseg batch database", self.path)
            elif int(self.meta("version") or 0) > VERSION:
                raise OutputError(f"batch database version {self.meta('version')} is newer "
                                  f"than this rsseg understands ({VERSION})", self.path)

    @contextlib.contextmanager
    def _transaction(self):
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ---- settings and mosaic -------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                          "DO UPDATE SET value = excluded.value", (key, value))

    @property
    def settings(self) -> dict:
        return json.loads(self.meta("settings") or "{}")

    @property
    def mosaic(self) -> dict:
        return json.loads(self.meta("mosaic") or "{}")

    def set_mosaic(self, mosaic: dict) -> None:
        with self._transaction():
            self._set_meta("mosaic", json.dumps(mosaic))

    # ---- runs --------------------------------------------------------------------------

    def start_run(self, run: dict, settings: dict, pending: list[dict]) -> None:
        """Record a run, its settings and the tiles it will predict (one transaction)."""
        with self._transaction():
            self._set_meta("settings", json.dumps(settings))
            self._set_meta("settings_hash", digest(settings))
            self.conn.execute(
                "INSERT INTO runs (id, started, host, pid, workers, threads, scheduler, tiles, "
                "timings) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run["id"], run["started"], socket.gethostname(), run["pid"], run["workers"],
                 run["threads"], run["scheduler"], run["tiles"], "{}"))
            self.conn.executemany(
                "INSERT INTO tiles (key, status, checksum, inputs, outputs, run_id, attempts) "
                "VALUES (:key, 'pending', :checksum, :inputs, :outputs, :run_id, 0) "
                "ON CONFLICT (key) DO UPDATE SET status = 'pending', "
                "checksum = excluded.checksum, inputs = excluded.inputs, "
                "outputs = excluded.outputs, run_id = excluded.run_id, finished = NULL, "
                "attempts = 0, error = NULL",
                ({"key": p["key"], "checksum": p["checksum"], "inputs": json.dumps(p["inputs"]),
                  "outputs": json.dumps(p["outputs"]), "run_id": run["id"]} for p in pending))
        self._done = None

    def set_run_workers(self, run_id: str, workers: int) -> None:
        """The cluster's own worker count, once it is known (an outside cluster's may
        differ from --workers)."""
        with self._transaction():
            self.conn.execute("UPDATE runs SET workers = ? WHERE id = ?", (workers, run_id))

    def finish_run(self, run_id: str, timings: dict) -> None:
        with self._transaction():
            self.conn.execute("UPDATE runs SET finished = ?, timings = ? WHERE id = ?",
                              (now(), json.dumps(timings), run_id))

    def runs(self) -> list[dict]:
        cursor = self.conn.execute("SELECT * FROM runs ORDER BY started, rowid")
        names = [c[0] for c in cursor.description]
        runs = [dict(zip(names, row)) for row in cursor]
        for run in runs:
            run["timings"] = json.loads(run["timings"] or "{}")
        return runs

    # ---- tiles -------------------------------------------------------------------------

    def record(self, key: str, entry: dict) -> None:
        """A tile finished (``entry['status']`` done or failed): one transaction, one row."""
        with self._transaction():
            self._upsert(key, entry)
        if self._done is not None:
            self._done.pop(key, None)
            if entry["status"] == "done":
                self._done[key] = (entry["checksum"], entry.get("outputs") or {})

    def _upsert(self, key: str, entry: dict) -> None:
        row = {name: entry.get(name) for name in _TILE_COLUMNS}
        row["key"] = key
        for name in _JSON_COLUMNS:
            if row[name] is not None:
                row[name] = json.dumps(row[name])
        self.conn.execute(_UPSERT_TILE, row)

    def is_done(self, key: str, checksum: str, out_dir: Path) -> bool:
        """Finished with the same inputs and settings, and its outputs still there."""
        if self._done is None:
            self._done = {k: (c, json.loads(o)) for k, c, o in self.conn.execute(
                "SELECT key, checksum, outputs FROM tiles WHERE status = 'done'")}
        hit = self._done.get(key)
        if hit is None or hit[0] != checksum:
            return False
        return all((out_dir / rel).is_file() for rel in hit[1].values())

    def records_tiles(self) -> bool:
        """Is any tile done? Pending rows, and failed ones (e.g. workers without the GPU
        asked for), leave no output to protect."""
        return self.conn.execute(
            "SELECT 1 FROM tiles WHERE status = 'done' LIMIT 1").fetchone() is not None

    def counts(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT status, count(*) FROM tiles GROUP BY status"))

    def seconds_per_window(self) -> float | None:
        """Worker seconds per window over the finished tiles (None before the first)."""
        seconds, windows = self.conn.execute(
            "SELECT sum(seconds), sum(windows) FROM tiles WHERE status = 'done'").fetchone()
        return seconds / windows if seconds and windows else None

    def tiles(self, status: str | None = None) -> dict[str, dict]:
        """Tile rows by key (``status`` to select), JSON columns decoded, empty fields left out."""
        sql = "SELECT * FROM tiles" + (" WHERE status = ?" if status else "") + " ORDER BY key"
        cursor = self.conn.execute(sql, (status,) if status else ())
        names = [c[0] for c in cursor.description]
        tiles = {}
        for row in cursor:
            entry = {n: v for n, v in zip(names, row) if v is not None and n != "key"}
            for name in _JSON_COLUMNS:
                if name in entry:
                    entry[name] = json.loads(entry[name])
            tiles[row[0]] = entry
        return tiles

    # ---- the grids of the input files (planning a resumed job opens no unchanged file) ----

    def grids(self) -> dict[str, tuple[str, tuple]]:
        """``{path: (fingerprint, grid record)}`` (see :func:`rsseg.batch.inputs.open_tiles`)."""
        wkts = dict(self.conn.execute("SELECT id, wkt FROM crs"))
        grids = {}
        for path, fp, crs_id, grid in self.conn.execute(
                "SELECT path, fingerprint, crs, grid FROM grids"):
            width, height, transform, count, dtypes, nodata, names = json.loads(grid)
            grids[path] = (fp, (path, None, width, height, wkts.get(crs_id, ""), transform,
                                count, dtypes, nodata, names))
        return grids

    def save_grids(self, tiles) -> None:
        """Remember the grids of the readable local tiles (one transaction)."""
        from rsseg.batch.inputs import grid_record

        wkt_of: dict[int, str] = {}  # per CRS object (tiles share one per distinct CRS)
        with self._transaction():
            ids = dict((wkt, i) for i, wkt in self.conn.execute("SELECT id, wkt FROM crs"))
            rows = []
            for tile in tiles:
                if not tile.ok or not tile.fingerprint:
                    continue
                key = id(tile.crs)
                if key not in wkt_of:
                    wkt_of[key] = tile.crs.to_wkt() if tile.crs is not None else ""
                wkt = wkt_of[key]
                if wkt not in ids:
                    ids[wkt] = self.conn.execute("INSERT INTO crs (wkt) VALUES (?)",
                                                 (wkt,)).lastrowid
                record = grid_record(tile, wkt)
                rows.append((tile.path, tile.fingerprint, ids[wkt], json.dumps(
                    [record[2], record[3], record[5], record[6], record[7], record[8],
                     record[9]])))
            self.conn.executemany(
                "INSERT INTO grids (path, fingerprint, crs, grid) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (path) DO UPDATE SET fingerprint = excluded.fingerprint, "
                "crs = excluded.crs, grid = excluded.grid", rows)

    def export(self) -> dict:
        """Everything, as one JSON-able dict (settings, runs, tiles by key, mosaic)."""
        return {"format": FORMAT, "version": VERSION, "settings": self.settings,
                "settings_hash": self.meta("settings_hash"), "runs": self.runs(),
                "tiles": self.tiles(), "mosaic": self.mosaic}

    # ---- the JSON manifest of older versions ----------------------------------------------

    def _import_legacy(self, data: dict) -> None:
        with self._transaction():
            if data.get("settings") is not None:
                self._set_meta("settings", json.dumps(data["settings"]))
                self._set_meta("settings_hash", data.get("settings_hash") or digest(data["settings"]))
            if data.get("mosaic"):
                self._set_meta("mosaic", json.dumps(data["mosaic"]))
            for run in data.get("runs", []):
                self.conn.execute(
                    "INSERT OR IGNORE INTO runs (id, started, pid, workers, threads, scheduler, "
                    "tiles, timings) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (run.get("id"), run.get("started", ""), run.get("pid"), run.get("workers"),
                     run.get("threads"), run.get("scheduler"), run.get("tiles"),
                     json.dumps(run.get("timings") or {})))
            for key, entry in data.get("tiles", {}).items():
                if isinstance(entry, dict) and entry.get("status") in ("done", "failed"):
                    self._upsert(key, {"inputs": {}, "outputs": {}, "checksum": "", **entry})


def _create_file(path: Path) -> None:
    """A new, empty database with its tables, put in place by a rename: a reader
    (``rsseg batch-status`` while the job starts) never sees a file without them."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            db = JobDB(conn, tmp)
            db._create()
        finally:
            conn.close()
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def read_legacy_manifest(out: Path) -> dict | None:
    """The JSON manifest of an older rsseg in ``out``, validated, or None when there is none."""
    path = Path(out) / LEGACY_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot read the old batch manifest ({exc}); remove it or pass "
                          "--overwrite", path) from None
    if not isinstance(data, dict) or data.get("format") != LEGACY_FORMAT:
        raise OutputError("not an rsseg batch manifest", path)
    if int(data.get("version", 0)) != LEGACY_VERSION:
        raise OutputError(f"batch manifest version {data.get('version')} cannot be migrated "
                          f"(this rsseg reads version {LEGACY_VERSION}); remove it or pass "
                          "--overwrite", path)
    if not isinstance(data.get("tiles", {}), dict):
        raise OutputError("batch manifest has no tile table; remove it or pass --overwrite",
                          path)
    return data
