"""Batched prediction: many tracks' inputs through one ``predict_proba`` call.

Every track's input becomes model rows (tagger.inference.kinds: one row, or its 3 s
slices), all rows of the batch are predicted at once, and a track's
probabilities are the mean over its rows.  When a batch fails, each track
is retried alone so one bad input costs that track only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .kinds import get_kind
from .models import Model
from .outputs import PLUGIN_FAILURES, check_probabilities, failure_text


def _predict_group(model: Model, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    X, counts = get_kind(model.input_kind).stack(inputs)
    if min(counts) == 0:
        raise ValueError("a track has no 3 s slices")
    # The checks train and report apply too (tagger.inference.outputs): shape, finite, rows summing to 1.
    probs = check_probabilities(model.backend, model.backend.predict_proba(X), len(X))
    if len(X) == len(inputs):  # one row per track: the rows are the tracks' probabilities
        return list(probs)
    return list(track_probabilities(probs, np.repeat(np.arange(len(counts)), counts), len(counts)))


def track_probabilities(probs: np.ndarray, owners: Sequence[int] | np.ndarray, tracks: int) -> np.ndarray:
    """Each track's probabilities from its rows' (its 3 s slices or chunks): their mean, (tracks, genres).

    ``owners[i]`` is the track of row ``i``, in any order.  Scan stores this
    and ``genretag report`` scores it (training/scoring.py), so both judge
    the same track.
    """
    owners = np.asarray(owners, dtype=int)
    sums = np.zeros((tracks, probs.shape[1] if probs.ndim == 2 else 0))
    np.add.at(sums, owners, probs)
    counts = np.bincount(owners, minlength=tracks).reshape(-1, 1)
    return sums / np.maximum(counts, 1)


def predict_tracks(model: Model, inputs: Sequence[np.ndarray]) -> list[np.ndarray | str]:
    """Per-track probability vectors, or an error text for a track that failed."""
    if not inputs:
        return []
    model.load()  # a model that cannot load is no track's fault: its ModelError ends the scan
    try:
        return list(_predict_group(model, inputs))
    except PLUGIN_FAILURES as exc:  # a backend's sys.exit() too: that track's error
        if len(inputs) == 1:
            return [f"prediction failed: {failure_text(exc)}"]
    return [r for x in inputs for r in predict_tracks(model, [x])]


def summarise(genres: Sequence[str], probs: np.ndarray, top: int = 3) -> dict[str, Any]:
    """Genre, confidence, top ``top`` and all probabilities, as stored per track."""
    order = np.argsort(-probs, kind="stable")
    best = [(genres[i], round(float(probs[i]), 6)) for i in order[:top]]
    return {
        "genre": best[0][0],
        "confidence": best[0][1],
        "top3": best,
        "probabilities": {g: round(float(p), 6) for g, p in zip(genres, probs)},
    }
