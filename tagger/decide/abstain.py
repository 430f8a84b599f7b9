"""Abstaining: no genre for a track whose best guess is too uncertain.

A wrong genre in a file costs the user more than none. :func:`choose_threshold`
picks, on the model's valid part (never its test part), the lowest threshold
whose precision reaches :data:`TARGET_PRECISION` while keeping at least
:data:`MIN_KEPT` clips, or none (never abstain) with fewer than :data:`MIN_VALID`
clips; the card stores it and tagger/decide/decision.py applies it. Pure
functions of NumPy arrays. For users: docs/scan.md (``--abstain-below``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Precision the kept valid clips must reach.
TARGET_PRECISION = 0.80
#: A threshold must keep this many valid clips: precision on fewer is noise.
MIN_KEPT = 10
#: Below this many valid clips no threshold is chosen at all.
MIN_VALID = 20
#: Thresholds of report's precision-at-coverage table (the card's is added).
TABLE_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(10))

RULE = (f"lowest threshold whose valid precision reaches {TARGET_PRECISION:.2f} keeping at least {MIN_KEPT} "
        f"valid clips; none with fewer than {MIN_VALID} valid clips or when no threshold reaches it")


def confidence_and_correct(genres: Sequence[str], probs: np.ndarray,
                           truth: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per track: its best probability and whether its best genre is the true one."""
    probs = np.asarray(probs, dtype=np.float64).reshape(len(truth), len(genres))
    if not len(truth):
        return np.empty(0), np.empty(0, dtype=bool)
    best = probs.argmax(axis=1)  # first of equals, as the scan picks its genre
    labels = np.array(list(genres), dtype=object)[best]
    return probs.max(axis=1), labels == np.asarray(list(truth), dtype=object)


def at_threshold(confidence: np.ndarray, correct: np.ndarray, threshold: float | None) -> dict[str, Any]:
    """Coverage (share kept) and precision (accuracy among kept) when abstaining below ``threshold``."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=bool)
    kept = confidence >= (threshold or 0.0)
    n, n_kept = len(confidence), int(kept.sum())
    return {"threshold": threshold, "n": n, "n_kept": n_kept,
            "coverage": n_kept / n if n else None,
            "precision": float(correct[kept].mean()) if n_kept else None}  # fmt: skip


def coverage_table(confidence: np.ndarray, correct: np.ndarray,
                   thresholds: Sequence[float] = TABLE_THRESHOLDS, extra: float | None = None) -> list[dict[str, Any]]:
    """One row per threshold (ascending, so coverage never rises): coverage, precision, clips kept."""
    ts = sorted({float(t) for t in thresholds} | ({float(extra)} if extra is not None else set()))
    return [at_threshold(confidence, correct, t) for t in ts]


def counts(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, kept, hits) arrays at every distinct confidence, most confident first: the curve's counts."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=bool)
    if not len(confidence):
        return np.empty(0), np.empty(0, dtype=int), np.empty(0, dtype=int)
    order = np.argsort(-confidence, kind="stable")
    c, ok = confidence[order], correct[order]
    last = np.flatnonzero(np.r_[c[1:] != c[:-1], True])  # the last of each run of equal confidences
    return c[last], last + 1, np.cumsum(ok)[last]


def curve(confidence: np.ndarray, correct: np.ndarray) -> list[tuple[float, float, float]]:
    """(threshold, coverage, precision) at every distinct confidence, most confident first: the full curve."""
    thresholds, kept, hits = counts(confidence, correct)
    n = len(np.asarray(confidence))
    return [(float(t), int(k) / n, float(h / k)) for t, k, h in zip(thresholds, kept, hits)]


def choose_threshold(confidence: np.ndarray, correct: np.ndarray, *, chosen_on: str = "valid part",
                     target: float = TARGET_PRECISION, min_kept: int = MIN_KEPT,
                     min_valid: int = MIN_VALID) -> dict[str, Any]:
    """The card's ``abstain`` section: the threshold by the module's rule, or None and why.

    Candidates are the valid clips' own confidences (rounded to 4 places,
    as a user would type them), so the threshold keeps exactly the clips
    counted for its precision.
    """
    confidence = np.round(np.asarray(confidence, dtype=np.float64), 4)
    correct = np.asarray(correct, dtype=bool)
    n = len(confidence)
    section: dict[str, Any] = {"threshold": None, "chosen_on": chosen_on, "rule": RULE, "target_precision": target,
                               "n_valid": n, "valid_precision": None, "valid_coverage": None, "valid_kept": None}
    if n < min_valid:
        section["why_none"] = f"{n} valid clips: too few to choose a threshold (need {min_valid})"
        return section
    for t, coverage, precision in reversed(curve(confidence, correct)):  # lowest threshold first
        kept = round(coverage * n)
        if kept >= min_kept and precision >= target:
            t = 0.0 if kept == n else t  # everything kept anyway: never abstain
            section.update(threshold=t, valid_precision=precision, valid_coverage=coverage, valid_kept=kept)
            return section
    best = max((p for _, cov, p in curve(confidence, correct) if round(cov * n) >= min_kept), default=None)
    section["why_none"] = (f"no threshold keeping {min_kept} or more valid clips reaches precision {target:.2f} "
                           f"(best {best:.2f})" if best is not None else "too few valid clips kept")
    return section
