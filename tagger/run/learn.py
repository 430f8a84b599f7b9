"""``genretag learn``: a personal multi-label model from the genres the user already tagged.

Examples are the scanned files under the given paths whose own genre field
holds genres, learned from their cached musicnn embeddings (no decoding).
The contract: the user's genres only (never a value genretag wrote), one
spelling per genre (:func:`genre_key`), folds grouped by artist, and a genre
is kept only when its threshold, chosen on a Wilson lower bound
(:func:`wilson_lower`), holds on artists it was not chosen on
(:func:`held_out`). The rules and why: docs/learn.md.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from ..common.errors import GenretagError
from ..decide import abstain, vocabulary
from ..defaults import DEFAULT_SEED, LEARN_FOLDS, LEARN_PRECISION
from ..inference.outputs import acceptable_label
from ..media import tags
from ..store.cache import Cache

BACKEND = "musicnn"
#: A genre is measured when it has at least this many files ...
MIN_FILES = 5
#: ... by at least this many artists (folders when untagged).
MIN_ARTISTS = 3
#: A threshold must keep at least this many files, so its precision is never one of 1 or 2 predictions;
#: the held-out precision a genre is decided on must rest on at least as many.
MIN_SUPPORT = 5
#: One-sided confidence of the Wilson lower bound a threshold's precision must reach the target at.
CONFIDENCE = 0.9
#: A learnable genre's held-out precision may fall this far below the target (see the module docstring).
TOLERANCE = 0.05
#: Grouped cross-validation folds (fewer when there are fewer artists).
FOLDS = LEARN_FOLDS
DEFAULT_PRECISION = LEARN_PRECISION
#: Inverse L2 strength of every genre's logistic regression (scikit-learn's C) on standardised embeddings.
C = 0.1
#: Out-of-fold scores are kept as integers of 1/SCORE_SCALE: thresholds are chosen on scores rounded to 4 places.
SCORE_SCALE = 10_000
#: Files whose embeddings are read, and whose scores are predicted, at a time (bounded temporaries).
EMBEDDING_CHUNK = 5_000
PREDICT_CHUNK = 20_000
RULE = (f"measured: at least {MIN_FILES} files by at least {MIN_ARTISTS} artists; threshold: the lowest whose "
        f"out-of-fold precision's one-sided {CONFIDENCE:.0%} Wilson lower bound reaches the target, keeping at "
        f"least {MIN_SUPPORT} files; held-out: each fold judged at a threshold chosen so on the other folds only, "
        f"pooled; learnable: the held-out precision, on at least {MIN_SUPPORT} files, is at least the target "
        f"minus {TOLERANCE:.2f}")
#: The rule's parameters, as --json and the model card give them beside RULE.
DECISION = {"threshold": "lowest whose out-of-fold precision's one-sided Wilson lower bound reaches the target",
            "confidence": CONFIDENCE, "min_support": MIN_SUPPORT, "learnable_on": "heldout_precision",
            "tolerance": TOLERANCE}


def genre_key(name: str) -> str:
    """The one comparison of genre spellings: "Hip Hop", "hip-hop" and "HIPHOP" are one genre.

    The canonical vocabulary's (tagger.decide.vocabulary.identity): the tree's
    genre for any spelling or alias it knows, else a case, accent and
    punctuation fold.  "" for a value with no letter or digit (no genre).
    """
    return vocabulary.identity(name) if vocabulary.fold(name) else ""


SPELLING = "tagger.decide.vocabulary.identity: the genre tree's genre, else a case, accent and punctuation fold"


# ---------------------------------------------------------------------------
# Collecting examples from the cache.


@dataclass
class Examples:
    """Tagged files with embeddings: what learning starts from, and what was left out and why."""

    keys: list[str] = field(default_factory=list)
    labels: list[list[str]] = field(default_factory=list)  # genre keys per file
    groups: list[str] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=np.float32))
    names: dict[str, str] = field(default_factory=dict)  # genre key -> the spelling most files use
    scanned: int = 0  # status ok rows under the paths
    untagged: int = 0  # of those, files with no genre of the user's own
    own_writes: int = 0  # genre values left out because genretag wrote them
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file, why its tags could not be read)
    need_embeddings: list[str] = field(default_factory=list)  # tagged files without a cached embedding
    front_end: str = ""


def _genretag_added(cache: Cache, paths: Sequence[str]) -> dict[str, set[str]]:
    """Per path key, the genre keys genretag added in writes that were not undone (see the module rules)."""
    added: dict[str, set[str]] = defaultdict(set)
    for write in cache.journal.genre_writes(paths):
        try:
            before = {genre_key(v) for v in tags.split_genres(write.previous or [])}
            after = {genre_key(v) for v in tags.split_genres(write.written or [])}
        except (TypeError, ValueError, AttributeError):
            continue  # a damaged record: nothing to learn about it
        added[write.path] |= after - before
    return added


def collect(cache: Cache, paths: Sequence[str], front_end: str) -> Examples:
    """The tagged, scanned files under ``paths`` with their labels, groups and ``front_end`` embeddings."""
    out = Examples(front_end=front_end)
    added = _genretag_added(cache, paths)
    spellings: dict[str, Counter[str]] = defaultdict(Counter)
    tagged: list[tuple[str, list[str], str]] = []
    for track in cache.records(paths, status="ok"):
        out.scanned += 1
        try:
            meta = track.own_tags()
        except (tags.TagError, OSError) as exc:
            out.unreadable.append((track.path, getattr(exc, "reason", None) or str(exc)))
            continue
        own: list[str] = []
        for value in tags.split_genres(meta.genres):
            key = genre_key(value)
            if not key or not acceptable_label(key) or not acceptable_label(value.strip()):
                continue  # nothing but punctuation (no genre), or no label a model may hold (tagger.inference.outputs)
            if key in added.get(track.path, ()):
                out.own_writes += 1
                continue
            if key not in own:
                own.append(key)
                spellings[key][value.strip()] += 1
        if not own:
            out.untagged += 1
            continue
        artist = meta.artist
        group = f"artist:{artist.strip().casefold()}" if artist and artist.strip() else f"folder:{os.path.dirname(track.path)}"
        tagged.append((track.path, own, group))
    vectors: np.ndarray | None = None  # filled in place, float32 as stored: no per-file arrays held
    for start in range(0, len(tagged), EMBEDDING_CHUNK):
        chunk = tagged[start : start + EMBEDDING_CHUNK]
        found = cache.embeddings_for([k for k, _, _ in chunk], front_end)
        for key, labels, group in chunk:
            if key not in found:
                out.need_embeddings.append(key)
                continue
            vector = found[key][0]
            if vectors is None:
                vectors = np.empty((len(tagged), len(vector)), dtype=np.float32)
            vectors[len(out.keys)] = vector
            out.keys.append(key)
            out.labels.append(labels)
            out.groups.append(group)
    out.vectors = vectors[: len(out.keys)] if vectors is not None else np.empty((0, 0), dtype=np.float32)
    out.names = {k: c.most_common(1)[0][0] for k, c in spellings.items()}
    return out


# ---------------------------------------------------------------------------
# Grouped cross-validation and thresholds.


def assign_folds(groups: Sequence[str], k: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Fold number per example; every group (artist) wholly in one fold, fold sizes as even as possible.

    Groups go largest first (ties in a seeded random order) to the fold
    with the fewest examples so far.
    """
    sizes = Counter(groups)
    k = max(1, min(k, len(sizes)))
    rng = np.random.default_rng(seed)
    names = sorted(sizes)
    order = sorted(zip(names, rng.permutation(len(names))), key=lambda gt: (-sizes[gt[0]], gt[1]))
    load, fold_of = [0] * k, {}
    for name, _ in order:
        f = int(np.argmin(load))
        fold_of[name] = f
        load[f] += sizes[name]
    return np.array([fold_of[g] for g in groups], dtype=int)


def _indicator(labels: Sequence[Sequence[str]], genres: Sequence[str]) -> np.ndarray:
    col = {g: j for j, g in enumerate(genres)}
    Y = np.zeros((len(labels), len(genres)), dtype=bool)
    for i, ls in enumerate(labels):
        for g in ls:
            if g in col:
                Y[i, col[g]] = True
    return Y


def out_of_fold(make: Callable[[], Any], X: np.ndarray, labels: Sequence[Sequence[str]], genres: Sequence[str],
                folds: np.ndarray, progress: Callable[[str], None] | None = None) -> np.ndarray:
    """(files, genres) scores, each file's from a model fitted on the other folds (labels outside ``genres`` dropped).

    Stored as SCORE_SCALE-ths in uint16 (np.round(p, 4), which is all the
    thresholds look at): 2 bytes a cell instead of 8, 200 MB at 500,000
    files x 200 genres.  :func:`scores_of` gives a column back as floats.
    """
    scores = np.zeros((len(X), len(genres)), dtype=np.uint16)
    wanted = set(genres)
    model = make()  # one instance: a warm-start backend starts each fold from the previous fold's fit
    for f in range(int(folds.max()) + 1):
        test, train = np.flatnonzero(folds == f), folds != f
        y = [[g for g in labels[i] if g in wanted] for i in np.flatnonzero(train)]
        model.fit(X[train], y)
        col = {g: j for j, g in enumerate(model.genres_)}
        have = [(j, col[g]) for j, g in enumerate(genres) if g in col]  # a genre with no training file here scores 0
        for a in range(0, len(test), PREDICT_CHUNK):
            rows = test[a : a + PREDICT_CHUNK]
            probs = np.asarray(model.predict_proba(X[rows]), dtype=np.float64)
            for j, c in have:
                scores[rows, j] = np.rint(probs[:, c] * SCORE_SCALE)
        if progress:
            progress(f"fold {f + 1}/{int(folds.max()) + 1}")
    return scores


def scores_of(scores: np.ndarray, j: int) -> np.ndarray:
    """Column ``j`` of :func:`out_of_fold`'s scores as probabilities rounded to 4 places, float64."""
    return scores[:, j] / SCORE_SCALE


def wilson_lower(hits: np.ndarray | int, n: np.ndarray | int, confidence: float = CONFIDENCE) -> np.ndarray:
    """One-sided Wilson lower confidence bound of the proportion hits/n (elementwise; 0 where n is 0).

    Unlike hits/n it grows with n: 3 of 3 gives 0.65 at 90%, 15 of 15 gives
    0.90, so a precision resting on few files cannot reach a high target.
    """
    hits, n = np.asarray(hits, dtype=np.float64), np.asarray(n, dtype=np.float64)
    z2 = NormalDist().inv_cdf(confidence) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        p = hits / n
        low = (p + z2 / (2 * n) - np.sqrt(z2 * p * (1 - p) / n + z2 * z2 / (4 * n * n))) / (1 + z2 / n)
    return np.where(n > 0, np.clip(low, 0.0, 1.0), 0.0)


def threshold_for(scores: np.ndarray, truth: np.ndarray, precision: float,
                  min_support: int = MIN_SUPPORT) -> dict[str, Any]:
    """The lowest threshold whose precision's lower bound reaches ``precision``, with its figures.

    Only thresholds keeping at least ``min_support`` files count.  With none
    reaching it, ``threshold`` is None and the figures are those of the
    threshold with the highest lower bound (the closest miss).  Scores are
    rounded to 4 places first (as a user would type a threshold), so a
    threshold keeps exactly the files counted for it.
    """
    scores, truth = np.round(np.asarray(scores, dtype=np.float64), 4), np.asarray(truth, dtype=bool)
    thresholds, kept, hits = abstain.counts(scores, truth)  # highest threshold first
    low = wilson_lower(hits, kept)
    candidates = np.flatnonzero(kept >= min_support)
    if not len(candidates):
        return {"threshold": None, "precision": None, "precision_low": None, "recall": None, "kept": 0}
    reaching = candidates[low[candidates] >= precision]
    i = reaching[-1] if len(reaching) else candidates[np.argmax(low[candidates])]
    positives = int(truth.sum())
    return {"threshold": float(thresholds[i]) if len(reaching) else None, "precision": float(hits[i] / kept[i]),
            "precision_low": float(low[i]), "recall": float(hits[i] / positives) if positives else 0.0,
            "kept": int(kept[i])}  # fmt: skip


def held_out(scores: np.ndarray, truth: np.ndarray, folds: np.ndarray, precision: float,
             min_support: int = MIN_SUPPORT) -> dict[str, Any]:
    """Precision and recall of thresholds chosen without the files they judge, pooled over the folds.

    For each fold the threshold is chosen (:func:`threshold_for`) on the
    other folds' out-of-fold scores and applied to this fold's; where the
    other folds reach no threshold, the fold's files get no genre (as the
    saved model would give none).  No file's score helps choose the
    threshold it is judged at, so unlike the chosen threshold's own figures
    these are not optimistic.  ``heldout_kept`` is the number of files the
    precision rests on; ``heldout_folds`` how many folds got a threshold.
    """
    scores, truth = np.round(np.asarray(scores, dtype=np.float64), 4), np.asarray(truth, dtype=bool)
    predicted = np.zeros(len(scores), dtype=bool)
    reached = 0
    for f in np.unique(folds):
        here = folds == f
        t = threshold_for(scores[~here], truth[~here], precision, min_support)["threshold"]
        if t is not None:
            predicted[here] = scores[here] >= t
            reached += 1
    hits, kept, positives = int((predicted & truth).sum()), int(predicted.sum()), int(truth.sum())
    return {"heldout_precision": hits / kept if kept else None,
            "heldout_recall": hits / positives if positives else 0.0, "heldout_kept": kept,
            "heldout_folds": reached}


def bound_text(low: float) -> str:
    """A lower bound shown to two places, rounded down: a bound of 0.899 must not read as reaching 0.90."""
    return f"{math.floor(low * 100) / 100:.2f}"


def why_not(row: dict[str, Any], precision: float) -> str | None:
    """Why a measured genre is not learnable by RULE, naming the figure and its files; None when it is."""
    if row["threshold"] is None:
        closest = (f"best {row['precision']:.2f} on {row['kept']} files, lower bound "
                   f"{bound_text(row['precision_low'])}" if row["kept"]
                   else f"no threshold keeps {MIN_SUPPORT} files")
        return (f"out-of-fold precision never reaches {precision:.2f} at its {CONFIDENCE:.0%} lower bound "
                f"({closest})")
    if row["heldout_kept"] < MIN_SUPPORT:
        return (f"held out, thresholds chosen on the other folds kept {row['heldout_kept']} files "
                f"(fewer than {MIN_SUPPORT}; {row['heldout_folds']} folds reached the target)")
    if row["heldout_precision"] < round(precision - TOLERANCE, 6):  # 0.9 - 0.05 is 0.8500000000000001
        return (f"held-out precision {row['heldout_precision']:.2f} on {row['heldout_kept']} files, "
                f"target {precision:.2f} (tolerance {TOLERANCE:.2f})")
    return None


def judge(scores: np.ndarray, truth: np.ndarray, folds: np.ndarray, precision: float) -> dict[str, Any]:
    """One genre's figures (threshold, held-out) and the decision on them: learnable, and why not."""
    row = {**threshold_for(scores, truth, precision), **held_out(scores, truth, folds, precision)}
    reason = why_not(row, precision)
    return {"learnable": reason is None, "reason": reason, **row}


# ---------------------------------------------------------------------------
# The whole run.


@dataclass(kw_only=True)
class LearnOptions:
    """What ``genretag learn`` was asked for."""

    precision: float = DEFAULT_PRECISION
    folds: int = FOLDS
    seed: int = DEFAULT_SEED
    save: bool = True  # False: measure and report only (--dry-run)


@dataclass
class LearnResult:
    """The measurement, per genre, and the model saved (if any)."""

    roots: list[str]
    precision: float
    examples: int
    artists: int
    folds: int
    genres: list[dict[str, Any]]  # measured: name, files, artists and judge()'s figures and decision
    too_few: list[dict[str, Any]]  # name, files, artists
    untagged: int
    own_writes: int
    unreadable: list[tuple[str, str]]
    need_embeddings: list[str]
    scan_command: str
    model: dict[str, Any] | None = None  # id, file, previous (the model that was current before)
    redecided: str = ""  # what re-deciding the files under the paths by the new model did (one line)
    #: Files under the paths another backend decided (the default fusion's, say), by backend: the personal
    #: model is musicnn's, so they get its genres only from a scan with --backend musicnn.
    elsewhere: dict[str, int] = field(default_factory=dict)
    error: str | None = None  # why no model was saved, when the measurement found none to save

    @property
    def learnable(self) -> list[dict[str, Any]]:
        return [g for g in self.genres if g["learnable"]]

    def as_dict(self) -> dict[str, Any]:
        return {"roots": self.roots, "target_precision": self.precision, "files": self.examples,
                "artists": self.artists, "folds": self.folds, "rule": RULE, "decision": DECISION,
                "spelling": SPELLING, "genres": self.genres, "heldout": _pooled(self.learnable),
                "too_few": self.too_few, "untagged_files": self.untagged, "own_writes_excluded": self.own_writes,
                "unreadable": [{"path": p, "error": e} for p, e in self.unreadable],
                "need_embeddings": {"count": len(self.need_embeddings), "command": self.scan_command,
                                    "files": self.need_embeddings},
                "model": self.model, "redecided": self.redecided, "decided_by_other_backends": self.elsewhere,
                "error": self.error}  # fmt: skip


def scan_command(paths: Sequence[str]) -> str:
    """The command that gives these paths' files musicnn embeddings."""
    import shlex

    return f"genretag scan {' '.join(shlex.quote(p) for p in paths)} --backend {BACKEND}"


def _check(ex: Examples, paths: Sequence[str]) -> None:
    """Refuse input no model can come from, with what to do about it."""
    where = ", ".join(paths)
    if not ex.scanned:
        raise GenretagError(f"no scanned files under {where}: run `{scan_command(paths)}` first")
    if not ex.keys and not ex.need_embeddings:
        unreadable = f"; {len(ex.unreadable)} had unreadable tags" if ex.unreadable else ""
        raise GenretagError(f"none of the {ex.scanned} scanned files under {where} has a genre of its own "
                            f"(genres genretag wrote do not count{unreadable}): tag some files by hand first")
    if not ex.keys:
        raise GenretagError(f"none of the {len(ex.need_embeddings)} tagged files has a {BACKEND} embedding yet "
                            f"(scanned with another backend): run `{scan_command(paths)}`")
    genres = {g for labels in ex.labels for g in labels}
    if len(genres) < 2:
        raise GenretagError(f"all {len(ex.keys)} tagged files have the one genre {ex.names[genres.pop()]!r}: "
                            "learn needs at least two genres to tell apart")
    groups = set(ex.groups)
    if len(groups) < 2:
        who = next(iter(groups)).split(":", 1)
        raise GenretagError(f"all {len(ex.keys)} tagged files are by one {who[0]} ({who[1]}): cross-validation "
                            f"keeps artists apart and needs at least {MIN_ARTISTS} of them per genre")


def learn(cache: Cache, paths: Sequence[str], options: LearnOptions | None = None,
          progress: Callable[[str], None] | None = None) -> LearnResult:
    """Measure every genre the user tagged under ``paths``, and save the learnable ones as the current model.

    Raises GenretagError for input no measurement can come from; a
    measurement that finds no learnable genre returns with ``error`` set
    and saves nothing.
    """
    from ..inference import inputs
    from ..inference.backends import get_backend

    opts = options or LearnOptions()
    if not 0 < opts.precision <= 1:
        raise GenretagError("--precision must be above 0 and at most 1")
    roots = [os.path.abspath(os.fsdecode(p)) for p in paths]
    cls = get_backend(BACKEND)
    front_end = inputs.front_end(BACKEND).id
    ex = collect(cache, roots, front_end)
    _check(ex, roots)
    files, artists = Counter(), defaultdict(set)
    for labels, group in zip(ex.labels, ex.groups):
        for g in labels:
            files[g] += 1
            artists[g].add(group)
    measured = sorted(g for g in files if files[g] >= MIN_FILES and len(artists[g]) >= MIN_ARTISTS)
    too_few = [{"genre": ex.names[g], "files": files[g], "artists": len(artists[g])}
               for g in sorted(files, key=lambda g: (-files[g], g)) if g not in measured]
    folds = assign_folds(ex.groups, opts.folds, opts.seed)
    result = LearnResult(roots, opts.precision, len(ex.keys), len(set(ex.groups)), int(folds.max()) + 1, [],
                         too_few, ex.untagged, ex.own_writes, ex.unreadable, ex.need_embeddings,
                         scan_command(paths))  # fmt: skip
    if not measured:
        result.error = (f"no genre has at least {MIN_FILES} files by {MIN_ARTISTS} artists, so none can be "
                        "measured; tag more files by more artists")
        return result

    def make() -> Any:
        return cls(C=C, warm_start=True)

    X = ex.vectors  # float32 as stored: the backend computes in float32 blocks (plugins/ovr_logistic.py)
    scores = out_of_fold(make, X, ex.labels, measured, folds, progress)
    Y = _indicator(ex.labels, measured)
    for j, g in enumerate(measured):
        result.genres.append({"genre": ex.names[g], "key": g, "files": files[g], "artists": len(artists[g]),
                              **judge(scores_of(scores, j), Y[:, j], folds, opts.precision)})
    result.genres.sort(key=lambda r: (not r["learnable"], -(r["heldout_precision"] or -1), -(r["precision"] or 0),
                                      -r["files"]))  # fmt: skip
    if not result.learnable:
        closest = result.genres[0]
        result.error = (f"no genre is learnable at precision {opts.precision:.2f}; {closest['genre']} came closest: "
                        f"{closest['reason']}. No model saved: try a lower --precision, or tag more files by more "
                        "artists")
        return result
    if opts.save:
        result.model = _save(make, X, ex, result, roots, opts)
        result.redecided = _redecide(cache, roots)
        result.elsewhere = decided_elsewhere(cache, roots)
    return result


def _redecide(cache: Cache, roots: Sequence[str]) -> str:
    """Decide the files under ``roots`` by the model just saved, from their cached embeddings: no command
    goes on using the previous model's genres (tag would otherwise propose them until the next scan)."""
    from ..inference.models import open_model
    from .scan import redecide

    return redecide(cache, roots, {BACKEND: open_model(BACKEND)}).line()


def decided_elsewhere(cache: Cache, roots: Sequence[str]) -> dict[str, int]:
    """Files under ``roots`` whose results another backend than musicnn decided, by backend."""
    counts: Counter[str] = Counter()
    for backend, _, _, files in cache.deciders(roots):
        if backend != BACKEND:
            counts[backend] += files
    return dict(counts)


def _pooled(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The held-out precision of every genre tag these genres would write, pooled, and how many it rests on."""
    kept = sum(r["heldout_kept"] for r in rows)
    hits = sum(round(r["heldout_precision"] * r["heldout_kept"]) for r in rows if r["heldout_kept"])
    return {"precision": hits / kept if kept else None, "kept": kept, "genres": len(rows)}


def _save(make: Callable[[], Any], X: np.ndarray, ex: Examples, result: LearnResult, roots: list[str],
          opts: LearnOptions) -> dict[str, Any]:
    """Fit the learnable genres on every example, save with its card, make it musicnn's current model."""
    from ..inference.models import list_models, make_card, read_card, save_model

    keep = {r["key"]: r for r in result.learnable}
    backend = make()
    backend.fit(X, [[ex.names[g] for g in labels if g in keep] for labels in ex.labels])
    names = {r["genre"]: r for r in result.learnable}
    before = [r for r in list_models(BACKEND).rows if r["current"]]
    card = make_card(
        backend,
        labels=list(backend.genres_),
        training={"data": f"your library: {', '.join(roots)}", "roots": roots, "files": result.examples,
                  "artists": result.artists, "label_counts": {r["genre"]: r["files"] for r in result.genres},
                  "too_few": result.too_few, "own_writes_excluded": result.own_writes, "spelling": SPELLING,
                  "command": "genretag learn"},
        metrics={"protocol": f"artist-grouped {result.folds}-fold CV", "target_precision": opts.precision,
                 "rule": RULE, "decision": DECISION, "heldout": _pooled(result.learnable), "genres": result.genres},
        multilabel={"thresholds": {g: names[g]["threshold"] for g in backend.genres_},
                    "precision": opts.precision, "min_support": MIN_SUPPORT},
    )  # fmt: skip
    path = save_model(backend, card)
    saved = read_card(path)
    previous = before[0] if before else None
    return {"id": saved["id"], "file": str(path), "backend": BACKEND,
            "previous": None if previous is None else {"id": previous["id"], "file": previous["file"],
                                                        "shipped": previous["shipped"]}}  # fmt: skip


def plot(result: LearnResult, out: str | os.PathLike[str]) -> Path:
    """A per-genre chart of precision at the chosen thresholds and held out, with the target line, as PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise GenretagError("--plots needs matplotlib: pip install 'genretag[plots]'") from None
    rows = result.genres
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.3 * max(len(rows), 1)))
    ys = np.arange(len(rows))
    for shift, key, label, color in ((-0.27, "precision", "precision at the threshold", "#4c72b0"),
                                     (0, "heldout_precision", "held-out precision (decides)", "#55a868"),
                                     (0.27, "heldout_recall", "held-out recall", "#dd8452")):
        ax.barh(ys + shift, [r[key] or 0 for r in rows], height=0.27, label=label, color=color)
    ax.axvline(result.precision, color="k", linestyle="--", linewidth=1, label=f"target {result.precision:.2f}")
    ax.set_yticks(ys, [f"{r['genre']}{'' if r['learnable'] else ' (not learnable)'}" for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"artist-grouped {result.folds}-fold CV; held-out: thresholds chosen on the other folds only")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    path = Path(out)
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise GenretagError(f"{path}: cannot write the chart: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return path
