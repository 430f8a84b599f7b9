"""Train/valid/test protocols for GTZAN, at track level.

``fault-filtered`` (default, Kereliuk, Sturm & Larsen 2015), ``stratified``,
``kfold``, ``artist-kfold`` (no artist in two folds, from Sturm's index in
``splits_data/``) and the leaky ``slice-random``, whose split says ``leaky`` and
``slice_level`` so the trainer needs no special case. What each measures:
docs/training.md "Protocols". Track ids are file names without the audio
extension (``blues.00029``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import numpy as np

from tagger.defaults import DEFAULT_FOLD, DEFAULT_SEED, PROTOCOLS
from tagger.defaults import FOLD_PROTOCOLS  # noqa: F401 (re-exported: scripts/musicnn_patches.py reads it here)

from .data import track_id

# PROTOCOLS (the protocol names ``get_split`` accepts; the first is the default) and FOLD_PROTOCOLS
# (those cutting the clips into k folds, with their default k) live in tagger/defaults.py.
ARTIST_INDEX = "GTZANindex_sturm2012.txt"
PARTS: tuple[str, ...] = ("train", "valid", "test")

# Protocol -> suffix of its shipped list files in training/splits_data/.
_SHIPPED = {"fault-filtered": "filtered", "stratified": "stratified"}
# Track-level fractions of slice-random: those of the stratified lists, so the
# two protocols differ only by the slice leak.
_SLICE_RANDOM_FRACTIONS = (0.5, 0.25, 0.25)


@dataclass(frozen=True)
class Split:
    """Train, valid and test track ids of one protocol, restricted to the clips at hand.

    ``leaky`` means material of one recording can be on both sides, so its
    test scores are not honest. ``slice_level`` means the trainer must pool
    the slices of all parts and split them at random (``slice_indices`` does).
    ``artist_disjoint`` is true only when no artist is in two parts.
    """

    name: str
    train: list[str]
    valid: list[str]
    test: list[str]
    leaky: bool = False
    slice_level: bool = False
    artist_disjoint: bool = False
    seed: int = 0
    #: How many ids each part lists, found or not.
    listed: dict[str, int] = field(default_factory=dict)
    #: Given ids that are in no part (for fault-filtered, the faulty clips).
    unused: list[str] = field(default_factory=list)

    def parts(self) -> dict[str, list[str]]:
        """The three parts by name, in ``PARTS`` order."""
        return {"train": self.train, "valid": self.valid, "test": self.test}

    def counts(self) -> dict[str, dict[str, int]]:
        """Per part, how many ids were found among the given clips and how many it lists.

        For example ``{"train": {"found": 48, "listed": 443}, ...}``.
        """
        return {
            part: {"found": len(ids), "listed": self.listed.get(part, len(ids))}
            for part, ids in self.parts().items()
        }

    def slice_indices(
        self, slice_track_ids: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row indices of train, valid and test slices, given each slice's track id.

        Normally a slice goes where its track is, and slices of tracks in no
        part are dropped. For a ``slice_level`` split the slices of all parts
        are shuffled (with the split's seed) and dealt out in the sizes the
        track parts would have given: the leaky protocol, on purpose.
        """
        where = {tid: i for i, ids in enumerate(self.parts().values()) for tid in ids}
        part_of = np.array([where.get(tid, -1) for tid in slice_track_ids], dtype=int)
        if not self.slice_level:
            return tuple(np.flatnonzero(part_of == i) for i in range(3))  # type: ignore[return-value]
        pooled = np.flatnonzero(part_of >= 0)
        sizes = np.bincount(part_of[pooled], minlength=3)
        shuffled = np.random.default_rng(self.seed).permutation(pooled)
        train, valid, test = np.split(shuffled, np.cumsum(sizes)[:2])
        return np.sort(train), np.sort(valid), np.sort(test)


def shipped_list(protocol: str, part: str) -> list[str]:
    """Track ids of one part of a shipped protocol's list, in file order."""
    if protocol not in _SHIPPED:
        raise ValueError(f"{protocol!r} has no shipped lists; those that do: {', '.join(_SHIPPED)}")
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; expected one of {', '.join(PARTS)}")
    name = f"{part}_{_SHIPPED[protocol]}.txt"
    text = resources.files("training").joinpath("splits_data", name).read_text(encoding="utf-8")
    return [track_id(line.strip()) for line in text.splitlines() if line.strip()]


def get_split(
    name: str,
    track_ids: Sequence[str],
    labels: Sequence[str],
    *,
    seed: int = DEFAULT_SEED,
    k: int = 10,
    fold: int = DEFAULT_FOLD,
) -> Split:
    """The ``name`` protocol's split of the clips ``track_ids`` (with genres ``labels``).

    Every part holds only given ids. Shipped protocols keep their lists' order
    and ignore ``labels``, ``seed``, ``k`` and ``fold``; generated ones depend
    only on the set of (id, label) pairs and ``seed``, not on input order.
    """
    ids = [str(t) for t in track_ids]
    if len(ids) != len(labels):
        raise ValueError(f"{len(ids)} track ids but {len(labels)} labels")
    if len(set(ids)) != len(ids):
        dupes = sorted({t for t in ids if ids.count(t) > 1})
        raise ValueError(f"duplicate track ids: {', '.join(dupes[:5])}")
    if name in _SHIPPED:
        return _shipped_split(name, ids)
    if name == "kfold":
        return _kfold_split(ids, labels, seed=seed, k=k, fold=fold)
    if name == "artist-kfold":
        return _artist_kfold_split(ids, labels, seed=seed, k=k, fold=fold)
    if name == "slice-random":
        parts = _stratified_parts(ids, labels, _SLICE_RANDOM_FRACTIONS, seed)
        return _make(name, *parts, ids, leaky=True, slice_level=True, seed=seed)
    raise ValueError(f"unknown split protocol {name!r}; expected one of {', '.join(PROTOCOLS)}")


def _make(name, train, valid, test, ids, *, listed=None, **flags) -> Split:
    used = set(train) | set(valid) | set(test)
    return Split(
        name, train, valid, test,
        listed=listed or {"train": len(train), "valid": len(valid), "test": len(test)},
        unused=[t for t in ids if t not in used],
        **flags,
    )  # fmt: skip


def _shipped_split(name: str, ids: list[str]) -> Split:
    present = set(ids)
    lists = {part: shipped_list(name, part) for part in PARTS}
    parts = [[t for t in lists[part] if t in present] for part in PARTS]
    listed = {part: len(lists[part]) for part in PARTS}
    return _make(name, *parts, ids, listed=listed, artist_disjoint=name == "fault-filtered")


def _by_class(ids: Sequence[str], labels: Sequence[str], seed: int) -> list[list[str]]:
    """Each class's ids, sorted then shuffled with ``seed``; classes in sorted order."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = {}
    for tid, label in sorted(zip(ids, map(str, labels))):
        groups.setdefault(label, []).append(tid)
    return [[members[i] for i in rng.permutation(len(members))] for _, members in sorted(groups.items())]


def _fold_of(ids: Sequence[str], labels: Sequence[str], k: int, seed: int) -> dict[str, int]:
    """Stratified fold number of every id: classes laid end to end, dealt round robin."""
    order = [tid for members in _by_class(ids, labels, seed) for tid in members]
    return {tid: i % k for i, tid in enumerate(order)}


def _check_folds(name: str, k: int, fold: int, available: int, what: str) -> None:
    if not 3 <= k <= available:
        raise ValueError(f"{name} needs 3 <= k <= {available} {what}, got k={k}")
    if not 0 <= fold < k:
        raise ValueError(f"fold must be in 0..{k - 1}, got {fold}")


def _fold_parts(name: str, ids: Sequence[str], fold_of: dict[str, int], k: int, fold: int, seed: int,
                **flags: bool) -> Split:
    """Fold ``fold`` is test, the next one valid, the other k-2 train."""
    valid_fold = (fold + 1) % k
    parts: list[list[str]] = [[], [], []]
    for tid in sorted(ids):
        f = fold_of[tid]
        parts[2 if f == fold else 1 if f == valid_fold else 0].append(tid)
    return _make(name, *parts, ids, seed=seed, **flags)


def _kfold_split(ids, labels, *, seed: int, k: int, fold: int) -> Split:
    _check_folds("kfold", k, fold, len(ids), "clips")
    return _fold_parts("kfold", ids, _fold_of(ids, labels, k, seed), k, fold, seed)


def read_artists(text: str) -> dict[str, str]:
    """Track id -> artist (lower case) from the text of Sturm's GTZAN index; blank artists left out."""
    artists = {}
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(":::")]
        if not line.startswith("#") and len(fields) >= 2 and fields[1]:
            artists[track_id(fields[0])] = fields[1].lower()
    return artists


@cache
def artist_index() -> tuple[frozenset[str], dict[str, str]]:
    """The clips Sturm's shipped index lists, and the artist of those he identified."""
    text = resources.files("training").joinpath("splits_data", ARTIST_INDEX).read_text(encoding="utf-8")
    listed = frozenset(track_id(line.split(":::")[0].strip()) for line in text.splitlines()
                       if ":::" in line and not line.startswith("#"))
    return listed, read_artists(text)


def artist_group(tid: str, label: str) -> str:
    """The group a clip must stay in: its artist, or a stand-in when the artist is unknown.

    Clips whose artist the index leaves blank are kept together per genre
    (they may share an artist); a clip the index does not list is alone.
    """
    listed, artists = artist_index()
    if tid not in listed:
        return f"unindexed:{tid}"
    return artists.get(tid) or f"unknown artist:{label}"


def group_folds(labels: Sequence[str], groups: Sequence[str], k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold number per clip: clips of one group share a fold, genres spread evenly.

    Groups are dealt largest first (random among equal sizes) to the fold
    holding fewest clips of their genres; the result depends only on the
    clips, not on their order.
    """
    _, genre = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    keys = sorted(members)
    order = [keys[i] for i in rng.permutation(len(keys))]
    order.sort(key=lambda g: -len(members[g]))  # stable: random among equal sizes
    per_genre = np.zeros((k, genre.max() + 1 if len(genre) else 0))
    fold = np.empty(len(labels), dtype=int)
    for g in order:
        counts = np.bincount(genre[members[g]], minlength=per_genre.shape[1])
        cost = per_genre @ counts + per_genre.sum(1) * 1e-3 + rng.random(k) * 1e-6
        f = int(np.argmin(cost))
        fold[members[g]] = f
        per_genre[f] += counts
    return fold


def _artist_kfold_split(ids, labels, *, seed: int, k: int, fold: int) -> Split:
    pairs = sorted(zip(ids, map(str, labels)))
    groups = [artist_group(tid, label) for tid, label in pairs]
    _check_folds("artist-kfold", k, fold, len(set(groups)), "artists")
    folds = group_folds([label for _, label in pairs], groups, k, np.random.default_rng(seed))
    fold_of = {tid: int(f) for (tid, _), f in zip(pairs, folds)}
    return _fold_parts("artist-kfold", ids, fold_of, k, fold, seed, artist_disjoint=True)


def _stratified_parts(ids, labels, fractions, seed: int) -> list[list[str]]:
    """Per class, cut the shuffled ids at the cumulative fractions (rounded)."""
    parts: list[list[str]] = [[] for _ in fractions]
    edges = np.cumsum(fractions)[:-1]
    for members in _by_class(ids, labels, seed):
        cuts = np.rint(edges * len(members)).astype(int)
        for part, chunk in zip(parts, np.split(np.array(members, dtype=object), cuts)):
            part.extend(chunk.tolist())
    return [sorted(p) for p in parts]
