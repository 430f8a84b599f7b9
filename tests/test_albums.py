"""Album mode (tagger/decide/albums.py, `tag --by album`, `show --by album`) and its GTZAN comparison.

Library functions are tested on track records built here; the commands on a small
generated library (an album with one short track in every format genretag
writes, a compilation, an untagged folder, a loose file), scanned once with
the svc backend, each test on its own copy.  Expected album genres are
computed here from the cached probabilities and analysed seconds, never
hard-coded.  A test that needs a clear winner or a clear outlier sets the
cached probabilities itself, since the svc model's answer on test tones is
whatever it is.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from audiofiles import EXTENSIONS, FORMATS, add_test_tags, make_audio
from conftest import copy_scanned, scan_for_module
from tagger.cli import cli
from tagger.decide import albums, decision
from tagger.decide.albums import ALBUM, COMPILATION, FOLDER, LOOSE, MIXED
from tagger.media import tags
from tagger.media.tags import FileMeta, read_genres
from tagger.store.track import Track
from tagger.write.tagging import TagOptions, display_name

# ---------------------------------------------------------------------------
# Library functions, on rows built here.


def row(path: str, probs: dict[str, float] | None = None, seconds: float = 30.0, *, artist: str | None = "A",
        album: str | None = "X", album_artist: str | None = None, compilation: int | None = None,
        status: str = "ok", missing: int = 0, threshold: float | None = None, tags_: dict | None = None) -> Track:
    probs = probs or {"rock": 0.7, "jazz": 0.3}
    return Track.from_row({"path": path, "path_bytes": None, "status": status, "missing": missing, "excerpt_seconds": seconds,
            "duration": seconds, "probabilities": json.dumps(probs), "genre": max(probs, key=probs.get),
            "abstained": None, "abstain_threshold": threshold, "backend": "svc", "tags": json.dumps(tags_) if tags_
            else None, "artist": artist, "album": album, "album_artist": album_artist, "compilation": compilation,
            "file_genres": "[]"})  # fmt: skip


def rank(r: Track) -> list[tuple[str, float]]:
    return sorted(r.probabilities.items(), key=lambda kv: -kv[1]) if r.probabilities else []


def groups(rows: list[Track], by: str = ALBUM, roots: tuple[str, ...] = ("/m",)) -> dict[str, list[str]]:
    """name -> the paths of its tracks (prefixed "~" when they keep their own genres)."""
    return {("~" if a.not_averaged else "") + a.name: [r.path for r in a.rows]
            for a in albums.group(rows, by, roots)}


def test_weighted_mean_a_track_with_twice_the_audio_counts_twice() -> None:
    a, b = {"rock": 0.9, "jazz": 0.1}, {"rock": 0.2, "jazz": 0.8}
    weighted = albums.weighted_mean([(a, 20.0), (b, 10.0)])
    twice = albums.weighted_mean([(a, 1.0), (a, 1.0), (b, 1.0)])
    assert [g for g, _ in weighted] == ["rock", "jazz"]
    np.testing.assert_allclose([p for _, p in weighted], [p for _, p in twice])
    np.testing.assert_allclose(dict(weighted)["rock"], (0.9 * 20 + 0.2 * 10) / 30)
    assert albums.weighted_mean([]) == []
    # A label one track does not give counts 0 for it.
    assert dict(albums.weighted_mean([({"rock": 1.0}, 1.0), ({"pop": 1.0}, 3.0)])) == {"pop": 0.75, "rock": 0.25}


def test_weight_is_the_seconds_heard() -> None:
    assert albums.weight(Track(path="/x", excerpt_seconds=12.5, duration=200)) == 12.5
    assert albums.weight(Track(path="/x", excerpt_seconds=None, duration=200)) == 200
    assert albums.weight(Track(path="/x")) == 1.0


def test_grouping_by_album_and_album_artist_across_folders() -> None:
    rows = [
        row("/m/Q/Magic/CD1/1.flac", album="Magic", album_artist="Queen"),
        row("/m/Q/Magic/CD2/1.flac", album="magic ", album_artist="QUEEN"),  # same album: case and spacing ignored
        row("/m/Q/Magic/CD2/2.flac", album="Magic", album_artist=None, artist="Queen"),  # artist stands in
        row("/m/B/Magic/1.mp3", album="Magic", album_artist="Bowie"),  # same name, other album artist
    ]
    queen = ["/m/Q/Magic/CD1/1.flac", "/m/Q/Magic/CD2/1.flac", "/m/Q/Magic/CD2/2.flac"]
    assert groups(rows) == {"Queen – Magic": queen, "Bowie – Magic": ["/m/B/Magic/1.mp3"]}


def test_album_artist_falls_back_to_the_artist_most_tracks_share() -> None:
    rows = [row(f"/m/a/{i}.mp3", artist=a, album="Hits") for i, a in enumerate(["A", "A", "A feat. B"])]
    assert groups(rows) == {"A – Hits": [r.path for r in rows]}
    tie = [row(f"/m/v/{i}.mp3", artist=a, album="Hits") for i, a in enumerate(["A", "B"])]
    assert groups(tie) == {"~Various Artists – Hits": [r.path for r in tie]}


@pytest.mark.parametrize("meta", [{"album_artist": "Various Artists"}, {"album_artist": "VA"},
                                  {"compilation": 1, "album_artist": "Now 45"}])
def test_compilations_are_not_averaged(meta: dict) -> None:
    rows = [row(f"/m/c/{i}.mp3", artist=f"A{i}", album="Now", **meta) for i in range(3)]
    (album,) = albums.group(rows, ALBUM, ["/m"])
    assert album.not_averaged == COMPILATION and len(album.rows) == 3
    assert albums.choice(albums.assess(album, rank), rows[0]).ranking is None  # each keeps its own


def test_untagged_tracks_group_by_folder_unless_mixed_or_loose() -> None:
    rows = [row("/m/rip/1.wav", album=None, artist=None), row("/m/rip/2.wav", album=None, artist=None),
            row("/m/dump/1.mp3", album=None, artist="A"), row("/m/dump/2.mp3", album=None, artist="B"),
            row("/m/dump/3.mp3", album=None, artist="C"),
            row("/m/one.mp3", album=None), row("/m/two.mp3", album=None),  # loose in the scanned folder
            row("/m/tagged.mp3", album="Solo", album_artist="S")]  # fmt: skip
    got = groups(rows)
    assert got["/m/rip"] == ["/m/rip/1.wav", "/m/rip/2.wav"]
    assert got["~/m/dump"] == ["/m/dump/1.mp3", "/m/dump/2.mp3", "/m/dump/3.mp3"]
    assert got["~/m/one.mp3"] == ["/m/one.mp3"] and got["~/m/two.mp3"] == ["/m/two.mp3"]
    assert got["S – Solo"] == ["/m/tagged.mp3"]  # album tags group even in the top folder
    reasons = {a.name: a.not_averaged for a in albums.group(rows, ALBUM, ["/m"])}
    assert reasons["/m/dump"] == MIXED and reasons["/m/one.mp3"] == LOOSE and reasons["/m/rip"] is None


def test_by_folder_ignores_album_tags_but_not_compilations() -> None:
    rows = [row("/m/f/1.mp3", album="One", album_artist="A"), row("/m/f/2.mp3", album="Two", album_artist="A"),
            row("/m/c/1.mp3", album="Now", compilation=1, artist="B"), row("/m/c/2.mp3", album="Now", artist="C")]
    assert groups(rows, FOLDER) == {"/m/f": ["/m/f/1.mp3", "/m/f/2.mp3"], "~/m/c": ["/m/c/1.mp3", "/m/c/2.mp3"]}
    assert set(groups(rows, ALBUM)) == {"A – One", "A – Two", "~Various Artists – Now"}


def test_decide_weights_abstains_and_leaves_out_failed_and_missing() -> None:
    rows = [row("/m/a/1.mp3", {"rock": 0.6, "jazz": 0.4}, 10, threshold=0.5),
            row("/m/a/2.mp3", {"rock": 0.2, "jazz": 0.8}, 40, threshold=0.5),
            row("/m/a/3.mp3", {"rock": 1.0, "jazz": 0.0}, 500, status="error"),
            row("/m/a/4.mp3", {"rock": 1.0, "jazz": 0.0}, 500, missing=1)]  # fmt: skip
    (album,) = albums.plan(rows, ALBUM, rank, roots=["/m"])
    assert (album.used, album.seconds, album.genre) == (2, 50.0, "jazz")
    np.testing.assert_allclose(dict(album.ranking)["jazz"], (0.4 * 10 + 0.8 * 40) / 50)
    assert album.abstained is None

    for r in rows:
        r.abstain_threshold = 0.9  # the threshold the tracks' scan used
    (album,) = albums.plan(rows, ALBUM, rank, roots=["/m"])
    assert album.genre is None and album.abstained.startswith("uncertain: best jazz 0.720 below 0.9 (mean of 2")

    dead = [row("/m/d/1.mp3", status="error"), row("/m/d/2.mp3", missing=1)]
    (album,) = albums.plan(dead, ALBUM, rank, roots=["/m"])
    assert album.used == 0 and album.abstained.startswith("no usable track (of 2")


def test_outliers_and_keep_outliers() -> None:
    rows = [row(f"/m/a/{i}.mp3", {"rock": 0.8, "jazz": 0.1, "pop": 0.1}) for i in range(3)]
    rows.append(row("/m/a/odd.mp3", {"rock": 0.1, "jazz": 0.85, "pop": 0.05}))  # 0.1 < 0.25 * 0.85
    rows.append(row("/m/a/near.mp3", {"rock": 0.3, "jazz": 0.6, "pop": 0.1}))  # disagrees, not strongly
    (album,) = albums.plan(rows, ALBUM, rank, roots=["/m"])
    assert album.genre == "rock" and list(album.outliers) == ["/m/a/odd.mp3"]
    odd = albums.choice(album, rows[3])
    assert odd.outlier and odd.ranking == album.ranking and "own genre jazz 0.85" in odd.note
    kept = albums.choice(album, rows[3], keep_outliers=True)
    assert kept.outlier and kept.ranking is None  # tagged from its own row
    assert albums.choice(album, rows[4]).ranking == album.ranking and not albums.choice(album, rows[4]).note
    assert not albums.is_outlier([("rock", 0.9)], "rock")


def test_from_tags_averages_the_tags_column() -> None:
    rows = [row("/m/a/1.mp3", tags_={"electronic": 0.8, "folk": 0.1}, seconds=10),
            row("/m/a/2.mp3", tags_={"electronic": 0.2, "folk": 0.6}, seconds=30),
            row("/m/a/3.mp3", tags_=None, seconds=1000)]  # no tags: left out

    def tag_rank(r: Track) -> list[tuple[str, float]]:
        return sorted((r.tags or {}).items(), key=lambda kv: -kv[1])

    (album,) = albums.plan(rows, ALBUM, tag_rank, roots=["/m"], from_tags=True)
    assert album.used == 2 and album.genre == "folk"
    np.testing.assert_allclose(dict(album.ranking)["electronic"], (0.8 * 10 + 0.2 * 30) / 40)


def test_file_meta_reads_the_file_only_for_rows_scanned_before_the_cache(tmp_path: Path) -> None:
    cached = row(str(tmp_path / "gone.flac"), album="X", album_artist="Y")
    assert albums.file_meta(cached) == FileMeta(artist="A", album="X", album_artist="Y")  # no file needed
    path = make_audio(tmp_path / "old.flac", "flac", seconds=1.0)
    add_test_tags(path, artist="Q", album="Magic", album_artist="Queen", compilation=False)
    old = replace(row(str(path)), **{k: None for k in ("artist", "album", "album_artist", "compilation", "file_genres")})
    assert albums.file_meta(old) == tags.describe(path)
    assert albums.file_meta(replace(row(str(tmp_path / "none.flac")), file_genres=None)) is None  # unreadable


def test_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--keep-outliers goes with"):
        TagOptions(keep_outliers=True)
    with pytest.raises(ValueError, match="--by must be"):
        TagOptions(by="disc")
    runner = CliRunner()
    result = runner.invoke(cli, ["tag", "--keep-outliers"])
    assert result.exit_code == 2 and "--keep-outliers goes with --by album" in result.stderr
    result = runner.invoke(cli, ["report", "--backend", "svc", "--by", "album"])
    assert result.exit_code == 1 and "Error: --by album compares out-of-fold predictions" in result.stderr
    config = tmp_path / "config.toml"
    config.write_text('by = "album"\n', encoding="utf-8")  # for tag and show: report goes on without it
    result = runner.invoke(cli, ["--config", str(config), "report", "--backend", "svc", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["rows"][0]["backend"] == "svc"


def test_scan_write_by_album_writes_the_album_genre(tmp_path: Path) -> None:
    album = tmp_path / "Music" / "X"
    album.mkdir(parents=True)
    for i, fmt in enumerate(("flac", "mp3", "ogg")):
        add_test_tags(make_audio(album / f"{i}{EXTENSIONS[fmt]}", fmt, seconds=3.0, kind="noise", seed=i),
                      artist="A", album="X")
    db = tmp_path / "g.db"
    result = CliRunner().invoke(cli, ["scan", str(tmp_path / "Music"), "--db", str(db), "-j", "0", "--write",
                                      "--by", "album", "--min-confidence", "0", "--json"])
    assert result.exit_code == 0, result.output
    tagging = json.loads(result.stdout)["tagging"]
    (entry,) = tagging["albums"]
    assert entry["used"] == 3 and {f["action"] for f in tagging["files"]} == {"written"}
    assert {tuple(read_genres(p)) for p in album.iterdir()} == {(display_name(entry["genre"]),)}


# ---------------------------------------------------------------------------
# The commands, on a generated library.

ALBUM_DIR = Path("Queen") / "Magic"


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Queen/Magic: one tagged track per format; Comp/: a compilation; Untagged/: two bare files; loose.mp3."""
    root = tmp_path_factory.mktemp("albums")
    lib, db = root / "Music", root / "cache.db"
    (lib / ALBUM_DIR).mkdir(parents=True)
    for i, fmt in enumerate(FORMATS):
        path = make_audio(lib / ALBUM_DIR / f"{i:02d}-{fmt}{EXTENSIONS[fmt]}", fmt, seconds=3.0 + i % 3,
                          kind="tone" if i % 2 else "noise", seed=i)  # fmt: skip
        add_test_tags(path, artist="Queen", album="A Kind of Magic", genres=["Ambient"] if fmt == "flac" else None)
    for group, n in (("Comp", 2), ("Untagged", 2)):
        (lib / group).mkdir()
        for i in range(n):
            path = make_audio(lib / group / f"{i}.mp3", "mp3", seconds=3.0, kind="noise", seed=20 + i)
            if group == "Comp":
                add_test_tags(path, artist=f"Artist {i}", album="Now", compilation=True)
    make_audio(lib / "loose.mp3", "mp3", seconds=3.0, seed=30)
    scan_for_module(lib, db, root / "home")
    return lib, db


@dataclass
class Lib:
    root: Path
    db: Path

    @property
    def album(self) -> list[Path]:
        return sorted((self.root / ALBUM_DIR).iterdir())

    def sql(self, query: str, params: tuple = ()) -> list[dict]:
        with sqlite3.connect(self.db) as con:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute(query, params)]

    def row(self, path: Path) -> dict:
        return self.sql("select * from tracks where path = ?", (str(path),))[0]

    def set_probs(self, path: Path, probs: dict[str, float]) -> None:
        self.sql("update tracks set probabilities = ?, genre = ? where path = ?",
                 (json.dumps(probs), max(probs, key=probs.get), str(path)))

    def expected_album(self, paths: list[Path]) -> str:
        """The album's genre from the cached rows: the seconds-weighted mean, computed here."""
        rows = [self.row(p) for p in paths]
        labels = sorted({g for r in rows for g in json.loads(r["probabilities"])})
        mean = np.average([[json.loads(r["probabilities"]).get(g, 0.0) for g in labels] for r in rows], axis=0,
                          weights=[r["excerpt_seconds"] for r in rows])
        return display_name(labels[int(np.argmax(mean))])

    def own(self, path: Path) -> str:
        return display_name(self.row(path)["genre"])

    def run(self, *args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, [*args, "--db", str(self.db)], catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    def json(self, *args: str) -> dict:
        code, out, err = self.run(*args, "--json")
        assert code == 0, out + err
        return json.loads(out)


@pytest.fixture
def lib(scanned: tuple[Path, Path], tmp_path: Path) -> Lib:
    return Lib(*copy_scanned(*scanned, tmp_path))


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def test_dry_run_table_and_json_shape_write_nothing(lib: Lib) -> None:
    before = snapshot(lib.root)
    data = lib.json("tag", "--by", "album", "--dry-run", "--overwrite")
    assert snapshot(lib.root) == before
    assert set(data) == {"files", "counts", "failed", "hard_linked", "dry_run", "interrupted", "stale_temporaries", "by", "albums"}
    assert data["by"] == "album" and data["dry_run"]
    files = {Path(f["path"]).relative_to(lib.root).as_posix(): f for f in data["files"]}
    genre = lib.expected_album(lib.album)
    for path in lib.album:
        f = files[path.relative_to(lib.root).as_posix()]
        assert f["album"] == "Queen – A Kind of Magic" and f["action"] in ("would write", "unchanged")
        assert f["proposed"] == [genre]
    assert {f["note"] for k, f in files.items() if k.startswith("Comp/")} == {"compilation: track mode"}
    assert files["loose.mp3"]["note"] == f"{LOOSE}: track mode"
    for k in ("Comp/0.mp3", "loose.mp3"):
        assert files[k]["proposed"] == [lib.own(lib.root / k)]
    assert files["Untagged/0.mp3"]["album"] == str(lib.root / "Untagged")
    album = next(a for a in data["albums"] if a["album"] == "Queen – A Kind of Magic")
    assert (album["tracks"], album["used"], album["not_averaged"]) == (len(FORMATS), len(FORMATS), None)
    assert display_name(album["genre"]) == genre
    assert album["seconds"] == pytest.approx(sum(lib.row(p)["excerpt_seconds"] for p in lib.album), abs=1e-3)

    code, out, err = lib.run("tag", "--by", "album", "--dry-run", "--no-progress")
    assert code == 0 and "album" in out.splitlines()[0] and "compilation: track mode" in out
    assert "album(s)" in err and "file(s) in track mode" in err and "dry run" in err
    assert snapshot(lib.root) == before


def test_tag_by_album_writes_every_format_then_undo_restores(lib: Lib) -> None:
    before = {p: read_genres(p) for p in lib.root.rglob("*.*")}
    genre = lib.expected_album(lib.album)
    code, out, err = lib.run("tag", "--by", "album", "--no-progress")
    assert code == 0, out + err
    for path in lib.album:
        want = ["Ambient"] if path.suffix == ".flac" else [genre]  # an existing genre is kept by default
        assert read_genres(path) == want, path.name
    assert read_genres(lib.root / "Comp" / "1.mp3") == [lib.own(lib.root / "Comp" / "1.mp3")]

    code, *_ = lib.run("tag", str(lib.root / ALBUM_DIR), "--by", "album", "--merge", "--no-progress")
    flac = next(p for p in lib.album if p.suffix == ".flac")
    assert code == 0 and read_genres(flac) == ["Ambient", genre]

    code, out, err = lib.run("undo", "--all", "--no-progress")
    assert code == 0, out + err
    assert {p: read_genres(p) for p in before} == before


def test_outlier_is_listed_and_keep_outliers_writes_its_own(lib: Lib) -> None:
    for path in lib.album:
        lib.set_probs(path, {"rock": 0.8, "jazz": 0.1, "pop": 0.1})
    odd = lib.album[2]  # not the flac, which has a genre already
    lib.set_probs(odd, {"rock": 0.05, "jazz": 0.9, "pop": 0.05})
    data = lib.json("tag", "--by", "album", "--dry-run", str(lib.root / ALBUM_DIR))
    notes = {Path(f["path"]).name: f["note"] for f in data["files"]}
    assert notes[odd.name].startswith("outlier: own genre jazz 0.90, album's rock 0.05")
    assert [n for n in notes.values() if n] == [notes[odd.name]]
    assert data["albums"][0]["outliers"] == [str(odd)]
    code, out, _ = lib.run("tag", "--by", "album", "--dry-run", "--no-progress", str(lib.root / ALBUM_DIR))
    assert "outlier" in out

    code, *_ = lib.run("tag", "--by", "album", "--keep-outliers", "--no-progress", str(lib.root / ALBUM_DIR))
    assert code == 0 and read_genres(odd) == ["Jazz"] and read_genres(lib.album[0]) == ["Rock"]


def test_album_abstains_with_the_scans_threshold(lib: Lib) -> None:
    rule = decision.Rule(decision.SINGLE, 0.999, source="the model's threshold").to_json()
    lib.sql("update tracks set abstain_threshold = 0.999, rule = ?", (rule,))  # as a scan by that rule stores it
    before = snapshot(lib.root)
    data = lib.json("tag", "--by", "album", str(lib.root / ALBUM_DIR))
    assert {f["action"] for f in data["files"]} == {"abstained"}
    assert all("uncertain: best" in f["reason"] and "mean of" in f["reason"] for f in data["files"])
    assert snapshot(lib.root) == before


def test_failed_and_missing_tracks_are_left_out_of_the_mean(lib: Lib) -> None:
    gone, failed = lib.album[0], lib.album[2]
    lib.sql("update tracks set missing = 1 where path = ?", (str(gone),))
    lib.sql("update tracks set status = 'error', error = 'boom' where path = ?", (str(failed),))
    data = lib.json("tag", "--by", "album", "--dry-run", "--overwrite", str(lib.root / ALBUM_DIR))
    (album,) = data["albums"]
    assert (album["tracks"], album["used"]) == (len(FORMATS), len(FORMATS) - 2)
    files = {Path(f["path"]).name: f for f in data["files"]}
    assert files[gone.name]["action"] == files[failed.name]["action"] == "skipped"
    rest = [p for p in lib.album if p not in (gone, failed)]
    assert {tuple(files[p.name]["proposed"]) for p in rest} == {(lib.expected_album(rest),)}


def test_rows_without_cached_tags_read_the_files(lib: Lib) -> None:
    lib.sql("update tracks set artist = null, album = null, album_artist = null, compilation = null, "
            "file_genres = null")
    data = lib.json("tag", "--by", "album", "--dry-run")
    assert "Queen – A Kind of Magic" in {a["album"] for a in data["albums"]}
    assert {a["album"]: a["not_averaged"] for a in data["albums"]}["Various Artists – Now"] == COMPILATION


def test_show_by_album_and_by_folder(lib: Lib) -> None:
    code, out, _ = lib.run("show", "--by", "album", "--json")
    rows = {a["album"]: a for a in json.loads(out)}
    assert display_name(rows["Queen – A Kind of Magic"]["genre"]) == lib.expected_album(lib.album)
    now = rows["Various Artists – Now"]
    assert now["not_averaged"] == COMPILATION and now["genre"] is None
    code, out, _ = lib.run("show", "--by", "folder", "--json")
    assert str(lib.root / ALBUM_DIR) in {a["album"] for a in json.loads(out)}
    code, out, _ = lib.run("show", "--by", "album")
    assert code == 0 and "Queen – A Kind of Magic" in out and "compilation: track mode" in out
    code, out, _ = lib.run("show", "--by", "album", "--status", "ok", "--json")
    assert all(a["genre"] for a in json.loads(out))


def test_real_library_samples_group_by_their_tags(library_samples: Path, tmp_path: Path) -> None:
    music, db = tmp_path / "Music", tmp_path / "g.db"
    shutil.copytree(library_samples, music, ignore=shutil.ignore_patterns("*.md"))
    scan = ["scan", str(music), "--db", str(db), "-j", "0", "--min-confidence", "0", "--json"]
    result = CliRunner().invoke(cli, scan)
    assert result.exit_code in (0, 1), result.output  # a few samples are shorter than the 3 s the models need
    failed = {Path(e["path"]).name for e in json.loads(result.stdout)["errors"]}
    result = CliRunner().invoke(cli, ["show", "--by", "album", "--json", "--db", str(db)])
    got = {a["album"]: a for a in json.loads(result.stdout)}
    for path in (music / "Borewit_music-metadata").iterdir():
        meta = tags.describe(path)
        if meta.album and not meta.compilation:
            album = got[f"{meta.album_artist or meta.artist} – {meta.album}"]
            if path.name in failed:  # no usable track: the album abstains and says why
                assert album["genre"] is None and album["abstained"].startswith("no usable track")
            else:
                assert album["genre"] and album["used"] == 1
    # The Hguimaraes files have no tags at all: one folder, grouped as one (nothing says otherwise).
    untagged = got[str(music / "Hguimaraes_gtzan.keras")]
    assert untagged["tracks"] == untagged["used"] == 3 and untagged["not_averaged"] is None
    before = snapshot(music)
    result = CliRunner().invoke(cli, ["tag", "--by", "album", "--dry-run", "--json", "--db", str(db)])
    assert result.exit_code == 0 and snapshot(music) == before
    assert len(json.loads(result.stdout)["files"]) == sum(a["tracks"] for a in got.values())


# ---------------------------------------------------------------------------
# The GTZAN comparison (report --by album), on out-of-fold predictions built here.


def test_album_eval_groups_by_artist_and_compares() -> None:
    from training.album_eval import compare, stand_in_album
    from training.splits import artist_index

    _, artists = artist_index()
    by_artist: dict[str, list[str]] = {}
    for tid, artist in sorted(artists.items()):
        by_artist.setdefault(artist, []).append(tid)
    tids = next(v for v in by_artist.values() if len(v) >= 3)[:3]
    label = tids[0].split(".")[0]
    assert len({stand_in_album(t, label) for t in tids}) == 1
    genres = [label, "other"]
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])  # the third clip is wrong on its own
    result = compare(genres, [(tids, probs, [label] * 3)])
    assert result["track"]["accuracy"] == pytest.approx(2 / 3) and result["album"]["accuracy"] == 1.0
    assert (result["albums"], result["clips_in_albums"]) == (1, 3)
    assert result["outliers"] == 0  # 0.3 >= 0.25 * 0.7: disagrees, not strongly
