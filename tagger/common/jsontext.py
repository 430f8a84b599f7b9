"""JSON that strict parsers accept, even for file names that are not UTF-8.

POSIX file names are bytes.  Python hands a non-UTF-8 name over as text
with lone surrogates (``caf\\udce9``), and ``json.dumps`` writes those as
``\\udce9`` escapes, which are not Unicode: strict parsers (Go, Rust's
serde, jq) reject the whole document.  Here every such string becomes the
readable ``\\xe9`` form the database uses for its keys (tagger.store.cache.path_key),
and the exact bytes travel beside it, base64-encoded, under the key's name
plus ``_bytes_b64`` (``path`` -> ``path_bytes_b64``), so nothing is lost.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any, TextIO

#: Suffix of the field that carries a text field's exact bytes.
BYTES_SUFFIX = "_bytes_b64"
#: Characters a terminal acts on instead of showing: C0 controls (ESC starts a sequence, NUL, newline, CR,
#: backspace, tab), DEL, C1 controls (U+009B is a one-character CSI) and the bidirectional overrides and
#: isolates (a name that reads backwards).  printable() shows each as an escape.
_UNPRINTABLE = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))} | {
    c: f"\\u{c:04x}" for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def raw_bytes(text: str) -> bytes | None:
    """The bytes a surrogate-escaped string stands for, or None when it is plain Unicode."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape" if _escaped_only(text) else "surrogatepass")


def _escaped_only(text: str) -> bool:
    """True when every surrogate is one os.fsdecode makes (U+DC80..U+DCFF: one undecodable byte)."""
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in text)


def readable(text: str) -> str:
    """``text`` with undecodable bytes shown as ``\\xNN``: valid Unicode, for people and strict parsers."""
    raw = raw_bytes(text)
    return text if raw is None else raw.decode("utf-8", "backslashreplace")


def printable(text: str) -> str:
    """``text`` safe to show on a terminal: :func:`readable`, and every character in _UNPRINTABLE as an escape.

    A file name or a genre tag is anyone's text: raw, ``\\x1b]0;...`` would
    retitle the window, ``\\x1b[2J`` clear the screen, a NUL or a newline
    break a line apart.  The one function every human-readable view passes
    such text through (tables, warnings, summaries); JSON is exact instead.
    """
    return readable(text).translate(_UNPRINTABLE)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def utf8_safe(value: Any) -> Any:
    """A copy of ``value`` (dicts, lists, scalars) in which every string is valid Unicode.

    In a dict, a string field that was not becomes readable text and gains a
    ``<key>_bytes_b64`` sibling with its exact bytes; a ``path_bytes`` field
    (raw bytes from the database) becomes ``path_bytes_b64``.  Strings
    elsewhere (lists, error texts) are made readable.
    """
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            key = readable(key) if isinstance(key, str) else key
            if isinstance(item, str) and (raw := raw_bytes(item)) is not None:
                out[key], out[f"{key}{BYTES_SUFFIX}"] = readable(item), b64(raw)
            elif isinstance(item, (bytes, bytearray, memoryview)) and isinstance(key, str):
                out[key.removesuffix("_bytes") + BYTES_SUFFIX] = b64(bytes(item))
            else:
                out[key] = utf8_safe(item)
        return out
    if isinstance(value, (list, tuple)):
        return [utf8_safe(v) for v in value]
    if isinstance(value, str):
        return readable(value)
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`utf8_safe` ``(value)``: never a lone surrogate in the output."""
    return json.dumps(utf8_safe(value), **kwargs)


class JsonRows:
    """Records written as they come: one JSON document (an array, or ``head`` such as ``{"files": [``)
    or, with ``lines``, JSON Lines (one record a line).  Nothing is kept, so memory stays flat.

    :meth:`close` ends the document; a ``tail`` dict becomes the rest of the
    object ``head`` opened (JSON Lines: one last line ``{"summary": tail}``).
    """

    def __init__(self, out: TextIO | None = None, *, lines: bool = False, head: str = "[") -> None:
        self._out, self.lines, self.head, self.count = out, lines, head, 0
        if not lines:
            self._write(head)

    def _write(self, text: str) -> None:
        (self._out or sys.stdout).write(text)  # looked up now: the stream a caller swapped in (click's runner)

    def add(self, record: Any) -> None:
        text = dumps(record, default=str)
        self._write(text + "\n" if self.lines else ("," if self.count else "") + "\n  " + text)
        self.count += 1

    def close(self, tail: dict[str, Any] | None = None) -> None:
        if self.lines:
            if tail is not None:
                self._write(dumps({"summary": tail}, default=str) + "\n")
        else:
            self._write("\n]" if self.count else "]")
            if self.head.startswith("{"):
                self._write("," + dumps(tail, indent=2, default=str)[1:] if tail else "}")
            self._write("\n")
        (self._out or sys.stdout).flush()
