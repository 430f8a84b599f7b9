"""``export``: track records as CSV or JSON, for spreadsheets and scripts.

Each record is written as :meth:`tagger.store.track.Track.public` gives it: a
path that is not UTF-8 is shown as the database keys it (``caf\\xe9.mp3``)
and its exact bytes are exported too, base64-encoded in ``path_bytes_b64``
(empty for ordinary names), so JSON and CSV stay valid UTF-8 (tagger.common.jsontext).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import TextIO

from ..analysis.features import FEATURE_NAMES
from ..common.jsontext import JsonRows, utf8_safe
from ..store.cache import Cache
from ..store.track import Track

EXPORT_COLUMNS = (
    "path", "genre", "confidence", "top3", "status", "error", "abstained", "missing", "backend", "model_id",
    "duration", "size", "mtime", "analysed_at", "updated_at", "probabilities", "tags", "path_bytes_b64",
    "genre_source", "genre_score", "broad",  # where the genre came from (tagger/decide/broad.py)
)  # fmt: skip


def export_rows(cache: Cache, tracks: Iterable[Track], out: TextIO, fmt: str, *,
                with_features: bool = False) -> int:
    """Write records as CSV (flat, lists and dicts as JSON in cells) or a JSON array; return how many."""
    columns = list(EXPORT_COLUMNS) + (list(FEATURE_NAMES) if with_features else [])
    writer = None
    rows = JsonRows(out) if fmt == "json" else None
    n = 0
    for track in tracks:
        rec = track.public()
        if with_features:
            vector = cache.features_for([track.path]).get(track.path)
            rec.update(zip(FEATURE_NAMES, vector) if vector else ())
        rec = utf8_safe({c: rec.get(c) for c in columns})  # e.g. an error text quoting an odd name
        if rows is not None:
            rows.add(rec)
        else:
            if writer is None:
                writer = csv.DictWriter(out, fieldnames=columns)
                writer.writeheader()
            writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v
                             for k, v in rec.items() if k in columns})  # a cell reads "Électro", not "\\u00c9lectro"
        n += 1
    if rows is not None:
        rows.close()
    elif writer is None:
        csv.DictWriter(out, fieldnames=columns).writeheader()
    return n
