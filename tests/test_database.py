"""The database file itself: concurrent commands, bad and read-only paths, foreign files, no accidental creation.

Issue 11 points 4-7.  Commands run as real processes (``genretag ...``), so
a traceback or a stray file would show exactly as a user would see it.
Tests run as root here, where chmod stops nothing: read-only folders are
real read-only bind mounts in a private mount namespace (``unshare``),
skipped where that is not allowed.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from audiofiles import make_audio
from conftest import copy_scanned
from tagger.cli import cli
from tagger.media.tags import read_genres
from tagger.store.cache import SCHEMA_VERSION, Cache, JournalStore

GENRETAG = str(Path(sys.executable).with_name("genretag"))
COMMANDS = {  # every command that opens the database, with arguments that make it run
    "scan": ["scan", "{lib}", "-j", "0"],
    "tag": ["tag"],
    "undo": ["undo", "--all"],
    "show": ["show"],
    "export": ["export"],
}
READING = ("show", "export", "tag", "undo")


def genretag(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GENRETAG, *args], capture_output=True, text=True, timeout=timeout)


def command(name: str, lib: Path, db: Path) -> list[str]:
    return [a.format(lib=lib) for a in COMMANDS[name]] + ["--db", str(db)]


def assert_one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit code 1, no traceback, and the error is a single ``Error:`` line naming what went wrong."""
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, text
    for needle in needles:
        assert needle in errors[0], text
    return errors[0]


def files_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder`` with its bytes and mtime: equal before and after means nothing was written."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def one_track(lib: Path) -> Path:
    lib.mkdir(parents=True, exist_ok=True)
    return make_audio(lib / "a.wav", "wav", seconds=4.0)


def in_read_only_folder(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``genretag args`` with ``folder`` mounted read-only (root cannot write there either)."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for a read-only bind mount")
    script = 'mount --bind -o ro "$1" "$1" || exit 77; shift; exec "$@"'
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(folder), GENRETAG, *args],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    if proc.returncode == 77 or (proc.returncode != 0 and "unshare" in proc.stderr):
        pytest.skip(f"cannot make a read-only bind mount here: {proc.stderr.strip()[:200]}")
    return proc


@pytest.fixture(scope="module")
def scanned_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A library of four tracks and its genretag database, made once."""
    from conftest import make_library

    root = tmp_path_factory.mktemp("db")
    lib, db = root / "Music", root / "cache.db"
    make_library(lib)
    # --min-confidence 0: every track gets a genre to write (the shipped svc abstains below its threshold)
    proc = genretag("scan", str(lib), "--db", str(db), "-j", "0", "--min-confidence", "0")
    assert proc.returncode == 0, proc.stderr
    return lib, db


@pytest.fixture
def lib_db(scanned_db: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the scanned library (mtimes kept) and its database, re-pointed at the copy."""
    return copy_scanned(*scanned_db, tmp_path)


# ---------------------------------------------------------------------------
# 7. Reading commands create nothing.


@pytest.mark.parametrize("name", READING)
def test_reading_commands_on_a_missing_database_create_nothing(name: str, tmp_path: Path,
                                                               genretag_home: Path) -> None:
    db = tmp_path / "not" / "there" / "cache.db"
    proc = genretag(*command(name, tmp_path, db))
    assert_one_error_line(proc, f"no genretag database at {db}; run genretag scan first")
    assert not (tmp_path / "not").exists()

    proc = genretag(*command(name, tmp_path, db)[:-2])  # the default database, in GENRETAG_HOME
    assert_one_error_line(proc, f"no genretag database at {genretag_home / 'genretag.db'}")
    assert list(genretag_home.iterdir()) == []


def test_scan_still_creates_the_database_and_its_folders(tmp_path: Path) -> None:
    lib = tmp_path / "Music"
    one_track(lib)
    db = tmp_path / "new" / "folder" / "cache.db"
    proc = genretag("scan", str(lib), "--db", str(db), "-j", "0")
    assert proc.returncode == 0, proc.stderr
    assert db.is_file() and genretag("show", "--db", str(db), "--json").returncode == 0


# ---------------------------------------------------------------------------
# 5. Bad --db paths: one error line, nothing written.


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_file_that_is_not_sqlite_is_left_alone(name: str, tmp_path: Path) -> None:
    lib = tmp_path / "Music"
    one_track(lib)
    db = tmp_path / "notes.txt"
    db.write_text("my shopping list, not a database\n" * 20)
    before = files_of(tmp_path)
    proc = genretag(*command(name, lib, db))
    assert_one_error_line(proc, str(db), "not an SQLite database")
    assert files_of(tmp_path) == before


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_path_under_a_regular_file_is_one_error(name: str, tmp_path: Path) -> None:
    lib = tmp_path / "Music"
    one_track(lib)
    (tmp_path / "file").write_text("x")
    db = tmp_path / "file" / "cache.db"
    before = files_of(tmp_path)
    proc = genretag(*command(name, lib, db))
    assert_one_error_line(proc, str(db), "part of that path is a file" if name == "scan" else "no genretag database")
    assert files_of(tmp_path) == before


def test_scan_into_a_read_only_folder_is_one_error(tmp_path: Path) -> None:
    lib = tmp_path / "Music"
    one_track(lib)
    ro = tmp_path / "ro"
    ro.mkdir()
    proc = in_read_only_folder(ro, "scan", str(lib), "--db", str(ro / "cache.db"), "-j", "0")
    assert_one_error_line(proc, str(ro / "cache.db"))
    assert list(ro.iterdir()) == []


def test_writing_commands_refuse_a_read_only_database(lib_db: tuple[Path, Path]) -> None:
    lib, db = lib_db
    db.chmod(0o444)
    before = files_of(lib.parent)
    for name in ("scan", "tag", "undo"):
        proc = genretag(*command(name, lib, db))
        assert_one_error_line(proc, str(db), "read-only")
        assert files_of(lib.parent) == before, name


def test_show_and_export_read_a_read_only_database_without_writing(lib_db: tuple[Path, Path]) -> None:
    lib, db = lib_db
    db.chmod(0o444)
    before = files_of(lib.parent)
    for args in (["show", "--json"], ["export", "--format", "json"]):
        proc = genretag(*args, "--db", str(db))
        assert proc.returncode == 0, proc.stderr
        assert {Path(r["path"]).name for r in json.loads(proc.stdout)} == {p.name for p in lib.rglob("*.*")}
        assert files_of(lib.parent) == before  # no -wal or -shm left, nothing changed

    proc = in_read_only_folder(db.parent, "show", "--json", "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 4
    proc = in_read_only_folder(db.parent, "export", "--db", str(db))
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 5, proc.stderr
    proc = in_read_only_folder(db.parent, "tag", "--db", str(db))
    assert_one_error_line(proc, str(db), "read-only")
    assert files_of(lib.parent) == before


# ---------------------------------------------------------------------------
# 6. Foreign databases are refused unchanged; genretag's own old ones are marked.


def foreign_db(path: Path, wal: bool, application_id: int) -> None:
    con = sqlite3.connect(path)
    if wal:
        con.execute("pragma journal_mode = wal")
    con.execute(f"pragma application_id = {application_id}")
    con.execute("pragma user_version = 7")
    con.execute("create table tracks (id integer primary key, title text, rating int)")
    con.executemany("insert into tracks (title, rating) values (?, ?)", [("Song", 5), ("Other", 3)])
    con.commit()
    con.close()


@pytest.mark.parametrize("wal", [False, True], ids=["rollback-journal", "wal"])
@pytest.mark.parametrize("application_id", [0, 0x0F0A0B0C], ids=["unmarked", "other-app"])
def test_foreign_database_is_refused_byte_for_byte_unchanged(wal: bool, application_id: int, tmp_path: Path) -> None:
    lib = tmp_path / "Music"
    one_track(lib)
    db = tmp_path / "other-app.db"
    foreign_db(db, wal, application_id)
    before = files_of(tmp_path)
    for name in COMMANDS:
        proc = genretag(*command(name, lib, db))
        assert_one_error_line(proc, str(db), "not a genretag database")
        assert files_of(tmp_path) == before, name  # same bytes, same mtime, no -wal or -shm
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        assert con.execute("select count(*) from tracks").fetchone() == (2,)


def test_a_database_from_a_newer_genretag_is_refused_unchanged(tmp_path: Path) -> None:
    """Issue 23, point 5: a newer schema's tables may mean what this version cannot know; it is not touched."""
    lib = tmp_path / "Music"
    one_track(lib)
    db = tmp_path / "newer.db"
    with Cache(db):
        pass
    con = sqlite3.connect(db)
    con.execute(f"pragma user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    before = files_of(tmp_path)
    for name in COMMANDS:
        proc = genretag(*command(name, lib, db))
        assert_one_error_line(proc, str(db), f"database version {SCHEMA_VERSION + 1}; this one reads versions up "
                                             f"to {SCHEMA_VERSION}")
        assert files_of(tmp_path) == before, name


def test_a_database_of_the_previous_release_is_upgraded_in_place(tmp_path: Path) -> None:
    """Issue 23, point 5: tests/data/db-schema1-219243f.sqlite was made by genretag at 219243f (schema 1):
    `genretag scan LIB --backend musicnn --jobs 0` on two 4 s files.  It opens, its rows and embeddings kept."""
    db = tmp_path / "old.sqlite"
    shutil.copyfile(Path(__file__).parent / "data" / "db-schema1-219243f.sqlite", db)
    with sqlite3.connect(db) as con:
        assert con.execute("pragma user_version").fetchone() == (1,)
        before = con.execute("select path, status, backend, model_id, probabilities from tracks order by path").fetchall()
        vectors = dict(con.execute("select path, vector from embeddings").fetchall())
        (front_end,) = {fe for (fe,) in con.execute("select front_end from embeddings")}
    with Cache(db) as cache:
        kept = cache.embeddings_for(sorted(vectors), front_end)
        assert {k: v[0].tobytes() for k, v in kept.items()} == vectors
    with sqlite3.connect(db) as con:
        assert con.execute("pragma user_version").fetchone() == (SCHEMA_VERSION,)
        assert con.execute("select path, status, backend, model_id, probabilities from tracks order by path"
                           ).fetchall() == before
        pk = [r[1] for r in sorted(con.execute("pragma table_info(embeddings)").fetchall(), key=lambda r: r[5]) if r[5]]
        assert pk == ["path", "front_end"]
    result = CliRunner().invoke(cli, ["show", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(Path(r["path"]).name for r in json.loads(result.stdout)) == ["noise.ogg", "tone.flac"]


LEFT_OVER_WAL = """
import os, sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("pragma journal_mode = wal")
con.execute("pragma wal_autocheckpoint = 0")
con.execute("create table notes (id integer primary key, text text)")
con.execute("insert into notes (text) values ('kept only in the -wal')")
con.commit()
os._exit(0)  # a writer that died: its -wal stays, not yet checkpointed
"""


def test_a_foreign_database_with_a_leftover_wal_is_refused_and_nothing_is_added(tmp_path: Path) -> None:
    """Issue 22 (18): it was refused unchanged, but reading it left a new -shm beside it."""
    lib = tmp_path / "Music"
    one_track(lib)
    db = tmp_path / "other-app.db"
    subprocess.run([sys.executable, "-c", LEFT_OVER_WAL, str(db)], check=True)
    os.remove(f"{db}-shm")  # e.g. cleaned away, or copied without it
    before = files_of(tmp_path)
    assert f"{db.name}-wal" in before
    for name in COMMANDS:
        proc = genretag(*command(name, lib, db))
        assert_one_error_line(proc, str(db), "not a genretag database")
        assert files_of(tmp_path) == before, name


def test_a_shm_someone_uses_is_not_removed(tmp_path: Path) -> None:
    """Only a -shm no connection holds is removed: another process may have opened the database meanwhile."""
    from tagger.store.cache import _drop_shm

    db = tmp_path / "other-app.db"
    subprocess.run([sys.executable, "-c", LEFT_OVER_WAL, str(db)], check=True)
    reader = ("import sqlite3, sys; con = sqlite3.connect(sys.argv[1]); con.execute('select * from notes').fetchall();"
              " print('reading', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", reader, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "reading\n"
        _drop_shm(db)
        assert os.path.exists(f"{db}-shm")
    finally:
        holder.communicate("")
    subprocess.run([sys.executable, "-c", LEFT_OVER_WAL, str(tmp_path / "b.db")], check=True)
    _drop_shm(tmp_path / "b.db")  # the writer that made this one is gone
    assert not os.path.exists(tmp_path / "b.db-shm") and os.path.exists(tmp_path / "b.db-wal")


def test_a_genretag_database_made_before_the_mark_is_accepted_and_marked(lib_db: tuple[Path, Path]) -> None:
    lib, db = lib_db
    with sqlite3.connect(db) as con:
        con.execute("pragma application_id = 0")  # as every database made before the mark
    con.close()
    proc = genretag("show", "--json", "--db", str(db))
    assert proc.returncode == 0 and len(json.loads(proc.stdout)) == 4, proc.stderr
    proc = genretag("scan", str(lib), "--db", str(db), "-j", "0")
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(db) as con:
        marked = con.execute("pragma application_id").fetchone()[0]
    con.close()
    assert marked != 0
    new = lib.parent / "new.db"
    assert genretag("scan", str(lib), "--db", str(new), "-j", "0").returncode == 0
    with sqlite3.connect(new) as con:
        assert con.execute("pragma application_id").fetchone()[0] == marked  # set at creation too
    con.close()


def test_an_empty_file_becomes_a_genretag_database(tmp_path: Path) -> None:
    lib = tmp_path / "Music"
    one_track(lib)
    db = tmp_path / "empty.db"
    db.touch()
    proc = genretag("scan", str(lib), "--db", str(db), "-j", "0")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(genretag("show", "--json", "--db", str(db)).stdout)) == 1

    fresh = tmp_path / "fresh.db"  # another application's database, made a moment ago: no tables yet
    con = sqlite3.connect(fresh)
    con.execute("pragma journal_mode = wal")
    con.execute("create table t (x)")
    con.execute("drop table t")
    con.close()
    before = files_of(tmp_path)
    assert_one_error_line(genretag("scan", str(lib), "--db", str(fresh), "-j", "0"), "not a genretag database")
    assert files_of(tmp_path) == before


# ---------------------------------------------------------------------------
# 4. Concurrent commands wait instead of crashing; files and history always agree.

WRITER = textwrap.dedent(
    """
    import sqlite3, sys, time
    con = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
    n = 0
    while True:  # like a scan: short write transactions, one after another
        con.execute("begin immediate")
        for i in range(50):
            con.execute("insert into scans (started_at, status) values (?, 'running')", (str(n),))
            n += 1
        time.sleep(0.02)
        con.execute("commit")
        time.sleep(0.005)
    """
)


def agree(lib: Path, db: Path, expect_written: bool) -> None:
    """Every file holds what its tag_history says, and its tracks row has its current stat."""
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        history = [dict(r) for r in con.execute("select * from tag_history order by id")]
        tracks = {r["path"]: dict(r) for r in con.execute("select * from tracks")}
    con.close()
    assert history, "nothing was written"
    for path in {h["path"] for h in history}:
        rows = [h for h in history if h["path"] == path]
        st, genres = os.stat(path), read_genres(path)
        assert (tracks[path]["size"], tracks[path]["mtime"]) == (st.st_size, st.st_mtime), path
        assert all(h["written_at"] for h in rows), path  # every write confirmed (or settled)
        if expect_written:  # the newest write is open and is what the file holds
            last = rows[-1]
            assert not last["undone_at"] and genres == json.loads(last["written"]), path
            assert (last["size"], last["mtime"]) == (st.st_size, st.st_mtime), path
        else:
            assert all(h["undone_at"] for h in rows) and genres == [], path


def test_tag_and_undo_wait_for_a_concurrent_writer(lib_db: tuple[Path, Path], tmp_path: Path) -> None:
    lib, db = lib_db
    copies = []
    with Cache(db) as cache:
        rows = list(cache.tracks())
        for n in range(6):
            extra = []
            for row in rows:
                src = Path(row["path"])
                dest = lib / f"copy{n}" / src.name
                dest.parent.mkdir(exist_ok=True)
                shutil.copy2(src, dest)
                extra.append(row | {"path": str(dest)})
                copies.append(dest)
            cache.write_results(extra)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db)])
    try:
        time.sleep(0.3)
        for _ in range(2):
            for args, written in ((["tag", "--overwrite", "--top", "2"], True), (["undo", "--all"], False)):
                proc = genretag(*args, "--db", str(db), "--no-progress")
                assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
                assert proc.returncode == 0, proc.stdout + proc.stderr
                agree(lib, db, written)
                assert writer.poll() is None
    finally:
        writer.kill()
        writer.wait()


HOLDER = textwrap.dedent(
    """
    import sqlite3, sys, time
    con = sqlite3.connect(sys.argv[1], isolation_level=None)
    con.execute("begin immediate")  # a writer that keeps the lock longer than anyone waits
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    con.execute("rollback")
    """
)


def test_a_lock_held_too_long_is_one_error_before_any_file_is_touched(lib_db: tuple[Path, Path]) -> None:
    lib, db = lib_db
    assert genretag("tag", "--db", str(db)).returncode == 0
    before = files_of(lib)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), "60"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        for args in (["tag", "--overwrite", "--top", "2"], ["undo", "--all"], ["scan", str(lib), "-j", "0"]):
            proc = genretag(*args, "--db", str(db))
            assert_one_error_line(proc, str(db), "the database is locked")
            assert files_of(lib) == before, args
        proc = genretag("show", "--json", "--db", str(db))  # readers do not wait for writers
        assert proc.returncode == 0 and len(json.loads(proc.stdout)) == 4, proc.stderr
    finally:
        holder.kill()
        holder.wait()
    agree(lib, db, expect_written=True)


def cli_run(*args: str) -> tuple[int, str]:
    """Exit code and output (only stdout with --json) of an in-process run; an escaping exception fails the test."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout if "--json" in args else result.output


def locked_on_call(n: int, real: Callable[..., Any]) -> Callable[..., Any]:
    """``real``, except that its n-th call fails as SQLite does when another process holds the lock too long."""
    calls = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == n:
            raise sqlite3.OperationalError("database is locked")
        return real(*args, **kwargs)

    return flaky


def test_a_lost_confirmation_is_one_error_and_the_next_run_settles_it(
    lib_db: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    lib, db = lib_db
    monkeypatch.setattr(JournalStore, "confirm", locked_on_call(2, JournalStore.confirm))
    code, out = cli_run("tag", "--db", str(db), "--no-progress")
    assert code == 1 and "Traceback" not in out
    assert [line for line in out.splitlines() if line.startswith("Error:")] == [
        f"Error: {db}: the database is locked: another genretag command kept it busy for more than 10 s; "
        "nothing is lost, run this command again when that one has finished"]
    monkeypatch.undo()
    code, out = cli_run("tag", "--db", str(db), "--no-progress", "--json")
    assert code == 0, out
    assert sorted(f["action"] for f in json.loads(out)["files"]) == ["unchanged", "unchanged", "written", "written"]
    agree(lib, db, expect_written=True)


def test_an_undo_cut_short_after_the_restore_is_settled_by_the_next_run(
    lib_db: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The incident: a file restored, its history not marked, later runs skipped it as changed."""
    lib, db = lib_db
    assert cli_run("tag", "--db", str(db))[0] == 0
    monkeypatch.setattr(JournalStore, "mark_undone", locked_on_call(2, JournalStore.mark_undone))
    code, out = cli_run("undo", "--all", "--db", str(db), "--no-progress")
    assert code == 1 and "Traceback" not in out and "Error:" in out and "database is locked" in out
    monkeypatch.undo()
    restored = [p for p in lib.rglob("*.*") if read_genres(p) == []]
    assert len(restored) == 2  # the second file was restored, its record not marked

    code, out = cli_run("undo", "--all", "--db", str(db), "--json")
    assert code == 0, out
    assert sorted(f["action"] for f in json.loads(out)["files"]) == ["restored", "restored"]
    agree(lib, db, expect_written=False)
    code, out = cli_run("scan", str(lib), "--db", str(db), "-j", "0", "--json")
    assert code == 0 and json.loads(out)["analysed"] == 0  # every tracks row followed its file


def test_a_second_tag_run_waits_for_the_first_then_fails_before_touching_files(lib_db: tuple[Path, Path]) -> None:
    """Two tag runs at once: the second would take the first's write in flight for one cut short."""
    fcntl = pytest.importorskip("fcntl")
    if not sys.platform.startswith("linux"):
        pytest.skip("the tag lock is an flock, taken on Linux only")
    lib, db = lib_db
    before = files_of(lib)
    with open(db, "rb") as held:  # what a running `genretag tag` holds
        fcntl.flock(held, fcntl.LOCK_EX)
        started = time.monotonic()
        for args in (["tag"], ["undo", "--all"]):
            proc = genretag(*args, "--db", str(db))
            assert_one_error_line(proc, str(db), "another genretag tag or undo is writing tags with this database")
        assert time.monotonic() - started >= 2 * 10  # each waited for the busy timeout first
        assert files_of(lib) == before
    proc = genretag("tag", "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    agree(lib, db, expect_written=True)


def test_mark_missing_takes_thousands_of_roots(tmp_path: Path) -> None:
    """A scan given each file (the beets plugin passes one path per item) checks them all.

    One query over 1,500 roots was 1,500 nested "or"s, which SQLite refuses
    (expression depth above 1000): the scan then failed at its very end.
    """
    from tagger.store.track import Track

    files = [tmp_path / f"{i}.flac" for i in range(1500)]
    for f in files[:3]:
        f.write_bytes(b"x")
    with Cache(tmp_path / "db.sqlite", "create") as cache:
        cache.write_results([Track.row(path=str(f), status="ok", missing=False) for f in files[:3]])
        files[1].unlink()
        assert cache.mark_missing([str(f) for f in files]) == 1
        assert [r["path"] for r in cache.tracks() if r["missing"]] == [str(files[1])]
