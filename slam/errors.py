"""Errors that reach the user as one line (exit status 2), never as a traceback."""

from __future__ import annotations

from pathlib import Path


class SlamInputError(Exception):
    """Bad input from the user: a missing or malformed file, a bad config key.

    The message is a single line that names the file (or key) and the problem.
    """

    def __init__(self, problem: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}" if self.path else self.problem)


class SlamRuntimeError(Exception):
    """A failure while running (a dead worker thread, a lost track that cannot recover)."""


def describe(exc: BaseException) -> str:
    """An exception as one line, 'Type: message' (library messages often span several lines)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
