"""Tagging split by concern (issue 23 point 3).

The tag journal is its own store: every ``tag_history`` and ``whole_tags``
statement a tag, settle and undo run sends comes from
:class:`tagger.store.cache.JournalStore`, over the Cache's own connection.  And a
run's results are plain data that tagger/views/ui.py words.

The statements are caught with SQLite's trace callback as they run, and the
Python frames that sent each one are looked at: a structural check that
does not depend on how the schema code is written.
"""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

from audiofiles import make_audio
from tagger.decide import albums
from tagger.defaults import SPLIT
from tagger.media import tags
from tagger.media.tags import read_genres
from tagger.store.cache import Cache, JournalStore
from tagger.store.track import Track
from tagger.views import ui
from tagger.write import journal
from tagger.write.journal import FileResult, Outcome
from tagger.write.tagging import ABSTAINED, KEPT, WOULD_WRITE, TagOptions
from test_import_graph import import_graph

JOURNAL_TABLES = ("tag_history", "whole_tags")


def _library(tmp_path: Path, n: int = 3) -> tuple[Path, Path, list[Path]]:
    """``n`` small real FLAC files and their cached rows (genre rock), as a scan leaves them; no audio analysed."""
    root = tmp_path / "Music"
    root.mkdir()
    clip = make_audio(tmp_path / "clip.flac", "flac", seconds=0.3)
    files = [root / f"{i}.flac" for i in range(n)]
    for f in files:
        shutil.copyfile(clip, f)
    rows = [Track.row(path=str(f), size=f.stat().st_size, mtime=f.stat().st_mtime, status="ok", genre="rock",
                      confidence=0.9, probabilities={"rock": 0.9, "jazz": 0.1}, backend="svc", model_id="test",
                      missing=False) for f in files]  # fmt: skip
    db = tmp_path / "g.db"
    with Cache(db) as cache:
        cache.write_results(rows)
        cache.start_scan([str(root)], "svc", "test")
    return db, root, files


def _sender() -> object | None:
    """The JournalStore whose method is on the stack (the one sending the statement being traced), if any."""
    for frame in inspect.stack()[2:]:
        if isinstance(frame.frame.f_locals.get("self"), JournalStore):
            return frame.frame.f_locals["self"]
    return None


def test_every_journal_statement_of_tag_settle_and_undo_comes_from_the_store(tmp_path: Path) -> None:
    db, root, files = _library(tmp_path)
    with Cache(db, "write") as cache:
        assert cache.journal.db is cache.db  # the same connection: a record and its tracks row share a transaction
        sent: list[tuple[str, object | None]] = []

        def trace(sql: str) -> None:
            if any(table in sql for table in JOURNAL_TABLES):
                sent.append((sql, _sender()))

        cache.db.conn.set_trace_callback(trace)
        tagged = journal.apply(cache, TagOptions(id3v23=True), [str(root)])
        assert tagged.counts == {"written": 3}
        again = journal.apply(cache, TagOptions(dry_run=True), [str(root)])
        assert again.counts == {"unchanged": 3}
        undone = journal.undo(cache, [str(root)])
        assert undone.counts == {"restored": 3}
        cache.db.conn.set_trace_callback(None)
    assert [read_genres(f) for f in files] == [[], [], []]
    kinds = {sql.split()[0].lower() for sql, _ in sent}
    assert {"insert", "update", "select"} <= kinds, sent  # the run did write, confirm, read and mark the journal
    outside = [sql for sql, store in sent if store is not cache.journal]
    assert outside == [], f"journal SQL sent from outside cache.journal: {outside}"


def test_the_cache_keeps_no_journal_methods() -> None:
    """One place per concern: what the store does is not also a Cache method (old names included)."""
    public = {name for name in vars(JournalStore) if not name.startswith("__")}
    old = {"record_tag_write", "confirm_tag_write", "discard_tag_write"}
    assert not (public | old) & set(vars(Cache)), sorted((public | old) & set(vars(Cache)))


def test_a_write_recorded_and_never_confirmed_is_settled_from_the_file(tmp_path: Path) -> None:
    """The store's stages as settle reads them: in flight until confirmed, then done; undone leaves the open set."""
    db, root, files = _library(tmp_path, 1)
    key = str(files[0])
    with Cache(db, "write") as cache:
        tf = tags.TagFile(key)
        history = cache.journal.record(Track(path=key), tf.snapshot(None), [], ["Rock"], tf.stat)
        assert [w.id for w in cache.journal.open_writes(stage="in_flight")] == [history]
        journal.settle(cache, [str(root)])  # the file still holds the snapshot: the write never happened
        assert list(cache.journal.open_writes()) == []


def test_a_runs_summary_line_and_status_are_worded_by_the_views() -> None:
    out = Outcome("tag", dry_run=True, by=albums.ALBUM, hard_links=SPLIT)
    for result in (FileResult("/m/a.flac", [], ["Rock"], WOULD_WRITE, links=2),
                   FileResult("/m/b.flac", [], ["Rock"], WOULD_WRITE),
                   FileResult("/m/c.flac", [], [], ABSTAINED, "best genre below 0.40")):
        out.add(result)
    out.tally.averaged, out.tally.outliers, out.tally.track_mode["compilation"] = 1, 1, 2
    out.temporaries = ["/m/.a.flac.genretag-tmp"]
    assert ui.run_summary_line(out) == (
        "3 file(s): 2 would write, 1 abstained; 1 hard-linked (--hard-links split); 1 skipped as abstained (the "
        "model was too uncertain; `genretag show --status abstained`); 1 album(s), 1 outlier track(s); 2 file(s) "
        "in track mode (compilation: 2) (dry run: no file was changed)")
    assert ui.run_warnings(out) == [
        "/m/.a.flac.genretag-tmp: stale temporary file of an interrupted genretag run, found (dry run: not removed)"]
    kept = FileResult("/m/d.flac", ["Jazz"], ["Rock"], KEPT, "has genre 'Jazz'", note="outlier")
    assert ui.result_status(kept) == "kept existing: has genre 'Jazz' (outlier)"
    headers, cells = ui.result_columns("undo")
    assert headers == ["file", "current", "restored", "action"]
    assert cells(kept) == ("/m/d.flac", "Jazz", "Rock", "kept existing: has genre 'Jazz' (outlier)")
    stopped = Outcome("undo", interrupted=True, cut_short="/m/e.flac")
    assert ui.run_summary_line(stopped) == ("interrupted while restoring /m/e.flac (its journal entry is settled: "
                                            "it is either old or new) before any other file was done; "
                                            "run it again to finish")


def test_each_concern_imports_only_what_it_needs() -> None:
    """Proposing reads no database and writes no file; the journal's data does not print; views do not write."""
    graph = import_graph()
    assert not graph["tagger.write.tagging"] & {"tagger.store.cache", "tagger.write.journal", "tagger.views.ui", "tagger.cli"}
    assert not graph["tagger.write.journal"] & {"tagger.views.ui", "tagger.cli"}
    assert not graph["tagger.views.ui"] & {"tagger.store.cache", "tagger.write.journal", "tagger.cli"}
