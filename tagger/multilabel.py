"""Multi-label decisions: which of a personal model's genres a track gets.

A model made by ``genretag learn`` gives every genre an independent
probability (they do not sum to 1) and carries in its card one threshold
per genre, chosen in cross-validation for the precision the user asked
for: ``"multilabel": {"thresholds": {genre: t}}``.  A track gets every
genre whose probability reaches that genre's threshold, most probable
first; when none does, it abstains.

Scan (the row's genre or abstain reason), tag (the names written) and
album mode (probabilities averaged over an album) all decide through
:func:`decide`, from a row's stored probabilities.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

from .decision import SOURCE, card_thresholds
from typing import Any

def decide(probabilities: Mapping[str, float], thresholds: Mapping[str, float], *,
           override: float | None = None) -> tuple[list[tuple[str, float]], str | None]:
    """(genres chosen, most probable first; None) or ([], why it abstains) for one track or album.

    Each genre must reach its own threshold; a genre without one (measured
    as not learnable) is never chosen.  ``override`` is ``--min-confidence``:
    P > 0 is every genre's threshold instead, 0 never abstains (the genres
    reaching their thresholds, else the most probable alone).  Ties keep
    the model's order.
    """
    ranked = sorted(probabilities.items(), key=lambda kv: -kv[1])
    if not ranked:
        return [], "no probabilities stored"
    if override:
        chosen = [(g, float(p)) for g, p in ranked if p >= override]
    else:
        chosen = [(g, float(p)) for g, p in ranked if g in thresholds and p >= thresholds[g]]
    if chosen:
        return chosen, None
    if override == 0:
        return [(ranked[0][0], float(ranked[0][1]))], None
    measured = [(g, p) for g, p in ranked if override or g in thresholds]
    if not measured:
        return [], "uncertain: the model has no threshold for any of its genres"
    genre, p = measured[0]
    limit = override or thresholds[genre]
    return [], (f"uncertain: no genre reaches its threshold (best {genre} {p:.3f} below {limit:.4g}, "
                f"{'--min-confidence' if override else SOURCE})")


@functools.lru_cache(maxsize=64)
def model_thresholds(backend: str | None, model_id: str | None) -> dict[str, float] | None:
    """The thresholds of the model a row was predicted with (by its card id), or None when single-label.

    Looks among the models kept for ``backend`` and its shipped one (cards
    only, no model is loaded).  A multi-label model whose card is gone
    since the scan gives None; tagging then falls back to the single-label
    rule, best genre only.
    """
    if not backend or not model_id:
        return None
    from .errors import GenretagError
    from .models import list_models, read_card

    card_id = model_id.split()[0]
    try:
        rows = list_models(backend).rows
    except GenretagError:
        return None
    for row in rows:
        if row["id"] == card_id:
            try:
                return card_thresholds(read_card(Path(row["file"])))
            except GenretagError:
                return None
    return None
