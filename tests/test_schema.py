"""The database schema: every table declared once (cache.TABLES), created and upgraded by one function.

Issue 23, point 5.  An older database is brought up to the declaration in
place with every row kept; a column added to any table's declaration
reaches existing databases without breaking their inserts.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import make_library
from tagger.cli import cli
from tagger.common.errors import DatabaseError
from tagger.media.tags import read_genres
from tagger.store import cache as cache_module
from tagger.store.cache import SCHEMA_VERSION, TABLES, WRITE, Cache, Table

DATA = Path(__file__).parent / "data"
#: Made by genretag at 5c661b7 (schema 2); how, in the commit that added it.
RELEASE_DB = DATA / "db-schema2-5c661b7.sqlite"
#: Databases made by earlier releases: their schema version and rows per table.
RELEASES = {
    RELEASE_DB: (2, {"tracks": 3, "features": 3, "embeddings": 3, "scans": 2, "tag_history": 3, "whole_tags": 1}),
    DATA / "db-schema1-219243f.sqlite": (1, {"tracks": 2, "features": 0, "embeddings": 2, "scans": 1,
                                             "tag_history": 0}),
}


def schema(db: Path) -> dict[str, Any]:
    """Per table: columns (name, type, not null, default, key position) and indexes' columns."""
    with sqlite3.connect(db) as con:
        names = [r[0] for r in con.execute("select name from sqlite_master where type = 'table' order by name")]
        out = {}
        for name in names:
            columns = sorted(tuple(r[1:]) for r in con.execute(f"pragma table_info([{name}])"))
            indexes = {tuple(i[2] for i in con.execute(f"pragma index_info([{x[1]}])"))
                       for x in con.execute(f"pragma index_list([{name}])")}  # fmt: skip
            out[name] = (columns, indexes)
    con.close()
    return out


def rows(db: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, by rowid."""
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        names = [r[0] for r in con.execute("select name from sqlite_master where type = 'table'")]
        out = {n: [dict(r) for r in con.execute(f"select * from [{n}] order by rowid")] for n in names}
    con.close()
    return out


def test_every_table_is_declared_once_and_a_new_database_has_exactly_those(tmp_path: Path) -> None:
    assert set(TABLES) == {"tracks", "features", "embeddings", "tag_history", "whole_tags", "scans"}
    assert all(name == table.name for name, table in TABLES.items())
    with Cache(tmp_path / "new.sqlite"):
        pass
    made = schema(tmp_path / "new.sqlite")
    assert set(made) == set(TABLES)
    for name, table in TABLES.items():
        columns, indexes = made[name]
        assert [c[0] for c in columns] == sorted(table.columns), name
        assert [c[0] for c in sorted(columns, key=lambda c: c[-1]) if c[-1]] == list(table.key), name
        assert set(table.indexes) <= indexes, name


@pytest.mark.parametrize("release", list(RELEASES), ids=lambda p: p.name)
def test_a_release_database_keeps_every_row_and_matches_a_new_one(release: Path, tmp_path: Path) -> None:
    version, counts = RELEASES[release]
    db = tmp_path / "release.sqlite"
    shutil.copyfile(release, db)
    before, release_schema = rows(db), schema(db)
    assert {n: len(r) for n, r in before.items()} == counts
    with Cache(db, WRITE):
        pass
    after = rows(db)
    for table, old in before.items():  # every row and value kept (columns added since are new keys)
        assert [{k: r[k] for k in o} for o, r in zip(old, after[table])] == old, table
        assert len(after[table]) == len(old), table
    with Cache(tmp_path / "new.sqlite"):
        pass
    assert schema(db) == schema(tmp_path / "new.sqlite")
    if release_schema != schema(db):  # TABLES changed since: an older genretag must refuse what this one writes
        assert SCHEMA_VERSION > version, "TABLES changed: raise SCHEMA_VERSION in tagger/store/cache.py"
    with sqlite3.connect(db) as con:
        assert con.execute("pragma user_version").fetchone() == (SCHEMA_VERSION,)
        assert con.execute("pragma integrity_check").fetchone() == ("ok",)
    con.close()


def test_scan_show_tag_and_undo_work_on_the_current_release_database(tmp_path: Path) -> None:
    """Its own files are elsewhere: a new library is scanned, tagged and undone in it, and its rows stay."""
    db = tmp_path / "release.sqlite"
    shutil.copyfile(RELEASE_DB, db)
    old = rows(db)
    lib = tmp_path / "Music"
    files = make_library(lib, formats=("flac", "mp3"))
    run = CliRunner().invoke
    result = run(cli, ["scan", str(lib), "--db", str(db), "-j", "0", "--min-confidence", "0", "--no-progress"])
    assert result.exit_code == 0, result.output
    result = run(cli, ["show", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    shown = {r["path"]: r for r in json.loads(result.stdout)}
    assert set(shown) == {r["path"] for r in old["tracks"]} | {str(f) for f in files}
    assert all(shown[str(f)]["genre"] for f in files)
    result = run(cli, ["tag", str(lib), "--db", str(db), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert all(read_genres(f) for f in files)
    result = run(cli, ["undo", str(lib), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert not any(read_genres(f) for f in files)
    new = rows(db)
    assert len(new["tag_history"]) == len(old["tag_history"]) + len(files)
    assert len(new["features"]) == len(old["features"]) + len(files)
    assert len(new["scans"]) == len(old["scans"]) + 1
    assert new["tag_history"][: len(old["tag_history"])] == old["tag_history"]


def _added(table: Table, **extra: Any) -> Table:
    """``table`` with one more column, as a later release would declare it."""
    return dataclasses.replace(table, columns={**table.columns, "added": str}, **extra)


def _a_row(table: Table, key: int) -> dict[str, Any]:
    values = {str: "x", int: key, float: 1.5, bytes: b"\x00\x01"}
    return {name: (f"/m/{key}.flac" if name == "path" else values[kind]) for name, kind in table.columns.items()}


@pytest.mark.parametrize("name", list(TABLES))
def test_a_column_added_to_any_table_reaches_an_existing_database_and_inserts_work(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the next release would add one: to the current release's database, with its rows, at a new version."""
    db = tmp_path / "release.sqlite"
    shutil.copyfile(RELEASE_DB, db)
    with Cache(db, WRITE) as cache:
        cache.db[name].insert(_a_row(TABLES[name], 101))
    before = rows(db)[name]
    monkeypatch.setitem(TABLES, name, _added(TABLES[name], indexes=(*TABLES[name].indexes, ("added",))))
    monkeypatch.setattr(cache_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with Cache(db, WRITE) as cache:
        cache.db[name].insert(_a_row(TABLES[name], 102))  # every declared column named, the new one too
    after = rows(db)[name]
    assert after == [{**r, "added": None} for r in before] + [_a_row(TABLES[name], 102)]
    with sqlite3.connect(db) as con:
        assert con.execute("pragma user_version").fetchone() == (SCHEMA_VERSION + 1,)
    con.close()
    with Cache(tmp_path / "new.sqlite"):
        pass
    assert schema(db) == schema(tmp_path / "new.sqlite")


def test_a_not_null_column_added_later_gets_its_default_in_existing_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "db.sqlite"
    with Cache(db) as cache:
        cache.start_scan(["/m"], "svc", "m1")
    scans = TABLES["scans"]
    monkeypatch.setitem(TABLES, "scans", _added(scans, not_null=frozenset({"added"}), defaults={"added": "it's"}))
    with Cache(db, WRITE) as cache:
        cache.start_scan(["/n"], "svc", "m1")  # the library's own insert, which names no new column
        assert [r["added"] for r in cache.db.query("select added from scans")] == ["it's", "it's"]


def test_a_changed_primary_key_rebuilds_the_table_keeping_rows_columns_and_indexes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "db.sqlite"
    with Cache(db) as cache:
        cache.write_results([{"path": "/m/a.flac", "status": "ok", "genre": "jazz"}])
    with sqlite3.connect(db) as con:  # a column this version does not declare (a development build's)
        con.execute("alter table tracks add column extra text")
        con.execute("update tracks set extra = 'kept'")
    con.close()
    tracks = TABLES["tracks"]
    monkeypatch.setitem(TABLES, "tracks", dataclasses.replace(tracks, key=("path", "backend")))
    with Cache(db, WRITE) as cache:
        (row,) = cache.db.query("select path, genre, extra from tracks")
        assert row == {"path": "/m/a.flac", "genre": "jazz", "extra": "kept"}
    columns, indexes = schema(db)["tracks"]
    assert [c[0] for c in sorted(columns, key=lambda c: c[-1]) if c[-1]] == ["path", "backend"]
    assert {("status",), ("genre",)} <= indexes


def test_a_rebuild_that_would_lose_rows_is_refused_and_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "db.sqlite"
    with Cache(db) as cache:
        cache.write_results([], embeddings=[{"path": "/m/a.flac", "front_end": fe, "vector": b"1", "tags": None}
                                            for fe in ("fe1", "fe2")])  # fmt: skip
    before = rows(db)
    monkeypatch.setitem(TABLES, "embeddings", dataclasses.replace(TABLES["embeddings"], key=("path",)))
    with pytest.raises(DatabaseError, match="UNIQUE"):
        Cache(db, WRITE)
    assert rows(db) == before
