"""JSON that strict parsers accept, even for file names that are not UTF-8.

POSIX file names are bytes.  Python hands a non-UTF-8 name over as text
with lone surrogates (``caf\\udce9``), and ``json.dumps`` writes those as
``\\udce9`` escapes, which are not Unicode: strict parsers (Go, Rust's
serde, jq) reject the whole document.  Here every such string becomes the
readable ``\\xe9`` form the database uses for its keys (tagger.cache.path_key),
and the exact bytes travel beside it, base64-encoded, under the key's name
plus ``_bytes_b64`` (``path`` -> ``path_bytes_b64``), so nothing is lost.
"""

from __future__ import annotations

import base64
import json
from typing import Any

#: Suffix of the field that carries a text field's exact bytes.
BYTES_SUFFIX = "_bytes_b64"


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
