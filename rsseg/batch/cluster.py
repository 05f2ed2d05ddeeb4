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
DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds: --connect-timeout
TASK_PREFIX = "rsseg-"  # every task key the driver submits starts with it
SHUTDOWN_HEARTBEAT = "Failed to communicate with scheduler during heartbeat"


@dataclass
class ClusterInfo:
    client: object
    cluster: object | None  # None for an existing cluster (--scheduler): it is not ours to close
    dashboard: str | None  # None when the cluster runs no dashboard
    workers: int
    threads: int

    def describe(self) -> str:
        where = "local cluster" if self.cluster is not None else f"cluster at {self.client.scheduler.address}"
        line = f"{where}: {self.workers} worker(s) x {self.threads} thread(s)"
        return f"{line}; dashboard: {self.dashboard}" if self.dashboard else line


def start_cluster(workers: int = 2, threads: int = 1, scheduler: str | None = None,
                  timeout: float = 60.0, device: str = "cpu",
                  connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> ClusterInfo:
    """Connect to ``scheduler`` or start a LocalCluster; returns the client and its dashboard.

    An existing scheduler is probed first (:func:`probe_scheduler`), so a wrong or
    silent address fails within ``connect_timeout`` seconds; its workers are then
    checked to have a GPU when ``device`` is ``cuda``.
    """
    import dask
    from distributed import Client, LocalCluster

    from rsseg.errors import RssegError

    quiet_task_failures()  # workers running in this process (e.g. processes=False clusters)
    if scheduler:
        address = scheduler_address(scheduler)
        identity = probe_scheduler(address, connect_timeout)
        try:
            client = Client(address, timeout=connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise RssegError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from None
        try:
            nthreads = list(client.nthreads().values())  # every worker (scheduler_info caps it)
            if device == "cuda":
                check_worker_gpus(client, scheduler)
        except BaseException:
            client.close()
            raise
        dashboard = serving_dashboard(client, identity, min(connect_timeout, 3.0))
        return ClusterInfo(client, None, dashboard, len(nthreads), max(nthreads or [threads]))
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


def scheduler_address(scheduler: str) -> str:
    """``host:port`` -> ``tcp://host:port`` (Dask's default protocol); full addresses as given."""
    return scheduler if "://" in scheduler else f"tcp://{scheduler}"


def probe_scheduler(address: str, timeout: float) -> dict:
    """The scheduler's identity, or a one-line :class:`RssegError` within ``timeout`` seconds.

    ``distributed.Client`` waits without end for a peer that accepts the connection
    but never answers (a wrong service, a stuck scheduler), whatever its timeout:
    this probe opens the connection and asks for the scheduler's identity itself,
    under a deadline, and tells a refused port, a silent peer and a service that is
    no Dask scheduler apart.
    """
    import asyncio
    import time

    from rsseg.errors import RssegError

    start = time.monotonic()
    # A plain TCP connection first: it tells a refused port or an unknown host at once
    # (Dask retries those until its timeout, then calls every cause a time-out).
    reason = _socket_reason(address, timeout)
    if reason:
        raise RssegError(f"cannot reach the Dask scheduler at {address} ({reason})")
    left = max(timeout - (time.monotonic() - start), 0.1)
    try:
        reply = _run_async(lambda: asyncio.wait_for(_identity(address, left), left))
    except (asyncio.TimeoutError, TimeoutError):
        raise RssegError(f"the Dask scheduler at {address} did not answer within "
                         f"{timeout:g} s (a stuck scheduler, or another service on that port?); "
                         "see --connect-timeout") from None
    except OSError as exc:
        raise RssegError(f"cannot reach the Dask scheduler at {address} "
                         f"({' '.join(str(exc).split())})") from None
    except Exception as exc:  # noqa: BLE001 - whatever a foreign protocol makes Dask raise
        raise RssegError(f"{address} answered, but not as a Dask scheduler does "
                         f"({type(exc).__name__}); check the address and port") from None
    kind = reply.get("type") if isinstance(reply, dict) else None
    if kind != "Scheduler":
        what = f"a Dask {kind}" if kind else "not a Dask scheduler"
        raise RssegError(f"{address} is {what}, not a scheduler; give the scheduler's "
                         "address (e.g. tcp://host:8786)")
    return reply


def _run_async(make_coroutine):
    """Run a coroutine to completion, also from code already inside an event loop (a
    notebook calling :func:`rsseg.batch.driver.run_batch`): then on a thread of its own."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()


async def _identity(address: str, timeout: float):
    from distributed.comm import connect

    comm = await connect(address, timeout=timeout)
    try:
        await comm.write({"op": "identity", "reply": True})
        return await comm.read()
    finally:
        comm.abort()


def _socket_reason(address: str, timeout: float) -> str | None:
    """For tcp:// addresses: why a plain TCP connection fails (refused, unknown host, no
    answer within ``timeout``), or None when it opens (or the address is not tcp://)."""
    import socket

    from distributed.comm import parse_address, parse_host_port

    scheme, location = parse_address(address)
    if scheme != "tcp":
        return None
    try:
        host, port = parse_host_port(location)
        socket.create_connection((host, port), timeout=timeout).close()
    except socket.gaierror:
        return f"unknown host {location.rsplit(':', 1)[0]!r}"
    except ConnectionRefusedError:
        return "connection refused: no scheduler listens there"
    except TimeoutError:  # socket.timeout: a firewall that drops packets, a host that is down
        return f"no answer to the connection within {timeout:g} s; see --connect-timeout"
    except (OSError, ValueError) as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def serving_dashboard(client, identity: dict, timeout: float) -> str | None:
    """The dashboard link of an existing cluster, or None when it serves no dashboard.

    A scheduler reports its HTTP service as "dashboard" even when it only serves
    health and metrics pages (bokeh missing, dashboard turned off): the link is
    given only when its status page answers.
    """
    import urllib.error
    import urllib.request

    if not (identity.get("services") or {}).get("dashboard"):
        return None
    link = client.dashboard_link
    try:
        with urllib.request.urlopen(link, timeout=timeout) as response:
            return link if response.status == 200 else None
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def check_worker_gpus(client, scheduler: str) -> None:
    """``--device cuda`` on an existing cluster: every worker must see a CUDA GPU."""
    from rsseg.errors import ModelError

    found = client.run(_has_cuda)
    without = sorted(address for address, ok in found.items() if not ok)
    if not found or without:
        raise ModelError(f"--device cuda was asked for but {len(without)} of {len(found)} "
                         f"worker(s) of the cluster at {scheduler} have no CUDA GPU"
                         + (f" (e.g. {without[0]})" if without else ""))


class _DropTaskFailures(logging.Filter):
    """Drops Dask worker records that would break the one-line rule and tell nothing new.

    - "Compute Failed ... Traceback" for rsseg's tasks: the driver reports every failed
      tile itself, on one line, and records it in the manifest;
    - "Failed to communicate with scheduler during heartbeat" with its traceback, which a
      local worker may log while the job's own cluster shuts down (its scheduler lives in
      the driver: when it is gone, so is the job).
    """

    def __init__(self, shutdown_heartbeat: bool):
        super().__init__()
        self.shutdown_heartbeat = shutdown_heartbeat

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith("Compute Failed") and record.args:
            return not str(record.args[0]).startswith(TASK_PREFIX)
        return not (self.shutdown_heartbeat and message.startswith(SHUTDOWN_HEARTBEAT))


def quiet_task_failures(shutdown_heartbeat: bool = False) -> None:
    """Install :class:`_DropTaskFailures` on Dask's worker logger (once per process).

    ``shutdown_heartbeat`` also drops heartbeat failures: only for the workers of a
    local cluster (whose scheduler is the driver's), never for a cluster's own workers.
    """
    logger = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _DropTaskFailures) for f in logger.filters):
        logger.addFilter(_DropTaskFailures(shutdown_heartbeat))


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

    def __init__(self, workers: int, threads: int, scheduler: str | None, device: str = "cpu",
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT):
        import threading

        self.info: ClusterInfo | None = None
        self.error: BaseException | None = None
        self.seconds = 0.0
        kwargs = dict(workers=workers, threads=threads, scheduler=scheduler, device=device,
                      connect_timeout=connect_timeout)
        self._thread = threading.Thread(target=self._start, kwargs=kwargs,
                                        name="rsseg-cluster-start", daemon=True)
        self._thread.start()

    def _start(self, **kwargs) -> None:
        import time

        t0 = time.perf_counter()
        try:
            self.info = start_cluster(**kwargs)
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
