"""A fourth input kind and a backend reading it, defined in the test suite alone (tests/test_kinds.py).

"stats" is the zero-crossing rate, loudness and spectral flatness of the
excerpt, kept in the cache's embeddings table under its own id.  Nothing is
registered on import: a test registers it, or a plugin module does.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tagger.analysis.wire import AnalysisResult, AnalysisTask
from tagger.inference import kinds
from tagger.inference.kinds import Kept, Kind
from tagger.store.cache import Cache

sys.path.insert(0, str(Path(__file__).resolve().parent / "bands_plugin"))
from genretag_bands import BandsBackend  # noqa: E402

STATS_ID = "stats-v1"  # what the cache keeps this kind's rows under


def stats(y: np.ndarray) -> np.ndarray:
    """Zero-crossing rate, log RMS and spectral flatness of a waveform."""
    zcr = float(np.mean(np.abs(np.diff(np.signbit(y).astype(np.int8)))))
    rms = float(np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2)) + 1e-9))
    power = np.abs(np.fft.rfft(y[: 1 << 14])) ** 2 + 1e-12
    flatness = float(np.exp(np.mean(np.log(power))) / np.mean(power))
    return np.array([zcr, rms, flatness], dtype=np.float32)


class Stats(Kind):
    """A kind with no AnalysisResult field of its own, kept in the embeddings table under its own id."""

    name, description = "stats", "waveform statistics"

    def compute(self, task: AnalysisTask, y: np.ndarray, sr: int, fe: Any) -> dict[str, Any]:
        return {"extra": {self.name: stats(y)}}

    def to_keep(self, key: str, result: AnalysisResult) -> Kept:
        value = self.model_input(result)
        return [] if value is None else [("embeddings", kinds.embedding_row(key, STATS_ID, value, None))]

    def cached(self, cache: Cache, keys: Sequence[str], fe: Any) -> kinds.Cached:
        return cache.embeddings_for(keys, STATS_ID), {}


class StatsHead(BandsBackend):
    """The bands plugin's nearest-centroid head, reading the "stats" kind instead of its embeddings."""

    name = "statshead"
    input_kind = "stats"
    genre_tags = ()
