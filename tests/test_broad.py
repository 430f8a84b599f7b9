"""The broad source (tagger/decide/broad.py): genres beyond the head's, from the networks' stored tag outputs.

Scan, tag and album mode decide through one rule: the head's genre stands;
where it abstains, the broad genres clearing their calibrated thresholds
are given, with "broad" as their source.  Tracks here are scanned by the
shipped svc (no tags of its own); their stored tags are then set as a
fused musicnn front end would have stored them.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from audiofiles import make_audio
from tagger.cli import cli
from tagger.common.errors import FileError
from tagger.decide import broad, vocabulary
from tagger.store.cache import Cache

ELECTRONIC = {"musicnn:electronic": 0.9, "musicnn:rock": 0.05, "musicnn:pop": 0.1}
QUIET = {"musicnn:electronic": 0.01, "musicnn:rock": 0.02, "musicnn:pop": 0.02}


def run(*args: str) -> dict | list:
    result = CliRunner().invoke(cli, [*args, "--json"] + ([] if args[0] == "show" else ["--no-progress"]))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.stdout)


@pytest.fixture
def library(tmp_path) -> tuple[Path, Path, dict[str, str]]:
    """Two tracks scanned by svc; one's stored tags say electronic 0.9, the other's say nothing much."""
    lib, db = tmp_path / "Music", tmp_path / "cache.db"
    (lib / "Album").mkdir(parents=True)  # a folder album, not loose files
    paths = {}
    for name, kind in (("loud", "tone"), ("quiet", "noise")):
        make_audio(lib / "Album" / f"{name}.wav", "wav", seconds=4.0, kind=kind, seed=1)
        paths[name] = str(lib / "Album" / f"{name}.wav")
    run("scan", str(lib), "--db", str(db), "--backend", "svc", "--jobs", "0", "--min-confidence", "0")
    with sqlite3.connect(db) as con:
        for name, tags in (("loud", ELECTRONIC), ("quiet", QUIET)):
            con.execute("update tracks set tags = ? where path = ?", (json.dumps(tags), paths[name]))
    return lib, db, paths


def rows(db: Path) -> dict[str, dict]:
    with Cache(db) as cache:
        return {t.path: t.public() for t in cache.records()}


def test_an_abstaining_head_gives_way_to_the_broad_source(library):
    lib, db, paths = library
    summary = run("scan", str(lib), "--db", str(db), "--backend", "svc", "--jobs", "0", "--min-confidence", "1")
    assert summary["analysed"] == 0 and summary["redecided"] == 2  # decided again from the stored tags
    got = rows(db)
    loud, quiet = got[paths["loud"]], got[paths["quiet"]]
    assert loud["genre"] == "Electronic" and loud["genre_source"] == "broad" and loud["abstained"] is None
    assert loud["genre_score"] >= broad.shipped().calibration["musicnn"]["electronic"].threshold
    assert loud["broad"][0][0] == "Electronic"
    assert quiet["genre"] is None and quiet["genre_source"] is None
    assert "broad: best" in quiet["abstained"] and quiet["abstained"].startswith("uncertain: best")
    shown = CliRunner().invoke(cli, ["show", "--db", str(db)]).output
    assert "Electronic (broad" in shown
    out = CliRunner().invoke(cli, ["export", "--db", str(db), "--format", "json"]).output
    exported = {r["path"]: r for r in json.loads(out)}
    assert exported[paths["loud"]]["genre_source"] == "broad" and exported[paths["loud"]]["genre_score"] > 0.9
    dry = run("tag", "--db", str(db), "--dry-run")
    by_path = {r["path"]: r for r in dry["files"]}
    assert by_path[paths["loud"]]["proposed"] == ["Electronic"] and by_path[paths["loud"]]["action"] == "would write"
    assert by_path[paths["loud"]]["reason"].startswith("broad ")
    assert by_path[paths["quiet"]]["action"] == "abstained"
    off = run("tag", "--db", str(db), "--dry-run", "--no-broad")
    assert {r["path"]: r["action"] for r in off["files"]}[paths["loud"]] == "abstained"


def test_no_broad_abstains_and_a_config_key_says_the_same(library, tmp_path):
    lib, db, paths = library
    run("scan", str(lib), "--db", str(db), "--backend", "svc", "--jobs", "0", "--min-confidence", "1", "--no-broad")
    loud = rows(db)[paths["loud"]]
    assert loud["genre"] is None and loud["genre_source"] is None and loud["broad_id"] == broad.OFF
    summary = run("scan", str(lib), "--db", str(db), "--backend", "svc", "--jobs", "0", "--min-confidence", "1")
    assert summary["redecided"] == 2 and rows(db)[paths["loud"]]["genre_source"] == "broad"  # turned on again
    config = tmp_path / "genretag.toml"
    config.write_text("[scan]\nbroad = false\n")
    result = CliRunner().invoke(cli, ["--config", str(config), "scan", str(lib), "--db", str(db), "--backend", "svc",
                                      "--jobs", "0", "--min-confidence", "1", "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    assert rows(db)[paths["loud"]]["genre"] is None


def test_a_head_decision_is_not_overridden(library):
    lib, db, paths = library
    loud = rows(db)[paths["loud"]]
    assert loud["genre"] in ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae",
                             "rock")
    assert loud["genre_source"] == "head" and loud["genre"] != "Electronic"
    dry = run("tag", "--db", str(db), "--dry-run")
    proposed = {r["path"]: r for r in dry["files"]}[paths["loud"]]
    assert "Electronic" not in proposed["proposed"] and proposed["reason"].startswith("head ")


def test_album_mode_takes_the_broad_genre_from_its_tracks_tags(library):
    lib, db, paths = library
    run("scan", str(lib), "--db", str(db), "--backend", "svc", "--jobs", "0", "--min-confidence", "1")
    with sqlite3.connect(db) as con:  # both tracks electronic-sounding
        con.execute("update tracks set tags = ?", (json.dumps(ELECTRONIC),))
    albums = run("show", "--db", str(db), "--by", "folder")
    assert albums[0]["genre"] == "Electronic" and albums[0]["source"] == "broad"
    assert run("show", "--db", str(db), "--by", "folder") == albums
    result = CliRunner().invoke(cli, ["tag", "--db", str(db), "--by", "folder", "--dry-run", "--no-broad",
                                      "--no-progress", "--json"])
    assert all(r["action"] == "abstained" for r in json.loads(result.stdout)["files"])


def test_the_rule_itself():
    data = broad.shipped()
    d = broad.consult(None, "uncertain: x", {"electronic": 0.9}, "musicnn", data)  # a plain musicnn track
    assert (d.genre, d.source) == ("Electronic", "broad")
    assert broad.consult(None, "uncertain: x", {"electronic": 0.9}, "musicnn", None).genre is None
    head = broad.consult("rock", None, {"alternative rock": 0.9, "rock": 0.9}, "musicnn", data)
    assert head.genre == "rock" and head.source == "head" and head.broad == [("Alternative Rock", 1.0)]
    nan = broad.consult(None, "u", {"musicnn:electronic": float("nan")}, "fusion", data)
    assert nan.genre is None and nan.abstained == "u"  # no usable tags: the head's reason alone


def test_every_mapped_genre_is_in_the_tree_and_calibrated_for_every_backend_set():
    data = broad.shipped()
    assert all(vocabulary.tree().genres[k] for k in data.genres)
    for parts, cals in data.calibration.items():
        assert set(parts.split("+")) <= data.backends
        assert all(c.how for c in cals.values())
    for key in ("electronic", "ambient", "soundtrack", "video-game-music", "orchestral", "new-age", "folk", "world"):
        assert data.calibration["efficientat+musicnn"][key].kind == "false-alarm"
    assert data.calibration["efficientat+musicnn"]["jazz"].kind == "gtzan-folds"


@pytest.mark.parametrize("text, words", [
    ("[genres.nonsense]\nmusicnn = ['x']\n", "'nonsense' is not a genre of the tree"),
    ("[genres.electronic]\nmusicnn = 'electronic'\n", "musicnn must be a list of strings"),
    ("[genres.electronic]\nmusicnn = ['electronic']\n[calibration.musicnn.electronic]\nkind = 'guess'\n",
     "kind must be one of"),
    ("[genres.electronic]\nmusicnn = ['electronic']\n[calibration.musicnn.electronic]\nkind = 'false-alarm'\n"
     "knots = [0.5, 0.1]\nlevels = [0, 1]\nthreshold = 0.9\n", "two ascending lists"),
    ("[genres.electronic]\nmusicnn = ['electronic']\n[calibration.musicnn.electronic]\nkind = 'gtzan-folds'\n"
     "platt = [1, 2]\nthreshold = 2\n", "threshold must be a number from 0 to 1"),
    ("[genres.electronic\n", "not valid TOML"),
])
def test_a_bad_data_file_is_named_with_its_fault(tmp_path, text, words):
    path = tmp_path / "broad.toml"
    path.write_text(text)
    with pytest.raises(FileError) as err:
        broad.load(path)
    assert str(path) in str(err.value) and words in str(err.value)
    with pytest.raises(FileError, match="cannot read"):
        broad.load(tmp_path / "absent.toml")


def test_a_data_file_that_is_a_fifo_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "broad.toml"
    os.mkfifo(fifo)
    with pytest.raises(FileError, match="is a FIFO"):  # read_text on it would block for ever
        broad.load(fifo)


def test_report_gives_the_broad_source_beside_the_head():
    result = CliRunner().invoke(cli, ["report", "--backend", "musicnn", "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["rows"][0]
    measured = broad.shipped().measured["musicnn"]
    assert row["precision_coverage"] and row["broad"]["clips"] == measured["clips"] == 173
    assert row["broad"]["coverage"] == pytest.approx(measured["given"] / 173)
    assert row["broad"]["precision"] == pytest.approx(measured["right"] / measured["given"])
    text = CliRunner().invoke(cli, ["report", "--backend", "musicnn"]).output
    assert "broad source alone (musicnn tags" in text


def test_from_tags_is_deprecated_with_a_note(library):
    lib, db, paths = library
    result = CliRunner().invoke(cli, ["tag", "--db", str(db), "--dry-run", "--from-tags", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "--from-tags is deprecated" in result.stderr and "broad source" in result.stderr
