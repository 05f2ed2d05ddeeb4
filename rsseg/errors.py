"""User-facing errors.

Anything raised as :class:`RssegError` is a problem with the user's input or
environment, not a bug: the CLI prints its message as one line on stderr and
exits with status 1 (no traceback unless ``--debug``).
"""

from __future__ import annotations

import os


class RssegError(Exception):
    """A clear, one-line problem report meant for the user."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        text = " ".join(str(message).split())  # always one line
        super().__init__(f"{self.path}: {text}" if self.path else text)


class InputError(RssegError):
    """An input file is missing, unreadable or not what the command expects."""


class OutputError(RssegError):
    """An output cannot be written (exists, directory missing, read-only, disk full)."""


class ModelError(RssegError):
    """Unknown model, incompatible checkpoint or weights."""


class UsageError(RssegError):
    """The options contradict each other or the command (e.g. an output that is also an
    input); the CLI exits with status 2, as for any other usage error."""
