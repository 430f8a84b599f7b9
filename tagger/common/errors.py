"""Exceptions that the command line turns into one clean ``Error:`` line.

A traceback printed to the user always means a bug; every expected failure
is one of these, carrying the file it concerns where there is one.
"""

from __future__ import annotations

from pathlib import Path


class GenretagError(Exception):
    """Base class for every error genretag expects and reports cleanly."""


class FileError(GenretagError):
    """A problem with one file: its path and a reason a user can act on."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DecodeError(FileError):
    """The file could not be decoded into audio samples."""


class AnalysisError(FileError):
    """The audio decoded but cannot be analysed (too short, silent, ...)."""


class ModelError(FileError):
    """A model file is missing, corrupt, or does not match the pipeline."""


class NoModelError(ModelError):
    """A backend has no model at all: never trained, and none shipped."""


class DatabaseError(GenretagError):
    """The database cannot be opened or used as asked (missing, foreign, read-only, locked, corrupt)."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = str(path)
        super().__init__(message)


class BackendError(GenretagError):
    """A backend is unknown, broken, or misbehaves."""
