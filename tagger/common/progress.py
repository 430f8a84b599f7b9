"""The progress protocol every long run reports to: scan, tag, undo, train and report.

The library calls it; the CLI passes a rich bar (tagger/views/ui.py), a notebook
or benchmark passes nothing (:class:`NullProgress`) or its own counter.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Told how many items there are when known, then of each one done and how it went."""

    def set_total(self, total: int) -> None: ...
    def advance(self, path: str, status: str) -> None: ...


class NullProgress:
    """Reports nowhere: the default when the caller wants no progress."""

    def set_total(self, total: int) -> None:
        pass

    def advance(self, path: str, status: str) -> None:
        pass
