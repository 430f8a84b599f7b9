"""genretag inside beets: ``beet genretag [QUERY]`` sets beets' genres by listening (docs/beets.md).

A thin adapter: the matching items' files go through genretag's own scan
(tagger.run.job.run_job: same cache, workers, backends and abstention), and
each item's genres are decided by the code behind ``genretag tag``
(tagger.write.tagging.unusable, propose, field_values; tagger.decide.albums for album mode,
on beets' own albums).  beets owns the result: the genres are stored in
its database and written to files only through ``item.try_write()``, when
the ``write`` option or beets' ``import.write`` says so.  What an item held
before is kept in flexible attributes, so ``beet genretag --undo`` can put
it back.

genretag itself never imports this module or beets; it is found by beets
in the ``beetsplug`` namespace once ``genretag`` is in beets' ``plugins:``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import beets

from tagger.common.errors import GenretagError
from tagger.decide import albums
from tagger.defaults import (ALBUM, DEFAULT_ABSTAIN_BELOW, DEFAULT_BACKEND, DEFAULT_BROAD, DEFAULT_BY, DEFAULT_EXCERPT,
                             DEFAULT_JOBS, DEFAULT_SEPARATOR, TRACK)
from tagger.store.cache import Cache, path_key
from tagger.store.track import Track
from tagger.write import tagging

#: The oldest beets this plugin was run against (docs/beets.md says how); setup.cfg's ``beets`` extra agrees.
MIN_BEETS = (2, 0)


def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def too_old(version: str) -> str | None:
    """The one line a beets older than MIN_BEETS gets (None when it is recent enough)."""
    if _version(version) >= MIN_BEETS:
        return None
    need = ".".join(map(str, MIN_BEETS))
    return (f"genretag: the beets plugin needs beets {need} or newer, and this is beets {version}; "
            f"upgrade with: pip install -U 'genretag[beets]'")


_TOO_OLD = too_old(getattr(beets, "__version__", "0"))

if _TOO_OLD is None:
    from beets import ui
    from beets.dbcore import types as dbtypes
    from beets.plugins import BeetsPlugin
else:  # one line, and no plugin class: beets then loads nothing from this module
    print(_TOO_OLD, file=sys.stderr)


# ---------------------------------------------------------------------------
# The genretag: section of beets' config.yaml.

BY = (TRACK, ALBUM)
EXISTING = ("keep", "merge", "overwrite")
SOURCES = ("genretag", "empty")

#: Flexible attributes this plugin sets on items.
CONFIDENCE, MODEL, ABSTAINED = "genretag_confidence", "genretag_model", "genretag_abstained"
PREVIOUS, WRITTEN = "genretag_previous", "genretag_written"  # for --undo: JSON lists of genres


def _number(lo: float, hi: float | None = None, *, whole: bool = False, null: bool = False) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value is None and null:
            return ""
        kinds = (int,) if whole else (int, float)
        what = ("a whole number" if whole else "a number") + f" from {lo:g}" + ("" if hi is None else f" to {hi:g}")
        if isinstance(value, bool) or not isinstance(value, kinds) or value < lo or (hi is not None and value > hi):
            return f"expected {what}{' or null' if null else ''}"
        return ""

    return check


def _choice(options: Sequence[str]) -> Callable[[Any], str]:
    return lambda value: "" if value in options else f"expected one of {', '.join(options)}"


def _flag(*, null: bool = False) -> Callable[[Any], str]:
    return lambda value: "" if isinstance(value, bool) or (null and value is None) else (
        "expected yes or no" + (" (or null: beets' import.write)" if null else ""))


def _text(*, null: bool = False) -> Callable[[Any], str]:
    return lambda value: "" if (isinstance(value, str) and value) or (null and value is None) else (
        "expected text" + (" or null" if null else ""))


#: key -> (default, check returning why a value is wrong or "").  docs/beets.md lists them for users.
OPTIONS: dict[str, tuple[Any, Callable[[Any], str]]] = {
    "auto": (False, _flag()),  # analyse on `beet import`: off by default, listening takes a while
    "backend": (DEFAULT_BACKEND, _text()),  # genretag's own default
    "db": (None, _text(null=True)),  # genretag's database; null: genretag's default
    "jobs": (DEFAULT_JOBS, _number(0, whole=True, null=True)),  # null: every core; 0: in beets' own process
    "excerpt": (DEFAULT_EXCERPT, _number(0)),  # seconds analysed per file; 0: the whole file
    "abstain_below": (DEFAULT_ABSTAIN_BELOW, _number(0, 1, null=True)),  # no genre below this; null: the model's rule
    "write_above": (None, _number(0, 1, null=True)),  # set a genre only this likely; null: as `genretag tag`
    "min_confidence": (None, _number(0, 1, null=True)),  # deprecated: both of the above (MIN_CONFIDENCE_DEPRECATED)
    "by": (DEFAULT_BY, _choice(BY)),
    "existing": ("keep", _choice(EXISTING)),
    "with_parents": (False, _flag()),
    # where the head abstains, the networks' own genre outputs may name it (tagger/decide/broad.py)
    "broad": (DEFAULT_BROAD, _flag()),
    "count": (None, _number(1, whole=True, null=True)),  # genres per item; null: as `genretag tag --top`
    "source": ("genretag", _choice(SOURCES)),  # empty: only items without a genre
    "write": (None, _flag(null=True)),
    "separator": (DEFAULT_SEPARATOR, _text()),  # beets before 2.7 keeps genres in one string
}


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The genretag: section, checked, with the command line's overrides applied."""

    auto: bool
    backend: str
    db: str | None
    jobs: int | None
    excerpt: float
    abstain_below: float | None
    write_above: float | None
    by: str
    existing: str
    with_parents: bool
    broad: bool
    count: int | None
    source: str
    write: bool | None
    separator: str

    def tag_options(self) -> tagging.TagOptions:
        """What ``genretag tag`` would be given for these settings."""
        return tagging.TagOptions(overwrite=self.existing == "overwrite", merge=self.existing == "merge",
                                  top=self.count, write_above=self.write_above, with_parents=self.with_parents,
                                  by=self.by, broad=self.broad)


def check_settings(values: dict[str, Any], where: Callable[[str], str]) -> Settings:
    """The settings from the section's values; ui.UserError naming the file and key on the first problem.

    ``where(key)`` names the file that sets the key.
    """
    for key in values:
        if key not in OPTIONS:
            close = difflib.get_close_matches(key, list(OPTIONS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(OPTIONS)})"
            raise ui.UserError(f"genretag: {where(key)}: unknown key {key!r} in the genretag: section{hint}")
    for key, (_, check) in OPTIONS.items():
        why = check(values.get(key))
        if why:
            raise ui.UserError(f"genretag: {where(key)}: genretag.{key} is {values.get(key)!r}: {why}")
    old = values.get("min_confidence")
    if old is not None:  # the deprecated key keeps its old meaning: both thresholds, unless they are set
        values = {**values, "abstain_below": _given(values.get("abstain_below"), old),
                  "write_above": _given(values.get("write_above"), old)}
    return Settings(**{key: values.get(key) for key in OPTIONS if key != "min_confidence"})


#: The note the deprecated ``min_confidence`` key gets (beets' log, once per run).
MIN_CONFIDENCE_DEPRECATED = ("genretag.min_confidence is deprecated: use abstain_below (no genre below it) and "
                             "write_above (set a genre only this likely)")


def _given(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value


# ---------------------------------------------------------------------------
# beets' genre field: a list from beets 2.7, one string joined by a separator before.


def read_genres(item: Any, separator: str) -> list[str]:
    """The item's genres as a list, whichever field this beets has."""
    if "genres" in item._fields:
        return [g for g in item.genres or [] if g]
    text = item.genre or ""
    return [g.strip() for g in text.split(separator.strip() or separator) if g.strip()] if text else []


def set_genres(item: Any, values: Sequence[str], separator: str) -> None:
    if "genres" in item._fields:
        item.genres = list(values)
    else:
        item.genre = separator.join(values)


def _shown(values: Sequence[str]) -> str:
    return "; ".join(values) if values else "(none)"


def _same(a: Sequence[str], b: Sequence[str]) -> bool:
    return [g.casefold() for g in a] == [g.casefold() for g in b]


def _key(item: Any) -> str:
    return path_key(os.path.abspath(os.fsdecode(item.path)))[0]


@dataclass
class Change:
    """What the plugin decided for one item."""

    item: Any
    current: list[str]
    new: list[str]
    action: str  # tagging's actions: "written" (here: set), "kept existing", "abstained", ...
    reason: str = ""
    confidence: float | None = None
    model: str | None = None
    abstained: str | None = None
    analysed: bool = False  # there is a result to store in the flexible attributes
    album: bool = False  # a beets album's own genres, not an item's

    def line(self, pretend: bool) -> str:
        """The item, its genres, and what happens to them (``-p``: would happen)."""
        if self.action in (tagging.WRITTEN, tagging.RESTORED):
            what = f" ({self.confidence:.2f})" if self.action == tagging.WRITTEN and self.confidence is not None else ""
            what += " (restored)" if self.action == tagging.RESTORED else ""
            what += " [pretend]" if pretend else ""
            return f"{self.item}: {_shown(self.current)} -> {_shown(self.new)}{what}"
        why = f"{self.action}: {self.reason}" if self.reason else self.action
        return f"{self.item}: {_shown(self.current)} ({why})"


# ---------------------------------------------------------------------------
# The plugin.

if _TOO_OLD is None:

    class GenretagPlugin(BeetsPlugin):
        """``beet genretag``, the import hook, and the flexible attributes for queries."""

        item_types = {CONFIDENCE: dbtypes.NullFloat(3)}  # numeric queries: genretag_confidence:0.9..

        def __init__(self) -> None:
            super().__init__()
            self.config.add({key: default for key, (default, _) in OPTIONS.items()})
            self._sources: dict[int, tuple[str, os.stat_result]] = {}  # item id -> its file's key and stat before
            if self.config["auto"].get() is not False:  # yes, or a wrong value that import_begin reports
                self.register_listener("import_begin", self._import_begin)
                self.import_stages = [self._before_files]
                self.register_listener("import_task_files", self._imported)

        # -- settings ------------------------------------------------------
        def settings(self, **overrides: Any) -> Settings:
            """The checked genretag: section; ``overrides`` (not None) from the command line win."""
            values = {key: self.config[key].get() for key in self.config.keys()}
            values.update({k: v for k, v in overrides.items() if v is not None})
            settings = check_settings(values, self._where)
            if values.get("min_confidence") is not None:
                self._log.warning(MIN_CONFIDENCE_DEPRECATED)
            return settings

        def _where(self, key: str) -> str:
            for source in self.config.root().sources:
                section = source.get(self.name) if isinstance(source, dict) else None
                if isinstance(section, dict) and key in section and getattr(source, "filename", None):
                    return str(source.filename)
            return "beets' config"

        # -- the command ---------------------------------------------------
        def commands(self) -> list[Any]:
            cmd = ui.Subcommand("genretag", help="set genres by listening (genretag)")
            cmd.parser.usage = ("%prog [options] [QUERY]\n\nAnalyse the matching items with genretag and set "
                                "their genres (docs/beets.md).\nExample: beet genretag -p album:Blue")  # fmt: skip
            cmd.parser.add_option("-p", "--pretend", action="store_true", help="show the changes; change nothing")
            cmd.parser.add_option("-w", "--write", action="store_true", default=None, help="write tags to files")
            cmd.parser.add_option("-W", "--nowrite", action="store_false", dest="write", help="don't write tags")
            cmd.parser.add_option("-u", "--undo", action="store_true",
                                  help="put back the genres genretag replaced")
            cmd.parser.add_option("--by", choices=BY, help="track, or album: one genre per beets album")
            cmd.parser.add_option("--existing", choices=EXISTING, help="keep, merge or overwrite existing genres")
            cmd.func = self._command
            return [cmd]

        def _command(self, lib: Any, opts: Any, args: list[str]) -> None:
            settings = self.settings(by=opts.by, existing=opts.existing)
            write = ui.should_write(opts.write if opts.write is not None else settings.write)
            tally = Tally(opts.pretend, ui.print_)
            try:
                if opts.undo:
                    self.undo(lib, lib.items(args), settings, write, tally)
                else:
                    self.run(lib, lib.items(args), settings, write, tally)
            except (GenretagError, OSError) as exc:
                raise ui.UserError(f"genretag: {_message(exc)}") from None
            tally.summary()

        # -- the import hook -------------------------------------------------
        def _import_begin(self, session: Any) -> None:
            self.settings()  # a broken section stops the import before any file is touched

        def _before_files(self, session: Any, task: Any) -> None:
            """Note where each file is before beets copies or moves it, to carry genretag's result along."""
            for item in task.imported_items():
                path = os.path.abspath(os.fsdecode(item.path))
                try:
                    self._sources[item.id] = (path_key(path)[0], os.stat(path))
                except OSError:
                    continue

        def _imported(self, session: Any, task: Any) -> None:
            settings = self.settings()
            items = list(task.imported_items())
            sources = {i.id: self._sources.pop(i.id) for i in items if i.id in self._sources}
            if not settings.auto:
                return
            db = _db_path(settings)
            if not task.is_album:
                settings = dataclasses.replace(settings, by="track")
            tally = Tally(False, lambda line: self._log.info("{}", line))
            try:
                if sources and os.path.exists(db):
                    with Cache(db, "write") as cache:
                        carry(cache, items, sources)
                self.run(session.lib, items, settings, ui.should_write(settings.write), tally)
            except (GenretagError, OSError) as exc:  # the import itself goes on
                self._log.error("{}", _message(exc))
                return
            tally.summary()

        # -- the work ------------------------------------------------------
        def run(self, lib: Any, items: Iterable[Any], settings: Settings, write: bool, tally: Tally) -> None:
            """Analyse ``items`` with genretag's scan, then set (or, pretending, show) their genres.

            The items are read twice, in between only their ids and paths are
            kept: one scan covers them all, and the decisions go a batch of
            cached results at a time (album mode: whole albums).
            """
            from tagger.run.job import ScanJob, run_job
            from tagger.run.scan import ScanOptions

            targets = [(i.id, i.album_id if settings.by == ALBUM else None, os.path.abspath(os.fsdecode(i.path)))
                       for i in items if settings.source != "empty" or not read_genres(i, settings.separator)]
            if not targets:
                return
            options = ScanOptions(excerpt=settings.excerpt, abstain_below=settings.abstain_below, count_total=False,
                                  broad=settings.broad)
            db = _db_path(settings)
            paths = [path for _, _, path in targets]
            job = ScanJob(paths=paths, backend=settings.backend, db_path=db, jobs=settings.jobs, options=options)
            outcome = run_job(job)
            del paths
            if outcome.interrupted:  # Ctrl-C: set nothing; what was analysed is committed
                raise ui.UserError("genretag: interrupted; what was analysed is kept in genretag's database, "
                                   "so running it again goes on from there")
            tally.scanned(outcome.summary)
            unreadable = dict(outcome.summary.walk_errors)
            opts = settings.tag_options()
            with Cache(db, "write") as cache:
                for batch in _batches(targets):
                    batch_items = [item for item in map(lib.get_item, [t[0] for t in batch]) if item is not None]
                    rows = cache.fetch([_key(i) for i in batch_items])
                    choices = self._album_choices(batch_items, rows, settings.broad) if settings.by == "album" else {}
                    changes = []
                    for item in batch_items:
                        row = rows.get(_key(item))
                        if row is None:
                            current = read_genres(item, settings.separator)
                            why = unreadable.get(os.path.abspath(os.fsdecode(item.path)), "not analysed")
                            change = Change(item, current, current, tagging.SKIPPED, why)
                        else:
                            change = item_change(item, row, opts, settings.separator, choices.get(item.id))
                            if not tally.pretend:
                                self._apply(change, cache, write, settings.separator)
                        changes.append(change)
                        tally.add(change)
                    if settings.by == "album":
                        for change in self._albums(lib, changes, settings.separator, tally.pretend):
                            tally.add(change)

        def _albums(self, lib: Any, changes: list[Change], separator: str, pretend: bool) -> list[Change]:
            """A beets album whose tracks all hold the same genres after ``changes`` gets them too (``beet ls -a``)."""
            held = {c.item.id: c.new if c.action == tagging.WRITTEN else c.current for c in changes}
            out = []
            for album_id in sorted({c.item.album_id for c in changes if c.item.album_id is not None}):
                album = lib.get_album(album_id)
                if album is None:
                    continue
                genres = {tuple(held.get(i.id, read_genres(i, separator))) for i in album.items()}
                current = read_genres(album, separator)
                if len(genres) != 1 or not (new := list(genres.pop())) or _same(current, new):
                    continue
                out.append(Change(album, current, new, tagging.WRITTEN, album=True))
                if not pretend:
                    set_recorded(album, current, new, separator)
                    album.store(inherit=False)  # its tracks hold these already
            return out

        def _album_choices(self, items: Sequence[Any], rows: dict[str, Track],
                           broad: bool = True) -> dict[int, albums.Choice]:
            """Album mode on beets' albums: each one's tracks among ``items`` averaged, as `genretag tag --by album`."""
            from tagger.decide import broad as broadmod

            source = broadmod.shipped() if broad else None
            members: dict[int, list[tuple[Any, Track]]] = {}
            for item in items:
                row = rows.get(_key(item))
                if item.album_id is not None and row is not None:
                    members.setdefault(item.album_id, []).append((item, row))
            out: dict[int, albums.Choice] = {}
            for album_id, pairs in members.items():
                album = pairs[0][0].get_album()
                artist = (album.albumartist if album else "") or ""
                group = albums.Album(f"beets:{album_id}", f"{artist} – {album.album if album else ''}",
                                     rows=[row for _, row in pairs])
                if album is not None and (album.comp or " ".join(artist.split()).casefold() in albums.VARIOUS):
                    group.not_averaged = albums.COMPILATION
                albums.assess(group, tagging.ranked, broad=source)
                out.update({item.id: albums.choice(group, row) for item, row in pairs})
            return out

        def _apply(self, change: Change, cache: Cache, write: bool, separator: str) -> None:
            """Store the change in beets' database (and, writing, the file through beets)."""
            item = change.item
            if change.analysed:
                item[CONFIDENCE] = change.confidence
                item[MODEL] = change.model
                if change.abstained:
                    item[ABSTAINED] = change.abstained
                elif ABSTAINED in item:
                    del item[ABSTAINED]
            changed = change.action == tagging.WRITTEN
            if changed:
                set_recorded(item, change.current, change.new, separator)
            item.store()
            if changed and write:
                write_through_beets(item, cache)

        def undo(self, lib: Any, items: Iterable[Any], settings: Settings, write: bool, tally: Tally) -> None:
            """Put back the genres genretag replaced, where an item (or its album) still holds what genretag set."""
            db = _db_path(settings)
            cache = Cache(db, "write") if os.path.exists(db) else None
            album_ids: set[int] = set()
            try:
                for item in items:
                    if item.album_id is not None:
                        album_ids.add(item.album_id)
                    self._restore(item, settings.separator, write, cache, tally)
                for album in filter(None, map(lib.get_album, sorted(album_ids))):
                    self._restore(album, settings.separator, write, cache, tally, album=True)
            finally:
                if cache is not None:
                    cache.close()

        def _restore(self, obj: Any, separator: str, write: bool, cache: Cache | None, tally: Tally,
                     album: bool = False) -> None:
            change = undoing(obj, separator, album=album)
            if change is None:
                return
            tally.add(change)
            if tally.pretend or change.action != tagging.RESTORED:
                return
            set_genres(obj, change.new, separator)
            del obj[PREVIOUS]
            del obj[WRITTEN]
            if album:
                obj.store(inherit=False)
                return
            obj.store()
            if write:
                write_through_beets(obj, cache)


class Tally:
    """Prints each change as it is decided and counts them, for the summary lines."""

    def __init__(self, pretend: bool, out: Callable[[str], None]) -> None:
        self.pretend, self.out = pretend, out
        self.counts: dict[bool, dict[str, int]] = {False: {}, True: {}}  # album? -> action -> n

    def scanned(self, summary: Any) -> None:
        failed = summary.failed + summary.failed_cached
        self.out(f"genretag: {summary.analysed} analysed, {summary.cached + summary.repredicted} from genretag's "
                 f"cache, {failed} failed ({summary.backend}, {summary.elapsed:.1f} s)")

    def add(self, change: Change) -> None:
        self.out(change.line(self.pretend))
        counts = self.counts[change.album]
        counts[change.action] = counts.get(change.action, 0) + 1

    def summary(self) -> None:
        names = {tagging.WRITTEN: "would set" if self.pretend else "set",
                 tagging.RESTORED: "would restore" if self.pretend else "restored"}
        for album, what in ((False, "item"), (True, "album")):
            counts = self.counts[album]
            if counts or not album:
                n = sum(counts.values())
                summary = ", ".join(f"{k} {names.get(a, a)}" for a, k in counts.items()) or "nothing to change"
                self.out(f"genretag: {n} {what}{'' if n == 1 else 's'}: {summary}")


#: Items decided per batch of cached results (an album is never split).
BATCH = 500


def _batches(targets: list[tuple[int, int | None, str]]) -> Iterable[list[tuple[int, int | None, str]]]:
    """``targets`` (id, album id or None, path) in batches of about BATCH items, each album whole in one."""
    by_album: dict[int | None, list[tuple[int, int | None, str]]] = {}
    for target in targets:
        by_album.setdefault(target[1], []).append(target)
    batch: list[tuple[int, int | None, str]] = []
    for album_id, members in by_album.items():
        groups = [members] if album_id is not None else [[m] for m in members]
        for group in groups:
            if batch and len(batch) + len(group) > BATCH:
                yield batch
                batch = []
            batch += group
    if batch:
        yield batch


def set_recorded(obj: Any, current: list[str], new: list[str], separator: str) -> None:
    """Set an item's or album's genres, keeping what it held for ``--undo``.

    A set that follows genretag's own last one (nothing changed the genres
    in between) keeps the first ``genretag_previous``: undo goes back to
    before genretag.  After an outside change, the chain starts again.
    """
    if not (PREVIOUS in obj and _same(current, _loads(obj.get(WRITTEN)))):
        obj[PREVIOUS] = json.dumps(current)
    obj[WRITTEN] = json.dumps(new)
    set_genres(obj, new, separator)


def undoing(obj: Any, separator: str, album: bool = False) -> Change | None:
    """What ``--undo`` does to an item or album: restore, or skip it (changed since); None: nothing recorded."""
    if PREVIOUS not in obj:
        return None
    current = read_genres(obj, separator)
    if not _same(current, _loads(obj.get(WRITTEN))):
        return Change(obj, current, current, tagging.SKIPPED, "its genres changed since genretag set them; not undone",
                      album=album)
    return Change(obj, current, _loads(obj.get(PREVIOUS)), tagging.RESTORED, album=album)


def _db_path(settings: Settings) -> str:
    """genretag's database: the ``db`` option (``~`` allowed), else genretag's default."""
    from tagger.common.paths import default_db_path

    return os.path.expanduser(settings.db) if settings.db else str(default_db_path())


def carry(cache: Cache, items: Iterable[Any], sources: dict[int, tuple[str, os.stat_result]]) -> int:
    """Carry genretag's results to the items beets copied or moved on import; how many were carried.

    A file whose new place genretag already knows (unchanged) keeps that.
    """
    carried = 0
    for item in items:
        if item.id not in sources:
            continue
        old, before = sources[item.id]
        path = os.path.abspath(os.fsdecode(item.path))
        new, raw = path_key(path)
        if new == old:
            continue
        try:
            after = os.stat(path)
        except OSError:
            continue
        known = cache.lookup([new]).get(new)
        if known is not None and (known.size, known.mtime) == (after.st_size, after.st_mtime):
            continue
        carried += cache.carry(old, new, raw, before, after)
    return carried


def _message(exc: Exception) -> str:
    """A GenretagError as it is; an OSError as its file and reason (as the genretag command line words them)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


def _loads(text: Any) -> list[str]:
    try:
        value = json.loads(text) if isinstance(text, str) else []
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def item_change(item: Any, row: Track, opts: tagging.TagOptions, separator: str,
                choice: albums.Choice | None = None) -> Change:
    """One item's change from its cached row, as ``genretag tag`` decides (tagger.write.tagging)."""
    current = read_genres(item, separator)
    album = choice is not None and choice.ranking is not None
    ranking = choice.ranking if album else tagging.ranked(row)
    change = Change(item, current, current, tagging.SKIPPED, analysed=row.status == "ok" and not row.missing,
                    confidence=ranking[0][1] if ranking else row.confidence, model=f"{row.backend} {row.model_id}",
                    abstained=(choice.abstained if album else row.abstained) or None)
    why = tagging.unusable(row, opts, choice)
    if why is not None:
        change.action, change.reason = why
        if row.status == "error":
            change.reason = f"analysis failed: {row.error}"
        elif change.action == tagging.ABSTAINED:
            change.reason = f"{change.abstained}; a lower genretag.abstain_below tags it"
        return change
    proposed, action, reason = tagging.propose(row, opts, choice.ranking if album else None,
                                               choice.album.rule if album else None)
    if action:
        change.action, change.reason = action, reason
        return change
    new, action, reason = tagging.field_values(current, proposed, opts)
    change.new = new
    change.action, change.reason = action or tagging.WRITTEN, reason
    if action == tagging.KEPT:
        change.reason = f"has genres {_shown(current)} (existing: merge or overwrite replaces them)"
    return change


def write_through_beets(item: Any, cache: Cache | None) -> bool:
    """``item.try_write()``, then genretag's cache follows the file's new stat (beets changed only tags)."""
    path = os.fsdecode(item.path)
    try:
        before = os.stat(path)
    except OSError:
        before = None
    written = bool(item.try_write())
    if written and before is not None and cache is not None:
        try:
            cache.follow_write(_key(item), before, os.stat(path))
        except OSError:
            pass
    return written
