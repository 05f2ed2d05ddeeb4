"""The bounded driver of ``rsseg batch``: tiles go to the Dask cluster a few per worker at a
time, each result is recorded in the job database as it arrives, failures are retried once.

:func:`run_tiles` keeps at most :func:`in_flight` tasks queued, so the scheduler and the
driver hold a few futures per worker whatever the tile count; :class:`_Submitter` sends a
tile as one task, or as row bands and the task that stitches them
(:mod:`rsseg.batch.split`) when there are fewer tiles than workers.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rsseg.batch.jobdb import JobDB, now
from rsseg.batch.split import band_count, merge_parts, split_job

if TYPE_CHECKING:
    from rsseg.batch.driver import BatchSummary, _ContextVrts, _Planned

MAX_ATTEMPTS = 2  # a failing tile is retried once
# Tasks in flight per worker: enough to keep every worker fed while results come
# back, few enough that the scheduler never holds one future per tile.
IN_FLIGHT_PER_WORKER = 4
MIN_IN_FLIGHT = 16


def run_tiles(client, todo: list[_Planned], db: JobDB, summary: BatchSummary, bar,
              parts_dir: Path, workers: int, vrts: _ContextVrts) -> None:
    """Submit the tiles in a bounded window, record each as it finishes, retry failures once.

    At most ``in_flight(workers)`` tiles are queued on the cluster at once; each
    result tops the window up, so the scheduler and this process hold a few
    futures per worker whatever the tile count. With fewer tiles than workers,
    big tiles run as row bands on several workers (:mod:`rsseg.batch.split`).
    """
    from distributed import as_completed

    attempts: dict[str, int] = {}
    submit = _Submitter(client, summary.run_id, parts_dir)
    waiting = iter(todo)
    futures: dict = {}
    pending = as_completed()

    def send(plan: _Planned) -> None:
        key = plan.tile.path
        attempts[key] = attempts.get(key, 0) + 1
        bands = band_count(len(todo), workers, plan.tile.height, plan.job.tile)
        vrts.write(plan)
        future = submit(plan, attempts[key], bands)
        futures[future] = plan
        pending.add(future)

    window = _Window(client, workers)
    for plan in itertools.islice(waiting, window.size()):
        send(plan)
    try:
        for future in pending:
            plan = futures.pop(future)
            key = plan.tile.path
            if future.status == "finished":
                db.record(key, _done_entry(plan, future.result(), attempts.pop(key),
                                           summary.run_id))
                summary.done.append(key)
            else:
                error = _error_text(future)
                if attempts[key] < MAX_ATTEMPTS:
                    bar.log(f"rsseg: retrying {key}: {error}")
                    send(plan)
                    continue
                db.record(key, {"status": "failed", "checksum": plan.checksum,
                                "inputs": plan.inputs, "outputs": {}, "error": error,
                                "run_id": summary.run_id, "finished": now(),
                                "attempts": attempts.pop(key)})
                summary.failed[key] = error
            vrts.remove(plan)
            bar.update(1)
            submit.forget_bands()
            for following in itertools.islice(waiting, max(window.size() - len(futures), 0)):
                send(following)
    finally:
        if futures:  # interrupted: stop what is still queued or running
            client.cancel(list(futures) + submit.band_futures, force=True)


def in_flight(workers: int) -> int:
    """How many tiles the driver keeps queued on a cluster of ``workers`` workers."""
    return max(MIN_IN_FLIGHT, IN_FLIGHT_PER_WORKER * workers)


class _Window:
    """The number of tiles to keep in flight, following the cluster's size (workers of
    an external cluster may come and go during a long job); asked every few seconds."""

    RECHECK_SECONDS = 10.0

    def __init__(self, client, workers: int):
        self.client, self.workers = client, workers
        self.checked = time.monotonic()

    def size(self) -> int:
        if time.monotonic() - self.checked > self.RECHECK_SECONDS:
            self.checked = time.monotonic()
            try:
                self.workers = len(self.client.nthreads()) or self.workers
            except Exception:  # noqa: BLE001 - a busy scheduler: keep the last size
                pass
        return in_flight(self.workers)


class _Submitter:
    """Submits a tile as one task, or as band tasks and the task that stitches them."""

    def __init__(self, client, run_id: str, parts_dir: Path):
        self.client, self.run_id, self.parts_dir = client, run_id, parts_dir
        self.band_futures: list = []

    def forget_bands(self) -> None:
        """Drop band futures that are finished (the list holds only those still running)."""
        self.band_futures = [f for f in self.band_futures if not f.done()]

    def __call__(self, plan: _Planned, attempt: int, bands: int):
        from rsseg.batch.worker import run_tile

        key = f"rsseg-tile-{plan.tile.stem}-{self.run_id}-{attempt}"
        if bands <= 1:
            return self.client.submit(run_tile, plan.job, key=key, pure=False)
        parts = split_job(plan.job, bands, plan.tile.height, plan.tile.width, self.parts_dir,
                          attempt)
        futures = [self.client.submit(run_tile, part, key=f"{key}-band{k}", pure=False)
                   for k, part in enumerate(parts)]
        self.band_futures.extend(futures)
        # A band's failure is the stitching task's failure: the tile is retried whole.
        return self.client.submit(merge_parts, plan.job, parts, *futures, key=key, pure=False)


def _error_text(future) -> str:
    try:
        exc = future.exception()
    except Exception as outer:  # noqa: BLE001 - e.g. the future was cancelled
        exc = outer
    from rsseg.errors import RssegError

    text = " ".join(str(exc).split())
    if isinstance(exc, RssegError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _done_entry(plan: _Planned, result: dict, attempts: int, run_id: str) -> dict:
    return {"status": "done", "checksum": plan.checksum, "inputs": plan.inputs,
            "outputs": plan.outputs, "run_id": run_id, "finished": now(),
            "seconds": result["seconds"], "forward_seconds": result["forward_seconds"],
            "windows": result["windows"], "attempts": attempts, "worker": result["worker"],
            "pid": result["pid"], "threads": result["threads"],
            "model_loads": result["model_loads"],
            **({"bands": result["bands"]} if "bands" in result else {})}


# ---- mosaics ---------------------------------------------------------------------------------
