"""``rsseg batch-status OUT``: what a batch job did, is doing and has left to do.

Read from the job database (:mod:`rsseg.batch.jobdb`) without writing to it, so
it is safe while the job runs (SQLite's WAL lets readers in beside the driver).
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
from pathlib import Path

from rsseg.batch.jobdb import JobDB
from rsseg.errors import InputError

STATUSES = ("done", "failed", "pending")
LISTED_FAILURES = 20  # in the text form; --json lists every failed tile


def job_status(out_dir: str | os.PathLike, tiles: bool = False) -> dict:
    """Counts by status, the last run (running, finished or stopped), its throughput
    and ETA, the failed tiles with their errors and the mosaic; ``tiles`` adds every
    tile's row."""
    out = Path(out_dir)
    db = JobDB.read(out) if out.is_dir() else None
    if db is None:
        raise InputError("no batch job here (no batch.sqlite or manifest.json)", out)
    try:
        counts = db.counts()
        runs = db.runs()
        failed = db.tiles("failed")
        status = {
            "output": str(out.resolve()), "database": str(db.path.resolve()),
            "tiles": sum(counts.values()),
            "counts": {name: counts.get(name, 0) for name in STATUSES},
            "runs": len(runs), "run": None, "throughput": None, "eta": None,
            "failed": [{"tile": key, "error": entry.get("error", ""),
                        "attempts": entry.get("attempts"), "run_id": entry.get("run_id"),
                        "finished": entry.get("finished")} for key, entry in failed.items()],
            "mosaic": db.mosaic, "settings": db.settings,
        }
        if runs:
            _add_run(status, runs[-1], db)
        if tiles:
            status["tile_rows"] = db.tiles()
    finally:
        db.close()
    return status


def _add_run(status: dict, run: dict, db: JobDB) -> None:
    state = _run_state(run)
    status["run"] = {k: run.get(k) for k in ("id", "started", "finished", "host", "pid",
                                              "workers", "threads", "scheduler", "tiles")}
    status["run"]["state"] = state
    done, seconds, last = db.conn.execute(
        "SELECT count(*), sum(seconds), max(finished) FROM tiles "
        "WHERE run_id = ? AND status != 'pending'", (run["id"],)).fetchone()
    if not done:
        return
    end = _now() if state == "running" else _parse(run.get("finished") or last)
    elapsed = (end - _parse(run["started"])).total_seconds()
    if elapsed <= 0:
        return
    rate = done / elapsed
    status["throughput"] = {"tiles": done, "elapsed_seconds": round(elapsed, 1),
                            "tiles_per_hour": round(rate * 3600, 1),
                            "worker_seconds_per_tile": round((seconds or 0.0) / done, 3)}
    pending = status["counts"]["pending"]
    if state == "running" and pending:
        eta = pending / rate
        status["eta"] = {"seconds": round(eta), "at": (_now() + _dt.timedelta(seconds=eta))
                         .isoformat(timespec="seconds")}


def _run_state(run: dict) -> str:
    """``finished``; ``running`` (its process is alive); ``stopped`` (killed or crashed);
    ``unknown`` when it ran on another host, whose processes cannot be seen from here."""
    if run.get("finished"):
        return "finished"
    if run.get("host") not in (None, socket.gethostname()):
        return "unknown"
    pid = run.get("pid")
    if not pid:
        return "stopped"
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return "stopped"
    except PermissionError:
        return "running"
    return "running"


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _parse(text: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(text)


def status_lines(status: dict) -> list[str]:
    """The human-readable form of :func:`job_status`."""
    counts = status["counts"]
    lines = [f"batch in {status['output']}: {status['tiles']} tile(s): {counts['done']} done, "
             f"{counts['failed']} failed, {counts['pending']} pending"]
    run = status["run"]
    if run:
        where = run["scheduler"] or "local"
        lines.append(f"last run {run['id']} (of {status['runs']}): {run['state']}; started "
                     f"{run['started']} on {run['host'] or '?'} (pid {run['pid']}), "
                     f"{run['tiles']} tile(s) to do, {run['workers']} worker(s), {where}")
    speed = status["throughput"]
    if speed:
        lines.append(f"throughput: {speed['tiles']} tile(s) in {duration_text(speed['elapsed_seconds'])}"
                     f" = {speed['tiles_per_hour']:.0f} tiles/h; "
                     f"{speed['worker_seconds_per_tile']:.2f} s of worker time per tile")
    if status["eta"]:
        lines.append(f"ETA: {duration_text(status['eta']['seconds'])} "
                     f"(about {status['eta']['at']})")
    mosaic = status["mosaic"]
    if mosaic:
        vector = f" and {mosaic['vector']}" if mosaic.get("vector") else ""
        lines.append(f"mosaic: {mosaic.get('vrt')}{vector} over {mosaic.get('tiles')} tile(s), "
                     f"written {mosaic.get('finished')}")
    failed = status["failed"]
    lines += [f"failed: {f['error'] or f['tile']}" for f in failed[:LISTED_FAILURES]]
    if len(failed) > LISTED_FAILURES:
        lines.append(f"failed: ... and {len(failed) - LISTED_FAILURES} more "
                     "(rsseg batch-status --json lists them all)")
    return lines


def duration_text(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"
