"""Which genres a file should get: tag options, display names, and proposals from a cached track record.

Pure functions of a track record and the options (no click, no writes): the
``tag`` run (tagger/write/journal.py), ``show --by album`` and the beets plugin
(beetsplug/genretag.py) all ask them, so each proposes the same genres.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..common import userfiles
from ..common.errors import FileError, GenretagError
from ..decide import albums, decision, vocabulary
from ..decide import broad as broadmod
from ..decide.broad import BROAD
from ..defaults import (DEFAULT_BROAD, DEFAULT_BY, DEFAULT_HARD_LINKS, DEFAULT_SEPARATOR, DEFAULT_TOP,
                        DEFAULT_WRITE_ABOVE, DEFAULT_WRITE_ABOVE_FROM_TAGS, HARD_LINKS)
from ..inference.outputs import MAX_GENRE, acceptable_label
from ..media import tags
from ..store.track import Track

if TYPE_CHECKING:
    from ..store.cache import Cache

FROM_TAGS_DEPRECATED = ("--from-tags is deprecated and will be removed: the broad source (on by default; "
                        "docs/broad.md) names genres from the networks' tags with calibrated thresholds")

# What happened to a file, as shown in the table and counted in the summary.
WRITTEN, WOULD_WRITE, RESTORED, WOULD_RESTORE = "written", "would write", "restored", "would restore"
KEPT, BELOW, UNCHANGED, SKIPPED, ERROR = "kept existing", "below threshold", "unchanged", "skipped", "error"
ABSTAINED, NO_TAGS = "abstained", "no tags"
ACTIONS = (WRITTEN, WOULD_WRITE, RESTORED, WOULD_RESTORE, UNCHANGED, KEPT, BELOW, ABSTAINED, NO_TAGS, SKIPPED, ERROR)


@dataclass(frozen=True, kw_only=True)
class TagOptions:
    """Which genres to write, where, and what to do with genres already there."""

    dry_run: bool = False
    overwrite: bool = False
    merge: bool = False
    top: int | None = DEFAULT_TOP  # None: 1, or every genre reaching its threshold with a multi-label model
    write_above: float | None = None  # write a genre only this likely; None: 0, or 0.3 with from_tags (defaults.py)
    from_tags: bool = False  # write the backend's genre-like tags instead of its genre
    field: str | None = None  # None: each format's genre field
    id3v23: bool = False
    separator: str = DEFAULT_SEPARATOR  # only ID3v2.3 has no multi-value form
    genre_map: Mapping[str, str | None] = dataclasses.field(default_factory=dict)  # see load_genre_map
    follow_links: bool = False  # write through links leading outside the roots (see Boundary)
    with_parents: bool = False  # write each genre's broader genres from the tree first ("Rock; Alternative Rock")
    by: str = DEFAULT_BY  # "album" or "folder": one genre per album (tagger/decide/albums.py)
    keep_outliers: bool = False  # album mode: a track that disagrees strongly keeps its own genre
    hard_links: str = DEFAULT_HARD_LINKS  # a file with several names: edit it in place, split it off, or skip it
    broad: bool = DEFAULT_BROAD  # write the genres the broad source gave where the head abstained (decide/broad.py)

    def __post_init__(self) -> None:
        if self.overwrite and self.merge:
            raise ValueError("--overwrite and --merge exclude each other")
        if self.write_above is None:
            default = DEFAULT_WRITE_ABOVE_FROM_TAGS if self.from_tags else DEFAULT_WRITE_ABOVE
            object.__setattr__(self, "write_above", default)
        if self.top is not None and self.top < 1:
            raise ValueError("--top must be at least 1")
        if not 0.0 <= self.write_above <= 1.0:
            raise ValueError("--write-above must be between 0 and 1")
        if not self.separator or "\0" in self.separator:
            raise ValueError("--separator must be a non-empty string without NUL")
        if self.by not in albums.MODES:
            raise ValueError(f"--by must be one of {', '.join(albums.MODES)}")
        if self.keep_outliers and self.by == albums.TRACK:
            raise ValueError("--keep-outliers goes with --by album or --by folder")
        if self.hard_links not in HARD_LINKS:
            raise ValueError(f"--hard-links must be one of {', '.join(HARD_LINKS)}")


# ---------------------------------------------------------------------------
# Names and proposals: pure functions of a track record and the options.


def load_genre_map(path: str | os.PathLike[str]) -> dict[str, str | None]:
    """Read a genre map: a JSON object, or lines ``hiphop = Hip-Hop`` (``disco =`` drops the label).

    Keys are stored case-folded; blank lines and lines starting with ``#``
    are ignored.  A label mapped to nothing (or JSON null) is never written.
    """
    text = userfiles.read_text(path, "genre map")  # a regular file of at most TEXT_LIMIT: a FIFO would block
    items: list[tuple[Any, Any]] = []
    if text.lstrip().startswith("{"):
        doc = userfiles.parse_json(text, path, "genre map")
        if not isinstance(doc, dict):
            raise FileError(path, "the genre map is not a JSON object")
        items = list(doc.items())
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                label, eq, name = line.partition("=")
                if not eq or not label.strip():
                    raise FileError(path, f"line {n}: expected 'label = Name', or 'label =' to drop it")
                items.append((label, name))
    out: dict[str, str | None] = {}
    for label, name in items:
        if not isinstance(name, (str, type(None))) or (name and name.strip() and not acceptable_label(name.strip())):
            raise FileError(path, f"genre map value for {label!r} must be a name (at most {MAX_GENRE} printable "
                                  "characters), empty or null")
        out[str(label).strip().casefold()] = (name or "").strip() or None
    return out


def display_name(label: str, genre_map: Mapping[str, str | None] | None = None) -> str | None:
    """The name written for a model label: the user's map wins, then the genre tree, else the label capitalised.

    The map is looked up by the label, by the tree's name, then by any other
    spelling of the same genre ("hip hop = Rap" renames ``hiphop`` too).
    None means the map drops the label.
    """
    genre = vocabulary.canonical(label)
    default = genre.name if genre else " ".join(w[:1].upper() + w[1:] for w in label.split(" "))
    if genre_map:
        for key in (label.casefold(), default.casefold()):
            if key in genre_map:
                return genre_map[key]
        for key, name in genre_map.items():
            if vocabulary.same(key, label):
                return name
    return default


def with_parents(name: str, label: str, genre_map: Mapping[str, str | None] | None = None) -> list[str]:
    """``name`` preceded by its broader genres from the tree, broadest first, as the map names them.

    The tree genre is the written name's, else the model label's (a map may
    rename a label to a name the tree does not know).  Parents the map drops
    are left out.
    """
    genre = vocabulary.canonical(name) or vocabulary.canonical(label)
    above = [display_name(g.name, genre_map) for g in vocabulary.parents(genre)] if genre else []
    return [n for n in above if n] + [name]


def ranked(row: Track, from_tags: bool = False) -> list[tuple[str, float]]:
    """A track's labels, most probable first (ties in model order, as the scan picked its genre).

    ``from_tags``: the genre-like ones of the track's tags (see :func:`genre_tags`) instead.
    """
    if from_tags:
        wanted = {t.casefold() for t in genre_tags(row.backend or "")}
        tag_probs = row.tags or {}
        return sorted(((t, float(p)) for t, p in tag_probs.items() if t.casefold() in wanted), key=lambda kv: -kv[1])
    if row.probabilities:
        return sorted(row.probabilities.items(), key=lambda kv: -kv[1])
    if row.top3:
        return list(row.top3)
    return [(row.genre, row.confidence or 0.0)] if row.genre else []


def propose(row: Track, opts: TagOptions, ranking: list[tuple[str, float]] | None = None,
            rule: decision.Rule | None = None) -> tuple[list[str], str | None, str]:
    """The names to write for a row: (names, None, "") or ([], action, reason) when there are none.

    The genres come from the rule the row's scan stored (tagger/decide/decision.py;
    album mode: ``ranking`` and ``rule`` are the album's): a single-label
    rule's top ``opts.top`` (1), a multi-label one's every genre passing, up
    to ``top``.  They are taken first and only then mapped, so a dropped
    label is not replaced by a less likely one; each must reach ``write_above``.
    """
    broad_genres = ranking is None and not opts.from_tags and row.genre_source == BROAD and bool(row.broad)
    if broad_genres:  # the head abstained: the broad source's genres, best first
        ranking = [(str(g), float(p)) for g, p in row.broad or ()]
    own = ranked(row, opts.from_tags) if ranking is None else ranking
    if opts.from_tags or broad_genres:
        best = own[: opts.top or 1]
    else:
        rule = rule or decision.row_rule(row)
        verdict = decision.decide(rule, own)
        if not verdict.genres and own:
            return [], ABSTAINED, verdict.reason or ""
        best = verdict.genres[: opts.top] if rule.multi else verdict.genres[: opts.top or 1]
    if not best or best[0][1] < opts.write_above:
        conf = best[0][1] if best else 0.0
        return [], BELOW, f"confidence {conf:.2f} < {opts.write_above:.2f}"
    names: list[str] = []
    for label, p in best:
        if not acceptable_label(label):  # cached before backends' labels were checked (tagger.inference.outputs)
            shown = repr(label if len(label) <= 40 else label[:40] + "...")
            return [], ERROR, f"cached genre {shown} is not a label a tag may hold; rescan with --force"
        name = display_name(label, opts.genre_map)
        if p < opts.write_above or not name:
            continue
        for written in with_parents(name, label, opts.genre_map) if opts.with_parents else [name]:
            if not _known(written, names):
                names.append(written)
    if not names:
        return [], SKIPPED, "dropped by the genre map"
    return names, None, ""


@functools.lru_cache(maxsize=None)
def genre_tags(backend: str) -> tuple[str, ...]:
    """The tags a backend declares genre-like (class attribute ``genre_tags``); () when unknown or none."""
    from ..inference.backends import get_backend

    try:
        return tuple(getattr(get_backend(backend), "genre_tags", ()) or ())
    except GenretagError:
        return ()


def _why_no_tags(row: Track) -> str | None:
    """Why --from-tags has nothing to choose from for this track, or None when it has tags."""
    if not row.tags:
        return f"no tags cached (the {row.backend or '?'} backend gives none; scan with a tagging backend)"
    if not genre_tags(row.backend or ""):
        return f"the {row.backend or '?'} backend declares no genre-like tags"
    return None


def field_values(current: list[str], proposed: list[str], opts: TagOptions) -> tuple[list[str], str | None, str]:
    """What the field should hold given its current values: (values, None, "") to write, else why not."""
    if opts.overwrite:
        same = current == proposed or (opts.id3v23 and current == [opts.separator.join(proposed)])
        return proposed, UNCHANGED if same else None, ""
    have = tags.split_genres(current)
    if opts.merge:
        new = have + [g for g in proposed if not _known(g, have)]
        return new, UNCHANGED if len(new) == len(have) else None, ""
    if [vocabulary.identity(g) for g in have] == [vocabulary.identity(g) for g in proposed]:
        return current, UNCHANGED, ""
    if current:
        return current, KEPT, f"has genre '{'; '.join(current)}' (use --overwrite or --merge)"
    return proposed, None, ""


def _known(name: str, names: Iterable[str]) -> bool:
    """True when ``names`` already hold this genre in any spelling ("Hip Hop" holds "Hip-Hop")."""
    return any(vocabulary.same(name, n) for n in names)


def album_plan(cache: Cache, paths: Sequence[str], by: str, from_tags: bool = False,
               broad: bool = True) -> Iterator[albums.Album]:
    """The albums of the files under ``paths``, decided one by one (for ``tag`` and ``show --by album``).

    The records come ordered by album (Cache.records_grouped), so only one
    album's tracks are held at a time (tagger.decide.albums.plan_sorted).
    """
    pairs = cache.records_grouped(paths, lambda track: albums.block(track, by), lambda ts: albums.album_keys(ts, by))
    return albums.plan_sorted(pairs, by, lambda track: ranked(track, from_tags), roots=cache.scan_roots(),
                              from_tags=from_tags, broad=broadmod.shipped() if broad and not from_tags else None)


def unusable(row: Track, opts: TagOptions, choice: albums.Choice | None = None) -> tuple[str, str] | None:
    """Why a cached row gives nothing to tag, as (action, reason), before any file is read; None when it may.

    ``choice`` (album mode) says whether the row is tagged from its album.
    The beets plugin (beetsplug/genretag.py) asks the same before :func:`propose`.
    """
    album = choice is not None and choice.ranking is not None
    if row.missing:
        return SKIPPED, "missing since the last scan"
    if row.status != "ok":
        return SKIPPED, "no genre (its analysis failed)"
    abstained = choice.abstained if album else row.abstained
    if opts.from_tags:  # tags have their own threshold: abstaining on the genre does not apply
        why = _why_no_tags(row)
        return (NO_TAGS, why) if why else None
    if abstained:
        return ABSTAINED, f"{abstained}; rescan with a lower --abstain-below to tag it"
    if not opts.broad and (choice.album.source if album else row.genre_source) == BROAD:
        return ABSTAINED, "the head abstained and --no-broad leaves out the broad source's genre"
    if not row.genre and not album:
        return SKIPPED, "no genre (its analysis failed)"
    return None


def source_note(row: Track, album: albums.Album | None = None) -> str:
    """Where a written genre came from, with its score: "head 0.81" or "broad 0.99" (album mode: the album's)."""
    if album is not None:
        best = album.ranking[0][1] if album.ranking else None
        return f"{album.source} {best:.2f}" if album.source and best is not None else ""
    if row.genre_source and row.genre_score is not None:
        return f"{row.genre_source} {row.genre_score:.2f}"
    return ""
