"""The protocol of a pretrained front end: what an ``"embedding"`` backend runs in the worker processes.

Its own module, below the backends registry and the input kinds, so both
can name it without importing each other.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class FrontEnd(Protocol):
    """A pretrained network's front part, run in the worker processes: waveform -> embedding (+ tags).

    An ``"embedding"`` backend returns one from :meth:`Backend.front_end`;
    its head (``fit``/``predict_proba``) then sees ``(n, d)`` embeddings.
    ``id`` names the weights and settings (a content hash): cached
    embeddings are reused only under the same id.
    """

    id: str
    sample_rate: int
    tag_names: tuple[str, ...]

    def __call__(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One track's mono float32 waveform at ``sample_rate`` -> (embedding (d,), tag probabilities (k,) or None)."""
        ...
