"""Write the cached genres into the files' own tags, safely, with preview and undo.

Library functions over the cache and tagger/tags.py (no click): :func:`apply`
is ``genretag tag`` and ``scan --write``, :func:`undo` is ``genretag undo``.
docs/tagging.md describes the behaviour for users; the rules that keep
files safe are:

* A file is written only while its cached result is current: its size and
  mtime must still equal its ``tracks`` row (else the prediction is for
  other bytes and the file is skipped with a warning).  After the write the
  row gets the file's new stat, so a rescan sees genretag's own write as
  no change and does not re-analyse.
* Before each write the field's exact snapshot is stored in ``tag_history``;
  the record is confirmed after the write, or dropped when it failed.  A
  record left unconfirmed by ``kill -9`` is settled by the next run from
  what the file holds (:func:`settle`).
* Undo restores, per file and field, the *oldest* open snapshot: the state
  before a chain of genretag writes with no outside change between them.
  A write made after an outside change retires the older records
  (``superseded_at``), so undo never brings back a genre the user replaced.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

from . import albums, multilabel, tags, vocabulary
from .cache import Cache, path_key
from .errors import FileError, GenretagError
from .jsontext import b64, readable
from .progress import Progress
from .tags import TagError
from .track import TagWrite, Track

#: --min-confidence of --from-tags when none is given.  Tag probabilities are
#: independent sigmoids (a track can be 0.6 rock and 0.5 indie), not shares of
#: one softmax, so 0.3 already says "this tag applies" for most tag models.
TAGS_MIN_CONFIDENCE = 0.3

# What happened to a file, as shown in the table and counted in the summary.
WRITTEN, WOULD_WRITE, RESTORED, WOULD_RESTORE = "written", "would write", "restored", "would restore"
KEPT, BELOW, UNCHANGED, SKIPPED, ERROR = "kept existing", "below threshold", "unchanged", "skipped", "error"
ABSTAINED, NO_TAGS = "abstained", "no tags"
ACTIONS = (WRITTEN, WOULD_WRITE, RESTORED, WOULD_RESTORE, UNCHANGED, KEPT, BELOW, ABSTAINED, NO_TAGS, SKIPPED, ERROR)

# Separators to ignore when asking "does the file already hold these genres?".
_COMPARE_SEPARATORS = ";/|,"


@dataclass(frozen=True)
class TagOptions:
    """Which genres to write, where, and what to do with genres already there."""

    dry_run: bool = False
    overwrite: bool = False
    merge: bool = False
    top: int | None = None  # None: 1, or every genre reaching its threshold with a multi-label model
    min_confidence: float | None = None  # None: 0, or TAGS_MIN_CONFIDENCE with from_tags
    from_tags: bool = False  # write the backend's genre-like tags instead of its genre
    field: str | None = None  # None: each format's genre field
    id3v23: bool = False
    separator: str = "; "  # only ID3v2.3 has no multi-value form
    genre_map: Mapping[str, str | None] = dataclasses.field(default_factory=dict)  # see load_genre_map
    follow_links: bool = False  # write through links leading outside the roots (see Boundary)
    with_parents: bool = False  # write each genre's broader genres from the tree first ("Rock; Alternative Rock")
    by: str = "track"  # "album" or "folder": one genre per album (tagger/albums.py)
    keep_outliers: bool = False  # album mode: a track that disagrees strongly keeps its own genre

    def __post_init__(self) -> None:
        if self.overwrite and self.merge:
            raise ValueError("--overwrite and --merge exclude each other")
        if self.min_confidence is None:
            object.__setattr__(self, "min_confidence", TAGS_MIN_CONFIDENCE if self.from_tags else 0.0)
        if self.top is not None and self.top < 1:
            raise ValueError("--top must be at least 1")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError("--min-confidence must be between 0 and 1")
        if not self.separator or "\0" in self.separator:
            raise ValueError("--separator must be a non-empty string without NUL")
        if self.by not in albums.MODES:
            raise ValueError(f"--by must be one of {', '.join(albums.MODES)}")
        if self.keep_outliers and self.by == albums.TRACK:
            raise ValueError("--keep-outliers goes with --by album or --by folder")


# ---------------------------------------------------------------------------
# Names and proposals: pure functions of a track record and the options.


def load_genre_map(path: str | os.PathLike[str]) -> dict[str, str | None]:
    """Read a genre map: a JSON object, or lines ``hiphop = Hip-Hop`` (``disco =`` drops the label).

    Keys are stored case-folded; blank lines and lines starting with ``#``
    are ignored.  A label mapped to nothing (or JSON null) is never written.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FileError(path, f"cannot read the genre map: {exc}") from None
    items: list[tuple[Any, Any]] = []
    if text.lstrip().startswith("{"):
        try:
            items = list(json.loads(text).items())
        except ValueError as exc:
            raise FileError(path, f"genre map is not valid JSON: {exc}") from None
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                label, eq, name = line.partition("=")
                if not eq or not label.strip():
                    raise FileError(path, f"line {n}: expected 'label = Name', or 'label =' to drop it")
                items.append((label, name))
    out: dict[str, str | None] = {}
    for label, name in items:
        if not isinstance(name, (str, type(None))) or "\0" in (name or ""):
            raise FileError(path, f"genre map value for {label!r} must be a name, empty or null")
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


def propose(row: Track, opts: TagOptions,
            ranking: list[tuple[str, float]] | None = None) -> tuple[list[str], str | None, str]:
    """The names to write for a row: (names, None, "") or ([], action, reason) when there are none.

    The top ``opts.top`` labels are taken first and only then mapped, so a
    dropped label is not replaced by a less likely one; each label must
    reach ``min_confidence`` on its own.  ``ranking`` (album mode: the
    album's) replaces the row's own.  A multi-label model's row (or album)
    gets every genre reaching its own threshold (tagger.multilabel), up to ``top``.
    """
    own = ranked(row, opts.from_tags) if ranking is None else ranking
    thresholds = None if opts.from_tags else multilabel.model_thresholds(row.backend, row.model_id)
    if thresholds is not None:  # a personal multi-label model (genretag learn)
        chosen, why = multilabel.decide(dict(own), thresholds, override=row.abstain_threshold)
        if not chosen:
            return [], ABSTAINED, why or ""
        best = chosen[: opts.top]
    else:
        best = own[: opts.top or 1]
    if not best or best[0][1] < opts.min_confidence:
        conf = best[0][1] if best else 0.0
        return [], BELOW, f"confidence {conf:.2f} < {opts.min_confidence:.2f}"
    names: list[str] = []
    for label, p in best:
        name = display_name(label, opts.genre_map)
        if p < opts.min_confidence or not name:
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
    from .backends import get_backend

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


def decide(current: list[str], proposed: list[str], opts: TagOptions) -> tuple[list[str], str | None, str]:
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


def _folded(values: Iterable[str]) -> list[str]:
    return [v.casefold() for v in values]


def _holds(stored: list[str], values: list[str]) -> bool:
    """True when a field read back as ``stored`` carries ``values`` (joined by any separator or not)."""
    return _folded(tags.split_genres(stored, _COMPARE_SEPARATORS)) == _folded(
        tags.split_genres(values, _COMPARE_SEPARATORS)
    )


# ---------------------------------------------------------------------------
# Results.


@dataclass
class FileResult:
    """One file's (one field's) line in the report."""

    path: str
    current: list[str]
    proposed: list[str]
    action: str
    reason: str = ""
    field: str | None = None
    warn: bool = False  # worth a warning line as well as the table row
    path_bytes: bytes | None = None  # the exact name when it is not UTF-8 (``path`` shows it escaped)
    album: str | None = None  # album mode: the album's name (tagger/albums.py)
    note: str = ""  # album mode: outlier, or why the track keeps its own genre

    @property
    def status(self) -> str:
        status = f"{self.action}: {self.reason}" if self.reason else self.action
        return f"{status} ({self.note})" if self.note else status

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "field": self.field, "current": self.current, "proposed": self.proposed,
                "action": self.action, "reason": self.reason,
                "path_bytes_b64": b64(self.path_bytes) if self.path_bytes else None,
                **({"album": self.album, "note": self.note} if self.album is not None else {})}  # fmt: skip


def result_columns(kind: str, by: str = albums.TRACK) -> tuple[list[str], Callable[[FileResult], tuple[str, ...]]]:
    """The table of a ``kind`` ("tag" or "undo") run: its headers, and one result's row under them."""
    album = by != albums.TRACK

    def cells(r: FileResult) -> tuple[str, ...]:
        return (r.path, *([r.album or ""] if album else []), "; ".join(r.current), "; ".join(r.proposed), r.status)

    return ["file", *(["album"] if album else []), "current", "proposed" if kind == "tag" else "restored",
            "action"], cells


@dataclass
class AlbumTally:
    """Album mode's counts for the summary line, kept as albums go by (not the albums themselves)."""

    averaged: int = 0
    abstained: int = 0
    outliers: int = 0
    track_mode: Counter[str] = dataclasses.field(default_factory=Counter)  # why -> files kept in track mode

    def add(self, album: albums.Album) -> None:
        if album.not_averaged:
            self.track_mode[album.not_averaged] += len(album.rows)
            return
        self.averaged += 1
        self.abstained += bool(album.abstained)
        self.outliers += len(album.outliers)

    def line(self) -> str:
        """"3 album(s), 1 abstained, 2 outlier(s); 4 file(s) in track mode (compilation 3, ...)", for summaries."""
        line = f"{self.averaged} album(s)"
        line += f", {self.abstained} abstained" if self.abstained else ""
        line += f", {self.outliers} outlier track(s)" if self.outliers else ""
        if self.track_mode:
            line += (f"; {sum(self.track_mode.values())} file(s) in track mode ("
                     + ", ".join(f"{w}: {n}" for w, n in self.track_mode.items()) + ")")
        return line


@dataclass
class Outcome:
    """What a tag or undo run did: counts, not files.

    Each file's result goes to ``sink`` as soon as it is known (the command
    prints it there and then) and only its action is counted here, so a run
    over 500,000 files holds no list of them.
    """

    kind: str  # "tag" or "undo"
    dry_run: bool = False
    interrupted: bool = False
    temporaries: list[str] = dataclasses.field(default_factory=list)  # stale ones removed (dry run: found)
    by: str = "track"  # album mode: "album" or "folder"
    albums: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # album mode: each album's as_dict()
    tally: AlbumTally = dataclasses.field(default_factory=AlbumTally)
    files: int = 0
    actions: Counter[str] = dataclasses.field(default_factory=Counter)
    sink: Callable[[FileResult], None] | None = dataclasses.field(default=None, repr=False)

    def add(self, result: FileResult) -> None:
        self.files += 1
        self.actions[result.action] += 1
        if self.sink is not None:
            self.sink(result)

    def add_album(self, album: albums.Album) -> None:
        self.albums.append(album.as_dict())
        self.tally.add(album)

    @property
    def counts(self) -> dict[str, int]:
        return {a: self.actions[a] for a in ACTIONS if self.actions[a]}

    @property
    def failed(self) -> int:
        return self.counts.get(ERROR, 0)

    def warnings(self) -> list[str]:
        """The run's own warnings (each file's come with its result: FileResult.warn)."""
        done = "found (dry run: not removed)" if self.dry_run else "removed"
        return [f"{readable(t)}: stale temporary file of an interrupted genretag run, {done}" for t in self.temporaries]

    def summary_line(self) -> str:
        if not self.files:
            return ("nothing to tag: no cached results here (run `genretag scan` first)" if self.kind == "tag"
                    else "nothing to undo: genretag has not written genres here")  # fmt: skip
        line = f"{self.files} file(s): " + ", ".join(f"{n} {a}" for a, n in self.counts.items())
        if self.counts.get(ABSTAINED):
            line += (f"; {self.counts[ABSTAINED]} skipped as abstained (the model was too uncertain; "
                     "`genretag show --status abstained`)")
        if self.by != albums.TRACK:
            line += "; " + self.tally.line()
        if self.dry_run:
            line += " (dry run: no file was changed)"
        if self.interrupted:
            line += "; interrupted, run it again to finish"
        return line

    def summary(self) -> dict[str, Any]:
        """What ``--json`` gives after the files: counts and the run's state (album mode: the albums)."""
        return {"counts": self.counts, "failed": self.failed, "dry_run": self.dry_run,
                "interrupted": self.interrupted, "stale_temporaries": self.temporaries,
                **({"by": self.by, "albums": self.albums} if self.by != albums.TRACK else {})}  # fmt: skip


class CoveredFiles:
    """Wraps a scan's progress to remember the files the scan saw, for ``scan --write``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.keys: set[str] = set()

    def set_total(self, total: int) -> None:
        self.inner.set_total(total)

    def advance(self, path: str, status: str) -> None:
        self.keys.add(path_key(path)[0])
        self.inner.advance(path, status)


# ---------------------------------------------------------------------------
# Tagging.


class Boundary:
    """Where a run may write: under the real paths of its roots, unless links may be followed.

    The roots are the paths given to ``tag``/``undo`` (``scan --write``: the
    scan's), else every root a scan of this database was run on.  A file is
    written at its real path, so a symlinked file or folder inside a root
    whose target lies outside every root is refused: someone who can place
    a link in a shared folder must not get another user's ``tag`` to rewrite
    their files.  ``--follow-links`` lifts this.
    """

    def __init__(self, cache: Cache, paths: Sequence[str], follow_links: bool) -> None:
        given = [os.path.abspath(os.fsdecode(p)) for p in paths]
        self.named = "the paths given" if given else "the folders scanned into this database"
        self.roots = [os.path.realpath(r) for r in (given or cache.scan_roots())]
        self.follow_links = follow_links

    def refusal(self, real: str) -> str:
        """Why a file whose real path is ``real`` must not be written ("" when it may be)."""
        if self.follow_links:
            return ""
        for root in self.roots:
            if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
                return ""
        return f"a link leading outside {self.named} (to {real}); not written (--follow-links writes through links)"


class Temporaries:
    """Removes, once per folder a run writes in, the temporaries a killed genretag left there."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run
        self.seen: set[str] = set()
        self.found: list[str] = []

    def visit(self, real: str) -> None:
        folder = os.path.dirname(real)
        if folder not in self.seen:
            self.seen.add(folder)
            self.found += tags.remove_stale_temporaries(folder, dry_run=self.dry_run)


def apply(cache: Cache, opts: TagOptions, paths: Sequence[str] = (), *, only: Collection[str] | None = None,
          progress: Progress | None = None, sink: Callable[[FileResult], None] | None = None) -> Outcome:
    """Write the cached genres of the files under ``paths`` (all when empty) into their tags.

    ``only`` limits the run to these path keys (``scan --write``: the files
    that scan saw).  Each file's result goes to ``sink`` as soon as it is
    known (the outcome only counts them).  Per-file problems become
    ``error`` results and the run goes on; Ctrl-C stops between files with
    ``interrupted`` set.
    """
    cache.lock_tag_writes()
    settle(cache, paths)
    genre_tags.cache_clear()  # backends may have been (un)registered since the last run
    multilabel.model_thresholds.cache_clear()  # and models trained
    out = Outcome("tag", opts.dry_run, by=opts.by, sink=sink)
    boundary, temps = Boundary(cache, paths, opts.follow_links), Temporaries(opts.dry_run)
    try:
        for track, choice in _planned(cache, opts, paths, out):
            if only is None or track.path in only:
                result = _tag_file(cache, track, opts, boundary, temps, choice)
                out.add(result)
                if progress is not None:
                    progress.advance(track.path, result.action)
    except KeyboardInterrupt:
        out.interrupted = True
    out.temporaries = temps.found
    return out


def album_plan(cache: Cache, paths: Sequence[str], by: str, from_tags: bool = False) -> Iterator[albums.Album]:
    """The albums of the files under ``paths``, decided one by one (for ``tag`` and ``show --by album``).

    The records come ordered by album (Cache.records_grouped), so only one
    album's tracks are held at a time (tagger.albums.plan_sorted).
    """
    pairs = cache.records_grouped(paths, lambda track: albums.block(track, by), lambda ts: albums.album_keys(ts, by))
    return albums.plan_sorted(pairs, by, lambda track: ranked(track, from_tags), roots=cache.scan_roots(),
                              from_tags=from_tags)


def _planned(cache: Cache, opts: TagOptions, paths: Sequence[str],
             out: Outcome) -> Iterable[tuple[Track, albums.Choice | None]]:
    """Each track with what it is tagged from: by path in track mode, album by album otherwise.

    An album's mean covers its tracks under ``paths``, whichever of them a
    ``scan --write`` then writes.
    """
    if opts.by == albums.TRACK:
        for track in cache.records(paths):
            yield track, None
        return
    for album in album_plan(cache, paths, opts.by, opts.from_tags):
        out.add_album(album)
        for track in album.rows:
            yield track, albums.choice(album, track, opts.keep_outliers)


def _open(path: str, boundary: Boundary, temps: Temporaries) -> tuple[tags.TagFile | None, str]:
    """Parse a file's tags once, if the boundary allows writing it: (file, "") or (None, refusal)."""
    refusal = boundary.refusal(os.path.realpath(path))
    if refusal:
        return None, refusal
    tf = tags.TagFile(path)
    refusal = boundary.refusal(tf.real)  # the path it will write, should a link have changed meanwhile
    if not refusal:
        temps.visit(tf.real)
    return (None, refusal) if refusal else (tf, "")


def _tag_file(cache: Cache, row: Track, opts: TagOptions, boundary: Boundary, temps: Temporaries,
              choice: albums.Choice | None = None) -> FileResult:
    """One file's result; ``choice`` (album mode) says whether it takes its album's genre or its own."""
    key, path = row.path, row.fs_path
    album = choice is not None and choice.ranking is not None  # tagged from its album, not its own row

    def result(current: list[str], proposed: list[str], action: str, reason: str = "", warn: bool = False) -> FileResult:
        return FileResult(key, current, proposed, action, reason, opts.field, warn, row.path_bytes,
                          choice.album.name if choice else None, choice.note if choice else "")

    if row.missing:
        return result([], [], SKIPPED, "missing since the last scan")
    if row.status != "ok":
        return result([], [], SKIPPED, "no genre (its analysis failed)")
    abstained = choice.abstained if album else row.abstained
    if opts.from_tags:  # tags have their own threshold: abstaining on the genre does not apply
        why = _why_no_tags(row)
        if why:
            return result([], [], NO_TAGS, why)
    elif abstained:
        return result([], [], ABSTAINED, f"{abstained}; rescan with a lower --min-confidence to tag it")
    elif not row.genre and not album:
        return result([], [], SKIPPED, "no genre (its analysis failed)")
    if not tags.supported(path):
        return result([], [], SKIPPED, "genretag cannot write tags in this format")
    proposed, action, reason = propose(row, opts, choice.ranking if album else None)
    try:
        tf, refusal = _open(path, boundary, temps)
        if tf is None:
            return result([], proposed, SKIPPED, refusal, warn=True)
        current = tf.read(opts.field)
    except TagError as exc:
        return result([], proposed, ERROR, exc.reason)
    except OSError as exc:
        return result([], proposed, ERROR, exc.strerror or str(exc))
    except ValueError as exc:  # an invalid --field: the same for every file
        raise GenretagError(str(exc)) from None
    if action:
        return result(current, proposed, action, reason)
    new, action, reason = decide(current, proposed, opts)
    if action:
        return result(current, new, action, reason)
    if (tf.stat.st_size, tf.stat.st_mtime) != (row.size, row.mtime):
        return result(current, new, SKIPPED, "changed since it was scanned (run `genretag scan` first)", warn=True)
    if opts.dry_run:
        return result(current, new, WOULD_WRITE)
    try:
        _write(cache, row, tf, current, new, opts)
    except TagError as exc:
        return result(current, new, ERROR, exc.reason)
    return result(current, new, WRITTEN)


def _write(cache: Cache, row: Track, tf: tags.TagFile, current: list[str], new: list[str],
           opts: TagOptions) -> None:
    """Record the old field, write the new one, confirm; the record is dropped if the write failed."""
    snap = tf.snapshot(opts.field)
    _retire_broken_chain(cache, row.path, tf.stat)
    history_id = cache.record_tag_write(row, snap, current, new, tf.stat)
    try:
        after = tf.write(new, field=opts.field, id3v23=opts.id3v23, separator=opts.separator)
    except TagError:
        cache.discard_tag_write(history_id)  # tags.py left the file as it was
        raise
    genre_field = tags.split_genres(new) if snap["field"] is None else None
    cache.confirm_tag_write(history_id, after, row.path, genre_field)


def _retire_broken_chain(cache: Cache, key: str, before: os.stat_result) -> None:
    """Supersede earlier writes to a file that changed outside genretag since the last of them.

    Their snapshots predate the outside change; restoring one would undo it.
    """
    done = list(cache.open_writes(key=key, stage="done"))
    if done and (done[-1].size, done[-1].mtime) != (before.st_size, before.st_mtime):
        cache.mark_superseded([w.id for w in done])


def settle(cache: Cache, paths: Sequence[str] = ()) -> None:
    """Resolve write records a killed run left unconfirmed, from what each file now holds.

    The field as snapshotted: the write never happened, forget it.  The
    written values: it happened, confirm it with the file's stat (and move
    the tracks row along if it still had the pre-write stat).  Anything
    else: the file changed since, so the record is superseded.  Undos cut
    short after :meth:`Cache.start_undo` are settled the same way: the field
    holds the snapshot, so the restore landed and is marked; else it never
    happened and the note is dropped.  Unreadable files are left for a later run.
    """
    _settle_undos(cache, paths)
    for write in list(cache.open_writes(paths, stage="in_flight")):
        snap = write.snapshot or {}
        try:
            tf = tags.TagFile(write.fs_path)
            if tf.snapshot(snap["field"]) == snap:
                cache.discard_tag_write(write.id)
                continue
            landed = _holds(tf.read(snap["field"]), write.written or [])
            after = tf.stat
        except (TagError, OSError):
            continue
        if not landed:
            cache.mark_superseded([write.id])
            continue
        track = cache.lookup([write.path]).get(write.path)
        follow = track is not None and (track.size, track.mtime) == (write.size, write.mtime)
        cache.confirm_tag_write(write.id, after, write.path if follow else None)


def _settle_undos(cache: Cache, paths: Sequence[str]) -> None:
    started: dict[tuple[str, str | None], list[TagWrite]] = {}
    for write in cache.open_writes(paths, stage="undoing"):
        started.setdefault((write.path, write.field), []).append(write)
    for writes in started.values():
        first, newest, ids = writes[0], writes[-1], [w.id for w in writes]
        snap = first.snapshot or {}
        try:
            tf = tags.TagFile(first.fs_path)
            landed, after = tf.snapshot(snap["field"]) == snap, tf.stat
        except (TagError, OSError):
            continue
        if not landed:
            cache.cancel_undo(ids)
            continue
        track = cache.lookup([first.path]).get(first.path)
        follow = track is not None and (track.size, track.mtime) == (newest.size, newest.mtime)
        cache.mark_undone(ids, first.path if follow else None, after)


# ---------------------------------------------------------------------------
# Undo.


def undo(cache: Cache, paths: Sequence[str] = (), *, dry_run: bool = False, force: bool = False,
         follow_links: bool = False, progress: Progress | None = None,
         sink: Callable[[FileResult], None] | None = None) -> Outcome:
    """Put back the genre fields genretag wrote under ``paths`` (everything when empty).

    Each file and field gets the values it had before genretag's first
    write still open, exactly (including "no such field").  A file changed
    since genretag's last write to it is skipped unless ``force``; one
    outside the roots is skipped unless ``follow_links`` (see Boundary).
    Each result goes to ``sink`` as it is known, as in :func:`apply`.
    """
    cache.lock_tag_writes()
    settle(cache, paths)
    out = Outcome("undo", dry_run, sink=sink)
    boundary, temps = Boundary(cache, paths, follow_links), Temporaries(dry_run)
    try:
        for key, writes in groupby(cache.open_writes(paths), key=lambda w: w.path):
            for result in _undo_file(cache, list(writes), dry_run, force, boundary, temps):
                out.add(result)
                if progress is not None:
                    progress.advance(key, result.action)
    except KeyboardInterrupt:
        out.interrupted = True
    out.temporaries = temps.found
    return out


def _undo_file(cache: Cache, writes: list[TagWrite], dry_run: bool, force: bool, boundary: Boundary,
               temps: Temporaries) -> list[FileResult]:
    """Restore every field genretag wrote in one file, newest field first; writes are oldest first."""
    key, path, newest, raw = writes[0].path, writes[0].fs_path, writes[-1], writes[0].path_bytes
    groups: dict[str | None, list[TagWrite]] = {}
    for w in writes:
        groups.setdefault(w.field, []).append(w)
    try:  # read first: tags.py words a vanished or unreadable file well
        tf, refusal = _open(path, boundary, temps)
        if tf is None:
            return [FileResult(key, [], [], SKIPPED, refusal, newest.field, True, raw)]
        current = {name: tf.read(name) for name in groups}
    except (TagError, OSError) as exc:
        reason = exc.reason if isinstance(exc, TagError) else exc.strerror or str(exc)
        return [FileResult(key, [], [], ERROR, reason, newest.field, path_bytes=raw)]
    before = tf.stat
    changed = ""
    if newest.written_at is None:
        changed = "a write cut short could not be checked (use --force to restore anyway)"
    elif (before.st_size, before.st_mtime) != (newest.size, newest.mtime):
        changed = "changed since genretag wrote it (use --force to restore anyway)"
    track = cache.lookup([key]).get(key)
    follow = track is not None and (track.size, track.mtime) == (before.st_size, before.st_mtime)
    results: list[FileResult] = []
    for group in sorted(groups.values(), key=lambda g: -(g[-1].id or 0)):
        first, ids = group[0], [w.id for w in group]
        snap = first.snapshot or {}
        result = FileResult(key, current[first.field], first.previous or [], RESTORED, field=first.field,
                            path_bytes=raw)
        results.append(result)
        if changed and not force:
            result.action, result.reason, result.warn = SKIPPED, changed, True
            continue
        try:
            if tf is None:  # the previous field's restore rewrote the file: parse it again
                tf, refusal = _open(path, boundary, temps)
                if tf is None:
                    result.action, result.reason, result.warn = SKIPPED, refusal, True
                    break
            if tf.snapshot(first.field) == snap:
                result.action = UNCHANGED
                if not dry_run:
                    cache.mark_undone(ids)
            elif dry_run:
                result.action = WOULD_RESTORE
            else:  # noted before the restore, confirmed after: a cut-short undo is settled by the next run
                cache.start_undo(ids)
                try:
                    after, tf = tf.restore(snap), None
                except TagError:
                    cache.cancel_undo(ids)  # tags.py left the file as it was
                    raise
                restored = tags.split_genres(first.previous or []) if first.field is None else None
                cache.mark_undone(ids, key if follow else None, after, restored)
        except TagError as exc:
            result.action, result.reason = ERROR, exc.reason
            break
    return results
