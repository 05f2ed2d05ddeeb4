"""Dask worker preload for ``rsseg batch`` (local clusters).

- Imports torch and the pipeline at worker start: the workers do it while the
  driver is still planning the job, so the seconds torch takes to import
  overlap with that work instead of delaying each worker's first tile.
- Ignores SIGINT in the worker: Ctrl-C in a terminal reaches the whole process
  group, and the driver, which owns the job, stops the workers itself (closing
  the cluster) after recording what finished.
"""

import signal
import threading

import torch  # noqa: F401

import rsseg.batch.worker  # noqa: F401
from rsseg.batch.cluster import quiet_task_failures
import rsseg.predict.predictor  # noqa: F401
import rsseg.predict.engine  # noqa: F401

quiet_task_failures(shutdown_heartbeat=True)
if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
