"""Cached rows as users see them: parsed JSON columns, for ``show`` and ``export``.

A path that is not UTF-8 is shown as the database keys it (``caf\\xe9.mp3``)
and its exact bytes are exported too, base64-encoded in ``path_bytes_b64``
(empty for ordinary names), so JSON and CSV stay valid UTF-8 (tagger.jsontext).
"""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Iterable
from typing import Any, TextIO

from .cache import Cache
from .features import FEATURE_NAMES
from .jsontext import dumps, utf8_safe

JSON_COLUMNS = ("top3", "probabilities", "params", "tags")
EXPORT_COLUMNS = (
    "path", "genre", "confidence", "top3", "status", "error", "abstained", "missing", "backend", "model_id",
    "duration", "size", "mtime", "analysed_at", "updated_at", "probabilities", "tags", "path_bytes_b64",
)  # fmt: skip


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    """A ``tracks`` row with JSON columns decoded and raw path bytes as base64 (None for UTF-8 names)."""
    out = {k: v for k, v in row.items() if k not in ("path_bytes", "failed_model")}
    raw = row.get("path_bytes")
    out["path_bytes_b64"] = base64.b64encode(raw).decode("ascii") if raw else None
    for col in JSON_COLUMNS:
        if out.get(col):
            out[col] = json.loads(out[col])
    out["missing"] = bool(out.get("missing"))
    return out


def export_rows(cache: Cache, rows: Iterable[dict[str, Any]], out: TextIO, fmt: str, *,
                with_features: bool = False) -> int:
    """Write rows as CSV (flat, JSON in cells) or a JSON array; return how many."""
    columns = list(EXPORT_COLUMNS) + (list(FEATURE_NAMES) if with_features else [])
    writer = None
    n = 0
    if fmt == "json":
        out.write("[")
    for row in rows:
        rec = public_row(row)
        if with_features:
            vector = cache.features_for([row["path"]]).get(row["path"])
            rec.update(zip(FEATURE_NAMES, vector) if vector else ())
        rec = utf8_safe({c: rec.get(c) for c in columns})  # e.g. an error text quoting an odd name
        if fmt == "json":
            out.write(("," if n else "") + "\n  " + dumps(rec))
        else:
            if writer is None:
                writer = csv.DictWriter(out, fieldnames=columns)
                writer.writeheader()
            writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in rec.items()
                             if k in columns})
        n += 1
    if fmt == "json":
        out.write("\n]\n" if n else "]\n")
    elif writer is None:
        csv.DictWriter(out, fieldnames=columns).writeheader()
    return n
