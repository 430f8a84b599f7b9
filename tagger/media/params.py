"""How a file is analysed, as one value: built once from the options, sent to every worker, kept in the cache.

A scan builds one :class:`AnalysisParams` from its options and its model
(:func:`tagger.inference.inputs.analysis_params`), puts it in every
:class:`~tagger.inference.worker.AnalysisTask` (local pool, Dask, in-process alike)
and records :func:`tagger.inference.inputs.cache_key` of it with every result, so
what a worker was told and what the cache says it did cannot drift apart.

This module imports nothing heavy: the command line reads its defaults at
start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..defaults import DEFAULT_EXCERPT

#: Sample rate of the GTZAN pipeline (features and slices): every module takes it from here.
SAMPLE_RATE = 22050


def whole_or_seconds(excerpt: float | None) -> float | None:
    """The one normalisation of an excerpt length: 0, None (or less) mean the whole file, None."""
    return float(excerpt) if excerpt and excerpt > 0 else None


@dataclass(frozen=True)
class AnalysisParams:
    """What a worker needs to analyse any file of a scan; small and picklable.

    ``excerpt`` is None for the whole file (any 0 or None given is
    normalised so).  ``kind`` names the model's input kind (tagger.inference.kinds);
    for a kind with a front end, ``backend`` names the backend whose front
    end the worker loads, ``front_end`` the id of the front end the model was
    checked against, and ``sample_rate`` is that front end's rate.
    """

    excerpt: float | None = DEFAULT_EXCERPT
    kind: str = "features"
    backend: str | None = None
    front_end: str | None = None
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self) -> None:
        object.__setattr__(self, "excerpt", whole_or_seconds(self.excerpt))

    def longer_than(self, seconds: float) -> bool:
        """Whether the window asked for may exceed ``seconds`` (the whole file always may)."""
        return self.excerpt is None or self.excerpt > seconds
