"""One genre decision: a model's card (or the user's override) becomes a rule, applied to probabilities."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Where a scan's multi-label decisions come from, when no --min-confidence overrides them.
SOURCE = "the model's per-genre thresholds, chosen in cross-validation"


def card_thresholds(card: Mapping[str, Any] | None) -> dict[str, float] | None:
    """The per-genre thresholds of a multi-label model's card, or None for a single-label model."""
    section = card.get("multilabel") if isinstance(card, Mapping) else None
    values = section.get("thresholds") if isinstance(section, Mapping) else None
    if not isinstance(values, Mapping):
        return None
    return {str(k): float(v) for k, v in values.items() if isinstance(v, (int, float)) and 0 <= v <= 1}


def reason(label: str, confidence: float, threshold: float, source: str) -> str:
    """What ``show`` says about an abstained track, e.g. ``uncertain: best rock 0.312 below 0.45 (...)``."""
    return f"uncertain: best {label} {confidence:.3f} below {threshold:.4g} ({source})"
