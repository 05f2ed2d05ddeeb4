"""Progress reporting: a tqdm bar for people, JSON lines for programs.

``--progress-json`` (used by the QGIS plugin) writes one JSON object per line
to stdout::

    {"event": "start", "task": "predict", "total": 120, "unit": "window"}
    {"event": "progress", "task": "predict", "done": 12, "total": 120, "fraction": 0.1}
    {"event": "log", "message": "..."}
    {"event": "end", "task": "predict", "done": 120, "total": 120, "seconds": 3.2}

Errors still go to stderr as one line (see :mod:`rsseg.cli`).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Literal

Mode = Literal["bar", "json", "off"]


class Progress:
    """Count units of work (windows, blocks, tiles) toward a known total.

    ``scale`` converts units to megapixels for the Mpx/s rate tqdm shows.
    """

    def __init__(self, total: int, task: str, mode: Mode = "bar", unit: str = "it",
                 mpx_per_unit: float | None = None, stream=None):
        self.total = int(total)
        self.task = task
        self.mode = mode
        self.done = 0
        self._t0 = time.perf_counter()
        self._last_emit = 0.0
        self._stream = stream or sys.stdout
        self._bar = None
        if mode == "bar":
            from tqdm.auto import tqdm  # imported here: costs ~0.1 s at start-up

            if mpx_per_unit:
                self._bar = tqdm(total=self.total * mpx_per_unit, desc=task, unit="Mpx",
                                 unit_scale=False, dynamic_ncols=True, file=sys.stderr,
                                 # rate_noinv_fmt: always Mpx/s (rate_fmt flips to s/Mpx
                                 # below 1 Mpx/s)
                                 bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} Mpx "
                                            "[{elapsed}<{remaining}, {rate_noinv_fmt}]")
                self._scale = mpx_per_unit
            else:
                self._bar = tqdm(total=self.total, desc=task, unit=unit, dynamic_ncols=True,
                                 file=sys.stderr)
                self._scale = 1  # int: tqdm then shows whole counts (5/8, not 5.0/8)
        elif mode == "json":
            self._emit({"event": "start", "task": task, "total": self.total, "unit": unit})

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            # Summed float Mpx can overshoot the total by a rounding error, which tqdm reports
            # as "clamping frac to range [0, 1]" and a negative ETA: land exactly on the total.
            step = n * self._scale
            if self.done >= self.total:
                step = self._bar.total - self._bar.n
            self._bar.update(step)
        elif self.mode == "json":
            now = time.perf_counter()
            # Throttle to ~10 lines/s; always report completion.
            if now - self._last_emit >= 0.1 or self.done >= self.total:
                self._last_emit = now
                frac = self.done / self.total if self.total else 1.0
                self._emit({"event": "progress", "task": self.task, "done": self.done,
                            "total": self.total, "fraction": round(frac, 4)})

    def set_status(self, text: str) -> None:
        """Show a short live status (e.g. the running loss) beside the bar."""
        if self._bar is not None:
            self._bar.set_description(text, refresh=False)

    def log(self, message: str) -> None:
        if self.mode == "json":
            self._emit({"event": "log", "message": message})
        elif self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "json":
            self._emit({"event": "end", "task": self.task, "done": self.done, "total": self.total,
                        "seconds": round(time.perf_counter() - self._t0, 3)})
            self.mode = "off"

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _emit(self, obj: dict) -> None:
        self._stream.write(json.dumps(obj) + "\n")
        self._stream.flush()


def log_message(mode: Mode, message: str, **extra) -> None:
    """A message outside any bar: a JSON ``log`` event on stdout in json mode, else stderr."""
    if mode == "json":
        sys.stdout.write(json.dumps({"event": "log", "message": message, **extra}) + "\n")
        sys.stdout.flush()
    else:
        print(message, file=sys.stderr)


def progress_mode(progress: bool, progress_json: bool) -> Mode:
    if progress_json:
        return "json"
    return "bar" if progress else "off"
