"""The SQLite cache: one row per file, the only module that imports sqlite_utils.

The database is a first-class artifact: open it with ``sqlite3`` or
Datasette.  Tables:

``tracks``
    one row per file keyed by absolute path: size, mtime, duration, the
    analysis parameters, backend and model id, genre, confidence, top 3,
    all probabilities, error text, and timestamps.  A vanished file keeps
    its row with ``missing = 1``; nothing is ever silently dropped.
``features``
    the 57 GTZAN features per file, so a new feature model can re-predict
    without decoding again.
``tag_history``
    one row per genre write genretag made (see tagger/tagging.py): the
    field's exact ``snapshot`` before it (for undo), the ``previous`` and
    ``written`` values as JSON lists, and the file's size and mtime after the
    write.  A row whose ``written_at`` is empty is a write in flight or cut
    short (kill -9); its size and mtime are then the file's stat *before*
    the write.  ``undone_at`` is set by undo; ``superseded_at`` when the
    file changed outside genretag after the write, so undoing it would
    clobber that change.
``scans``
    one row per scan run, with its counts.

Writes go through :meth:`Cache.write_results` in one transaction per batch,
in WAL mode, so a killed scan loses at most the batch in flight.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from .features import FEATURE_NAMES

SCHEMA_VERSION = 1
LOOKUP_CHUNK = 500
INSERT_ONLY = frozenset({"path", "first_seen"})  # never changed by an upsert

TRACK_COLUMNS: dict[str, type] = {
    "path": str,
    "path_bytes": bytes,
    "size": int,
    "mtime": float,
    "duration": float,
    "excerpt_offset": float,
    "excerpt_seconds": float,
    "status": str,
    "error": str,
    "params": str,
    "backend": str,
    "model_id": str,
    "genre": str,
    "confidence": float,
    "top3": str,
    "probabilities": str,
    "missing": int,
    "first_seen": str,
    "analysed_at": str,
    "updated_at": str,
    "missing_since": str,
}


TAG_HISTORY_COLUMNS: dict[str, type] = {
    "id": int, "path": str, "path_bytes": bytes, "field": str, "format": str,
    "snapshot": str, "previous": str, "written": str, "size": int, "mtime": float,
    "written_at": str, "undone_at": str, "superseded_at": str,
}  # fmt: skip


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


def fs_path(row: dict[str, Any]) -> str:
    """The real file-system path of a ``tracks`` row (inverse of :func:`path_key`)."""
    raw = row.get("path_bytes")
    return os.fsdecode(raw) if raw else row["path"]


def _upsert(db: sqlite_utils.Database, table: str, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or update by path, touching only the columns each row names.

    Rows that omit a column (an error row has no genre) leave the stored
    value alone, so an earlier result is never overwritten with nothing;
    ``first_seen`` is written only when the row is new.
    """
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for row in rows:
        cols = tuple(row)
        groups.setdefault(cols, []).append(tuple(row[c] for c in cols))
    for cols, values in groups.items():
        names = ", ".join(f"[{c}]" for c in cols)
        updates = ", ".join(f"[{c}] = excluded.[{c}]" for c in cols if c not in INSERT_ONLY)
        sql = (f"insert into [{table}] ({names}) values ({', '.join('?' * len(cols))}) "
               f"on conflict(path) do update set {updates}")
        db.conn.executemany(sql, values)


class Cache:
    """The genretag database: open, query and update it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite_utils.Database(self.path)
        self.db.conn.execute("PRAGMA busy_timeout = 10000")
        self.db.enable_wal()
        self.db.conn.execute("PRAGMA synchronous = NORMAL")
        self._ensure_schema()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ensure_schema(self) -> None:
        db = self.db
        with db.conn:
            if "tracks" not in db.table_names():
                db["tracks"].create(TRACK_COLUMNS, pk="path", not_null={"status"}, defaults={"missing": 0})
                db["tracks"].create_index(["status"])
                db["tracks"].create_index(["genre"])
            if "features" not in db.table_names():
                db["features"].create({"path": str, **{name: float for name in FEATURE_NAMES}}, pk="path")
            if "tag_history" not in db.table_names():
                db["tag_history"].create(TAG_HISTORY_COLUMNS, pk="id")
                db["tag_history"].create_index(["path"])
            for name, kind in TAG_HISTORY_COLUMNS.items():  # databases made before a column existed
                if name not in db["tag_history"].columns_dict:
                    db["tag_history"].add_column(name, kind)
            if "scans" not in db.table_names():
                db["scans"].create(
                    {
                        "id": int, "started_at": str, "finished_at": str, "roots": str,
                        "backend": str, "model_id": str, "status": str, "counts": str,
                    },
                    pk="id",
                )  # fmt: skip
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- reading ---------------------------------------------------------
    def _by_keys(self, select: str, keys: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """Rows of ``select ... where path in (keys)``, queried in chunks to bound statement size."""
        for i in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[i : i + LOOKUP_CHUNK]
            yield from self.db.execute(f"{select} where path in ({','.join('?' * len(chunk))})", chunk)

    def lookup(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Rows for the given path keys (the ones present)."""
        cols = ("path", "size", "mtime", "status", "params", "backend", "model_id", "genre", "missing")
        rows = self._by_keys(f"select {', '.join(cols)} from tracks", keys)
        return {row[0]: dict(zip(cols, row)) for row in rows}

    def features_for(self, keys: Sequence[str]) -> dict[str, list[float]]:
        """Cached feature vectors for these path keys, in FEATURE_NAMES order."""
        cols = ", ".join(f"[{n}]" for n in FEATURE_NAMES)
        rows = self._by_keys(f"select path, {cols} from features", keys)
        return {row[0]: list(row[1:]) for row in rows if None not in row[1:]}

    def tracks(self, paths: Iterable[str] = (), *, where: str | None = None,
               params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        """Stream rows, optionally limited to files under ``paths`` (files or folders)."""
        yield from self._select("tracks", paths, where, params, "path")

    def tag_history(self, paths: Iterable[str] = (), *, where: str | None = None,
                    params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        """Stream genre-write records, by path then oldest first, optionally under ``paths``."""
        yield from self._select("tag_history", paths, where, params, "path, id")

    def _select(self, table: str, paths: Iterable[str], where: str | None, params: Sequence[Any],
                order: str) -> Iterator[dict[str, Any]]:
        """Rows of ``table`` matching ``where`` and under ``paths``, by key range so the path index serves."""
        clauses, args = [], list(params)
        if where:
            clauses.append(f"({where})")
        prefixes = []
        for p in paths:
            key, _ = path_key(os.path.abspath(p))
            prefixes.append("(path = ? or (path >= ? and path < ?))")
            base = key.rstrip(os.sep) + os.sep
            args += [key, base, base[:-1] + chr(ord(os.sep) + 1)]
        if prefixes:
            clauses.append("(" + " or ".join(prefixes) + ")")
        sql = f"select * from [{table}]" + (" where " + " and ".join(clauses) if clauses else "") + f" order by {order}"
        yield from self.db.query(sql, args)

    def scan_roots(self) -> list[str]:
        """Every file or folder a scan was run on: what ``tag`` and ``undo`` may write under without paths."""
        roots: set[str] = set()
        for row in self.db.query("select roots from scans"):
            roots.update(json.loads(row["roots"] or "[]"))
        return sorted(roots)

    def count(self) -> int:
        return self.db["tracks"].count

    # -- writing ---------------------------------------------------------
    def write_results(self, rows: Sequence[dict[str, Any]], features: Sequence[dict[str, Any]] = ()) -> None:
        """Upsert track rows and feature rows in one transaction."""
        if not rows and not features:
            return
        with self.db.conn:
            _upsert(self.db, "tracks", rows)
            _upsert(self.db, "features", features)

    def touch_present(self, keys: Sequence[str]) -> None:
        """Clear the missing flag of files that turned up again unchanged."""
        if keys:
            with self.db.conn:
                self.db.conn.executemany(
                    "update tracks set missing = 0, missing_since = null, updated_at = ? where path = ?",
                    [(now(), k) for k in keys],
                )

    def mark_missing(self, roots: Iterable[str]) -> int:
        """Flag rows under ``roots`` whose file no longer exists; return how many."""
        gone: list[str] = []
        for row in self.tracks(roots, where="missing = 0"):
            if not os.path.lexists(fs_path(row)):
                gone.append(row["path"])
        if gone:
            stamp = now()
            with self.db.conn:
                self.db.conn.executemany(
                    "update tracks set missing = 1, missing_since = ?, updated_at = ? where path = ?",
                    [(stamp, stamp, k) for k in gone],
                )
        return len(gone)

    def start_scan(self, roots: Sequence[str], backend: str, model_id: str) -> int:
        with self.db.conn:
            table = self.db["scans"].insert(
                {"started_at": now(), "roots": json.dumps(list(roots)), "backend": backend,
                 "model_id": model_id, "status": "running"}
            )  # fmt: skip
        return int(table.last_pk)

    def finish_scan(self, scan_id: int, status: str, counts: dict[str, Any]) -> None:
        with self.db.conn:
            self.db["scans"].update(
                scan_id, {"finished_at": now(), "status": status, "counts": json.dumps(counts)}
            )

    # -- genre writes (tagger/tagging.py) --------------------------------
    def record_tag_write(self, entry: dict[str, Any], before: os.stat_result) -> int:
        """Store a write's snapshot *before* the file is touched; returns the record's id.

        ``entry`` holds path, path_bytes, field, format, snapshot, previous
        and written.  Until :meth:`confirm_tag_write`, size and mtime are the
        file's stat before the write and ``written_at`` is empty.
        """
        with self.db.conn:
            table = self.db["tag_history"].insert({**entry, "size": before.st_size, "mtime": before.st_mtime})
        return int(table.last_pk)

    def confirm_tag_write(self, history_id: int, after: os.stat_result, track: str | None) -> None:
        """Mark a write done with the file's new stat, and give ``track``'s row that stat too.

        Updating the ``tracks`` row keeps a rescan from taking genretag's own
        write for a user's change (which would re-analyse the file).
        """
        stamp = now()
        with self.db.conn:
            self.db.conn.execute(
                "update tag_history set written_at = ?, size = ?, mtime = ? where id = ?",
                (stamp, after.st_size, after.st_mtime, history_id),
            )
            if track is not None:
                self._set_track_stat(track, after, stamp)

    def discard_tag_write(self, history_id: int) -> None:
        """Forget a write that did not happen (it failed, leaving the file as it was)."""
        with self.db.conn:
            self.db.conn.execute("delete from tag_history where id = ? and written_at is null", (history_id,))

    def mark_superseded(self, ids: Sequence[int]) -> None:
        """Retire writes that a later outside change made unsafe to undo."""
        self._stamp_history("superseded_at", ids, None, None)

    def mark_undone(self, ids: Sequence[int], track: str | None = None, after: os.stat_result | None = None) -> None:
        """Mark writes undone; with ``track``, give its row the file's stat ``after`` the restore."""
        self._stamp_history("undone_at", ids, track, after)

    def _stamp_history(self, column: str, ids: Sequence[int], track: str | None, after: os.stat_result | None) -> None:
        stamp = now()
        with self.db.conn:
            self.db.conn.executemany(f"update tag_history set [{column}] = ? where id = ?", [(stamp, i) for i in ids])
            if track is not None and after is not None:
                self._set_track_stat(track, after, stamp)

    def _set_track_stat(self, key: str, st: os.stat_result, stamp: str) -> None:
        self.db.conn.execute(
            "update tracks set size = ?, mtime = ?, updated_at = ? where path = ?", (st.st_size, st.st_mtime, stamp, key)
        )
