"""A file's own tags (album, artist, genres) are read once at scan time and cached with its row."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from audiofiles import EXTENSIONS, FORMATS, add_test_tags, make_audio
from tagger.cli import cli
from tagger.inference.worker import describe
from tagger.media import tags

META = ("artist", "album", "album_artist", "compilation", "file_genres")


@pytest.mark.parametrize("fmt", FORMATS)
def test_describe_reads_every_format(fmt: str, tmp_path: Path) -> None:
    path = make_audio(tmp_path / f"a{EXTENSIONS[fmt]}", fmt, seconds=1.0)
    add_test_tags(path, artist="Nina Simone", genres=["Jazz", "Soul"], album="Pastel Blues",
                  album_artist="Nina Simone", compilation=True)
    meta = tags.describe(path)
    assert meta == tags.FileMeta(genres=("Jazz", "Soul"), artist="Nina Simone", album="Pastel Blues",
                                 album_artist="Nina Simone", compilation=True)


@pytest.mark.parametrize("fmt", ["mp3", "flac", "m4a-aac"])
def test_describe_of_an_untagged_file_is_empty(fmt: str, tmp_path: Path) -> None:
    path = make_audio(tmp_path / f"a{EXTENSIONS[fmt]}", fmt, seconds=1.0)
    assert tags.describe(path) == tags.FileMeta()


def test_describe_splits_a_joined_id3v23_genre(tmp_path: Path) -> None:
    path = make_audio(tmp_path / "a.mp3", "mp3", seconds=1.0)
    add_test_tags(path, genres=["Rock", "Blues"], id3v23=True, compilation=False)
    meta = tags.describe(path)
    assert meta.genres == ("Rock", "Blues") and meta.compilation is False


def test_real_samples(library_samples: Path) -> None:
    meta = tags.describe(next(library_samples.rglob("a kind of magic.flac")))
    assert (meta.artist, meta.album, meta.genres) == ("Queen", "A Kind of Magic", ("Rock",))
    v1 = tags.describe(next(library_samples.rglob("id3v1_Blood_Sugar.mp3")))  # only an ID3v1 tag
    assert v1.artist == "Pendulum" and v1.album == "Blood Sugar (Single)"


def test_worker_never_fails_on_unreadable_tags(tmp_path: Path) -> None:
    garbage = tmp_path / "a.flac"
    garbage.write_bytes(b"not audio at all" * 100)
    assert describe(str(garbage)) is None
    assert describe(str(tmp_path / "a.wma")) is None  # a format genretag cannot tag


def _rows(db: Path) -> dict[str, dict]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return {Path(r["path"]).name: dict(r) for r in con.execute("select * from tracks")}
    finally:
        con.close()


def test_scan_caches_meta_and_tag_and_undo_keep_it_current(tmp_path: Path) -> None:
    music, db = tmp_path / "Music", tmp_path / "g.db"
    music.mkdir()
    tagged = make_audio(music / "tagged.flac", "flac", seconds=4.0, kind="tone")
    add_test_tags(tagged, artist="A", album="B", album_artist="C", genres=["Dub"])
    make_audio(music / "bare.mp3", "mp3", seconds=4.0, kind="noise", seed=3)
    runner = CliRunner()
    assert runner.invoke(cli, ["scan", str(music), "--db", str(db), "-j", "1", "--no-progress"]).exit_code == 0
    rows = _rows(db)
    assert {k: rows["tagged.flac"][k] for k in META} == {
        "artist": "A", "album": "B", "album_artist": "C", "compilation": None, "file_genres": '["Dub"]'}
    assert rows["bare.mp3"]["file_genres"] == "[]" and rows["bare.mp3"]["artist"] is None

    result = runner.invoke(cli, ["tag", str(music), "--db", str(db), "--overwrite", "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = _rows(db)
    for name in ("tagged.flac", "bare.mp3"):
        assert json.loads(rows[name]["file_genres"]) == list(tags.describe(music / name).genres) != []
    assert rows["tagged.flac"]["artist"] == "A"

    assert runner.invoke(cli, ["undo", "--all", "--db", str(db), "--no-progress"]).exit_code == 0
    rows = _rows(db)
    assert json.loads(rows["tagged.flac"]["file_genres"]) == ["Dub"] == list(tags.describe(tagged).genres)
    assert json.loads(rows["bare.mp3"]["file_genres"]) == []
