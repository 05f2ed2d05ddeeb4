"""Where the plugin finds the ``rsseg`` executable, and the model list it offers.

The executable is looked up, in order, in

1. the QGIS setting ``rsseg/executable`` (Processing options > Providers > rsseg,
   or the plugin's menu entry), which may name the ``rsseg`` program itself or the
   Python environment (virtualenv/conda folder) it is installed in;
2. the ``RSSEG_EXECUTABLE`` environment variable (same forms);
3. ``rsseg`` on ``PATH``.

Nothing here imports rsseg or torch: the plugin only ever runs the CLI.
"""

import json
import os
import shutil
import subprocess

from qgis.core import QgsProcessingException, QgsSettings

SETTING_KEY = "rsseg/executable"
MODELS_CACHE_KEY = "rsseg/models_cache"
ENV_VAR = "RSSEG_EXECUTABLE"

# The networks rsseg ships; used until `rsseg models --json` has been asked.
STATIC_MODELS = (
    "bafnet",
    "lwganet_l0",
    "lwganet_l1",
    "lwganet_l2",
    "lsa_binet",
    "baff_skipnet",
    "canet",
)

# Where an environment folder keeps its console scripts (POSIX venv/conda, Windows).
_ENV_SCRIPT_DIRS = ("bin", "Scripts", "")
_PROGRAM_NAMES = ("rsseg", "rsseg.exe")

HOW_TO_CONFIGURE = (
    "Set the rsseg executable (or the Python environment it is installed in) in "
    "Processing > Options > Providers > rsseg, or set the RSSEG_EXECUTABLE "
    "environment variable, or put rsseg on PATH."
)


class ExecutableNotFound(QgsProcessingException):
    """The configured rsseg program does not exist or none is configured."""


def configured_executable():
    """The value of the plugin setting, '' when unset."""
    value = QgsSettings().value(SETTING_KEY, "", type=str)
    return (value or "").strip()


def set_configured_executable(path):
    QgsSettings().setValue(SETTING_KEY, (path or "").strip())


def resolve_executable():
    """Absolute path of the rsseg program to run; raises ExecutableNotFound."""
    for origin, value in (("the plugin setting " + SETTING_KEY, configured_executable()),
                          ("the environment variable " + ENV_VAR,
                           os.environ.get(ENV_VAR, "").strip())):
        if value:
            return _program_in(value, origin)
    found = shutil.which("rsseg")
    if found:
        return found
    raise ExecutableNotFound("Cannot find the rsseg program. " + HOW_TO_CONFIGURE)


def _program_in(value, origin):
    """``value`` is the program or an environment folder containing it."""
    path = os.path.abspath(os.path.expanduser(value))
    if os.path.isfile(path):
        if not os.access(path, os.X_OK):
            raise ExecutableNotFound(f"{path} (from {origin}) is not executable.")
        return path
    if os.path.isdir(path):
        for sub in _ENV_SCRIPT_DIRS:
            for name in _PROGRAM_NAMES:
                candidate = os.path.join(path, sub, name)
                if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                    return candidate
        raise ExecutableNotFound(
            f"{path} (from {origin}) is a folder without an rsseg program in bin/ or Scripts/.")
    raise ExecutableNotFound(f"{path} (from {origin}) does not exist. " + HOW_TO_CONFIGURE)


def child_environment():
    """The environment for rsseg: ours, minus what would make its Python load QGIS's.

    QGIS (notably on Windows and macOS) exports PYTHONHOME/PYTHONPATH for its own
    interpreter; inherited by the rsseg environment's Python they break its imports.
    """
    env = dict(os.environ)
    for name in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP"):
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env


def available_models():
    """Model names for the MODEL parameter: the cached `rsseg models` answer or the static list."""
    cached = _read_models_cache()
    return tuple(cached) if cached else STATIC_MODELS


def refresh_models(timeout=120):
    """Ask the configured rsseg for its models and cache them; returns the list.

    Slow (rsseg imports torch), so it runs only on request, never while QGIS starts.
    """
    exe = resolve_executable()
    proc = subprocess.run([exe, "models", "--json"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout,
                          env=child_environment(), **popen_platform_kwargs())
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise QgsProcessingException(lines[-1] if lines else
                                     f"rsseg models exited with status {proc.returncode}")
    names = parse_models_json(proc.stdout)
    if not names:
        raise QgsProcessingException("rsseg models --json listed no models")
    QgsSettings().setValue(MODELS_CACHE_KEY, json.dumps(names))
    return names


def parse_models_json(text):
    """Model names from `rsseg models --json`: a list of names or of objects with a name,
    or an object keyed by name (optionally under "models")."""
    data = json.loads(text)
    if isinstance(data, dict):
        data = data.get("models", data)
    if isinstance(data, dict):
        return [str(k) for k in data]
    names = []
    for item in data:
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str) and name:
            names.append(name)
    return names


def _read_models_cache():
    raw = QgsSettings().value(MODELS_CACHE_KEY, "", type=str)
    if not raw:
        return []
    try:
        names = json.loads(raw)
    except ValueError:
        return []
    return [n for n in names if isinstance(n, str) and n] if isinstance(names, list) else []


def popen_platform_kwargs():
    """No console window flashing up on Windows; a process group of its own elsewhere
    (so a cancel can stop rsseg's worker processes too)."""
    if os.name == "nt":
        return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {"start_new_session": True}
