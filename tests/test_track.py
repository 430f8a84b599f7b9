"""The stored track has one owner (issue 12): tagger/store/track.py declares, encodes and decodes; cache.py queries.

Records are written and read back through a real database in a temporary
folder; the source checks keep SQL and column decoding from creeping back
into other modules.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np
import pytest

from tagger.inference.predict import track_probabilities
from tagger.media.tags import FileMeta
from tagger.store.cache import Cache
from tagger.store.track import STATUSES, TagWrite, Track, TrackStamp, meta_fields

ROOT = Path(__file__).resolve().parent.parent


def _ok(path: str, genre: str | None = "jazz", **extra: object) -> dict:
    probs = {"blues": 0.2, "jazz": 0.7, "rock": 0.1}
    fields = {"path": path, "status": "ok", "genre": genre, "confidence": 0.7, "top3": [("jazz", 0.7), ("blues", 0.2)],
              "probabilities": probs, "missing": False, "size": 10, "mtime": 1.5}  # fmt: skip
    return Track.row(**(fields | extra))


def test_a_record_round_trips_through_the_database(tmp_path: Path) -> None:
    meta = FileMeta(genres=("Jazz", "Café"), artist="A", album="B", album_artist=None, compilation=True)
    with Cache(tmp_path / "db.sqlite") as cache:
        cache.write_results([_ok("/m/a.flac", tags={"jazz": 0.9, "piano": 0.5}, params='{"sr": 22050}',
                                 **meta_fields(meta))])  # fmt: skip
        raw = next(cache.tracks())
        (track,) = cache.records()
        looked_up = cache.lookup(["/m/a.flac"])["/m/a.flac"]
        fetched = cache.fetch(["/m/a.flac", "/m/none.flac"])
    assert isinstance(raw["probabilities"], str) and raw["compilation"] == 1 and raw["missing"] == 0  # as stored
    assert track.probabilities == {"blues": 0.2, "jazz": 0.7, "rock": 0.1}
    assert list(track.probabilities) == ["blues", "jazz", "rock"]  # the model's order is kept
    assert track.top3 == [("jazz", 0.7), ("blues", 0.2)] and track.tags == {"jazz": 0.9, "piano": 0.5}
    assert track.file_genres == ["Jazz", "Café"] and track.compilation is True and track.album_artist is None
    assert track.missing is False and track.analysis == {"sr": 22050} and track.fs_path == "/m/a.flac"
    assert Track.from_row(track.to_row()) == track
    assert fetched == {"/m/a.flac": track}
    # lookup reads only what a rescan decides on, as stored: no JSON column
    assert looked_up == TrackStamp(path="/m/a.flac", size=10, mtime=1.5, status="ok", params='{"sr": 22050}',
                                   backend=None, model_id=None, genre="jazz", missing=0, abstain_threshold=None,
                                   failed_model=None)  # fmt: skip
    assert set(TrackStamp._fields) <= set(Track.columns())


def test_an_update_touches_only_the_fields_it_names(tmp_path: Path) -> None:
    with Cache(tmp_path / "db.sqlite") as cache:
        cache.write_results([_ok("/m/a.flac")])
        cache.write_results([Track.row(path="/m/a.flac", status="error", error="cannot decode")])
        (track,) = cache.records()
    assert (track.status, track.error, track.genre, track.probabilities["jazz"]) == ("error", "cannot decode", "jazz", 0.7)


def test_a_field_that_is_not_a_column_is_refused() -> None:
    with pytest.raises(TypeError, match="genres"):
        Track.row(path="/x", genres=["jazz"])


def test_the_tables_are_made_from_the_records(tmp_path: Path) -> None:
    with Cache(tmp_path / "db.sqlite") as cache:
        assert cache.db["tracks"].columns_dict == {**Track.columns(), "path": str}
        assert list(cache.db["tag_history"].columns_dict) == list(TagWrite.columns())
    assert Track.columns()["top3"] is str and Track.columns()["missing"] is int and Track.columns()["size"] is int


def test_records_filter_by_status_genre_and_path(tmp_path: Path) -> None:
    rows = [
        _ok("/m/ok.flac"),
        _ok("/m/rock.flac", genre="rock"),
        _ok("/m/unsure.flac", genre=None, abstained="uncertain: jazz 0.31 < 0.40"),
        Track.row(path="/m/bad.flac", status="error", error="cannot decode", missing=False),
        _ok("/m/gone.flac", missing=True),
        _ok("/elsewhere/x.flac"),
    ]
    with Cache(tmp_path / "db.sqlite") as cache:
        cache.write_results(rows)

        def paths(*args: str, **kwargs: str) -> list[str]:
            return [t.path for t in cache.records(args, **kwargs)]

        assert paths(status="ok") == ["/elsewhere/x.flac", "/m/ok.flac", "/m/rock.flac", "/m/unsure.flac"]
        assert paths(status="abstained") == ["/m/unsure.flac"]
        assert paths(status="error") == ["/m/bad.flac"]
        assert paths(status="missing") == ["/m/gone.flac"]
        assert paths("/m", genre="jazz") == ["/m/gone.flac", "/m/ok.flac"]
        assert paths("/m", status="ok", genre="jazz") == ["/m/ok.flac"]
        assert len(paths()) == 6 and set(STATUSES) == {"ok", "error", "missing", "abstained"}
        with pytest.raises(ValueError, match="unknown status"):
            paths(status="fine")


def test_open_writes_by_stage(tmp_path: Path) -> None:
    song = tmp_path / "song.flac"
    song.write_bytes(b"x")
    st = os.stat(song)
    track = Track(path=str(song))
    snap = {"field": None, "format": "flac", "items": [["GENRE", "Jazz"]]}
    with Cache(tmp_path / "db.sqlite") as cache:
        done = cache.journal.record(track, snap, ["Jazz"], ["Rock"], st)
        cache.journal.confirm(done, st, None)
        in_flight = cache.journal.record(track, snap, ["Rock"], ["Blues"], st)
        undone = cache.journal.record(Track(path=str(tmp_path / "other.flac")), snap, [], ["Pop"], st)
        cache.journal.confirm(undone, st, None)
        cache.journal.mark_undone([undone])

        def ids(**kwargs: str) -> list[int | None]:
            return [w.id for w in cache.journal.open_writes(**kwargs)]

        assert ids() == [done, in_flight]
        assert ids(stage="done") == [done] and ids(stage="in_flight") == [in_flight]
        assert ids(key=str(song), stage="done") == [done]
        cache.journal.start_undo([done])
        assert ids(stage="undoing") == [done]
        (write, _) = cache.journal.open_writes()
    assert (write.snapshot, write.previous, write.written, write.format) == (snap, ["Jazz"], ["Rock"], "flac")


def test_the_public_form_is_json_ready(tmp_path: Path) -> None:
    raw = b"/m/caf\xe9.flac"
    track = Track(path="/m/caf\\xe9.flac", path_bytes=raw, params='{"excerpt": 30.0}', missing=None,
                  top3=[("jazz", 0.7)], failed_model="svc 1")  # fmt: skip
    out = track.public()
    assert out["path_bytes_b64"] == "L20vY2Fm6S5mbGFj" and out["missing"] is False
    assert out["params"] == {"excerpt": 30.0} and out["top3"] == [["jazz", 0.7]]
    assert "path_bytes" not in out and "failed_model" not in out
    assert track.fs_path == os.fsdecode(raw)


def test_a_tracks_probabilities_are_the_mean_of_its_rows() -> None:
    probs = np.array([[0.2, 0.8], [1.0, 0.0], [0.4, 0.6], [0.5, 0.5]])
    out = track_probabilities(probs, [1, 0, 1, 1], 3)  # rows of a track need not be adjacent; track 2 has none
    assert out == pytest.approx(np.array([[1.0, 0.0], [1.1 / 3, 1.9 / 3], [0.0, 0.0]]))


SQL = re.compile(r"\.execute\(|\bselect\b[^\n]*\bfrom\b|\bwhere=|\bimport sqlite", re.I)


def test_sql_and_column_decoding_live_in_the_cache_layer_only() -> None:
    sources = [p for pkg in ("tagger", "training", "plugins") for p in sorted((ROOT / pkg).rglob("*.py"))]
    offenders = [str(p.relative_to(ROOT)) for p in sources
                 if p.name != "cache.py" and SQL.search(p.read_text(encoding="utf-8"))]  # fmt: skip
    assert offenders == []
    json_columns = [f.name for record in (Track, TagWrite) for f in dataclasses.fields(record)
                    if f.metadata["codec"] == "json"] + ["params"]  # fmt: skip
    assert {"probabilities", "top3", "tags", "file_genres", "snapshot"} <= set(json_columns)
    decoding = re.compile(rf"json\.loads\([^)]*\b({'|'.join(json_columns)})\b")
    offenders = [str(p.relative_to(ROOT)) for p in sources
                 if p.name != "track.py" and decoding.search(p.read_text(encoding="utf-8"))]  # fmt: skip
    assert offenders == []


def test_a_damaged_json_cell_reads_as_no_value() -> None:
    track = Track.from_row({"path": "/m/a.flac", "probabilities": '{"jazz": 0.7', "file_genres": '["Dub"]'})
    assert track.probabilities is None and track.file_genres == ["Dub"]  # the run goes on; the file is read instead
