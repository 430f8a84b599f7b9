"""Album mode: group cached tracks into albums, average their probabilities, find the tracks that disagree.

Plain functions over track records (no click, no writes); tagger/write/tagging.py
tags each track from what :func:`plan` decides and ``show --by album`` prints the
same plan. Albums group by album name and album artist (``by="album"``) or by
folder; compilations, mixed-artist folders and loose files keep track mode. The
album's genre is the duration-weighted mean of its tracks' probabilities, decided
by their scan's rule (the strictest when they differ); outliers give the album's
genre less than ``OUTLIER_RATIO`` of their own best. The rules for users:
docs/tagging.md "Album mode".
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..defaults import ALBUM, FOLDER, TRACK
from ..defaults import ALBUM_MODES as MODES
from ..media.tags import FileMeta, TagError
from ..store.track import Track
from . import broad as broadmod
from . import decision

#: Album-artist values that mean "a compilation" (compared case-folded).
VARIOUS = frozenset({"various artists", "various", "va", "v.a.", "v/a", "varios artistas", "verschiedene interpreten",
                     "artistes divers", "artisti vari"})  # fmt: skip
#: An outlier gives the album's genre less than this share of its own best genre's probability.
OUTLIER_RATIO = 0.25
#: The most common artist must be on at least this share of tracks to be the album's (else: various/mixed).
MAIN_ARTIST_SHARE = 0.5

COMPILATION = "compilation"
LOOSE = "loose files in a scanned folder"
MIXED = "mixed folder (several artists, none on half its tracks)"

Ranking = list[tuple[str, float]]


def file_meta(row: Track) -> FileMeta | None:
    """A track's own tags: from its record, or read once from the file when the record predates that cache.

    The scan caches them (``file_genres`` is never None for a file whose tags
    it could read); for older records the file is parsed here.  None when
    they cannot be read: the track then counts as having no tags.
    """
    try:
        return row.own_tags()
    except (TagError, OSError):
        return None


def weight(row: Track) -> float:
    """How much audio a track contributed: the seconds analysed, else its duration, else 1."""
    for value in (row.excerpt_seconds, row.duration):
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    return 1.0


def weighted_mean(items: Iterable[tuple[Mapping[str, float], float]]) -> Ranking:
    """Σ w·p / Σ w per label over (probabilities, weight) pairs, most probable first.

    A label a track does not give counts 0 for it.  Ties keep the labels'
    first-seen order (as a scan picks the first of equals).  Empty: [].
    """
    sums: dict[str, float] = {}
    total = 0.0
    for probs, w in items:
        total += w
        for label, p in probs.items():
            sums[label] = sums.get(label, 0.0) + w * float(p)
    if total <= 0:
        return []
    return sorted(((label, s / total) for label, s in sums.items()), key=lambda kv: -kv[1])


def is_outlier(own: Ranking, album_label: str) -> bool:
    """True when a track's own best genre is another and it gives the album's less than OUTLIER_RATIO of it."""
    if not own or own[0][0] == album_label or own[0][1] <= 0:
        return False
    theirs = dict(own).get(album_label, 0.0)
    return theirs < OUTLIER_RATIO * own[0][1]


@dataclass
class Album:
    """One group of tracks and what album mode decided for it."""

    key: str  # "tags:<album>\0<album artist>" or "folder:<folder>": stable, for JSON
    name: str  # what the table shows: "Album Artist – Album", or the folder
    rows: list[Track] = field(default_factory=list)
    not_averaged: str | None = None  # why its tracks keep their own genres (COMPILATION, LOOSE, MIXED)
    ranking: Ranking = field(default_factory=list)  # the weighted mean, most probable first
    used: int = 0  # tracks in the mean
    seconds: float = 0.0  # their total weight
    abstained: str | None = None  # why the album has no genre
    outliers: dict[str, Ranking] = field(default_factory=dict)  # path key -> that track's own ranking
    source: str | None = None  # where its genre came from: "head" or "broad" (tagger/decide/broad.py)
    rule: decision.Rule | None = None  # the rule it was decided by (tagger/decide/decision.py)

    @property
    def genre(self) -> str | None:
        return self.ranking[0][0] if self.ranking and not self.abstained and not self.not_averaged else None

    def as_dict(self) -> dict[str, Any]:
        best = self.ranking[0] if self.ranking else (None, None)
        return {"album": self.name, "key": self.key, "tracks": len(self.rows), "used": self.used,
                "seconds": round(self.seconds, 3), "genre": self.genre, "confidence": best[1],
                "top3": [[g, p] for g, p in self.ranking[:3]], "abstained": self.abstained,
                "not_averaged": self.not_averaged, "outliers": sorted(self.outliers),
                "source": self.source if self.genre else None}  # fmt: skip


@dataclass(frozen=True)
class Choice:
    """What one track is tagged from: the album's ranking, or (``ranking`` None) its own record as in track mode."""

    album: Album
    ranking: Ranking | None
    abstained: str | None = None
    note: str = ""  # shown in the table's action column: outlier, or why the track is not averaged

    @property
    def outlier(self) -> bool:
        return self.note.startswith("outlier")


# ---------------------------------------------------------------------------
# Grouping.


def _norm(text: str | None) -> str:
    return " ".join((text or "").split()).casefold()


def main_artist(artists: Iterable[str | None]) -> str | None:
    """The artist on at least MAIN_ARTIST_SHARE of the tracks that name one, and on more than any other.

    Returned in its first spelling (names compare ignoring case and spacing); None when there is none.
    """
    named = [a.strip() for a in artists if a and a.strip()]
    counts = Counter(_norm(a) for a in named).most_common(2)
    tied = len(counts) > 1 and counts[1][1] == counts[0][1]
    if not counts or tied or counts[0][1] < MAIN_ARTIST_SHARE * len(named):
        return None
    return next(a for a in named if _norm(a) == counts[0][0])


def _is_compilation(metas: Sequence[FileMeta | None]) -> bool:
    return any(m is not None and (m.compilation or _norm(m.album_artist) in VARIOUS) for m in metas)


def block(row: Track, by: str, meta: Callable[[Track], FileMeta | None] = file_meta) -> str:
    """A track's album name, normalised (``by`` album, tags readable), else "" (grouped by folder).

    Rows ordered by (block, folder, path) bring each folder's tracks of one
    album name together: what :func:`album_keys` needs.
    """
    m = meta(row) if by == ALBUM else None
    return _norm(m.album) if m is not None else ""


def album_keys(rows: Iterable[Track], by: str, meta: Callable[[Track], FileMeta | None] = file_meta) -> Iterator[str]:
    """Each row's album key, in order, for rows ordered by (:func:`block`, folder, path).

    The key (album name and resolved album artist, or the folder for tracks
    without album tags) is what the tracks of one album share across
    folders; resolving the artist needs the folder's other tracks of that
    name, so one folder's are held at a time.  Ordered by (key, folder,
    path), each album's tracks come together (:func:`group_sorted`).
    """
    members: list[tuple[Track, FileMeta | None]] = []
    current: tuple[str, str] | None = None
    for row in rows:
        m = meta(row)
        name = _norm(m.album) if by == ALBUM and m is not None else ""
        here = (name, os.path.dirname(row.path))
        if here != current and members:
            yield from _keys_of(members, current[0] if current else "")
            members = []
        current = here
        members.append((row, m))
    if members and current is not None:
        yield from _keys_of(members, current[0])


def _keys_of(members: list[tuple[Track, FileMeta | None]], name: str) -> Iterator[str]:
    """The album keys of one folder's tracks of one album name ("": the folder's tracks without album tags)."""
    if not name:
        folder = os.path.dirname(members[0][0].path)
        yield from (f"\0{folder}" for _ in members)
        return
    fallback = _fallback(members)
    for _, m in members:
        yield f"{name}\0{_artist_key(m, fallback)}"


def _fallback(members: Sequence[tuple[Track, FileMeta | None]]) -> str | None:
    """The album artist of a folder's same-name tracks that have no album-artist tag (see _add_tagged)."""
    without = [m.artist for _, m in members if m is not None and not _norm(m.album_artist)]
    return main_artist(without) if without else None


def _artist_key(m: FileMeta | None, fallback: str | None) -> str:
    artist = m.album_artist if m is not None and _norm(m.album_artist) else fallback
    return _norm(artist) if artist else "various artists"


def group(rows: Iterable[Track], by: str, roots: Iterable[str] = (),
          meta: Callable[[Track], FileMeta | None] = file_meta) -> list[Album]:
    """The albums (and track-mode groups) of ``rows`` in any order, in the order of their first track's path.

    ``roots`` are the scanned folders: files without album tags directly in
    one are loose files, never a folder album.  See the module docstring.
    Holds every row: for a library, :func:`group_sorted` over
    ``Cache.records_grouped``, which orders them in SQLite.
    """
    if by not in (ALBUM, FOLDER):
        raise ValueError(f"album grouping is by album or folder, not {by!r}")
    ordered = sorted(rows, key=lambda r: (block(r, by, meta), os.path.dirname(r.path), r.path))
    keyed = sorted(zip(album_keys(ordered, by, meta), range(len(ordered))))
    pairs = [(key, ordered[i]) for key, i in keyed]
    return sorted(group_sorted(pairs, by, roots, meta), key=lambda a: a.rows[0].path)


def group_sorted(rows: Iterable[tuple[str, Track]], by: str, roots: Iterable[str] = (),
                 meta: Callable[[Track], FileMeta | None] = file_meta) -> Iterator[Album]:
    """The albums of (album key, track) pairs ordered by key (:func:`album_keys`), each yielded when complete.

    Only one album's tracks are held at a time (all of one folder's
    tracks without album tags: its loose files are each their own group).
    Each album's rows come sorted by path.
    """
    if by not in (ALBUM, FOLDER):
        raise ValueError(f"album grouping is by album or folder, not {by!r}")
    top = {os.path.abspath(r).rstrip(os.sep) or os.sep for r in roots}
    current: str | None = None
    members: list[tuple[Track, FileMeta | None]] = []
    for key, row in rows:
        if key != current and members:
            yield from _albums_of(members, top, by)
            members = []
        current = key
        members.append((row, meta(row)))
    if members:
        yield from _albums_of(members, top, by)


def _albums_of(members: list[tuple[Track, FileMeta | None]], top: set[str], by: str) -> Iterator[Album]:
    """The albums of one album key's tracks: one album (split by folder only for its artist), or one folder."""
    albums: dict[str, Album] = {}
    m0 = members[0][1]
    name = _norm(m0.album) if by == ALBUM and m0 is not None else ""

    def add(key: str, title: str, group: list[tuple[Track, FileMeta | None]], why: str | None) -> None:
        album = albums.setdefault(key, Album(key, title))
        album.rows += [r for r, _ in group]
        if why and not album.not_averaged:
            album.not_averaged = why

    if name:
        folders: dict[str, list[tuple[Track, FileMeta | None]]] = {}
        for row, m in members:
            folders.setdefault(os.path.dirname(row.path), []).append((row, m))
        for same in folders.values():
            _add_tagged(add, same)
    else:
        folder = os.path.dirname(members[0][0].path)
        metas = [m for _, m in members]
        artists = [m.album_artist or m.artist for m in metas if m is not None]
        why = (COMPILATION if _is_compilation(metas) else LOOSE if folder in top
               else MIXED if len({_norm(a) for a in artists if a}) > 1 and main_artist(artists) is None
               else None)  # fmt: skip
        if why == LOOSE:  # each loose file is its own group
            for row, m in members:
                add(f"file:{row.path}", row.path, [(row, m)], LOOSE)
        else:
            add(f"folder:{folder}", folder, members, why)
    for album in sorted(albums.values(), key=lambda a: min(r.path for r in a.rows)):
        album.rows.sort(key=lambda r: r.path)
        yield album


def _add_tagged(add: Callable[..., None], members: list[tuple[Track, FileMeta]]) -> None:
    """One folder's tracks that share an album name: keyed by album and (resolved) album artist."""
    without = [m.artist for _, m in members if not _norm(m.album_artist)]
    fallback = main_artist(without) if without else None
    by_artist: dict[str, list[tuple[Track, FileMeta]]] = {}
    for row, m in members:
        artist = m.album_artist if _norm(m.album_artist) else fallback
        by_artist.setdefault(_norm(artist) if artist else "various artists", []).append((row, m))
    for artist_key, same in by_artist.items():
        meta0 = same[0][1]
        shown = next((m.album_artist or fallback for _, m in same if m.album_artist or fallback), "Various Artists")
        compilation = artist_key in VARIOUS or _is_compilation([m for _, m in same])
        add(f"tags:{_norm(meta0.album)}\0{artist_key}", f"{shown} – {meta0.album.strip()}", same,
            COMPILATION if compilation else None)


# ---------------------------------------------------------------------------
# Deciding.


def usable(row: Track) -> bool:
    """A track whose probabilities count in its album's mean: analysed, present, with a result."""
    return not row.missing and row.status == "ok"


def assess(album: Album, rank: Callable[[Track], Ranking], *, from_tags: bool = False,
           broad: broadmod.Broad | None = None) -> Album:
    """Fill in the album's weighted mean, its genre decision and outliers; ``rank`` gives a row's own ranking.

    Failed and missing tracks (and, with ``from_tags``, tracks with no tags)
    are left out of the mean.  The mean is decided by its tracks' rule
    (decision.decide_track; with ``from_tags`` never abstaining: tags have
    their own threshold at write time); no usable track: it abstains.
    """
    if album.not_averaged:
        return album
    own = {r.path: rank(r) for r in album.rows if usable(r)}
    own = {path: ranking for path, ranking in own.items() if ranking}
    rows = [r for r in album.rows if r.path in own]
    album.used, album.seconds = len(rows), sum(weight(r) for r in rows)
    if not rows:
        lacking = "tags" if from_tags else "a result"
        album.abstained = f"no usable track (of {len(album.rows)}: failed, missing or without {lacking})"
        return album
    album.ranking = weighted_mean((dict(own[r.path]), weight(r)) for r in rows)
    label = album.ranking[0][0]
    if not from_tags:
        _decide(album, rows, broad)
        if album.source == broadmod.BROAD:
            return album  # the album's genre is not a head label: no track's own ranking to compare it with
    if len(rows) > 1:
        album.outliers = {path: ranking for path, ranking in own.items() if is_outlier(ranking, label)}
    return album


def _decide(album: Album, rows: Sequence[Track], broad: broadmod.Broad | None) -> None:
    """The one genre decision (tagger/decide/decision.py) on the album: its tracks' tags averaged like its probabilities."""
    tags = weighted_mean((r.tags or {}, weight(r)) for r in rows if r.tags) if broad is not None else []
    album.rule = decision.strictest(decision.row_rule(r) for r in rows)
    tracks = f"{len(rows)} track" + ("" if len(rows) == 1 else "s")
    d = decision.decide_track(album.rule, album.ranking, dict(tags), rows[0].backend or "", broad,
                              f"mean of {tracks}; the threshold their scan used")
    album.source, album.abstained = d.source, d.abstained
    if d.source == broadmod.BROAD:
        album.ranking = list(d.broad)


def choice(album: Album, row: Track, keep_outliers: bool = False) -> Choice:
    """What one of the album's tracks is tagged from (see :class:`Choice`)."""
    if album.not_averaged:
        return Choice(album, None, note=f"{album.not_averaged}: track mode")
    own = album.outliers.get(row.path)
    if own is None:
        return Choice(album, album.ranking, album.abstained)
    label = album.ranking[0][0]
    note = (f"outlier: own genre {own[0][0]} {own[0][1]:.2f}, album's {label} {dict(own).get(label, 0.0):.2f}"
            + ("; kept its own (--keep-outliers)" if keep_outliers else "; --keep-outliers writes its own"))
    return Choice(album, None if keep_outliers else album.ranking, None if keep_outliers else album.abstained, note)


def plan(rows: Iterable[Track], by: str, rank: Callable[[Track], Ranking], *,
         roots: Iterable[str] = (), from_tags: bool = False,
         meta: Callable[[Track], FileMeta | None] = file_meta, broad: broadmod.Broad | None = None) -> list[Album]:
    """Group ``rows`` (any order, all held) and decide every album."""
    return [assess(a, rank, from_tags=from_tags, broad=broad) for a in group(rows, by, roots, meta)]


def plan_sorted(rows: Iterable[tuple[str, Track]], by: str, rank: Callable[[Track], Ranking], *,
                roots: Iterable[str] = (), from_tags: bool = False,
                meta: Callable[[Track], FileMeta | None] = file_meta,
                broad: broadmod.Broad | None = None) -> Iterator[Album]:
    """:func:`plan` of (album key, track) pairs ordered as :func:`group_sorted` needs them, one album at a
    time, as it consumes them: what ``tag --by album`` and ``show --by album`` act on."""
    return (assess(a, rank, from_tags=from_tags, broad=broad) for a in group_sorted(rows, by, roots, meta))


def matches(album: Album, status: str | None, genre: str | None) -> bool:
    """``show --by album --status/--genre``: the album's genre and status (error, missing: any of its tracks)."""
    if genre and album.genre != genre:
        return False
    if status == "ok":
        return album.genre is not None
    if status == "abstained":
        return bool(album.abstained) and not album.not_averaged
    if status == "missing":
        return any(r.missing for r in album.rows)
    if status == "error":
        return any(r.status == "error" and not r.missing for r in album.rows)
    return True
