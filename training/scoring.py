"""Score a fitted model on a part of a split: what ``train`` and ``report`` both measure.

Track accuracy is what a scan does: the argmax of each track's
probabilities, the mean of its slices' (tagger.inference.predict.track_probabilities;
a features model has one row per track, so its slice accuracy is undefined).
``training/train.py`` scores its valid and test parts here and
``training/evaluate.py`` builds the report from the same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tagger.decide import abstain
from tagger.inference.kinds import get_kind
from tagger.inference.outputs import check_genres, checked_proba
from tagger.inference.predict import track_probabilities

from .dataset import Part

#: Rows per predict_proba call: bounds memory for slice models.
BATCH = 512


def predict_rows(backend: Any, X: np.ndarray) -> np.ndarray:
    """Probabilities for every row of ``X``, in batches, checked as scan checks them (BackendError)."""
    if len(X) == 0:
        return np.empty((0, len(check_genres(backend))))
    return np.concatenate([checked_proba(backend, X[i : i + BATCH]) for i in range(0, len(X), BATCH)])


def track_probs(part: Part, probs: np.ndarray) -> tuple[list[str], np.ndarray, list[str]]:
    """A part's tracks, each one's probabilities as a scan computes them, and their true genres."""
    tracks = part.tracks()
    index = {t: i for i, t in enumerate(tracks)}
    owners = [index[t] for t in part.owners.tolist()]
    truth = {t: g for t, g in zip(part.owners.tolist(), part.y.tolist())}
    return tracks, track_probabilities(probs, owners, len(tracks)), [truth[t] for t in tracks]


def confidences(genres: Sequence[str], part: Part, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per track of ``part``: its best mean probability and whether that genre is right."""
    _, mean, truth = track_probs(part, probs)
    return abstain.confidence_and_correct(genres, mean, truth)


def selective(confidence: np.ndarray, correct: np.ndarray, threshold: float | None, *,
              with_curve: bool = False) -> dict[str, Any]:
    """Precision at each coverage: the table (and curve) a user picks ``scan --abstain-below`` from."""
    out: dict[str, Any] = {
        "threshold": threshold,
        "at_threshold": abstain.at_threshold(confidence, correct, threshold) if threshold else None,
        "table": abstain.coverage_table(confidence, correct, extra=threshold or None),
    }
    if with_curve:
        out["curve"] = abstain.curve(confidence, correct)
    return out


def score(genres: Sequence[str], part: Part, probs: np.ndarray, *, per_slice: bool) -> dict[str, Any]:
    """Track and slice accuracy, macro-F1, per-genre precision/recall/F1 and the confusion matrix.

    Tracks are scored on the mean of their rows' probabilities; the
    confusion matrix is over tracks, so it sums to ``n_test``.
    """
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    tracks = part.tracks()
    if not tracks:
        return {"n_test": 0, "n_rows": 0, "track_accuracy": None, "slice_accuracy": None, "macro_f1": None}
    genres = list(genres)
    _, mean, y_true = track_probs(part, probs)
    y_pred = [genres[i] for i in mean.argmax(axis=1)]
    labels = sorted(set(genres) | set(y_true))
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    slice_pred = np.array(genres, dtype=object)[probs.argmax(axis=1)]
    return {
        "n_test": len(tracks),
        "n_rows": len(part),
        "track_accuracy": float(np.mean(np.array(y_true) == np.array(y_pred))),
        "slice_accuracy": float(np.mean(slice_pred == part.y)) if per_slice else None,
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "labels": labels,
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "per_genre": {g: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                          "support": int(support[i])} for i, g in enumerate(labels)},
    }  # fmt: skip


def evaluate(backend: Any, part: Part, kind: str, *, threshold: float | None = None,
             with_curve: bool = False) -> dict[str, Any]:
    """Predict ``part`` with a fitted backend and score it, with precision at each coverage.

    ``abstain`` is the coverage and precision at ``threshold`` (the
    model's, chosen on valid), None without one.
    """
    return measure(backend, part, kind, threshold=threshold, with_curve=with_curve)[0]


def measure(backend: Any, part: Part, kind: str, *, threshold: float | None = None,
            with_curve: bool = False) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """:func:`evaluate`, plus each track's confidence and correctness (for pooling folds)."""
    probs = predict_rows(backend, part.X)
    metrics = score(backend.genres_, part, probs, per_slice=not get_kind(kind).one_row)
    conf, correct = np.empty(0), np.empty(0, dtype=bool)
    if metrics["n_test"]:
        conf, correct = confidences(backend.genres_, part, probs)
        metrics["precision_coverage"] = selective(conf, correct, threshold, with_curve=with_curve)
        metrics["abstain"] = metrics["precision_coverage"]["at_threshold"]
    return metrics, conf, correct
