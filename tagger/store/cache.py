"""The SQLite cache: every table and all the SQL; the only module that imports sqlite_utils.

Every table is declared once, in :data:`TABLES`, and :func:`migrate` creates
or upgrades each the same way, so an older database opens with every row kept.
``tracks`` and ``tag_history`` rows are :class:`tagger.store.track.Track` and
:class:`tagger.store.track.TagWrite`, which encode and decode them.
:func:`connect` opens a file by mode (``create``, ``write``, ``read``) and
refuses any file genretag did not make; writes are ``BEGIN IMMEDIATE``
batches in WAL mode and no read cursor stays open across a write, so
concurrent commands wait for each other and a killed scan loses one batch.
What each table holds: docs/database.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
import sqlite3
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import sqlite_utils

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from ..analysis.features import FEATURE_NAMES
from ..common.errors import DatabaseError
from .track import STATUSES, TagWrite, Track, TrackStamp

SCHEMA_VERSION = 3  # 2: embeddings keyed by (path, front_end); 3: tracks.rule, the genre rule a scan decided by
APPLICATION_ID = 0x47544147  # "GTAG": marks a database as genretag's (PRAGMA application_id)
BUSY_SECONDS = 10.0  # how long a command waits for another one's write transaction
LOOKUP_CHUNK = 500
#: Roots per query of mark_missing: SQLite refuses an expression deeper than 1000 (each root is one "or").
ROOTS_PER_QUERY = 200
LISTINGS_KEPT = 64  # folders whose names mark_missing keeps at once (rows come by path, not by folder)
READ_PAGE = 1000  # rows fetched per query when streaming, so no cursor stays open across writes
CREATE, WRITE, READ = "create", "write", "read"  # how a command opens the database: see connect()
INSERT_ONLY = frozenset({"path", "first_seen"})  # never changed by an upsert
# The filters of Cache.records and JournalStore.open_writes.
_STATUS_WHERE: dict[str | None, list[str]] = {
    None: [], "missing": ["missing = 1"], "abstained": ["status = 'ok'", "abstained is not null", "missing = 0"],
    "ok": ["status = ?", "missing = 0"], "error": ["status = ?", "missing = 0"],
}
_OPEN = "undone_at is null and superseded_at is null"  # writes undo may still act on
_STAGE_WHERE: dict[str | None, list[str]] = {
    None: [], "done": ["written_at is not null"], "in_flight": ["written_at is null"],
    "undoing": ["undo_started_at is not null"],
}

_SQL_TYPES: dict[type, str] = {str: "TEXT", int: "INTEGER", float: "REAL", bytes: "BLOB"}


@dataclasses.dataclass(frozen=True)
class Table:
    """One table's declaration: what :func:`migrate` makes a database have, whether new or old.

    A column added here (or as a field of a record in tagger/store/track.py) is
    added to existing databases on their next write; one that is NOT NULL
    needs a default for the rows already there.
    """

    name: str
    columns: Mapping[str, type]  # name -> Python type, in table order
    key: tuple[str, ...]  # the primary key
    indexes: tuple[tuple[str, ...], ...] = ()
    not_null: frozenset[str] = frozenset()
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def column_sql(self, name: str) -> str:
        """A column's definition, the same in CREATE TABLE and ALTER TABLE ADD COLUMN."""
        sql = f"[{name}] {_SQL_TYPES[self.columns[name]]}"
        if name in self.not_null:
            sql += " NOT NULL"
        if name in self.defaults:
            sql += f" DEFAULT {_literal(self.defaults[name])}"
        return sql

    def create_sql(self, name: str | None = None, extra: Sequence[str] = ()) -> str:
        """CREATE TABLE for this declaration (under another ``name``, with ``extra`` columns, when rebuilding)."""
        columns = ", ".join([*(self.column_sql(c) for c in self.columns), *extra])
        key = ", ".join(f"[{c}]" for c in self.key)
        return f"create table [{name or self.name}] ({columns}, primary key ({key}))"


def _literal(value: Any) -> str:
    """A column default as SQL text (numbers and text only: what a declaration uses)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


#: Every table of the database, declared once: created and migrated by :func:`migrate`.
#: Raise SCHEMA_VERSION with each change here, so an older genretag (which would leave the new
#: columns stale) refuses a database this one has written.
TABLES: dict[str, Table] = {t.name: t for t in (
    Table("tracks", Track.columns(), ("path",), indexes=(("status",), ("genre",)),
          not_null=frozenset({"status"}), defaults={"missing": 0}),
    Table("features", {"path": str, **{name: float for name in FEATURE_NAMES}}, ("path",)),
    # One row per file and front end: each pretrained network's output is kept under its own id.
    Table("embeddings", {"path": str, "front_end": str, "vector": bytes, "tags": bytes}, ("path", "front_end")),
    Table("tag_history", TagWrite.columns(), ("id",), indexes=(("path",),)),
    Table("whole_tags", {"history_id": int, "tag": bytes}, ("history_id",)),
    Table("scans", {"id": int, "started_at": str, "finished_at": str, "roots": str, "backend": str,
                    "model_id": str, "status": str, "counts": str}, ("id",)),
)}  # fmt: skip

#: What Cache.records_grouped's key sees of a track: its name and own tags (tagger.decide.albums.block).
GROUP_COLUMNS = ("path", "path_bytes", "artist", "album", "album_artist", "compilation", "file_genres")

#: Columns every genretag database has had since the first release: how one made before the mark is recognised.
LEGACY_TRACK_COLUMNS = frozenset({"path", "size", "mtime", "status", "error", "params", "backend", "model_id",
                                  "genre", "confidence", "top3", "probabilities", "missing"})


def now() -> str:
    """UTC timestamp in ISO 8601, the format of every time column."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def path_key(path: str) -> tuple[str, bytes | None]:
    """The text key of a file path, plus its raw bytes when they are not valid UTF-8.

    SQLite text must be valid Unicode, but POSIX file names are bytes; such
    names get a readable key with ``\\x..`` escapes and keep their exact bytes
    in ``path_bytes`` so the file can be reopened for tagging and undo.
    """
    raw = os.fsencode(path)
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), raw


def _under(paths: Iterable[str]) -> tuple[str, list[str]]:
    """A where clause (and its arguments) for keys that are one of ``paths`` or under it; empty for none.

    By key range, so the path index serves.
    """
    clauses, args = [], []
    for p in paths:
        key, _ = path_key(os.path.abspath(p))
        clauses.append("(path = ? or (path >= ? and path < ?))")
        base = key.rstrip(os.sep) + os.sep
        args += [key, base, base[:-1] + chr(ord(os.sep) + 1)]
    return ("(" + " or ".join(clauses) + ")" if clauses else ""), args


def _filter(status: str | None, genre: str | None) -> tuple[list[str], list[Any]]:
    """The where clauses (and arguments) of Cache.records' ``status`` and ``genre`` filters."""
    if status not in _STATUS_WHERE:
        raise ValueError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    where, params = list(_STATUS_WHERE[status]), []
    if status in ("ok", "error"):
        params.append(status)
    if genre:
        where.append("genre = ?")
        params.append(genre)
    return where, params


def _listing(folder: str) -> frozenset[str] | None:
    """The names in ``folder``, or None when it cannot be listed (each file is then checked alone)."""
    try:
        return frozenset(os.listdir(folder))
    except OSError:
        return None


def _upsert(db: sqlite_utils.Database, table: str, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or update by the table's primary key, touching only the columns named.

    Rows that omit a column (an error row has no genre) leave the stored
    value alone, so an earlier result is never overwritten with nothing;
    ``first_seen`` is written only when the row is new.
    """
    key_columns = TABLES[table].key
    key = ", ".join(key_columns)
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for row in rows:
        cols = tuple(row)
        groups.setdefault(cols, []).append(tuple(row[c] for c in cols))
    for cols, values in groups.items():
        names = ", ".join(f"[{c}]" for c in cols)
        updates = ", ".join(f"[{c}] = excluded.[{c}]" for c in cols if c not in INSERT_ONLY and c not in key_columns)
        sql = (f"insert into [{table}] ({names}) values ({', '.join('?' * len(cols))}) "
               f"on conflict({key}) do update set {updates}")
        db.conn.executemany(sql, values)


# ---------------------------------------------------------------------------
# The schema: every table made or brought up to date by one function.


def _indexes(conn: sqlite3.Connection, table: str) -> set[tuple[str, ...]]:
    """The column lists of ``table``'s indexes, its primary key's included."""
    names = [r[1] for r in conn.execute("select * from pragma_index_list(?)", (table,))]
    return {tuple(r[0] for r in conn.execute("select name from pragma_index_info(?) order by seqno", (n,)))
            for n in names}  # fmt: skip


def migrate(conn: sqlite3.Connection) -> None:
    """Make the database match TABLES, in the caller's transaction, keeping every row.

    The same steps for every table: create it if missing; add the columns
    it lacks; rebuild it when its primary key differs (schema 1 kept one
    embedding per file), copying every row and column; create missing
    indexes.  Then mark the file as genretag's, at SCHEMA_VERSION.
    """
    for table in TABLES.values():
        info = conn.execute("select name, type, pk from pragma_table_info(?)", (table.name,)).fetchall()
        if not info:
            conn.execute(table.create_sql())
        else:
            have = {name for name, _, _ in info}
            for name in table.columns:
                if name not in have:  # a database made before the column existed
                    conn.execute(f"alter table [{table.name}] add column {table.column_sql(name)}")
            if tuple(name for name, _, pk in sorted(info, key=lambda r: r[2]) if pk) != table.key:
                _rebuild(conn, table, info)
        for columns in table.indexes:
            if columns not in _indexes(conn, table.name):
                conn.execute(f"create index [idx_{table.name}_{'_'.join(columns)}] on [{table.name}] "
                             f"({', '.join(f'[{c}]' for c in columns)})")
    for pragma, value in (("user_version", SCHEMA_VERSION), ("application_id", APPLICATION_ID)):
        if conn.execute(f"PRAGMA {pragma}").fetchone()[0] != value:  # written only when it changes
            conn.execute(f"PRAGMA {pragma} = {value}")


def _rebuild(conn: sqlite3.Connection, table: Table, info: list[tuple[str, str, int]]) -> None:
    """Give ``table`` its declared primary key: a new table, every row copied, then renamed (SQLite's way).

    Columns the declaration does not name are kept, with their type.  A
    row the new key would collide with fails the copy, and the transaction
    with it: nothing is dropped.
    """
    extra = [f"[{name}] {kind}" for name, kind, _ in info if name not in table.columns]
    names = ", ".join(f"[{name}]" for name, _, _ in info)
    conn.execute(table.create_sql(f"_new_{table.name}", extra))
    conn.execute(f"insert into [_new_{table.name}] ({names}) select {names} from [{table.name}]")
    conn.execute(f"drop table [{table.name}]")  # its indexes go with it; migrate makes them again
    conn.execute(f"alter table [_new_{table.name}] rename to [{table.name}]")


# ---------------------------------------------------------------------------
# Opening: the one place that decides how a database file is opened.


def _uri(path: Path, **params: str) -> str:
    """An SQLite ``file:`` URI for ``path`` (any bytes, quoted) with these query parameters."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"file:{quote(os.fsencode(os.path.abspath(path)))}?{query}"


def _sidecars(path: Path) -> dict[str, bool]:
    """Which of SQLite's files beside the database exist (a live or crashed writer leaves them)."""
    return {suffix: os.path.lexists(f"{path}{suffix}") for suffix in ("-wal", "-shm", "-journal")}


def _peek(path: Path) -> tuple[int, dict[str, set[str]], int]:
    """application_id, tables (with their columns) and user_version of a file, read without changing it.

    Through SQLite, not ``open()``: closing another descriptor of a database
    file would drop the POSIX locks SQLite holds on it in this process.
    ``immutable=1`` makes SQLite create no -wal or -shm and take no lock; it
    is only used while no journal is pending, else ``mode=ro``, which makes
    a -shm beside a leftover -wal: that one is removed again (:func:`_drop_shm`).
    """
    sidecars = _sidecars(path)
    live = any(sidecars.values())
    try:
        con = sqlite3.connect(_uri(path, **({"mode": "ro"} if live else {"immutable": "1"})), uri=True,
                              timeout=BUSY_SECONDS)  # fmt: skip
        try:
            app_id = con.execute("pragma application_id").fetchone()[0]
            names = [r[0] for r in con.execute("select name from sqlite_master where type = 'table'")]
            tables = {n: {r[0] for r in con.execute("select name from pragma_table_info(?)", (n,))} for n in names}
            return app_id, tables, con.execute("pragma user_version").fetchone()[0]
        finally:
            con.close()
            if live and not sidecars["-shm"]:
                _drop_shm(path)
    except sqlite3.DatabaseError as exc:
        reason = "not an SQLite database" if "not a database" in str(exc) else f"cannot read the database ({exc})"
        raise DatabaseError(path, f"{path}: {reason}; genretag leaves it alone (check --db)") from None


#: The -shm byte every SQLite connection using the file holds a shared lock on (UNIX_SHM_DMS in os_unix.c).
_SHM_DMS_BYTE = 128


def _drop_shm(path: Path) -> None:
    """Remove the database's -shm, unless a connection uses it (another process may have opened it since).

    Taking the byte SQLite's connections hold shared shows none does, and
    keeps one from starting to while the file goes, as SQLite itself does.
    """
    if fcntl is None:  # Windows: SQLite keeps no -shm beside a database there
        return
    shm = f"{path}-shm"
    try:
        fd = os.open(shm, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SHM_DMS_BYTE)
        os.unlink(shm)
    except OSError:
        pass  # in use, or not ours to remove: it stays, as SQLite would leave it
    finally:
        os.close(fd)  # and with it the lock


def _inspect(path: Path) -> str:
    """What ``path`` holds: "missing", "empty", "genretag" or "legacy" (genretag's, made before the mark).

    Anything else is refused here, before SQLite opens the file for
    writing: a file that is not SQLite, and another application's database
    (its own application_id, or unmarked tables that are not genretag's).
    Only a file of 0 bytes counts as empty: an SQLite file without tables
    may be another application's, made a moment ago.
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError as exc:
        raise DatabaseError(path, f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DatabaseError(path, f"{path}: not a regular file")
    if st.st_size == 0:
        return "empty"
    app_id, tables, version = _peek(path)
    if app_id == APPLICATION_ID and version > SCHEMA_VERSION:  # its tables may mean what this version cannot know
        raise DatabaseError(path, f"{path}: written by a newer genretag (database version {version}; this one reads "
                                  f"versions up to {SCHEMA_VERSION}): upgrade genretag, or choose another --db")
    if app_id == APPLICATION_ID:
        return "genretag"
    legacy = LEGACY_TRACK_COLUMNS <= tables.get("tracks", set()) and "scans" in tables and version <= SCHEMA_VERSION
    if app_id == 0 and legacy:
        return "legacy"
    raise DatabaseError(path, f"{path}: not a genretag database (another application's SQLite file); "
                              "genretag leaves it unchanged, choose another --db")  # fmt: skip


def connect(path: Path, mode: str) -> sqlite3.Connection:
    """Open the database at ``path`` for ``mode``, refusing before anything is written.

    ``CREATE`` makes a missing database and its folder (scan); ``WRITE``
    needs an existing one (tag, undo); both need a writable file and
    folder, since SQLite keeps its -wal and -shm files beside it, and a file
    without write permission is refused even for root.  ``READ`` (show,
    export) opens with ``mode=ro``, or ``immutable=1`` in a read-only
    folder, where SQLite could not create those files.
    """
    kind = _inspect(path)
    if kind in ("missing", "empty") and mode != CREATE:
        raise DatabaseError(path, f"no genretag database at {path}; run genretag scan first")
    folder = path.parent
    if mode == READ:
        frozen = not os.access(folder, os.W_OK) and not _sidecars(path)["-wal"]
        return sqlite3.connect(_uri(path, mode="ro", **({"immutable": "1"} if frozen else {})), uri=True,
                               timeout=BUSY_SECONDS)  # fmt: skip
    if kind == "missing":
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise DatabaseError(path, f"{path}: cannot create its folder: part of that path is a file") from None
        except OSError as exc:
            raise DatabaseError(path, f"{path}: cannot create its folder: {exc.strerror or exc}") from None
    else:
        mode_bits = os.stat(path).st_mode
        if not mode_bits & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(path, os.W_OK):
            raise DatabaseError(path, f"{path}: the database is read-only (no write permission); "
                                      "show and export can still read it")  # fmt: skip
    if not os.access(folder, os.W_OK):
        raise DatabaseError(path, f"{path}: its folder is read-only (SQLite needs to write its journal there)")
    return sqlite3.connect(_uri(path, mode="rwc" if mode == CREATE else "rw"), uri=True, timeout=BUSY_SECONDS)


class Cache:
    """The genretag database: open, query and update it."""

    def __init__(self, path: str | os.PathLike[str], mode: str = CREATE) -> None:
        self.path = Path(path).expanduser()
        self.mode = mode
        self._lock_fd: int | None = None
        self.journal = JournalStore(self)  # tag_history and whole_tags
        self._sidecars = _sidecars(self.path)
        try:
            conn = connect(self.path, mode)
        except sqlite3.Error as exc:
            raise self.error(exc) from None
        try:
            self.db = sqlite_utils.Database(conn)
            if mode != READ:
                self.db.conn.execute("PRAGMA synchronous = NORMAL")
                self._ensure_schema()
                self.db.enable_wal()
        except sqlite3.Error as exc:
            conn.close()
            raise self.error(exc) from None

    def close(self) -> None:
        self.db.close()
        if self._lock_fd is not None:  # only now: closing another descriptor drops this process's POSIX locks on it
            os.close(self._lock_fd)
            self._lock_fd = None
        if self.mode == READ and not self._sidecars["-wal"] and _sidecars(self.path)["-wal"]:
            self._remove_read_sidecars()

    def _remove_read_sidecars(self) -> None:
        """Let SQLite remove the -wal and -shm that reading a WAL database made, if no one else has it open.

        A read-only connection cannot; a plain one does when it is the last
        to close (it checkpoints an empty log: the database is not written).
        Best effort: without write permission they stay, as SQLite leaves them.
        """
        with contextlib.suppress(sqlite3.Error):
            con = sqlite3.connect(_uri(self.path, mode="rw"), uri=True, timeout=BUSY_SECONDS)
            try:
                con.execute("select count(*) from sqlite_master").fetchall()
            finally:
                con.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.close()
        if isinstance(exc, sqlite3.Error):
            raise self.error(exc) from None

    def error(self, exc: sqlite3.Error) -> DatabaseError:
        """An SQLite failure in words a user can act on (the CLI prints it as one ``Error:`` line)."""
        text = str(exc)
        if "locked" in text or "busy" in text:
            text = (f"the database is locked: another genretag command kept it busy for more than "
                    f"{BUSY_SECONDS:.0f} s; nothing is lost, run this command again when that one has finished")
        elif "readonly" in text:
            text = f"the database is read-only ({text})"
        return DatabaseError(self.path, f"{self.path}: {text}")

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One write transaction that takes the write lock first (``BEGIN IMMEDIATE``).

        A deferred transaction that has read would fail at once with
        SQLITE_BUSY when upgrading to write while another process writes;
        taking the lock up front lets the busy timeout wait instead.
        """
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    def lock_tag_writes(self) -> None:
        """Keep other tag and undo runs on this database out until this Cache is closed.

        Their :func:`tagger.write.journal.settle` would take this run's write in
        flight for one cut short.  An ``flock`` on the database file (on
        Linux, where it is independent of SQLite's POSIX locks), waited for
        up to BUSY_SECONDS, then refused before any file is touched.
        """
        if self._lock_fd is not None or fcntl is None or not sys.platform.startswith("linux"):
            return
        try:
            self._lock_fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise DatabaseError(self.path, f"{self.path}: {exc.strerror or exc}") from None
        deadline = time.monotonic() + BUSY_SECONDS
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DatabaseError(self.path, f"{self.path}: another genretag tag or undo is writing tags "
                                                   "with this database; run this one when it has finished") from None
                time.sleep(0.05)

    def _ensure_schema(self) -> None:
        with self._writing():
            migrate(self.db.conn)

    # -- reading ---------------------------------------------------------
    def _by_keys(self, select: str, keys: Sequence[str], where: str = "",
                 args: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """Rows of ``select ... where [where and] path in (keys)``, queried in chunks to bound statement size."""
        for i in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[i : i + LOOKUP_CHUNK]
            sql = f"{select} where {where + ' and ' if where else ''}path in ({','.join('?' * len(chunk))})"
            yield from self.db.conn.execute(sql, [*args, *chunk]).fetchall()

    def lookup(self, keys: Sequence[str]) -> dict[str, TrackStamp]:
        """What a rescan decides on, for the given path keys (the ones present)."""
        rows = self._by_keys(f"select {', '.join(TrackStamp._fields)} from tracks", keys)
        return {row[0]: TrackStamp._make(row) for row in rows}

    def fetch(self, keys: Sequence[str]) -> dict[str, Track]:
        """The whole records of the given path keys (the ones present)."""
        rows = self._by_keys("select * from tracks", keys)
        names = list(self.db["tracks"].columns_dict)  # in table order, as select * gives them
        return {row[0]: Track.from_row(dict(zip(names, row))) for row in rows}

    def features_for(self, keys: Sequence[str]) -> dict[str, list[float]]:
        """Cached feature vectors for these path keys, in FEATURE_NAMES order."""
        cols = ", ".join(f"[{n}]" for n in FEATURE_NAMES)
        rows = self._by_keys(f"select path, {cols} from features", keys)
        return {row[0]: list(row[1:]) for row in rows if None not in row[1:]}

    def embeddings_for(self, keys: Sequence[str], front_end: str) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """Cached (embedding, tags or None) of these path keys, as float32 arrays, made by ``front_end``."""
        rows = self._by_keys("select path, vector, tags from embeddings", keys, "front_end = ?", [front_end])
        return {
            path: (np.frombuffer(vector, dtype=np.float32), None if tags is None else np.frombuffer(tags, np.float32))
            for path, vector, tags in rows
            if vector
        }

    def tracks(self, paths: Iterable[str] = ()) -> Iterator[dict[str, Any]]:
        """Stream rows as stored (JSON as text), optionally under ``paths``: for tests and tools.

        Readers that use the values want :meth:`records`.
        """
        yield from self._select("tracks", paths, None, (), ("path",))

    def records(self, paths: Iterable[str] = (), *, status: str | None = None,
                genre: str | None = None) -> Iterator[Track]:
        """Stream track records by path, optionally under ``paths`` (files or folders), with this status or genre.

        ``status`` is one of STATUSES: "missing" is every vanished file;
        the others are files still there, "abstained" being "ok" without a
        genre because the model was too uncertain.
        """
        where, params = _filter(status, genre)
        for row in self._select("tracks", paths, " and ".join(where) or None, params, ("path",)):
            yield Track.from_row(row)

    def records_grouped(self, paths: Iterable[str], block: Callable[[Track], str],
                        keys: Callable[[Iterator[Track]], Iterator[str]]) -> Iterator[tuple[str, Track]]:
        """Stream (key, record) under ``paths`` so that records sharing a key come together: album mode's order.

        SQLite sorts the path keys by (``block(track)``, folder, path) into a
        temporary table; ``keys`` gives each track its key in that order (it may look
        ahead, e.g. a folder); the table, indexed by (key, order), is then read back a
        page at a time. No rows are held in Python. ``block`` and ``keys`` see a
        track's path and own-tag fields (GROUP_COLUMNS) only.
        """
        conn = self.db.conn
        columns = ", ".join(f"t.{c}" for c in GROUP_COLUMNS)

        def sort_key(*values: Any) -> str:
            return block(Track.from_row(dict(zip(GROUP_COLUMNS, values))))

        conn.create_function("genretag_block", len(GROUP_COLUMNS), sort_key)
        conn.create_function("genretag_folder", 1, os.path.dirname, deterministic=True)
        under, args = _under(paths)
        self._temp("drop table if exists temp.grouped", "create temp table grouped (seq integer primary key, "
                   "path text, key text)",
                   (f"insert into temp.grouped (path) select path from tracks {'where ' + under if under else ''} "
                    f"order by genretag_block({', '.join(GROUP_COLUMNS)}), genretag_folder(path), path", args))
        try:
            seqs: list[int] = []

            def light() -> Iterator[Track]:
                after = 0
                while True:
                    rows = conn.execute(f"select g.seq, {columns} from temp.grouped g join tracks t on t.path = g.path "
                                        f"where g.seq > ? order by g.seq limit {READ_PAGE}", (after,)).fetchall()
                    for row in rows:
                        seqs.append(row[0])
                        yield Track.from_row(dict(zip(GROUP_COLUMNS, row[1:])))
                    if len(rows) < READ_PAGE:
                        return
                    after = rows[-1][0]

            done, batch = 0, []
            for key in keys(light()):
                batch.append((key, seqs[done]))
                done += 1
                if len(batch) == READ_PAGE:
                    self._temp(("update temp.grouped set key = ? where seq = ?", batch))
                    del seqs[:done]
                    done, batch = 0, []
            self._temp(*([("update temp.grouped set key = ? where seq = ?", batch)] if batch else []),
                       "create index temp.grouped_key on grouped (key, seq)")
            after_key, after_seq = "", 0
            while True:
                cursor = conn.execute("select g.key, g.seq, t.* from temp.grouped g join tracks t on t.path = g.path "
                                      "where (g.key, g.seq) > (?, ?) order by g.key, g.seq "
                                      f"limit {READ_PAGE}", (after_key, after_seq))
                names = [d[0] for d in cursor.description]
                rows = cursor.fetchall()
                for row in rows:
                    yield row[0], Track.from_row(dict(zip(names[2:], row[2:])))
                if len(rows) < READ_PAGE:
                    return
                after_key, after_seq = rows[-1][0], rows[-1][1]
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._temp("drop table if exists temp.grouped")

    def _temp(self, *statements: str | tuple[str, Sequence[Any]]) -> None:
        """Run statements on temporary tables in one transaction (a read-only database allows them)."""
        conn = self.db.conn
        conn.execute("BEGIN")
        try:
            for statement in statements:
                sql, args = (statement, ()) if isinstance(statement, str) else statement
                if args and isinstance(args[0], tuple):
                    conn.executemany(sql, args)
                else:
                    conn.execute(sql, args)
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    def _select(self, table: str, paths: Iterable[str], where: str | None, params: Sequence[Any],
                order: tuple[str, ...]) -> Iterator[dict[str, Any]]:
        """Rows of ``table`` matching ``where`` and under ``paths``, by key range so the path index serves.

        Fetched READ_PAGE rows at a time after the last row's ``order`` key:
        a caller may write between rows without a read cursor left open,
        which would hold an old snapshot and make those writes fail busy.
        """
        clauses, args = [f"({where})"] if where else [], list(params)
        under, under_args = _under(paths)
        if under:
            clauses.append(under)
            args += under_args
        key, after = ", ".join(order), None
        while True:
            page = clauses + ([f"({key}) > ({', '.join('?' * len(order))})"] if after else [])
            sql = (f"select * from [{table}]" + (" where " + " and ".join(page) if page else "")
                   + f" order by {key} limit {READ_PAGE}")  # fmt: skip
            cursor = self.db.conn.execute(sql, [*args, *(after or ())])
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, r)) for r in cursor.fetchall()]
            yield from rows
            if len(rows) < READ_PAGE:
                return
            after = tuple(rows[-1][c] for c in order)

    def deciders(self, paths: Iterable[str] = ()) -> list[tuple[str, str | None, bool, int]]:
        """(backend, model id, has a stored rule, files) of the results under ``paths``: who decided them, by what."""
        where, params = _filter("ok", None)
        under, args = _under(paths)
        sql = ("select backend, model_id, rule is not null, count(*) from tracks where "
               + " and ".join([*where, *([under] if under else [])]) + " group by 1, 2, 3")
        return [(b, m, bool(r), n) for b, m, r, n in self.db.conn.execute(sql, [*params, *args]) if b]

    def scan_roots(self) -> list[str]:
        """Every file or folder a scan was run on: what ``tag`` and ``undo`` may write under without paths."""
        roots: set[str] = set()
        for row in self.db.query("select roots from scans"):
            roots.update(json.loads(row["roots"] or "[]"))
        return sorted(roots)

    def count(self) -> int:
        return self.db["tracks"].count

    # -- writing ---------------------------------------------------------
    def write_results(self, rows: Sequence[dict[str, Any]], features: Sequence[dict[str, Any]] = (),
                      embeddings: Sequence[dict[str, Any]] = (), changed: Sequence[str] = ()) -> None:
        """Upsert track, feature and embedding rows in one transaction.

        ``changed`` are the keys of files that changed since their inputs
        were cached: those of their features and embeddings not written
        here are deleted, being of the old file.
        """
        if not rows and not features and not embeddings:
            return
        with self._writing():
            _upsert(self.db, "tracks", rows)
            for table, written in (("features", features), ("embeddings", embeddings)):
                if changed:  # every row of the old file goes, then this batch's rows of the new one come in
                    self.db.conn.executemany(f"delete from [{table}] where path = ?", [(k,) for k in changed])
                _upsert(self.db, table, written)

    def touch_present(self, keys: Sequence[str]) -> None:
        """Clear the missing flag of files that turned up again unchanged."""
        if keys:
            with self._writing():
                self.db.conn.executemany(
                    "update tracks set missing = 0, missing_since = null, updated_at = ? where path = ?",
                    [(now(), k) for k in keys],
                )

    def mark_missing(self, roots: Iterable[str]) -> int:
        """Flag rows under ``roots`` whose file no longer exists; return how many.

        A rescan of a large library reads every row here, so only the path
        columns are read, and each folder is listed once instead of one
        lstat per file; a name not listed is confirmed with lstat, so what
        counts as gone is what ``os.path.lexists`` says.
        """
        roots = list(roots)  # many roots (`scan` given each file, as the beets plugin does): a query per chunk
        chunks = [roots[i : i + ROOTS_PER_QUERY] for i in range(0, len(roots), ROOTS_PER_QUERY)] or [[]]
        gone: dict[str, None] = {}  # in order, once even when roots overlap
        listed: dict[str, frozenset[str] | None] = {}
        for chunk in chunks:
            under, args = _under(chunk)
            sql = "select path, path_bytes from tracks where missing = 0" + (f" and {under}" if under else "")
            # One pass, unsorted: nothing is written until the cursor is done (unlike _select's callers).
            for key, raw in self.db.conn.execute(sql, args):
                path = os.fsdecode(raw) if raw else key
                folder, name = os.path.split(path)
                if folder not in listed:
                    if len(listed) >= LISTINGS_KEPT:
                        listed.clear()
                    listed[folder] = _listing(folder)
                names = listed[folder]
                if (names is None or name not in names) and not os.path.lexists(path):
                    gone[key] = None
        if gone:
            stamp = now()
            with self._writing():
                self.db.conn.executemany(
                    "update tracks set missing = 1, missing_since = ?, updated_at = ? where path = ?",
                    [(stamp, stamp, k) for k in gone],
                )
        return len(gone)

    def start_scan(self, roots: Sequence[str], backend: str, model_id: str) -> int:
        with self._writing():
            table = self.db["scans"].insert(
                {"started_at": now(), "roots": json.dumps(list(roots)), "backend": backend,
                 "model_id": model_id, "status": "running"}
            )  # fmt: skip
        return int(table.last_pk)

    def finish_scan(self, scan_id: int, status: str, counts: dict[str, Any]) -> None:
        with self._writing():
            self.db["scans"].update(
                scan_id, {"finished_at": now(), "status": status, "counts": json.dumps(counts)}
            )

    def follow_file(self, track: str, st: os.stat_result, file_genres: Sequence[str] | None = None) -> None:
        """Give ``track``'s row the file's stat ``st``: another name of the same file (a hard link) changed it."""
        with self._writing():
            self._set_track_stat(track, st, now(), file_genres)

    def follow_write(self, key: str, before: os.stat_result, after: os.stat_result) -> bool:
        """Give ``key``'s row the stat ``after`` a tags-only write by another program (beets), if it had ``before``.

        As :meth:`confirm_tag_write` does for genretag's own writes: a rescan
        then does not re-analyse a file whose audio did not change.  A row
        with another stat (the file changed before that write) is left alone.
        """
        with self._writing():
            cursor = self.db.conn.execute(
                "update tracks set size = ?, mtime = ?, updated_at = ? where path = ? and size = ? and mtime = ?",
                (after.st_size, after.st_mtime, now(), key, before.st_size, before.st_mtime),
            )
        return cursor.rowcount > 0

    def carry(self, old: str, new: str, new_raw: bytes | None, before: os.stat_result, after: os.stat_result) -> bool:
        """Give the file now at ``new`` the result cached for ``old``: another program (beets) copied or moved
        it there, changing at most its tags.

        Only when ``old``'s row still has ``before``, the stat the file had
        then: the result is of these audio bytes.  Its features and
        embeddings come along, so another backend needs no decoding either.
        """
        with self._writing():
            cursor = self.db.conn.execute("select * from tracks where path = ? and size = ? and mtime = ?",
                                          (old, before.st_size, before.st_mtime))
            found = cursor.fetchone()
            if found is None:
                return False
            row = dict(zip([d[0] for d in cursor.description], found))
            row.update(path=new, path_bytes=new_raw, size=after.st_size, mtime=after.st_mtime, missing=0,
                       missing_since=None, updated_at=now())
            _upsert(self.db, "tracks", [row])
            for table in ("features", "embeddings"):
                cursor = self.db.conn.execute(f"select * from [{table}] where path = ?", (old,))
                names = [d[0] for d in cursor.description]
                _upsert(self.db, table, [dict(zip(names, r)) | {"path": new} for r in cursor.fetchall()])
        return True

    def _set_track_stat(self, key: str, st: os.stat_result, stamp: str,
                        file_genres: Sequence[str] | None = None) -> None:
        self.db.conn.execute(
            "update tracks set size = ?, mtime = ?, updated_at = ? where path = ?", (st.st_size, st.st_mtime, stamp, key)
        )
        if file_genres is not None:
            self.db.conn.execute("update tracks set file_genres = ? where path = ? and file_genres is not null",
                                 (Track.row(file_genres=list(file_genres))["file_genres"], key))


class JournalStore:
    """The tag journal's SQL (``tag_history``, ``whole_tags``): each genre write, recorded before it happens.

    Its own object, reached as ``cache.journal``, over the Cache's connection
    and write transactions: tagger/write/journal.py writes, settles and undoes
    through it, and a write's record and the file's ``tracks`` row change
    in one transaction.
    """

    def __init__(self, cache: Cache) -> None:
        self._cache = cache

    @property
    def db(self) -> sqlite_utils.Database:
        return self._cache.db

    def open_writes(self, paths: Iterable[str] = (), *, key: str | None = None,
                    stage: str | None = None) -> Iterator[TagWrite]:
        """Stream the genre writes undo may still act on (neither undone nor superseded), by path, oldest first.

        Optionally under ``paths``, or of the one path ``key``; ``stage``
        narrows them: "done" (confirmed), "in_flight" (never confirmed: a
        run was cut short) or "undoing" (an undo was started).
        """
        where, params = [_OPEN, *_STAGE_WHERE[stage]], []
        if key is not None:
            where.append("path = ?")
            params.append(key)
        for row in self._cache._select("tag_history", paths, " and ".join(where), params, ("path", "id")):
            yield TagWrite.from_row(row)

    def genre_writes(self, paths: Iterable[str] = ()) -> Iterator[TagWrite]:
        """Stream genretag's writes to the genre field itself that were not undone, by path, oldest first.

        Superseded ones count: they happened (``genretag learn`` leaves what
        genretag wrote out of the user's own genres).
        """
        for row in self._cache._select("tag_history", paths, "undone_at is null and field is null", (), ("path", "id")):
            yield TagWrite.from_row(row)

    def record(self, track: Track, snapshot: dict[str, Any], previous: list[str], written: list[str],
               before: os.stat_result, hard_links: str | None = None, whole: bytes | None = None) -> int:
        """Store a write's ``snapshot`` of the field (tagger.media.tags) *before* the file is touched; returns its id.

        Until :meth:`confirm`, size and mtime are the file's stat before
        the write and ``written_at`` is empty.  ``whole``: the whole
        tag, when the write converts its version (see :meth:`whole_tag`).
        """
        row = TagWrite.row(path=track.path, path_bytes=track.path_bytes, field=snapshot["field"],
                           format=snapshot["format"], snapshot=snapshot, previous=previous, written=written,
                           size=before.st_size, mtime=before.st_mtime, hard_links=hard_links)  # fmt: skip
        with self._cache._writing():
            history_id = int(self.db["tag_history"].insert(row).last_pk)
            if whole is not None:
                self.db["whole_tags"].insert({"history_id": history_id, "tag": whole})
        return history_id

    def whole_tag(self, history_id: int) -> bytes | None:
        """The whole tag recorded before a write that converted its ID3 version, if any."""
        row = self.db.conn.execute("select tag from whole_tags where history_id = ?", (history_id,)).fetchone()
        return bytes(row[0]) if row else None

    def note_aside(self, ids: Sequence[int], aside: bytes | None) -> None:
        """Record the file a write or undo sets aside (tagger.media.tags._edit), *before* it exists."""
        with self._cache._writing():
            self.db.conn.executemany("update tag_history set aside = ? where id = ?", [(aside, i) for i in ids])

    def confirm(self, history_id: int, after: os.stat_result, track: str | None,
                file_genres: Sequence[str] | None = None) -> None:
        """Mark a write done with the file's new stat, and give ``track``'s row that stat too.

        Updating the ``tracks`` row keeps a rescan from taking genretag's own
        write for a user's change (which would re-analyse the file).  With
        ``file_genres`` (a write to the genre field itself) the row's cached
        genre field follows the file.
        """
        stamp = now()
        with self._cache._writing():
            self.db.conn.execute(
                "update tag_history set written_at = ?, size = ?, mtime = ? where id = ?",
                (stamp, after.st_size, after.st_mtime, history_id),
            )
            if track is not None:
                self._cache._set_track_stat(track, after, stamp, file_genres)

    def discard(self, history_id: int) -> None:
        """Forget a write that did not happen (it failed, leaving the file as it was)."""
        with self._cache._writing():
            self.db.conn.execute("delete from tag_history where id = ? and written_at is null", (history_id,))
            self.db.conn.execute("delete from whole_tags where history_id = ? and history_id not in "
                                 "(select id from tag_history)", (history_id,))

    def start_undo(self, ids: Sequence[int]) -> None:
        """Note that these writes are being undone, *before* the file is restored.

        Until :meth:`mark_undone` (or :meth:`cancel_undo` when the restore
        failed), the next run settles them from what the file holds.
        """
        self._stamp_history("undo_started_at", ids, None, None)

    def cancel_undo(self, ids: Sequence[int]) -> None:
        """Forget an undo that did not happen (the restore failed or never landed)."""
        with self._cache._writing():
            self.db.conn.executemany("update tag_history set undo_started_at = null where id = ?", [(i,) for i in ids])

    def mark_superseded(self, ids: Sequence[int]) -> None:
        """Retire writes that a later outside change made unsafe to undo."""
        self._stamp_history("superseded_at", ids, None, None)

    def mark_undone(self, ids: Sequence[int], track: str | None = None, after: os.stat_result | None = None,
                    file_genres: Sequence[str] | None = None) -> None:
        """Mark writes undone; with ``track``, give its row the file's stat ``after`` the restore
        (and, for the genre field, the ``file_genres`` it holds again)."""
        self._stamp_history("undone_at", ids, track, after, file_genres)

    def _stamp_history(self, column: str, ids: Sequence[int], track: str | None, after: os.stat_result | None,
                       file_genres: Sequence[str] | None = None) -> None:
        stamp = now()
        with self._cache._writing():
            self.db.conn.executemany(f"update tag_history set [{column}] = ? where id = ?", [(stamp, i) for i in ids])
            if column in ("undone_at", "superseded_at"):  # undo will not need their whole tags any more
                self.db.conn.executemany("delete from whole_tags where history_id = ?", [(i,) for i in ids])
            if track is not None and after is not None:
                self._cache._set_track_stat(track, after, stamp, file_genres)
