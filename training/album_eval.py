"""What album mode does to accuracy, on GTZAN clips grouped by artist as stand-in albums (``report --by album``).

GTZAN has no album tags, but Sturm's index names most clips' artists, and one
artist's clips often come from one album. Under ``artist-kfold`` each artist's
test clips were never heard by their fold's model, so they stand in for an
album: album mode gives every clip its group's weighted mean
(tagger.decide.albums.weighted_mean), track mode its own. Clips of unknown
artist stay single (their per-genre group would leak the label).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tagger.decide.albums import is_outlier, weighted_mean

from .splits import artist_group

#: (test track ids, their mean probabilities (n, genres), their true genres): one fold's out-of-fold predictions.
FoldPredictions = tuple[list[str], np.ndarray, list[str]]


def stand_in_album(tid: str, label: str) -> str:
    """The clip's artist (Sturm's index), or the clip itself when the artist is unknown or unindexed."""
    group = artist_group(tid, label)
    return f"clip:{tid}" if group.startswith(("unknown artist:", "unindexed:")) else f"artist:{group}"


def predictions(genres: Sequence[str], fold: FoldPredictions) -> dict[str, dict[str, Any]]:
    """Per clip of one fold: its true genre, its own top genre, its album's, and the album's with outliers kept."""
    tracks, probs, truth = fold
    own = {t: sorted(zip(genres, map(float, p)), key=lambda kv: -kv[1]) for t, p in zip(tracks, probs)}
    members: dict[str, list[str]] = {}
    for t, label in zip(tracks, truth):
        members.setdefault(stand_in_album(t, label), []).append(t)
    out = {}
    for album, clips in members.items():
        mean = weighted_mean((dict(own[t]), 1.0) for t in clips)
        for t in clips:
            outlier = len(clips) > 1 and is_outlier(own[t], mean[0][0])
            out[t] = {"album": album, "size": len(clips), "own": own[t][0][0], "album_genre": mean[0][0],
                      "kept": own[t][0][0] if outlier else mean[0][0], "outlier": outlier}
    for t, label in zip(tracks, truth):
        out[t]["truth"] = label
    return out


def compare(genres: Sequence[str], folds: Sequence[FoldPredictions]) -> dict[str, Any]:
    """Track mode against album mode (and album mode with --keep-outliers) on the same clips, per fold and pooled."""
    per_fold = [predictions(genres, f) for f in folds]
    pooled = {t: p for fold in per_fold for t, p in fold.items()}

    def acc(preds: dict[str, dict[str, Any]], key: str, only_albums: bool = False) -> float | None:
        rows = [p for p in preds.values() if p["size"] > 1 or not only_albums]
        return float(np.mean([p[key] == p["truth"] for p in rows])) if rows else None

    albums: dict[str, list[dict[str, Any]]] = {}
    for p in pooled.values():
        if p["size"] > 1:
            albums.setdefault(p["album"], []).append(p)
    modes = {"track": "own", "album": "album_genre", "album_keep_outliers": "kept"}
    result: dict[str, Any] = {
        "clips": len(pooled), "albums": len(albums), "clips_in_albums": sum(len(v) for v in albums.values()),
        "albums_spanning_genres": sum(1 for v in albums.values() if len({p["truth"] for p in v}) > 1),
        "outliers": sum(1 for p in pooled.values() if p["outlier"]),
        "outliers_own_right": sum(1 for p in pooled.values() if p["outlier"] and p["own"] == p["truth"]),
        "outliers_album_right": sum(1 for p in pooled.values() if p["outlier"] and p["album_genre"] == p["truth"]),
    }  # fmt: skip
    for mode, key in modes.items():
        folds_acc = [acc(f, key) for f in per_fold]
        result[mode] = {"accuracy": acc(pooled, key), "accuracy_in_albums": acc(pooled, key, only_albums=True),
                        "folds": folds_acc, "mean": float(np.mean(folds_acc)), "std": float(np.std(folds_acc))}
    return result


def lines(backend: str, comparison: dict[str, Any]) -> list[str]:
    """The comparison in words, for ``report --by album`` on the terminal."""
    c = comparison
    out = [(f"{backend}: album mode on {c['clips']} clips, {c['clips_in_albums']} of them in {c['albums']} "
            f"stand-in albums of 2 or more clips (one artist each; {c['albums_spanning_genres']} span several genres)")]
    names = {"track": "track mode", "album": "album mode", "album_keep_outliers": "album, keep outliers"}
    for mode, name in names.items():
        m = c[mode]
        out.append(f"{backend}:   {name:<22} accuracy {m['accuracy']:.3f} (folds {m['mean']:.3f} ± {m['std']:.3f}); "
                   f"on the clips in albums {m['accuracy_in_albums']:.3f}")
    out.append(f"{backend}:   outliers flagged: {c['outliers']} (own genre right {c['outliers_own_right']}, "
               f"album's right {c['outliers_album_right']})")
    return out
