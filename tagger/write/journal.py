"""Write the proposed genres into the files' own tags through a journal, safely, with preview and undo.

Library functions over the cache and tagger/media/tags.py (no click): :func:`apply`
is ``genretag tag`` and ``scan --write``, :func:`undo` is ``genretag undo``. The
contract (for users: docs/tagging.md "Safety", "Hard links", "Undo"):

* a file is written only while its size and mtime equal its ``tracks`` row;
  after the write the row gets the new stat, so a rescan sees no change;
* the field's snapshot is journalled before each write and confirmed after;
  a record left by ``kill -9`` is settled by the next run (:func:`settle`);
* undo restores the oldest open snapshot per field; a write after an outside
  change supersedes older records, so undo never undoes the user's change;
* hard-linked files are written in place, recoverably (:class:`WrittenInPlace`,
  :func:`_rejoin` for ``split``); Ctrl-C settles the file it stopped in.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from ..common.errors import GenretagError
from ..common.jsontext import b64, readable
from ..common.progress import Progress
from ..decide import albums
from ..defaults import IN_PLACE, SKIP, SPLIT
from ..media import tags
from ..media.tags import TagError
from ..store.cache import Cache
from ..store.track import TagWrite, Track
from .tagging import (ACTIONS, ERROR, RESTORED, SKIPPED, UNCHANGED, WOULD_RESTORE, WOULD_WRITE, WRITTEN, TagOptions,
                      album_plan, field_values, genre_tags, propose, source_note, unusable)

# Separators to ignore when asking "does the file already hold these genres?".
_COMPARE_SEPARATORS = ";/|,"


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
    album: str | None = None  # album mode: the album's name (tagger/decide/albums.py)
    note: str = ""  # album mode: outlier, or why the track keeps its own genre
    links: int = 0  # the file's number of names, when it has several (hard links)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "field": self.field, "current": self.current, "proposed": self.proposed,
                "action": self.action, "reason": self.reason,
                "path_bytes_b64": b64(self.path_bytes) if self.path_bytes else None,
                **({"album": self.album, "note": self.note} if self.album is not None else {}),
                **({"links": self.links} if self.links else {})}  # fmt: skip


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
    hard_linked: int = 0  # files with several names among the results
    hard_links: str = IN_PLACE  # tag: the --hard-links choice, for the summary
    cut_short: str | None = None  # the file Ctrl-C stopped the run in
    actions: Counter[str] = dataclasses.field(default_factory=Counter)
    sink: Callable[[FileResult], None] | None = dataclasses.field(default=None, repr=False)

    def add(self, result: FileResult) -> None:
        self.files += 1
        self.actions[result.action] += 1
        self.hard_linked += bool(result.links)
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

    def summary(self) -> dict[str, Any]:
        """What ``--json`` gives after the files: counts and the run's state (album mode: the albums)."""
        return {"counts": self.counts, "failed": self.failed, "hard_linked": self.hard_linked, "dry_run": self.dry_run,
                "interrupted": self.interrupted, "stale_temporaries": self.temporaries,
                **({"by": self.by, "albums": self.albums} if self.by != albums.TRACK else {})}  # fmt: skip


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
        self.roots = {os.path.realpath(r) for r in (given or cache.scan_roots())}
        self.follow_links = follow_links

    def refusal(self, real: str) -> str:
        """Why a file whose real path is ``real`` must not be written ("" when it may be).

        The path and its folders are looked up among the roots: a database
        whose scans named every file (the beets plugin's) has as many roots as files.
        """
        if self.follow_links:
            return ""
        path = real
        while True:
            if path in self.roots:
                return ""
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
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


class WrittenInPlace:
    """The hard-linked files a run wrote in place, by inode, so their other names are not written again.

    Another name of such a file already holds the new bytes: its row takes
    the file's new stat (a rescan sees no change), and it is not written a
    second time, which would make the last name's genre win for all.
    """

    def __init__(self) -> None:
        self.before: dict[tuple[int, int], tuple[str, int, float]] = {}

    def add(self, key: str, st: os.stat_result) -> None:
        self.before[(st.st_dev, st.st_ino)] = (key, st.st_size, st.st_mtime)

    def other_name(self, row: Track, st: os.stat_result) -> str | None:
        """The name this file was written under earlier in the run, if ``row`` describes it as it was then."""
        key, size, mtime = self.before.get((st.st_dev, st.st_ino), (None, None, None))
        return key if key not in (None, row.path) and (size, mtime) == (row.size, row.mtime) else None


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
    out = Outcome("tag", opts.dry_run, by=opts.by, sink=sink, hard_links=opts.hard_links)
    boundary, temps, in_place = Boundary(cache, paths, opts.follow_links), Temporaries(opts.dry_run), WrittenInPlace()
    try:
        for track, choice in _planned(cache, opts, paths, out):
            if only is None or track.path in only:
                out.cut_short = track.fs_path
                result = _tag_file(cache, track, opts, boundary, temps, choice, in_place)
                out.cut_short = None
                out.add(result)
                if progress is not None:
                    progress.advance(track.path, result.action)
    except KeyboardInterrupt:
        _interrupted(cache, out)
    out.temporaries = temps.found
    return out


def _interrupted(cache: Cache, out: Outcome) -> None:
    """Ctrl-C: settle the journal of the file it stopped in now, so it says what the file holds."""
    out.interrupted = True
    if out.cut_short is not None and not out.dry_run:
        try:
            settle(cache, [out.cut_short])
        except KeyboardInterrupt:  # a second Ctrl-C: the next run settles it
            pass


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
    for album in album_plan(cache, paths, opts.by, opts.from_tags, opts.broad):
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
              choice: albums.Choice | None = None, in_place: WrittenInPlace | None = None) -> FileResult:
    """One file's result; ``choice`` (album mode) says whether it takes its album's genre or its own."""
    key, path = row.path, row.fs_path
    album = choice is not None and choice.ranking is not None  # tagged from its album, not its own row
    names = 0  # the file's hard links, once it is open

    def result(current: list[str], proposed: list[str], action: str, reason: str = "", warn: bool = False) -> FileResult:
        return FileResult(key, current, proposed, action, reason, opts.field, warn, row.path_bytes,
                          choice.album.name if choice else None, choice.note if choice else "",
                          names if names > 1 else 0)

    why = unusable(row, opts, choice)
    if why is not None:
        return result([], [], *why)
    if not tags.supported(path):
        return result([], [], SKIPPED, "genretag cannot write tags in this format")
    proposed, action, reason = propose(row, opts, *((choice.ranking, choice.album.rule) if album else ()))
    try:
        tf, refusal = _open(path, boundary, temps)
        if tf is None:
            return result([], proposed, SKIPPED, refusal, warn=True)
        current, names = tf.read(opts.field), tf.stat.st_nlink
    except TagError as exc:
        return result([], proposed, ERROR, exc.reason)
    except OSError as exc:
        return result([], proposed, ERROR, exc.strerror or str(exc))
    except ValueError as exc:  # an invalid --field: the same for every file
        raise GenretagError(str(exc)) from None
    other = in_place.other_name(row, tf.stat) if in_place is not None and names > 1 else None
    if other is not None:  # another name of this file was written in place: this one already holds it
        cache.follow_file(key, tf.stat, tags.split_genres(current) if opts.field is None else None)
        row = dataclasses.replace(row, size=tf.stat.st_size, mtime=tf.stat.st_mtime)
    if action:
        return result(current, proposed, action, reason)
    new, action, reason = field_values(current, proposed, opts)
    if action:
        return result(current, new, action, reason)
    if other is not None:
        return result(current, new, SKIPPED, f"the same file as {readable(other)} (a hard link), written in this run")
    if (tf.stat.st_size, tf.stat.st_mtime) != (row.size, row.mtime):
        return result(current, new, SKIPPED, "changed since it was scanned (run `genretag scan` first)", warn=True)
    if names > 1 and opts.hard_links == SKIP:
        return result(current, new, SKIPPED, f"hard-linked ({names} names); not written (--hard-links skip)")
    source = source_note(row, choice.album if album else None)
    if opts.dry_run:
        return result(current, new, WOULD_WRITE, source)
    try:
        _write(cache, row, tf, current, new, opts)
    except TagError as exc:
        return result(current, new, ERROR, exc.reason)
    if in_place is not None and names > 1 and opts.hard_links == IN_PLACE:
        in_place.add(key, tf.stat)
    return result(current, new, WRITTEN, source)


def _write(cache: Cache, row: Track, tf: tags.TagFile, current: list[str], new: list[str],
           opts: TagOptions) -> None:
    """Record the old field, write the new one, confirm; the record is dropped if the write failed.

    A hard-linked file's record says how it was written, and names what the
    write sets aside (an in-place copy, a split's link) before it exists.
    """
    snap = tf.snapshot(opts.field)
    _retire_broken_chain(cache, row.path, tf.stat)
    linked = opts.hard_links if tf.stat.st_nlink > 1 else None
    history_id = cache.journal.record(row, snap, current, new, tf.stat, linked, tf.whole_tag(opts.id3v23))
    aside: list[bytes] = []

    def note(path: bytes) -> None:
        cache.journal.note_aside([history_id], path)
        aside.append(path)

    try:
        after = tf.write(new, field=opts.field, id3v23=opts.id3v23, separator=opts.separator, links=opts.hard_links,
                         note=note)
    except TagError:
        cache.journal.discard(history_id)  # tags.py left the file as it was
        tags.drop_link(aside[-1] if aside else None)
        raise
    genre_field = tags.split_genres(new) if snap["field"] is None else None
    cache.journal.confirm(history_id, after, row.path, genre_field)


def _retire_broken_chain(cache: Cache, key: str, before: os.stat_result) -> None:
    """Supersede earlier writes to a file that changed outside genretag since the last of them.

    Their snapshots predate the outside change; restoring one would undo it.
    """
    done = list(cache.journal.open_writes(key=key, stage="done"))
    if done and (done[-1].size, done[-1].mtime) != (before.st_size, before.st_mtime):
        cache.journal.mark_superseded([w.id for w in done])
        for w in done:
            tags.drop_link(w.aside)


def _folded(values: Iterable[str]) -> list[str]:
    return [v.casefold() for v in values]


def _holds(stored: list[str], values: list[str]) -> bool:
    """True when a field read back as ``stored`` carries ``values`` (joined by any separator or not)."""
    return _folded(tags.split_genres(stored, _COMPARE_SEPARATORS)) == _folded(
        tags.split_genres(values, _COMPARE_SEPARATORS)
    )


def settle(cache: Cache, paths: Sequence[str] = ()) -> None:
    """Resolve write records a killed run left unconfirmed, from what each file now holds.

    The field as snapshotted: the write never happened, forget it.  The
    written values: it happened, confirm it with the file's stat (and move
    the tracks row along if it still had the pre-write stat).  Anything
    else: the file changed since, so the record is superseded.  Undos cut
    short after :meth:`JournalStore.start_undo` are settled the same way: the field
    holds the snapshot, so the restore landed and is marked; else it never
    happened and the note is dropped.  Unreadable files are left for a later run.
    """
    _settle_undos(cache, paths)
    for write in list(cache.journal.open_writes(paths, stage="in_flight")):
        snap = write.snapshot or {}
        try:
            tags.finish_aside(os.path.realpath(write.fs_path), write.aside)  # an in-place copy cut short
            tf = tags.TagFile(write.fs_path)
            if tf.snapshot(snap["field"]) == snap:
                cache.journal.discard(write.id)
                tags.drop_link(write.aside)
                continue
            landed = _holds(tf.read(snap["field"]), write.written or [])
            after = tf.stat
        except (TagError, OSError):
            continue
        if not landed:
            cache.journal.mark_superseded([write.id])
            tags.drop_link(write.aside)
            continue
        track = cache.lookup([write.path]).get(write.path)
        follow = track is not None and (track.size, track.mtime) == (write.size, write.mtime)
        cache.journal.confirm(write.id, after, write.path if follow else None)


def _settle_undos(cache: Cache, paths: Sequence[str]) -> None:
    started: dict[tuple[str, str | None], list[TagWrite]] = {}
    for write in cache.journal.open_writes(paths, stage="undoing"):
        started.setdefault((write.path, write.field), []).append(write)
    for writes in started.values():
        first, newest, ids = writes[0], writes[-1], [w.id for w in writes]
        snap = first.snapshot or {}
        try:
            tags.finish_aside(os.path.realpath(first.fs_path), first.aside)
            tf = tags.TagFile(first.fs_path)
            landed, after = tf.snapshot(snap["field"]) == snap, tf.stat
        except (TagError, OSError):
            continue
        if not landed:
            cache.journal.cancel_undo(ids)
            continue
        track = cache.lookup([first.path]).get(first.path)
        follow = track is not None and (track.size, track.mtime) == (newest.size, newest.mtime)
        cache.journal.mark_undone(ids, first.path if follow else None, after)


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
        for key, writes in groupby(cache.journal.open_writes(paths), key=lambda w: w.path):
            writes_list = list(writes)
            out.cut_short = writes_list[0].fs_path
            for result in _undo_file(cache, writes_list, dry_run, force, boundary, temps):
                out.add(result)
                if progress is not None:
                    progress.advance(key, result.action)
            out.cut_short = None
    except KeyboardInterrupt:
        _interrupted(cache, out)
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
    ordered = sorted(groups.values(), key=lambda g: -(g[-1].id or 0))
    link = _old_inode(tf, writes, ordered) if not changed else None
    results: list[FileResult] = []
    for group in ordered:
        first, ids = group[0], [w.id for w in group]
        snap = first.snapshot or {}
        result = FileResult(key, current[first.field], first.previous or [], RESTORED, field=first.field,
                            path_bytes=raw, links=before.st_nlink if before.st_nlink > 1 else 0)
        results.append(result)
        if changed and not force:
            result.action, result.reason, result.warn = SKIPPED, changed, True
            continue
        try:
            if link is not None:  # a split write: the old inode goes back, with its names and every field
                result.action = WOULD_RESTORE if dry_run else RESTORED
                if not dry_run and group is ordered[-1]:
                    _rejoin(cache, writes, ordered, link, tf.real, key if follow else None)
                continue
            if tf is None:  # the previous field's restore rewrote the file: parse it again
                tf, refusal = _open(path, boundary, temps)
                if tf is None:
                    result.action, result.reason, result.warn = SKIPPED, refusal, True
                    break
            if tf.snapshot(first.field) == snap:
                result.action = UNCHANGED
                if not dry_run:
                    cache.journal.mark_undone(ids)
            elif dry_run:
                result.action = WOULD_RESTORE
            else:  # noted before the restore, confirmed after: a cut-short undo is settled by the next run
                cache.journal.start_undo(ids)
                # As genretag left the file, a tag it converted goes back whole, byte for byte.
                whole = cache.journal.whole_tag(first.id) if not changed and first.id is not None else None
                try:
                    after = tf.restore(snap, whole=whole, note=lambda aside: cache.journal.note_aside(ids, aside))
                    tf = None
                except TagError:
                    cache.journal.cancel_undo(ids)  # tags.py left the file as it was
                    raise
                restored = tags.split_genres(first.previous or []) if first.field is None else None
                cache.journal.mark_undone(ids, key if follow else None, after, restored)
        except (TagError, OSError) as exc:
            result.action, result.reason = ERROR, exc.reason if isinstance(exc, TagError) else _os_text(exc)
            break
    if not dry_run and all(r.action in (RESTORED, UNCHANGED) for r in results):
        for w in writes:
            tags.drop_link(w.aside)  # undone without it (or it is back in place): no longer needed
    return results


def _os_text(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _old_inode(tf: tags.TagFile, writes: list[TagWrite], groups: list[list[TagWrite]]) -> str | None:
    """The link a split write kept to the file's old inode, if it still holds every field as first recorded."""
    first = writes[0]
    name = os.fsdecode(first.aside) if first.hard_links == SPLIT and first.aside else ""
    if not name.endswith(tags.LINK_SUFFIX) or not os.path.isfile(name) or os.path.islink(name):
        return None
    try:
        old = tags.TagFile(name, like=tf.path)
        same = all(old.snapshot(g[0].field) == (g[0].snapshot or {}) for g in groups)
    except (TagError, OSError):
        return None
    return name if same and os.path.dirname(name) == os.path.dirname(tf.real) else None


def _rejoin(cache: Cache, writes: list[TagWrite], groups: list[list[TagWrite]], link: str, real: str,
            track: str | None) -> None:
    """Put a split file's old inode back under its name (``real``): its bytes and hard links, as before the write."""
    cache.journal.start_undo([w.id for w in writes])  # settled like any undo cut short: the field holds the snapshot
    os.replace(link, real)
    tags.sync_folder(real)
    after = os.stat(real)
    for g in groups:
        restored = tags.split_genres(g[0].previous or []) if g[0].field is None else None
        cache.journal.mark_undone([w.id for w in g], track, after, restored)
