"""One genre decision: a model's card (or the user's override) becomes a :class:`Rule`; :func:`decide` applies it.

Scan, album mode, tag, ``learn``'s re-decisions and the beets plugin all
decide here, so a track gets the same genres whichever of them asks.  Scan
stores the rule it used with each result (``tracks.rule``), so tag applies
that rule and never reads model cards.  Where the head abstains, the broad
source (tagger/decide/broad.py) is consulted from :func:`decide_track` only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Where a scan's multi-label decisions come from, when no --min-confidence overrides them.
SOURCE = "the model's per-genre thresholds, chosen in cross-validation"
#: Where a single-label model's threshold comes from (abstain.choose_threshold wrote it into the card).
CARD_SOURCE = "the model's threshold, chosen on valid"
#: Where a user's threshold comes from.
OVERRIDE_SOURCE = "--abstain-below"

SINGLE, PER_GENRE, NEVER = "single", "per-genre", "never"
KINDS = (SINGLE, PER_GENRE, NEVER)

Ranking = list[tuple[str, float]]


@dataclass(frozen=True)
class Rule:
    """How probabilities become genres: one threshold, one per genre, or never abstain; JSON in ``tracks.rule``.

    ``multi``: a multi-label model's rule (``genretag learn``): every genre
    that passes is given, not only the best.  ``thresholds`` are its
    per-genre ones (for NEVER too: the genres reaching them come first).
    ``source`` says where the rule came from, for abstention reasons.
    """

    kind: str
    threshold: float | None = None  # SINGLE: abstain below it
    thresholds: tuple[tuple[str, float], ...] = ()
    multi: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown rule kind {self.kind!r}")

    @property
    def stored_threshold(self) -> float | None:
        """The ``abstain_threshold`` column's value (what older genretag read): None never abstains or per-genre."""
        if self.kind == SINGLE:
            return self.threshold
        return 0.0 if self.multi and self.kind == NEVER else None

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "threshold": self.threshold,  # thresholds keep the model's order
                           "thresholds": [list(pair) for pair in self.thresholds], "multi": self.multi,
                           "source": self.source})

    @classmethod
    def from_json(cls, text: str | None) -> Rule | None:
        """The rule stored as ``text``; None when there is none or it is damaged (the row is then re-derived)."""
        try:
            d = json.loads(text) if text else None
            if not isinstance(d, dict):
                return None
            t = d.get("threshold")
            return cls(str(d["kind"]), None if t is None else float(t),
                       tuple((str(g), float(v)) for g, v in d.get("thresholds") or ()),
                       bool(d.get("multi")), str(d.get("source") or ""))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


@dataclass(frozen=True)
class Verdict:
    """What a rule gives for one track or album: genres, most probable first, or none and why."""

    genres: Ranking
    reason: str | None = None


def card_thresholds(card: Mapping[str, Any] | None) -> dict[str, float] | None:
    """The per-genre thresholds of a multi-label model's card, or None for a single-label model."""
    section = card.get("multilabel") if isinstance(card, Mapping) else None
    values = section.get("thresholds") if isinstance(section, Mapping) else None
    if not isinstance(values, Mapping):
        return None
    return {str(k): float(v) for k, v in values.items() if isinstance(v, (int, float)) and 0 <= v <= 1}


def card_threshold(card: Mapping[str, Any]) -> float | None:
    """The abstain threshold a model card carries, or None (never abstain)."""
    section = card.get("abstain") if isinstance(card, Mapping) else None
    value = section.get("threshold") if isinstance(section, Mapping) else None
    return float(value) if isinstance(value, (int, float)) and 0 < value <= 1 else None


def rule_for(card: Mapping[str, Any] | None, abstain_below: float | None = None,
             source: str = OVERRIDE_SOURCE) -> Rule:
    """The rule of a model's card, or of the user's ``abstain_below`` (0: never abstain) when given.

    A multi-label card keeps its per-genre thresholds under ``0`` (the
    genres reaching them, else the best alone); ``P > 0`` is every genre's threshold.
    """
    per_genre = card_thresholds(card)
    if per_genre is not None:
        own = tuple(per_genre.items())
        if abstain_below is None:
            return Rule(PER_GENRE, thresholds=own, multi=True, source=SOURCE)
        if not abstain_below:
            return Rule(NEVER, thresholds=own, multi=True, source=source)
        return Rule(SINGLE, float(abstain_below), multi=True, source=source)
    if abstain_below is not None:
        return Rule(SINGLE, float(abstain_below), source=source) if abstain_below else Rule(NEVER, source=source)
    threshold = card_threshold(card or {})
    return Rule(SINGLE, threshold, source=CARD_SOURCE) if threshold else Rule(NEVER)


def legacy_rule(abstain_threshold: float | None, card: Mapping[str, Any] | None = None) -> Rule:
    """The rule of a row scanned before rules were stored, from its ``abstain_threshold`` (and its model's card).

    Without the card a multi-label row reads as single-label: its best genre, at the threshold it has.
    """
    source = "the threshold the scan used"
    if card_thresholds(card) is not None:
        return rule_for(card, abstain_threshold, source)
    if abstain_threshold:
        same = abstain_threshold == card_threshold(card or {})
        return Rule(SINGLE, float(abstain_threshold), source=CARD_SOURCE if same else source)
    return Rule(NEVER)


def row_rule(row: Any) -> Rule:
    """The rule a cached row was decided by: the stored one, else derived from its ``abstain_threshold``."""
    return Rule.from_json(getattr(row, "rule", None)) or legacy_rule(getattr(row, "abstain_threshold", None))


def strictest(rules: Iterable[Rule]) -> Rule:
    """One rule for an album whose tracks' scans used these: the shared one, else the highest single threshold."""
    distinct = list(dict.fromkeys(rules))
    if len(distinct) <= 1:
        return distinct[0] if distinct else Rule(NEVER)
    singles = [r for r in distinct if r.kind == SINGLE]
    if singles:
        return max(singles, key=lambda r: r.threshold or 0.0)
    return next((r for r in distinct if r.kind == PER_GENRE), distinct[0])


def reason(label: str, confidence: float, threshold: float, source: str) -> str:
    """What ``show`` says about an abstained track, e.g. ``uncertain: best rock 0.312 below 0.45 (...)``."""
    return f"uncertain: best {label} {confidence:.3f} below {threshold:.4g} ({source})"


def decide(rule: Rule, probabilities: Mapping[str, float] | Sequence[tuple[str, float]],
           source: str | None = None) -> Verdict:
    """Apply ``rule`` to one track's (or album's) probabilities; ties keep the model's order.

    Single-label: the whole ranking (the first is the genre) unless the best
    is below the threshold.  Multi-label: every genre passing its threshold.
    ``source`` replaces the rule's own in the reason (album mode says whose mean it was).
    """
    ranked = sorted(((str(g), float(p)) for g, p in dict(probabilities).items()), key=lambda kv: -kv[1])
    if not ranked:
        return Verdict([], "no probabilities stored")
    why_from = source or rule.source
    own = dict(rule.thresholds)
    reaching = [(g, p) for g, p in ranked if g in own and p >= own[g]]
    if rule.kind == NEVER:
        return Verdict((reaching or ranked[:1]) if rule.multi else ranked)
    if rule.kind == SINGLE:
        limit = float(rule.threshold or 0.0)
        if not rule.multi:
            if ranked[0][1] < limit:
                return Verdict([], reason(ranked[0][0], ranked[0][1], limit, why_from))
            return Verdict(ranked)
        chosen = [(g, p) for g, p in ranked if p >= limit]
        best = ranked[0]
    else:
        chosen = reaching
        measured = [(g, p) for g, p in ranked if g in own]
        if not measured:
            return Verdict([], "uncertain: the model has no threshold for any of its genres")
        best = measured[0]
        limit = own[best[0]]
    if chosen:
        return Verdict(chosen)
    return Verdict([], f"uncertain: no genre reaches its threshold (best {best[0]} {best[1]:.3f} below {limit:.4g}, "
                       f"{why_from})")


def decide_track(rule: Rule, probabilities: Mapping[str, float] | Sequence[tuple[str, float]],
                 tags: Mapping[str, float] | None, backend: str, broad: Any, source: str | None = None) -> Any:
    """The head's verdict by ``rule``, then the broad source's where it abstains: a ``broad.Decision``.

    ``broad`` None: the source is off.  The decision's ``score`` is the head
    genre's probability, or the broad genre's calibrated score.
    """
    from . import broad as broadmod

    verdict = decide(rule, probabilities, source)
    head = verdict.genres[0] if verdict.genres else None
    d = broadmod.consult(head[0] if head else None, verdict.reason, tags, backend, broad)
    if d.source == broadmod.HEAD and head is not None:
        d.score = head[1]
    return d
