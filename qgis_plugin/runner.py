"""Run one rsseg CLI command as a subprocess and relay it to a Processing feedback.

rsseg is called with an argument list (never a shell) plus ``--progress-json
--no-progress``: it then writes one JSON object per line on stdout (events
``start``, ``progress``, ``log``, ``end``; see rsseg/progress.py) and, when it
fails, one line on stderr and a non-zero exit status.

Two reader threads move the child's stdout and stderr lines into a queue; only
the calling (algorithm) thread touches the feedback, so cancellation is noticed
within a tenth of a second even while rsseg prints nothing.
"""

import json
import os
import queue
import signal
import subprocess
import threading

from qgis.core import QgsProcessingException

from .settings import child_environment, popen_platform_kwargs, resolve_executable

POLL_SECONDS = 0.1
# After SIGTERM rsseg removes its temporary outputs and exits; give it this long.
TERMINATE_GRACE_SECONDS = 10.0


class Cancelled(QgsProcessingException):
    """The user cancelled; rsseg was stopped and wrote no output."""


class RunResult:
    """What a finished rsseg run reported."""

    def __init__(self, argv, returncode, events, stderr_lines):
        self.argv = argv
        self.returncode = returncode
        self.events = events  # the JSON objects rsseg printed, in order
        self.stderr_lines = stderr_lines


def run_rsseg(command, args, feedback, executable=None):
    """Run ``rsseg COMMAND ARGS... --progress-json --no-progress``; return a RunResult.

    Raises QgsProcessingException with rsseg's own error line when it fails, and
    Cancelled when ``feedback.isCanceled()`` turned true (the process is then
    terminated, and killed if it does not exit within the grace period).
    """
    exe = executable or resolve_executable()
    argv = [exe, command] + [str(a) for a in args] + ["--progress-json", "--no-progress"]
    if feedback is not None:
        feedback.pushCommandInfo(" ".join(_quote(a) for a in argv))
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=child_environment(),
                                **popen_platform_kwargs())
    except OSError as exc:
        raise QgsProcessingException(f"Cannot start rsseg ({exe}): {exc.strerror or exc}")
    if feedback is not None:
        feedback.pushDebugInfo(f"rsseg process id {proc.pid}")
    relay = _Relay(command, feedback)
    lines = queue.Queue()
    readers = [_start_reader(proc.stdout, "out", lines), _start_reader(proc.stderr, "err", lines)]
    open_streams = len(readers)
    try:
        while open_streams or proc.poll() is None:
            if feedback is not None and feedback.isCanceled() and proc.poll() is None:
                _stop(proc)
                raise Cancelled(f"Cancelled: rsseg {command} was stopped; it wrote no output.")
            try:
                stream, line = lines.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if line is None:
                open_streams -= 1
            elif stream == "out":
                relay.stdout_line(line)
            else:
                relay.stderr_line(line)
    except BaseException:
        if proc.poll() is None:  # an error in our loop must not orphan rsseg
            _stop(proc)
        raise
    finally:
        for reader in readers:
            reader.join(timeout=1.0)
    result = RunResult(argv, proc.returncode, relay.events, relay.stderr_lines)
    if proc.returncode != 0:
        raise QgsProcessingException(error_message(command, result))
    if feedback is not None:
        feedback.setProgress(100)
    return result


def error_message(command, result):
    """rsseg's one error line (``rsseg: error: ...``), else its last stderr line."""
    lines = [ln.strip() for ln in result.stderr_lines if ln.strip()]
    for line in reversed(lines):
        if line.startswith("rsseg:"):
            return line
    if lines:  # e.g. a click usage error ("Error: No such option ...")
        return f"rsseg {command}: {lines[-1]}"
    return f"rsseg {command} failed with exit status {result.returncode}"


class _Relay:
    """Turns rsseg's output lines into feedback calls."""

    def __init__(self, command, feedback):
        self.command = command
        self.feedback = feedback
        self.events = []
        self.stderr_lines = []

    def stdout_line(self, line):
        text = line.rstrip("\r\n")
        if not text.strip():
            return
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            self._push("pushConsoleInfo", text)
            return
        self.events.append(event)
        self._event(event)

    def stderr_line(self, line):
        text = line.rstrip("\r\n")
        if text.strip():
            self.stderr_lines.append(text)
            # rsseg's notes (e.g. "weights trained on synthetic scenes only") and warnings
            # must reach the analyst, not only the console log
            shown = text.startswith(("rsseg: note:", "rsseg: warning:"))
            self._push("pushWarning" if shown else "pushConsoleInfo", text)

    def _event(self, event):
        kind = event.get("event")
        fb = self.feedback
        if fb is None:
            return
        task = event.get("task", self.command)
        if kind == "start":
            unit = event.get("unit", "")
            fb.setProgressText(f"rsseg {task}: {event.get('total', '?')} {unit}".strip())
            fb.setProgress(0)
        elif kind == "progress":
            fraction = _fraction(event)
            if fraction is not None:
                fb.setProgress(100.0 * fraction)
        elif kind == "log":
            fb.pushInfo(str(event.get("message", "")))
        elif kind == "end":
            fb.setProgress(100)
            seconds = event.get("seconds")
            took = f" in {seconds} s" if seconds is not None else ""
            fb.pushInfo(f"rsseg {task}: done{took}")
        else:
            fb.pushDebugInfo(json.dumps(event))

    def _push(self, method, text):
        if self.feedback is not None:
            getattr(self.feedback, method)(text)


def _fraction(event):
    """0..1 from the event's fraction, or from done/total."""
    try:
        if event.get("fraction") is not None:
            return min(max(float(event["fraction"]), 0.0), 1.0)
        total = float(event.get("total") or 0)
        return min(max(float(event.get("done", 0)) / total, 0.0), 1.0) if total else None
    except (TypeError, ValueError):
        return None


def _start_reader(stream, name, sink):
    def pump():
        try:
            for raw in iter(stream.readline, b""):
                sink.put((name, raw.decode("utf-8", errors="replace")))
        finally:
            stream.close()
            sink.put((name, None))

    thread = threading.Thread(target=pump, name=f"rsseg-{name}", daemon=True)
    thread.start()
    return thread


def _stop(proc):
    """SIGTERM (rsseg then deletes its temporary outputs), SIGKILL after the grace period."""
    try:
        proc.terminate()
        proc.wait(timeout=TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        proc.wait()
    except OSError:
        pass
    # Worker processes rsseg may have started share its process group (POSIX).
    if os.name != "nt":
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass


def _kill_tree(proc):
    if os.name != "nt":
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            return
        except OSError:
            pass
    proc.kill()


def _quote(arg):
    return f'"{arg}"' if (not arg or any(c.isspace() for c in arg)) else arg
