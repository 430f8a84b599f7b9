"""Read, write and exactly undo genre tags in every audio format genretag handles; the only module that imports mutagen.

Like beets' mediafile, each format is one row of ``FORMATS`` (extensions,
mutagen classes, tag style), so a new format is a row, not an ``if``. A write
edits a fsynced copy that keeps the original's owner, mode, xattrs and ACLs
(:func:`keep_metadata`) and is renamed over it, so a crash leaves the file
fully old or fully new; a hard-linked file is written in place from a
journalled copy that the next run finishes if cut short (:func:`finish_aside`).
The rules for users: docs/tagging.md "Safety" and "Hard links".
"""

from __future__ import annotations

import base64
import errno
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import mutagen
from mutagen import id3
from mutagen.aiff import AIFF
from mutagen.flac import FLAC
from mutagen.id3._id3v1 import find_id3v1  # private, but the only way to keep ID3v1 bytes intact
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4, AtomDataType, MP4FreeForm
from mutagen.oggflac import OggFLAC
from mutagen.oggopus import OggOpus
from mutagen.oggspeex import OggSpeex
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE

from ..common.errors import FileError
from ..defaults import IN_PLACE, SPLIT

__all__ = [
    "FORMATS",
    "IN_PLACE",
    "SPLIT",
    "TEMP_SUFFIX",
    "Format",
    "TagError",
    "FileMeta",
    "TagFile",
    "describe",
    "read_genres",
    "remove_stale_temporaries",
    "drop_link",
    "finish_aside",
    "keep_metadata",
    "restore",
    "snapshot",
    "split_genres",
    "supported",
    "write_genres",
]

#: Temporary files are ``.<name>.<random>.<pid>.genretag-tmp`` beside the original:
#: hidden, so library scanners skip them, and recognisable if a crash leaves one.
TEMP_SUFFIX = ".genretag-tmp"
#: An in-place write's verified new version while it is copied into the file (``.<name>.<random>.<pid>`` + this),
#: and a split's link to the old inode, kept for undo: neither is a stale temporary, the journal owns them.
INPLACE_SUFFIX, LINK_SUFFIX = ".genretag-inplace", ".genretag-link"
#: The largest whole ID3 tag kept for a byte-exact undo of a version conversion (TagFile.whole_tag).
WHOLE_TAG_MAX = 16 << 20
#: ``<name>`` is the original's first 40 characters, ``<random>`` mkstemp's 8; earlier
#: versions wrote no ``.<pid>``.
_TEMP_NAME = re.compile(r"\.(?s:.{0,40})\.[a-z0-9_]{8}(?:\.(?P<pid>[0-9]+))?" + re.escape(TEMP_SUFFIX) + r"\Z")
#: A temporary whose writer (by pid, on this machine) is gone is stale once unmodified this long.
STALE_DEAD_WRITER = 120.0
#: Any temporary unmodified this long is stale (an old name without a pid, a writer on another machine).
STALE_ANY = 3600.0
_SNAPSHOT_VERSION = 1

# Frames ID3v2.3 has no equivalent for.  mutagen's update_to_v23() deletes
# them; we keep them (off-spec, as Picard does) so a conversion drops as little as possible.
_V24_ONLY = frozenset(
    {"ASPI", "EQU2", "RVA2", "SEEK", "SIGN", "TDEN", "TDRL", "TDTG", "TMOO", "TPRO", "TSOA", "TSOP", "TSOT", "TSST"}
)


# TagError belongs in tagger/common/errors.py, whose owner will move it there; until
# then it lives here (a FileError, so the CLI already reports it as one clean
# "Error:" line) and callers import it from tagger.media.tags.
class TagError(FileError):
    """Reading or writing the tags of one file failed, for a reason a user can act on."""


# ---------------------------------------------------------------------------
# Storage styles: how one tag format stores one (genre) field.


class _Style:
    """mediafile's StorageStyle for a single field: read, snapshot, write, restore."""

    #: The format's keys for the descriptive fields :class:`FileMeta` holds (read only).
    META_KEYS: dict[str, tuple[str, ...]] = {}

    def key(self, field: str | None) -> str:
        """The format's name for the genre field, or for a custom field."""
        raise NotImplementedError

    def text(self, f: mutagen.FileType, name: str) -> str | None:
        """The first non-empty value of a descriptive field (``META_KEYS``), as text."""
        for key in self.META_KEYS[name]:
            for value in self.read(f, key):
                if str(value).strip():
                    return str(value).strip()
        return None

    def load_options(self, raw: bool) -> dict[str, Any]:
        """Keyword arguments for the mutagen class; ``raw`` means 'as stored, for editing'."""
        return {}

    def read(self, f: mutagen.FileType, key: str) -> list[str]:
        raise NotImplementedError

    def snapshot(self, f: mutagen.FileType, key: str) -> dict[str, Any]:
        raise NotImplementedError

    def absent(self, snap: dict[str, Any]) -> bool:
        """True when the snapshot says the field is not stored at all."""
        raise NotImplementedError

    def write(self, f: mutagen.FileType, key: str, genres: list[str], id3v23: bool, separator: str) -> None:
        raise NotImplementedError

    def restore(self, f: mutagen.FileType, key: str, snap: dict[str, Any]) -> None:
        raise NotImplementedError

    def whole_tag(self, f: mutagen.FileType, id3v23: bool) -> bytes | None:
        """The whole tag as stored, when a write asking for ``id3v23`` would re-encode more than the field."""
        return None

    def put_whole_tag(self, f: mutagen.FileType, raw: bytes) -> None:
        raise NotImplementedError


class _ID3Style(_Style):
    """ID3v2 ``TCON`` (or ``TXXX:<field>``) in MP3 files and in AIFF/WAV ID3 chunks.

    The tag is edited as stored (mutagen's translation off), so every other
    frame is written back unchanged, unless the tag has the other version
    than the one asked for: then the whole tag is converted.  ``v1`` marks
    MP3, whose trailing ID3v1 block is kept byte for byte: mutagen would
    otherwise regenerate it from the v2 frames, changing more than the genre.
    """

    # The ID3v2.2 names come second: tags are read as stored (see ``read``).
    META_KEYS = {"artist": ("TPE1", "TP1"), "album": ("TALB", "TAL"), "album_artist": ("TPE2", "TP2"),
                 "compilation": ("TCMP", "TCP")}  # fmt: skip

    def __init__(self, v1: bool) -> None:
        self.v1 = v1

    def text(self, f: mutagen.FileType, name: str) -> str | None:
        found = super().text(f, name)
        if found is None and self.v1 and name != "compilation":  # an MP3 with only an ID3v1 tag
            with open(f.filename, "rb") as fh:
                v1_frames, _ = find_id3v1(fh)
            frame = (v1_frames or {}).get(self.META_KEYS[name][0])
            found = str(frame.text[0]).strip() or None if frame is not None and frame.text else None
        return found

    def key(self, field: str | None) -> str:
        return "TCON" if field is None else f"TXXX:{field}"

    def load_options(self, raw: bool) -> dict[str, Any]:
        # load_v1=False: otherwise ID3v1 fields are merged into the v2 tag and saved there.
        return {"translate": False, "load_v1": False} if raw else {}

    def read(self, f: mutagen.FileType, key: str) -> list[str]:
        # From the tag as stored (one parse serves reading, snapshot and write), read as
        # mutagen's translating load would: ID3v2.2 names, then an MP3's ID3v1 genre.
        tags = f.tags
        frame = tags.get(key) if tags is not None else None
        if frame is None and tags is not None and tags.version[:2] == (2, 2):
            frame = tags.get("TCO" if key == "TCON" else key.replace("TXXX:", "TXX:", 1))
        if frame is None and self.v1 and key == "TCON":
            with open(f.filename, "rb") as fh:
                v1_frames, _ = find_id3v1(fh)
            frame = (v1_frames or {}).get("TCON")
        if frame is None:
            return []
        # TCON.genres resolves ID3v1 numbers: "(17)", "17" -> "Rock".
        return list(frame.genres) if key == "TCON" else [str(t) for t in frame.text]

    def snapshot(self, f: mutagen.FileType, key: str) -> dict[str, Any]:
        tags = f.tags
        frame = tags.get(key) if tags is not None else None
        return {
            "tag": None if tags is None else {"version": list(tags.version)},
            "frame": None if frame is None else {"encoding": int(frame.encoding), "text": [str(t) for t in frame.text]},
        }

    def absent(self, snap: dict[str, Any]) -> bool:
        return snap["frame"] is None

    def write(self, f: mutagen.FileType, key: str, genres: list[str], id3v23: bool, separator: str) -> None:
        major = 3 if id3v23 else 4
        if f.tags is None:
            f.add_tags()
        _convert(f.tags, major)
        f.tags.delall(key)
        if genres:
            # v2.4 stores real multi-values; v2.3 officially has no separator.
            text = [separator.join(genres)] if major == 3 else list(genres)
            f.tags.add(self._frame(key, text, id3.Encoding.UTF16 if major == 3 else id3.Encoding.UTF8))
        self._save(f, major)

    def restore(self, f: mutagen.FileType, key: str, snap: dict[str, Any]) -> None:
        old_tag, old_frame = snap["tag"], snap["frame"]
        if f.tags is None:
            if old_frame is None:
                return
            f.add_tags()
        version = tuple(old_tag["version"]) if old_tag else f.tags.version
        major = version[1] if version[:2] in ((2, 3), (2, 4)) else 4  # mutagen cannot write v2.2
        _convert(f.tags, major)
        f.tags.delall(key)
        if old_frame is not None:
            f.tags.add(self._frame(key, old_frame["text"], id3.Encoding(old_frame["encoding"])))
        if old_tag is None and not f.tags and not f.tags.unknown_frames:
            self._delete(f)
        else:
            self._save(f, major)

    def whole_tag(self, f: mutagen.FileType, id3v23: bool) -> bytes | None:
        tags = f.tags
        if tags is None or tags.version[:2] == (2, 3 if id3v23 else 4) or tags.size > WHOLE_TAG_MAX:
            return None
        with open(f.filename, "rb") as fh:
            tags._pre_load_header(fh)  # seeks to the tag: 0 in an MP3, the ID3 chunk's data in AIFF/WAV
            return fh.read(tags.size)

    def put_whole_tag(self, f: mutagen.FileType, raw: bytes) -> None:
        # mutagen's save (MP3, AIFF and WAV alike) writes what _prepare_data returns in the tag's place.
        f.tags._prepare_data = lambda *args, **kwargs: raw
        self._save(f, raw[3])

    @staticmethod
    def _frame(key: str, text: list[str], encoding: id3.Encoding) -> id3.Frame:
        if key == "TCON":
            return id3.TCON(encoding=encoding, text=text)
        return id3.TXXX(encoding=encoding, desc=key[len("TXXX:") :], text=text)

    def _save(self, f: mutagen.FileType, major: int) -> None:
        # v23_sep=None keeps other frames' multi-values null-separated instead of joining them with "/".
        if not self.v1:
            f.save(v2_version=major, v23_sep=None)
            return
        tail = _id3v1_block(f.filename)
        f.save(v1=id3.ID3v1SaveOptions.REMOVE, v2_version=major, v23_sep=None)
        if tail:
            with open(f.filename, "ab") as out:
                out.write(tail)

    def _delete(self, f: mutagen.FileType) -> None:
        if self.v1:
            id3.delete(f.filename, delete_v1=False, delete_v2=True)
        else:
            f.delete()


def _convert(tags: id3.ID3, major: int) -> None:
    """Convert an ID3 tag loaded as stored to v2.``major``, if it is another version."""
    if tags.version[:2] == (2, major):
        return
    if major == 4:
        tags.update_to_v24()
        return
    kept = [tags.pop(k) for k in list(tags.keys()) if k[:4] in _V24_ONLY]
    tags.update_to_v23()
    for frame in kept:
        tags.add(frame)


def _id3v1_block(path: str) -> bytes:
    """The raw trailing ID3v1 block of an MP3 (or b"" if there is none)."""
    with open(path, "rb") as fh:
        tag, offset = find_id3v1(fh)
        if tag is None:
            return b""
        fh.seek(offset, os.SEEK_END)
        return fh.read()


class _VorbisStyle(_Style):
    """Vorbis comments (FLAC, Ogg Vorbis, Opus, Ogg FLAC, Speex): one comment per value.

    Comments are edited in place in the comment list, so a restore puts them
    back at their original position with their original key spelling.
    """

    META_KEYS = {"artist": ("ARTIST",), "album": ("ALBUM",), "album_artist": ("ALBUMARTIST", "ALBUM ARTIST"),
                 "compilation": ("COMPILATION",)}  # fmt: skip

    def key(self, field: str | None) -> str:
        return "GENRE" if field is None else field.upper()

    def read(self, f: mutagen.FileType, key: str) -> list[str]:
        return [v for k, v in (f.tags or []) if k.upper() == key]

    def snapshot(self, f: mutagen.FileType, key: str) -> dict[str, Any]:
        items = list(f.tags or [])
        where = [i for i, (k, _) in enumerate(items) if k.upper() == key]
        return {
            "tag": f.tags is not None,
            "items": [list(items[i]) for i in where],
            "index": where[0] if where else None,
        }

    def absent(self, snap: dict[str, Any]) -> bool:
        return not snap["items"]

    def write(self, f: mutagen.FileType, key: str, genres: list[str], id3v23: bool, separator: str) -> None:
        if f.tags is None:
            f.add_tags()
        self._replace(f.tags, key, [(key, g) for g in genres], None)
        f.save()

    def restore(self, f: mutagen.FileType, key: str, snap: dict[str, Any]) -> None:
        if f.tags is None:
            if not snap["items"]:
                return
            f.add_tags()
        self._replace(f.tags, key, [(k, v) for k, v in snap["items"]], snap["index"])
        if not snap["tag"] and not f.tags:
            f.delete()  # FLAC: drop the comment block we created
        else:
            f.save()

    @staticmethod
    def _replace(tags: list[tuple[str, str]], key: str, items: list[tuple[str, str]], index: int | None) -> None:
        where = [i for i, (k, _) in enumerate(tags) if k.upper() == key]
        kept = [kv for kv in tags if kv[0].upper() != key]
        at = min(index if index is not None else where[0] if where else len(kept), len(kept))
        kept[at:at] = items
        list.__setitem__(tags, slice(None), kept)  # VComment overrides item access by key


class _MP4Style(_Style):
    """MP4/M4A ``©gen`` as a list of values; custom fields as iTunes freeform atoms."""

    _FREEFORM = "----:com.apple.iTunes:"
    META_KEYS = {"artist": ("\xa9ART",), "album": ("\xa9alb",), "album_artist": ("aART",), "compilation": ("cpil",)}

    def key(self, field: str | None) -> str:
        return "\xa9gen" if field is None else self._FREEFORM + field

    def read(self, f: mutagen.FileType, key: str) -> list[str]:
        values = (f.tags or {}).get(key, [])
        if not isinstance(values, list):  # a scalar atom such as cpil (bool)
            values = [values]
        return [bytes(v).decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]

    def snapshot(self, f: mutagen.FileType, key: str) -> dict[str, Any]:
        values = (f.tags or {}).get(key)
        if values is not None and key.startswith(self._FREEFORM):
            values = [_freeform_to_json(v) for v in values]
        return {"tag": f.tags is not None, "values": None if values is None else list(values)}

    def absent(self, snap: dict[str, Any]) -> bool:
        return not snap["values"]

    def write(self, f: mutagen.FileType, key: str, genres: list[str], id3v23: bool, separator: str) -> None:
        if f.tags is None:
            f.add_tags()
        if key.startswith(self._FREEFORM):
            self._set(f.tags, key, [MP4FreeForm(g.encode("utf-8"), AtomDataType.UTF8) for g in genres])
        else:
            self._set(f.tags, key, list(genres))
        f.save()

    def restore(self, f: mutagen.FileType, key: str, snap: dict[str, Any]) -> None:
        values = snap["values"]
        if f.tags is None:
            if values is None:
                return
            f.add_tags()
        if values is not None and key.startswith(self._FREEFORM):
            values = [_freeform_from_json(v) for v in values]
        self._set(f.tags, key, values)
        f.save()

    @staticmethod
    def _set(tags: Any, key: str, values: list[Any] | None) -> None:
        if values:
            tags[key] = values
        else:
            tags.pop(key, None)


def _freeform_to_json(value: MP4FreeForm) -> dict[str, Any]:
    """Freeform atoms hold bytes: text when it is UTF-8 (it nearly always is), else base64."""
    out: dict[str, Any] = {"dataformat": int(value.dataformat), "version": value.version}
    try:
        out["text"] = bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        out["base64"] = base64.b64encode(value).decode("ascii")
    return out


def _freeform_from_json(value: dict[str, Any]) -> MP4FreeForm:
    data = value["text"].encode("utf-8") if "text" in value else base64.b64decode(value["base64"])
    return MP4FreeForm(data, value["dataformat"], value["version"])


# ---------------------------------------------------------------------------
# The format table.


def _iff_complete(path: str) -> str | None:
    """Why a RIFF/AIFF file must not be written, if its header promises more bytes than it has.

    mutagen appends the ID3 chunk at the end of the file; in a truncated file
    that lands inside the audio chunk's promised span and would play as noise.
    """
    with open(path, "rb") as fh:
        head, size = fh.read(8), os.fstat(fh.fileno()).st_size
    if len(head) == 8 and head[:4] in (b"RIFF", b"FORM"):
        promised = int.from_bytes(head[4:], "little" if head[:4] == b"RIFF" else "big") + 8
        if promised > size + 1:  # +1: a missing final pad byte is harmless
            return f"file is truncated (its header promises {promised} bytes, it has {size}); not changed"
    return None


@dataclass(frozen=True)
class Format:
    """One supported file format: how to recognise it, open it, and store genres in it."""

    name: str
    extensions: tuple[str, ...]
    kinds: tuple[type[mutagen.FileType], ...]  # mutagen classes, tried by content when several
    style: _Style
    refuse: Callable[[str], str | None] = lambda path: None  # a reason not to write this file, if any


_ID3_MP3, _ID3_CHUNK, _VORBIS, _MP4 = _ID3Style(v1=True), _ID3Style(v1=False), _VorbisStyle(), _MP4Style()

#: Every format genretag can tag.  Raw ADTS ``.aac`` is absent: it has no tag format.
FORMATS: tuple[Format, ...] = (
    Format("mp3", (".mp3",), (MP3,), _ID3_MP3),
    Format("aiff", (".aiff", ".aif", ".aifc"), (AIFF,), _ID3_CHUNK, _iff_complete),
    Format("wav", (".wav", ".wave"), (WAVE,), _ID3_CHUNK, _iff_complete),
    Format("flac", (".flac",), (FLAC,), _VORBIS),
    Format("ogg", (".ogg", ".oga"), (OggVorbis, OggOpus, OggFLAC, OggSpeex), _VORBIS),
    Format("opus", (".opus",), (OggOpus,), _VORBIS),
    Format("mp4", (".m4a", ".mp4", ".m4b"), (MP4,), _MP4),
)
_BY_EXTENSION = {ext: fmt for fmt in FORMATS for ext in fmt.extensions}


def supported(path: str | os.PathLike[str]) -> bool:
    """True when genretag can tag this file, judged by its extension."""
    return os.path.splitext(os.fspath(path))[1].lower() in _BY_EXTENSION


def _format(path: str) -> Format:
    ext = os.path.splitext(path)[1].lower()
    fmt = _BY_EXTENSION.get(ext)
    if fmt is None:
        known = " ".join(sorted(_BY_EXTENSION))
        raise TagError(path, f"unsupported format {ext or '(no extension)'!r}; genretag tags {known}")
    return fmt


def _field(field: str | None) -> str | None:
    """Normalise the field name: None or "genre" means each format's own genre field."""
    if field is None or field.lower() == "genre":
        return None
    if not field or "=" in field or "\0" in field or not all(" " <= c <= "}" for c in field):
        raise ValueError(f"invalid tag field name {field!r}: use printable ASCII without '='")
    return field


# ---------------------------------------------------------------------------
# Public API.


def read_genres(path: str | os.PathLike[str], field: str | None = None) -> list[str]:
    """The genres stored in the file, one list item per stored value.

    Values are returned as stored, not split: an ID3v2.3 "Rock;Blues" stays
    one item (see ``split_genres``).  Numeric ID3v1-style genres such as
    "(17)" or "17" are resolved to names.  Empty values are dropped.
    """
    return TagFile(path).read(field)


def describe(path: str | os.PathLike[str]) -> FileMeta:
    """The file's descriptive tags (see :class:`FileMeta`); raises TagError when they cannot be read."""
    return TagFile(path).describe()


def split_genres(values: Iterable[str], separators: str = ";/") -> list[str]:
    """Split single-value genre lists such as "Rock;Blues" or "Rock / Pop", for merging.

    Items are stripped, empty ones dropped, and duplicates (ignoring case)
    removed, keeping the first spelling and order.
    """
    out: list[str] = []
    seen: set[str] = set()
    for value in values:
        for sep in separators[1:]:
            value = value.replace(sep, separators[:1])
        for part in value.split(separators[:1]) if separators else [value]:
            part = part.strip()
            if part and part.casefold() not in seen:
                seen.add(part.casefold())
                out.append(part)
    return out


def snapshot(path: str | os.PathLike[str], field: str | None = None) -> dict[str, Any]:
    """A JSON-serialisable record of exactly how the genre field is stored now, for ``restore``.

    It records the field's stored values (or their absence) and, for ID3,
    the frame's encoding, whether the file had an ID3v2 tag at all and its
    version.  Nothing else about the file is recorded: restore only ever
    touches this one field.
    """
    return TagFile(path).snapshot(field)


def write_genres(
    path: str | os.PathLike[str],
    genres: Sequence[str],
    *,
    field: str | None = None,
    id3v23: bool = False,
    separator: str = "; ",
) -> os.stat_result:
    """Store ``genres`` as the file's genre field, atomically, and return the file's new stat.

    Formats get real multiple values; only ID3v2.3 (``id3v23=True``) joins them
    with ``separator``, and an ID3 tag of the other version is converted. An empty
    list removes the field; ``field`` names a custom field instead. The mtime
    changes on purpose so players notice; record the returned stat. A hard-linked
    file is written in place (``TagFile.write(links=SPLIT)`` splits it instead).
    """
    genres = _checked_genres(genres)
    return TagFile(path).write(genres, field=field, id3v23=id3v23, separator=separator)


def restore(path: str | os.PathLike[str], snap: dict[str, Any]) -> os.stat_result:
    """Put the genre field back exactly as ``snapshot`` recorded it, and return the file's stat.

    An absent field is removed again, and an ID3 tag genretag created is deleted
    if nothing else was added since; a field already as recorded is not
    rewritten. An ID3 version the write converted is converted back (texts
    survive, encodings may not); ``undo`` restores byte for byte with the whole
    tag recorded before the write (``TagFile.restore(whole=...)``).
    """
    path = os.fspath(path)
    _check_snapshot(path, _format(path), snap)
    return TagFile(path).restore(snap)


def _checked_genres(genres: Sequence[str]) -> list[str]:
    if isinstance(genres, str):
        raise ValueError("genres must be a list of strings, not one string")
    for g in genres:
        if not isinstance(g, str) or not g.strip() or "\0" in g:
            raise ValueError(f"invalid genre {g!r}: genres must be non-empty strings without NUL")
    return list(genres)


def _check_snapshot(path: str, fmt: Format, snap: Any) -> None:
    if not isinstance(snap, dict) or snap.get("v") != _SNAPSHOT_VERSION or "key" not in snap:
        raise TagError(path, "not a genretag tag snapshot (or from an incompatible version)")
    if snap.get("format") != fmt.name:
        raise TagError(path, f"snapshot is for a {snap.get('format')} file, not {fmt.name}")


@dataclass(frozen=True)
class FileMeta:
    """What a file's own tags say about it, as a scan caches it (``tracks`` columns of the same names).

    Album mode groups by ``album`` and ``album_artist``; ``genretag learn``
    learns from ``genres`` (the genre field's values, split on ``;`` and ``/``)
    grouped by ``artist``.  ``compilation`` is None when the tag is absent.
    """

    genres: tuple[str, ...] = ()
    artist: str | None = None
    album: str | None = None
    album_artist: str | None = None
    compilation: bool | None = None


_TRUE, _FALSE = frozenset({"1", "true", "yes"}), frozenset({"0", "false", "no"})


class TagFile:
    """One file's tags, parsed once: read and snapshot them, then write or restore them once.

    Parsing is what tagging a file with large tags (big covers, many frames) costs, so
    ``tag`` and ``undo`` read, snapshot and write each file on one parse. The
    stat is taken before the parse; a write refuses a file changed since. After a
    write or restore the object is spent: open the file again for another change.
    """

    def __init__(self, path: str | os.PathLike[str], *, like: str | None = None) -> None:
        self.path = os.fspath(path)
        self.fmt = _format(like or self.path)  # ``like``: a file set aside, whose name has no extension
        self._file: mutagen.FileType | None = None
        with _errors(self.path):
            self.real = os.path.realpath(self.path)  # keep a symlink a symlink: its target is replaced
            self.stat = os.stat(self.real)
            self._file = _open(self.real, self.fmt, raw=True)

    def _parsed(self) -> mutagen.FileType:
        if self._file is None:
            raise RuntimeError(f"{self.path}: tags already written through this TagFile; open it again")
        return self._file

    def read(self, field: str | None = None) -> list[str]:
        """The genres stored in the field (see :func:`read_genres`)."""
        with _errors(self.path):
            key = self.fmt.style.key(_field(field))
            return [v for v in self.fmt.style.read(self._parsed(), key) if v.strip()]

    def describe(self) -> FileMeta:
        """Genres, artist, album, album artist and compilation flag, from this one parse."""
        with _errors(self.path):
            f, style = self._parsed(), self.fmt.style
            flag = (style.text(f, "compilation") or "").casefold()
            return FileMeta(
                genres=tuple(split_genres(self.read())), artist=style.text(f, "artist"),
                album=style.text(f, "album"), album_artist=style.text(f, "album_artist"),
                compilation=True if flag in _TRUE else False if flag in _FALSE else None,
            )  # fmt: skip

    def snapshot(self, field: str | None = None) -> dict[str, Any]:
        """The field's exact stored state (see :func:`snapshot`)."""
        with _errors(self.path):
            field = _field(field)
            key = self.fmt.style.key(field)
            state = self.fmt.style.snapshot(self._parsed(), key)
            return {"v": _SNAPSHOT_VERSION, "format": self.fmt.name, "field": field, "key": key, **state}

    def whole_tag(self, id3v23: bool) -> bytes | None:
        """The whole tag as stored, when a write asking for ``id3v23`` would convert its ID3 version.

        A conversion re-encodes every frame (ID3v2.3 has no UTF-8); with these
        bytes :meth:`restore` puts the file back byte for byte.  None when the
        write converts nothing, or the tag exceeds ``WHOLE_TAG_MAX``.
        """
        with _errors(self.path):
            return self.fmt.style.whole_tag(self._parsed(), id3v23)

    def write(self, genres: Sequence[str], *, field: str | None = None, id3v23: bool = False,
              separator: str = "; ", links: str = IN_PLACE, note: Callable[[bytes], None] | None = None,
              ) -> os.stat_result:
        """Store ``genres`` in the field (see :func:`write_genres`; ``links`` and ``note``: :func:`_edit`)."""
        genres, style = _checked_genres(genres), self.fmt.style
        with _errors(self.path):
            field = _field(field)
            if not genres and style.absent(self.snapshot(field)):
                return os.stat(self.path)  # nothing to remove: leave the file and its mtime alone
            key = style.key(field)
            return self._edit(lambda f: style.write(f, key, genres, id3v23, separator), links, note)

    def restore(self, snap: dict[str, Any], *, whole: bytes | None = None, links: str = IN_PLACE,
                note: Callable[[bytes], None] | None = None) -> os.stat_result:
        """Put the field back as ``snap`` recorded it (see :func:`restore`).

        ``whole``: the tag :meth:`whole_tag` gave before the write, to put
        back instead, byte for byte (only while the file is as the write
        left it, or other changes would be undone too).
        """
        _check_snapshot(self.path, self.fmt, snap)
        with _errors(self.path):
            current = self.snapshot(snap.get("field"))
            if set(current) != set(snap) or current["key"] != snap["key"]:
                raise TagError(self.path, "damaged tag snapshot (its fields do not match this file's format)")
            if current == snap:
                return os.stat(self.path)  # nothing to undo: keep the file and its mtime
            if whole:
                return self._edit(lambda f: self.fmt.style.put_whole_tag(f, whole), links, note)
            return self._edit(lambda f: self.fmt.style.restore(f, snap["key"], snap), links, note)

    def _edit(self, change: Callable[[mutagen.FileType], None], links: str,
              note: Callable[[bytes], None] | None) -> os.stat_result:
        f, self._file = self._parsed(), None
        return _edit(self.path, self.real, self.fmt, self.stat, f, change, links, note)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process, or no way to tell: assume a writer is at work
    return True


def remove_stale_temporaries(folder: str, *, dry_run: bool = False, now: float | None = None) -> list[str]:
    """Delete the temporaries a killed genretag left in ``folder``; return their paths.

    Only this user's regular files named exactly as :func:`_edit` names them, and
    only stale ones (``STALE_DEAD_WRITER`` seconds old with their writer's pid
    gone, or ``STALE_ANY`` seconds whatever the name says), so another running
    genretag's temporary is left alone. Errors are ignored: cleaning up must never
    stop tagging.
    """
    now = time.time() if now is None else now
    found: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return found
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if not match:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
            continue
        age, pid = now - st.st_mtime, match["pid"]
        dead = pid is not None and int(pid) != os.getpid() and not _alive(int(pid))
        if not (age > STALE_ANY or (dead and age > STALE_DEAD_WRITER)):
            continue
        if not dry_run:
            try:
                os.unlink(entry.path)
            except OSError:
                continue
        found.append(entry.path)
    return found


# ---------------------------------------------------------------------------
# Opening, safe editing and error translation.


def _open(path: str, fmt: Format, raw: bool) -> mutagen.FileType:
    options = fmt.style.load_options(raw)
    try:
        if len(fmt.kinds) == 1:
            return fmt.kinds[0](path, **options)
        f = mutagen.File(path, options=list(fmt.kinds))
    except (OSError, mutagen.MutagenError):
        raise
    except Exception as exc:  # mutagen lets some parse errors of damaged files escape raw
        raise TagError(path, f"cannot read its tags (corrupt file): {type(exc).__name__}: {exc}") from exc
    if f is None:
        raise TagError(path, f"not a valid {fmt.name} file (unrecognised content)")
    return f


def _writable(path: str, st: os.stat_result) -> None:
    """Refuse read-only files: the rename trick would otherwise replace them silently.

    The mode bits are checked as well as os.access because root may write
    anything: a file a user marked read-only stays untouched even then.
    """
    if not stat.S_ISREG(st.st_mode):
        raise TagError(path, "not a regular file")
    if not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(path, os.W_OK):
        raise TagError(path, "file is read-only (no write permission); not changed")


def _edit(path: str, real: str, fmt: Format, before: os.stat_result, parsed: mutagen.FileType,
          change: Callable[[mutagen.FileType], None], links: str = SPLIT,
          note: Callable[[bytes], None] | None = None) -> os.stat_result:
    """Apply ``change`` to a copy of the file, then put the copy in the original's place.

    ``parsed`` is the original's tags as loaded when its stat was ``before``;
    the copy has the same bytes, so it is edited without parsing it again.
    ``links`` says how a file with more than one name is written:
    ``SPLIT`` renames the copy over the name (the other names keep the old
    inode; a link to it is kept aside for undo), ``IN_PLACE`` copies the
    verified copy's bytes into the original inode, keeping every name.
    ``note`` is told the path of whatever is set aside *before* it exists,
    so the journal can finish or undo the step after a crash.
    """
    _writable(path, before)
    reason = fmt.refuse(real)
    if reason:
        raise TagError(path, reason)
    folder, name = os.path.split(real)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name[:40]}.", suffix=f".{os.getpid()}{TEMP_SUFFIX}", dir=folder)
    except PermissionError:
        reason = "its folder is not writable (the new version is written beside it first); not changed"
        raise TagError(path, reason) from None
    in_place = links == IN_PLACE and before.st_nlink > 1
    copying = False
    try:
        with os.fdopen(fd, "wb") as out, open(real, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        parsed.filename = tmp  # mutagen saves to (and the ID3 style reads the v1 block of) this name
        change(parsed)
        _fsync(tmp)
        if in_place:
            _open(tmp, fmt, raw=True)  # verify: the new bytes parse before any of them reach the inode
        else:
            keep_metadata(real, tmp, before)
        _unchanged(path, real, before)
        if in_place:
            aside = tmp[: -len(TEMP_SUFFIX)] + INPLACE_SUFFIX  # not a stale temporary: only settle removes it
            if note is not None:
                note(os.fsencode(aside))
            os.replace(tmp, aside)
            tmp, copying = aside, True
            _fsync(folder, directory=True)
            _copy_into(aside, real)
        else:
            if before.st_nlink > 1 and note is not None:  # split: keep a name for the old inode, for undo
                link = tmp[: -len(TEMP_SUFFIX)] + LINK_SUFFIX
                note(os.fsencode(link))
                os.link(real, link)
            os.replace(tmp, real)
    except KeyboardInterrupt:
        if copying:  # never leave the inode half-written: finish it, then stop
            _copy_into(tmp, real)
            os.unlink(tmp)
        else:
            _remove(tmp)
        raise
    except BaseException:
        if not copying:  # a copy into the inode cut short stays aside: the next run finishes it (settle)
            _remove(tmp)
        raise
    if copying:
        os.unlink(tmp)
    _fsync(folder, directory=True)
    return os.stat(real)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _unchanged(path: str, real: str, before: os.stat_result) -> None:
    now = os.stat(real)
    if (now.st_ino, now.st_size, now.st_mtime_ns) != (before.st_ino, before.st_size, before.st_mtime_ns):
        raise TagError(path, "file changed while its tags were being written; not changed")


def _copy_into(src: str, real: str) -> None:
    """Overwrite the inode at ``real`` with the bytes of ``src``; space is reserved first.

    Reserving the new size before the first byte is overwritten turns a full
    disk into an error while the file is still intact.
    """
    size = os.stat(src).st_size
    with open(src, "rb") as new, open(real, "r+b") as out:
        if size > os.fstat(out.fileno()).st_size and hasattr(os, "posix_fallocate"):
            try:
                os.posix_fallocate(out.fileno(), 0, size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):
                    raise  # ENOSPC above all: nothing was overwritten yet
        shutil.copyfileobj(new, out, 1 << 20)
        out.truncate(size)
        out.flush()
        os.fsync(out.fileno())


def finish_aside(real: str, aside: bytes | None) -> bool:
    """Complete an in-place write cut short: copy its verified new bytes into the file.

    ``aside`` is what :func:`_edit` noted; only an existing in-place copy
    acts (a split's link is left alone).  True when the file was rewritten.
    """
    name = os.fsdecode(aside) if aside else ""
    if not name.endswith(INPLACE_SUFFIX) or not os.path.isfile(name):
        return False
    _copy_into(name, real)
    os.unlink(name)
    return True


def drop_link(aside: bytes | None) -> None:
    """Remove a split's link to the old inode once undo can no longer use it (anything else is left)."""
    name = os.fsdecode(aside) if aside else ""
    if name.endswith(LINK_SUFFIX) and os.path.basename(name).startswith("."):
        _remove(name)


def keep_metadata(src: str, dst: str, st: os.stat_result) -> None:
    """Give ``dst`` the owner, mode, extended attributes and POSIX ACLs of ``src`` (whose stat is ``st``).

    ACLs are the ``system.posix_acl_*`` attributes, so copying every
    attribute carries them (set after the mode, which they refine).  Only
    root may give a file away, so the owner is kept where allowed; SELinux
    labels and ``trusted.*`` attributes likewise.  An attribute that cannot
    be kept otherwise (``user.*``, an ACL) stops the write: the file would
    lose it, or gain access it did not have.
    """
    mine = os.stat(dst)
    for owner in ((st.st_uid, st.st_gid), (-1, st.st_gid)):
        if (mine.st_uid, mine.st_gid) == (st.st_uid, st.st_gid):
            break
        try:
            os.chown(dst, *owner)
            break
        except PermissionError:
            continue  # not root: the copy stays ours, in the original's group if we belong to it
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    if not hasattr(os, "listxattr"):
        return
    try:
        wanted = {n: os.getxattr(src, n, follow_symlinks=False) for n in os.listxattr(src, follow_symlinks=False)}
        extra = [n for n in os.listxattr(dst, follow_symlinks=False) if n not in wanted]
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return  # a file system without extended attributes
        raise
    for n in extra:  # e.g. an ACL the folder's default ACL gave the new file
        _set_xattr(src, dst, n, None)
    for n, value in wanted.items():
        _set_xattr(src, dst, n, value)
    os.chmod(dst, stat.S_IMODE(st.st_mode))  # set*xattr of an ACL may not restore setuid/sticky bits


def _set_xattr(src: str, dst: str, name: str, value: bytes | None) -> None:
    try:
        if value is None:
            os.removexattr(dst, name, follow_symlinks=False)
        else:
            os.setxattr(dst, name, value, follow_symlinks=False)
    except OSError as exc:
        if name.startswith(("security.", "trusted.")) and exc.errno in (errno.EPERM, errno.EACCES, errno.ENOTSUP):
            return
        what = "ACL" if name.startswith("system.posix_acl") else f"extended attribute {name}"
        raise TagError(src, f"cannot keep its {what} on the new version ({_os_reason(exc)}); not changed") from None


def sync_folder(path: str) -> None:
    """Make a rename in ``path``'s folder durable."""
    _fsync(os.path.dirname(path), directory=True)


def _fsync(path: str, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    except OSError:
        if directory:
            return  # some file systems cannot open folders; the rename is still atomic
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextmanager
def _errors(path: str) -> Iterator[None]:
    """Turn OSError and mutagen errors into one TagError with a reason a user can act on."""
    try:
        yield
    except TagError:
        raise
    except (OSError, mutagen.MutagenError) as exc:
        os_error = _os_error(exc)
        if os_error is not None:
            raise TagError(path, _os_reason(os_error)) from exc
        raise TagError(path, f"cannot read or write its tags (corrupt or unsupported file): {exc}") from exc


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind an exception: mutagen wraps them in its own error classes."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno is not None:
            return e
        todo.extend([e.__cause__, *e.args])  # mutagen's convert_error passes the OSError as args[0]
    return None


def _os_reason(e: OSError) -> str:
    if e.errno == errno.ENOENT:
        return "file not found (moved or deleted?)"
    if e.errno == errno.ENOSPC:
        return "disk full (no space left on device); not changed"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if e.errno == errno.EROFS:
        return "read-only file system"
    return e.strerror or str(e)
