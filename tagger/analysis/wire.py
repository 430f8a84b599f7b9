"""The values that cross the process boundary: what to analyse (a task) and what came of it (a result).

They sit at the bottom of the import graph, so the worker, the runners, the
scan and the input kinds all share them without importing each other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..media.params import AnalysisParams

if TYPE_CHECKING:
    from ..media.tags import FileMeta


@dataclass(frozen=True)
class PartOutput:
    """One part's output for one track."""

    front_end: str  # the part's id
    embedding: np.ndarray  # (d,) float32
    tags: np.ndarray | None  # (k,) float32, or None when the part has no tags


@dataclass(frozen=True)
class AnalysisTask:
    """What to analyse and how; small, so it is cheap to send to any worker.

    ``params`` is the scan's one :class:`~tagger.media.params.AnalysisParams`,
    the same value whose key the cache records with the result.
    """

    path: str
    params: AnalysisParams = AnalysisParams()
    #: Ids of a fused front end's parts whose output the cache already holds for this file: not run again.
    skip: frozenset[str] = frozenset()


@dataclass
class AnalysisResult:
    """A file's analysis, or the reason there is none."""

    path: str
    size: int | None = None
    mtime: float | None = None
    duration: float | None = None
    offset: float | None = None
    seconds: float | None = None  # length of the analysed excerpt
    features: np.ndarray | None = None
    slices: np.ndarray | None = None
    embedding: np.ndarray | None = None
    tags: np.ndarray | None = None  # the front end's tag probabilities, if it has tags
    front_end: str | None = None  # id of the front end that made ``embedding``
    parts: list[PartOutput] | None = None  # a fused front end's outputs, part by part (embedding is then None)
    #: Inputs of a kind with no field of its own (a kind a plugin adds, tagger.inference.kinds), by kind name.
    extra: dict[str, Any] = field(default_factory=dict)
    meta: FileMeta | None = None  # the file's own tags; None when they cannot be read
    error: str | None = None
    elapsed: float = 0.0
    worker: str = field(default_factory=lambda: str(os.getpid()))
