"""The Dask cluster a batch job runs on: a LocalCluster of processes, or an existing one.

A local cluster runs ``workers`` processes with ``threads`` threads each (1 by
default: on CPU one single-threaded torch per core scales better than one
multi-threaded torch, and Dask sets ``OMP_NUM_THREADS=1`` in its worker
processes anyway; the task then sets torch's thread count to the worker's).
Worker processes exit on their own when the process that started them dies
(Dask watches its parent), so a killed batch leaves no orphan computing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from dataclasses import dataclass


# Dask starts worker processes with MALLOC_TRIM_THRESHOLD_=65536. Setting it turns off
# glibc's dynamic mmap threshold, so every array above 128 KiB (each window's bands,
# activations, scores) is a fresh mmap whose pages the kernel faults in and zeroes: measured
# here, that doubled the network's time per window (half of it system time). rsseg's
# workers allocate and free the same sizes window after window, which glibc's default
# handles without returning memory to the kernel each time; memory still stays flat.
UNSET_MALLOC_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


@dataclass
class ClusterInfo:
    client: object
    cluster: object | None  # None for an existing cluster (--scheduler): it is not ours to close
    dashboard: str | None
    workers: int
    threads: int

    def describe(self) -> str:
        where = "local cluster" if self.cluster is not None else f"cluster at {self.client.scheduler.address}"
        return (f"{where}: {self.workers} worker(s) x {self.threads} thread(s); dashboard: "
                f"{self.dashboard or 'unavailable (pip install bokeh)'}")


def start_cluster(workers: int = 2, threads: int = 1, scheduler: str | None = None,
                  timeout: float = 60.0) -> ClusterInfo:
    """Connect to ``scheduler`` or start a LocalCluster; returns the client and its dashboard."""
    import dask
    from distributed import Client, LocalCluster

    from rsseg.errors import RssegError

    if scheduler:
        try:
            client = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise RssegError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from None
        nthreads = list(client.nthreads().values())  # every worker (scheduler_info caps it)
        return ClusterInfo(client, None, client.dashboard_link, len(nthreads),
                           max(nthreads or [threads]))
    has_dashboard = importlib.util.find_spec("bokeh") is not None
    with dask.config.set({UNSET_MALLOC_TRIM: None}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                               dashboard_address=":0" if has_dashboard else None,
                               silence_logs=logging.ERROR, host="127.0.0.1",
                               preload=["rsseg.batch.preload"])
    try:
        client = Client(cluster, timeout=timeout)
    except BaseException:
        cluster.close()
        raise
    return ClusterInfo(client, cluster, client.dashboard_link if has_dashboard else None,
                       workers, threads)


def stop_cluster(info: ClusterInfo | None) -> None:
    """Close the client, and the cluster when we started it (never raises)."""
    if info is None:
        return
    with contextlib.suppress(Exception):
        info.client.close(timeout=10)
    if info.cluster is not None:
        with contextlib.suppress(Exception):
            info.cluster.close(timeout=10)


class ClusterStarter:
    """Start (or connect to) the cluster on a thread while the driver plans the job.

    Worker processes spawn and import torch meanwhile, so the start-up overlaps
    the driver's own work. :meth:`get` waits for it; :meth:`stop` closes whatever
    was started (also when planning failed or there turned out to be nothing to do).
    """

    def __init__(self, workers: int, threads: int, scheduler: str | None):
        import threading

        self.info: ClusterInfo | None = None
        self.error: BaseException | None = None
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._start, args=(workers, threads, scheduler),
                                        name="rsseg-cluster-start", daemon=True)
        self._thread.start()

    def _start(self, workers, threads, scheduler) -> None:
        import time

        t0 = time.perf_counter()
        try:
            self.info = start_cluster(workers, threads, scheduler)
        except BaseException as exc:  # noqa: BLE001 - handed to the driver by get()
            self.error = exc
        self.seconds = time.perf_counter() - t0

    def get(self) -> ClusterInfo:
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.info

    def stop(self) -> None:
        self._thread.join()
        stop_cluster(self.info)
        self.info = None
