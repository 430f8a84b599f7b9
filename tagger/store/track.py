"""The stored records: a track's row of ``tracks`` and a genre write's row of ``tag_history``.

Each column is declared once, as a field of :class:`Track` or :class:`TagWrite`
(Python type, SQL type, encoding); no other module encodes or decodes a cached
column. A row may name only some columns: an upsert writes those and leaves the
others as they are (an error row keeps the genre found earlier).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from ..common.jsontext import b64
from ..defaults import STATUSES

if TYPE_CHECKING:
    from ..media.tags import FileMeta

JSON, FLAG = "json", "flag"  # how a column is stored when it is not stored as it is


def _column(sql: type = str, codec: str | None = None, default: Any = None, *, required: bool = False) -> Any:
    metadata = {"sql": sql, "codec": codec}
    return dataclasses.field(metadata=metadata) if required else dataclasses.field(default=default, metadata=metadata)


def _encode_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _encode_flag(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def _decode_json(text: str | None) -> Any:
    """The value of a JSON cell; a damaged one reads as None (no value), so one bad row never stops a run."""
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _decode_flag(value: int | None) -> bool | None:
    return None if value is None else bool(value)


_ENCODE: dict[str | None, Callable[[Any], Any]] = {JSON: _encode_json, FLAG: _encode_flag}
_DECODE: dict[str | None, Callable[[Any], Any]] = {JSON: _decode_json, FLAG: _decode_flag}


class Stored:
    """What both records share: the column declaration and the codec, derived from the fields."""

    @classmethod
    @functools.cache
    def columns(cls) -> dict[str, type]:
        """Column name -> SQL type (str, int, float or bytes), in declaration order: the table's schema."""
        return {f.name: f.metadata["sql"] for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    @classmethod
    @functools.cache
    def _codecs(cls) -> tuple[dict[str, Callable[[Any], Any]], dict[str, Callable[[Any], Any]]]:
        """(encoders, decoders) of the columns not stored as they are."""
        fields = [f for f in dataclasses.fields(cls) if f.metadata["codec"]]  # type: ignore[arg-type]
        return ({f.name: _ENCODE[f.metadata["codec"]] for f in fields},
                {f.name: _DECODE[f.metadata["codec"]] for f in fields})  # fmt: skip

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Any:
        """The record of a stored row; columns this version does not know are ignored."""
        names, (_, decoders) = cls.columns(), cls._codecs()
        return cls(**{k: (decoders[k](v) if k in decoders else v) for k, v in row.items() if k in names})

    @classmethod
    def row(cls, **values: Any) -> dict[str, Any]:
        """The stored form of these fields (JSON as text, flags as 0/1), for an upsert that writes only them.

        A name that is not a field is a TypeError: a typo must not reach SQL.
        """
        names, (encoders, _) = cls.columns(), cls._codecs()
        unknown = [k for k in values if k not in names]
        if unknown:
            raise TypeError(f"{cls.__name__} has no field {unknown[0]!r}")
        return {k: (encoders[k](v) if k in encoders else v) for k, v in values.items()}

    def to_row(self) -> dict[str, Any]:
        """Every field in its stored form."""
        return self.row(**{name: getattr(self, name) for name in self.columns()})

    @property
    def fs_path(self) -> str:
        """The real file-system path: the exact bytes when the name is not UTF-8 (see cache.path_key)."""
        raw: bytes | None = getattr(self, "path_bytes")
        return os.fsdecode(raw) if raw else getattr(self, "path")


@dataclasses.dataclass
class Track(Stored):
    """One file's cached result: a row of ``tracks``, keyed by its absolute path.

    A vanished file keeps its record with ``missing`` set.  ``status`` is
    "ok" (``genre`` set, or None with the reason in ``abstained``) or
    "error" (``error`` says why; the genre of an earlier success is kept).
    """

    path: str = _column(required=True)  # the key: the path as text, \x.. escapes where the name is not UTF-8
    path_bytes: bytes | None = _column(bytes)  # the exact name, only when it is not UTF-8
    size: int | None = _column(int)
    mtime: float | None = _column(float)
    duration: float | None = _column(float)
    excerpt_offset: float | None = _column(float)
    excerpt_seconds: float | None = _column(float)
    status: str | None = _column()  # "ok" or "error"
    error: str | None = _column()
    params: str | None = _column()  # how it was analysed: the cache key text, compared whole (see .analysis)
    backend: str | None = _column()
    model_id: str | None = _column()
    genre: str | None = _column()
    confidence: float | None = _column(float)
    top3: list[tuple[str, float]] | None = _column(codec=JSON)
    probabilities: dict[str, float] | None = _column(codec=JSON)  # every genre, in the model's order
    tags: dict[str, float] | None = _column(codec=JSON)  # an embedding backend's tags, most likely first
    failed_model: str | None = _column()  # "<backend> <model id>" whose predict_proba failed on this file
    missing: bool | None = _column(int, FLAG, default=False)
    first_seen: str | None = _column()
    analysed_at: str | None = _column()
    updated_at: str | None = _column()
    missing_since: str | None = _column()
    abstained: str | None = _column()  # why the track got no genre (tagger/decide/abstain.py)
    abstain_threshold: float | None = _column(float)  # the threshold that decision used; None: never abstain
    # The file's own tags when it was analysed (tagger.media.tags.describe); None on rows analysed before them.
    artist: str | None = _column()
    album: str | None = _column()
    album_artist: str | None = _column()
    compilation: bool | None = _column(int, FLAG)
    file_genres: list[str] | None = _column(codec=JSON)  # the genre field's values, split on ; and /
    # Where the genre came from (tagger/decide/broad.py): "head" (the trained head) or "broad" (the networks' own
    # outputs, calibrated); its score (the head's probability or the broad genre's calibrated score); the
    # broad genres given (or refining the head's), [name, score] best first; the broad data's id or "off".
    genre_source: str | None = _column()
    genre_score: float | None = _column(float)
    broad: list[tuple[str, float]] | None = _column(codec=JSON)
    broad_id: str | None = _column()
    rule: str | None = _column()  # the genre rule the scan decided by, as JSON (decide/decision.py); None: older rows

    def __post_init__(self) -> None:
        if self.top3 is not None:
            self.top3 = [(str(g), float(p)) for g, p in self.top3]

    @property
    def analysis(self) -> dict[str, Any] | None:
        """The analysis parameters, decoded (for reading; compare ``params`` to tell a change)."""
        return _decode_json(self.params)

    def own_tags(self) -> FileMeta:
        """What the file's own tags say: from the record, or read from the file once when the record
        predates that cache or its cell is damaged (raises tags.TagError or OSError if the file cannot tell).

        The one place album mode and ``learn`` get a track's artist, album and genres from.
        """
        from ..media.tags import FileMeta, describe

        values = self.file_genres
        if isinstance(values, list) and all(isinstance(v, str) for v in values):
            return FileMeta(genres=tuple(values), artist=self.artist, album=self.album,
                            album_artist=self.album_artist, compilation=self.compilation)
        return describe(self.fs_path)

    def public(self) -> dict[str, Any]:
        """The record as ``show --json`` and ``export`` give it: JSON-ready, path bytes as base64."""
        out = {name: getattr(self, name) for name in self.columns() if name not in ("path_bytes", "failed_model")}
        out["params"] = self.analysis
        out["top3"] = None if self.top3 is None else [list(pair) for pair in self.top3]
        out["missing"] = bool(self.missing)
        out["path_bytes_b64"] = b64(self.path_bytes) if self.path_bytes else None
        return out


class TrackStamp(NamedTuple):
    """The few Track fields a rescan decides on (``Cache.lookup``): has the file changed, what is cached.

    A tuple straight from SQLite, read for every file of a rescan: nothing
    to decode (``missing`` is 0 or 1 as stored), so it costs next to nothing.
    """

    path: str
    size: int | None
    mtime: float | None
    status: str | None
    params: str | None
    backend: str | None
    model_id: str | None
    genre: str | None
    missing: int | None
    abstain_threshold: float | None
    failed_model: str | None
    broad_id: str | None = None  # the broad source's data id, or "off" (tagger/decide/broad.py)
    rule: str | None = None  # the genre rule, as JSON (tagger/decide/decision.py)


def meta_fields(meta: FileMeta | None) -> dict[str, Any]:
    """The Track fields of a file's own tags (tagger.media.tags.describe); all None when they could not be read."""
    if meta is None:
        return {"artist": None, "album": None, "album_artist": None, "compilation": None, "file_genres": None}
    return {"artist": meta.artist, "album": meta.album, "album_artist": meta.album_artist,
            "compilation": meta.compilation, "file_genres": list(meta.genres)}


@dataclasses.dataclass
class TagWrite(Stored):
    """One genre write genretag made: a row of ``tag_history`` (see tagger/write/journal.py).

    ``snapshot`` is the field exactly as it was (for undo); ``previous`` and
    ``written`` its values before and after.  Until ``written_at`` is set,
    size and mtime are the file's stat before the write.
    """

    id: int | None = _column(int)
    path: str = _column(default="")
    path_bytes: bytes | None = _column(bytes)
    field: str | None = _column()  # None: the format's genre field
    format: str | None = _column()
    snapshot: dict[str, Any] | None = _column(codec=JSON)
    previous: list[str] | None = _column(codec=JSON)
    written: list[str] | None = _column(codec=JSON)
    size: int | None = _column(int)
    mtime: float | None = _column(float)
    written_at: str | None = _column()
    undone_at: str | None = _column()
    superseded_at: str | None = _column()
    undo_started_at: str | None = _column()
    hard_links: str | None = _column()  # the file had several names: "in-place" or "split" (tagger.media.tags)
    aside: bytes | None = _column(bytes)  # an in-place write's new copy, or a split's link to the old inode
