"""Synthetic tagged libraries in a genretag cache, for `genretag learn` tests and benchmarks/bench_learn.py.

Rows, embeddings and the files' own genres go in through the cache API, as
a scan would leave them; no audio exists.  The structure is known: each
artist plays one *signal* genre, whose embedding is that genre's direction
plus the artist's own offset plus noise, so a signal genre is learnable
across artists; *random* genres are added to a share of files whatever
their embedding, so nothing can learn them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagger.store.cache import Cache, now
from tagger.store.track import Track

DIM = 200


@dataclass
class Library:
    """What was stored: per file key, its genres, artist and whether it has an embedding."""

    root: Path
    genres: dict[str, list[str]] = field(default_factory=dict)
    artists: dict[str, str | None] = field(default_factory=dict)


def musicnn_front_end() -> str:
    from tagger.inference import inputs

    return inputs.front_end("musicnn").id


def fill(db: Path, root: Path, *, signal: Sequence[str], random: Sequence[str] = (), artists_per_genre: int = 6,
         files_per_artist: int = 8, random_share: float = 0.3, strength: float = 3.0, seed: int = 0,
         front_end: str | None = None, mixing: bool = False, untagged: int = 0,
         artist_tags: bool = True) -> Library:
    """Fill ``db`` with a tagged library under ``root`` (see the module docstring); returns what it holds.

    ``mixing`` passes the embeddings through a random matrix with a
    decaying spectrum, so their dimensions correlate as a network's do.
    ``untagged`` adds files with an embedding and no genre.
    """
    rng = np.random.default_rng(seed)
    front_end = front_end or musicnn_front_end()
    directions = rng.normal(size=(len(signal), DIM))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    mix = None
    if mixing:
        q, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
        mix = np.geomspace(3.0, 0.05, DIM)[:, None] * q  # scale, then rotate: correlated dimensions
    lib = Library(root)
    rows, embeddings = [], []
    stamp = now()

    def add(key: str, vector: np.ndarray, genres: list[str], artist: str | None) -> None:
        if mix is not None:
            vector = vector @ mix
        rows.append({"path": key, "path_bytes": None, "size": 1000, "mtime": 1.0, "status": "ok", "missing": 0,
                     "backend": "musicnn", "model_id": "synthetic", "genre": None, "first_seen": stamp,
                     "updated_at": stamp, "artist": artist, "album": None, "album_artist": None,
                     "compilation": None, "file_genres": json.dumps(genres)})
        embeddings.append({"path": key, "front_end": front_end, "vector": vector.astype(np.float32).tobytes(),
                           "tags": None})
        lib.genres[key], lib.artists[key] = genres, artist

    n = 0
    for g, genre in enumerate(signal):
        for a in range(artists_per_genre):
            artist = f"{genre} Artist {a}"
            offset = rng.normal(size=DIM) * 0.5
            for t in range(files_per_artist):
                genres = [genre] + [r for r in random if rng.random() < random_share]
                key = os.path.join(str(root), artist.replace(" ", "_"), f"track-{t:03d}.mp3")
                vector = directions[g] * strength + offset + rng.normal(size=DIM)
                add(key, vector, genres, artist if artist_tags else None)
                n += 1
    for u in range(untagged):
        add(os.path.join(str(root), "untagged", f"u-{u:04d}.mp3"), rng.normal(size=DIM), [], None)
    cache = Cache(db)
    try:
        for i in range(0, len(rows), 2000):
            cache.write_results(rows[i : i + 2000], embeddings=embeddings[i : i + 2000])
    finally:
        cache.close()
    return lib


def record_write(db: Path, key: str, previous: list[str], written: list[str], *, undone: bool = False) -> None:
    """A genre write genretag made to ``key`` (as journal.py records it), optionally undone since."""
    cache = Cache(db)
    try:
        st = os.stat_result((0o644, 0, 0, 1, 0, 0, 1000, 1, 1, 1))
        history = cache.journal.record(Track(path=key), {"field": None, "format": "mp3"}, previous, written, st)
        cache.journal.confirm(history, st, None)
        if undone:
            cache.journal.mark_undone([history])
    finally:
        cache.close()
