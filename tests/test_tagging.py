"""Tests for tagger.write.tagging and the `tag`, `undo` and `scan --write` commands.

One library with a real, tagged (artist, title, cover) file of every format
is made and scanned once per module; each test works on its own copy
(files copied with their mtimes, cache rows re-pointed at the copy), then
checks the files with tags.read_genres / mutagen and the database with
sqlite3.  Expected genres are computed from the cached probabilities, never
hard-coded, so the tests hold for whatever the shipped model predicts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from audiofiles import COVER, EXTENSIONS, FORMATS, add_test_tags, decode, make_audio
from tagger.cli import cli
from tagger.media import tags
from tagger.media.tags import TagError, read_genres
from tagger.store.cache import Cache
from tagger.store.track import Track
from tagger.write import journal, tagging
from tagger.write.tagging import TagOptions, display_name, field_values, load_genre_map, propose
from test_tags import GENRE_KEY, cover_of, raw_id3, stored, tag_view, temp_files

GENRETAG = str(Path(sys.executable).with_name("genretag"))
NAMES = {"hiphop": "Hip-Hop"}  # every other GTZAN label is just capitalised
V23 = "mp3-v23"  # an extra tagged MP3 whose ID3v2.3 genre is the single value "Ambient; Rock"


def name(label: str) -> str:
    return NAMES.get(label, label.capitalize())


# ---------------------------------------------------------------------------
# The scanned library and per-test copies.


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """plain/<fmt> (no genre) and tagged/<fmt> (genre "Ambient") for every format, scanned once."""
    root = tmp_path_factory.mktemp("tagging")
    lib, db = root / "Music", root / "cache.db"
    for i, fmt in enumerate(FORMATS):
        for group in ("plain", "tagged"):
            (lib / group).mkdir(parents=True, exist_ok=True)
            path = make_audio(lib / group / f"{fmt}{EXTENSIONS[fmt]}", fmt, seconds=4.0,
                              kind="tone" if i % 2 else "noise", seed=i)  # fmt: skip
            add_test_tags(path, genres=["Ambient"] if group == "tagged" else None)
    v23 = make_audio(lib / "tagged" / f"{V23}.mp3", "mp3", seconds=4.0, seed=99)
    add_test_tags(v23, genres=["Ambient", "Rock"], id3v23=True)
    with pytest.MonkeyPatch.context() as mp:  # module scope: no autouse GENRETAG_HOME yet
        mp.setenv("GENRETAG_HOME", str(root / "home"))
        mp.delenv("GENRETAG_DB", raising=False)
        mp.setenv("GENRETAG_BACKEND", "svc")
        result = CliRunner().invoke(cli, ["scan", str(lib), "--db", str(db), "--jobs", "0", "--json",
                                          "--min-confidence", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["analysed"] == 2 * len(FORMATS) + 1
    return lib, db


@dataclass
class Lib:
    root: Path  # the Music folder
    db: Path

    def file(self, group: str, fmt: str) -> Path:
        return self.root / group / f"{fmt}{EXTENSIONS.get(fmt, '.mp3')}"

    def files(self, group: str) -> dict[str, Path]:
        out = {fmt: self.file(group, fmt) for fmt in FORMATS}
        return out | ({V23: self.file(group, V23)} if group == "tagged" else {})

    def row(self, path: Path) -> dict:
        with sqlite3.connect(self.db) as con:
            con.row_factory = sqlite3.Row
            return dict(con.execute("select * from tracks where path = ?", (str(path),)).fetchone())

    def history(self) -> list[dict]:
        with sqlite3.connect(self.db) as con:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute("select * from tag_history order by id")]

    def expected(self, path: Path, top: int = 1, min_confidence: float = 0.0) -> list[str]:
        """What genretag should write, from the cached probabilities."""
        probs = json.loads(self.row(path)["probabilities"])
        best = sorted(probs.items(), key=lambda kv: -kv[1])[:top]
        if best[0][1] < min_confidence:
            return []
        return [name(label) for label, p in best if p >= min_confidence]


@pytest.fixture
def lib(scanned: tuple[Path, Path], tmp_path: Path) -> Lib:
    src, src_db = scanned
    root = tmp_path / "Music"
    shutil.copytree(src, root)  # copy2: mtimes are kept, so the cache rows stay current
    db = tmp_path / "cache.db"
    shutil.copyfile(src_db, db)
    with sqlite3.connect(db) as con:
        con.execute("update tracks set path = ? || substr(path, ?)", (str(root), len(str(src)) + 1))
        con.execute("update scans set roots = replace(roots, ?, ?)", (json.dumps(str(src))[1:-1], json.dumps(str(root))[1:-1]))
    return Lib(root, db)


def run(lib: Lib, *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `genretag <args> --db <lib.db>`.

    Scans never abstain here: these tests expect a genre for every file (abstaining: tests/test_abstain.py).
    """
    never_abstain = ["--min-confidence", "0"] if args[0] == "scan" else []
    result = CliRunner().invoke(cli, [*args, *never_abstain, "--db", str(lib.db)], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def run_json(lib: Lib, *args: str) -> tuple[int, dict]:
    code, out, _ = run(lib, *args, "--json")
    return code, json.loads(out)


def by_path(data: dict) -> dict[str, dict]:
    return {Path(f["path"]).name if "/tagged/" not in f["path"] else "tagged/" + Path(f["path"]).name: f
            for f in data["files"]}  # fmt: skip


def state(paths: dict[str, Path]) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of each file: "nothing was modified" means this is equal."""
    return {k: (p.read_bytes(), p.stat().st_mtime_ns) for k, p in paths.items()}


def others(path: Path, fmt: str) -> dict[str, object]:
    """Every tag except the genre field."""
    return tag_view(path, drop={GENRE_KEY.get(fmt, "TCON")})


# ---------------------------------------------------------------------------
# Writing.


def test_tag_writes_every_format_and_changes_nothing_else(lib: Lib) -> None:
    files = lib.files("plain")
    before = {fmt: (decode(p), others(p, fmt)) for fmt, p in files.items()}

    code, out, err = run(lib, "tag", str(lib.root / "plain"), "--no-progress")

    assert code == 0, out + err
    assert f"{len(files)} file(s): {len(files)} written" in err
    for fmt, path in files.items():
        assert read_genres(path) == lib.expected(path), fmt
        (audio, sr), view = before[fmt]
        after, sr_after = decode(path)
        assert sr_after == sr
        np.testing.assert_array_equal(after, audio, err_msg=fmt)
        assert others(path, fmt) == view, fmt
        assert cover_of(path) == COVER
        if fmt in ("mp3", "wav", "aiff"):
            assert raw_id3(path).version == (2, 4, 0)
        st, row = path.stat(), lib.row(path)
        assert (row["size"], row["mtime"]) == (st.st_size, st.st_mtime)  # genretag's write is no "change"
    history = lib.history()
    assert sorted(h["path"] for h in history) == sorted(str(p) for p in files.values())
    for h in history:
        path = Path(h["path"])
        assert json.loads(h["previous"]) == [] and json.loads(h["written"]) == lib.expected(path)
        assert h["written_at"] and h["undone_at"] is None and h["field"] is None
        assert (h["size"], h["mtime"]) == (path.stat().st_size, path.stat().st_mtime)
        assert json.loads(h["snapshot"])["format"] in {f.name for f in tags.FORMATS}
    # A rescan finds nothing changed: no re-analysis.
    code, data = run_json(lib, "scan", str(lib.root), "--jobs", "0")
    assert code == 0 and (data["analysed"], data["from_cache"]) == (0, len(files) + len(lib.files("tagged")))


def test_dry_run_and_scan_without_write_modify_nothing(lib: Lib) -> None:
    everything = lib.files("plain") | {f"t-{k}": p for k, p in lib.files("tagged").items()}
    before = state(everything)

    code, data = run_json(lib, "tag", "--dry-run")
    assert code == 0 and data["dry_run"]
    files = by_path(data)
    for path in lib.files("plain").values():
        f = files[path.name]
        assert (f["action"], f["current"], f["proposed"]) == ("would write", [], lib.expected(path))
    ambient = files["tagged/flac.flac"]
    assert ambient["action"] == "kept existing" and ambient["current"] == ["Ambient"]
    assert ambient["reason"] == "has genre 'Ambient' (use --overwrite or --merge)"

    code, out, err = run(lib, "tag", "--dry-run", "--no-progress")  # the human table
    assert code == 0 and "would write" in out and "kept existing" in out and "dry run" in err
    assert lib.expected(lib.file("plain", "flac"))[0] in out

    code, data = run_json(lib, "scan", str(lib.root), "--jobs", "0")
    assert code == 0 and "tagging" not in data
    code, data = run_json(lib, "scan", str(lib.root), "--jobs", "0", "--write", "--dry-run")
    assert code == 0 and data["tagging"]["counts"] == {"would write": 8, "kept existing": 9}
    assert state(everything) == before and lib.history() == []

    code, _, err = run(lib, "scan", str(lib.root), "--dry-run")
    assert code == 2 and "--dry-run is about writing tags: add --write" in err


def test_keep_existing_merge_and_overwrite(lib: Lib) -> None:
    files = lib.files("tagged")
    before = state(files)
    code, data = run_json(lib, "tag", str(lib.root / "tagged"))
    assert code == 0 and data["counts"] == {"kept existing": len(files)}
    assert state(files) == before

    code, _, err = run(lib, "tag", "--merge", "--overwrite")
    assert code == 2 and "exclude each other" in err

    code, data = run_json(lib, "tag", str(lib.root / "tagged"), "--merge")
    assert code == 0 and data["counts"] == {"written": len(files)}
    for fmt, path in files.items():
        new = lib.expected(path)
        if fmt == V23:  # the v2.3 single value is split, and the tag becomes v2.4 multi-value
            assert read_genres(path) == ["Ambient", "Rock", *new]
            assert raw_id3(path).version == (2, 4, 0)
        else:
            assert read_genres(path) == ["Ambient", *new], fmt
    code, data = run_json(lib, "tag", str(lib.root / "tagged"), "--merge")  # already there: nothing to do
    assert code == 0 and data["counts"] == {"unchanged": len(files)}

    code, data = run_json(lib, "tag", str(lib.root / "tagged"), "--overwrite")
    assert code == 0 and data["counts"] == {"written": len(files)}
    for path in files.values():
        assert read_genres(path) == lib.expected(path)


def test_multi_value_per_format_with_top_and_min_confidence(lib: Lib) -> None:
    files = lib.files("plain")
    second = sorted(json.loads(lib.row(files["flac"])["probabilities"]).values())[-2]
    threshold = round(second - 1e-6, 6)  # flac gets at least two genres; each extra must reach it
    expected = {fmt: lib.expected(p, top=3, min_confidence=threshold) for fmt, p in files.items()}
    assert len(expected["flac"]) >= 2

    code, data = run_json(lib, "tag", str(lib.root / "plain"), "--top", "3", "--min-confidence", str(threshold))

    assert code == 0
    for fmt, path in files.items():
        assert read_genres(path) == expected[fmt], fmt
        want = expected[fmt]
        if len(want) < 2:
            continue
        key = GENRE_KEY[fmt]
        if fmt in ("mp3", "wav", "aiff"):  # one ID3v2.4 frame, null-separated values
            assert raw_id3(path).getall("TCON")[0].text == want
        elif fmt.startswith("m4a"):  # one atom holding a list
            assert stored(path, key) == want
        else:  # repeated Vorbis comments
            assert stored(path, key) == [("GENRE", g) for g in want]


def test_id3v23_joins_with_the_separator_only_where_needed(lib: Lib) -> None:
    files = lib.files("plain")
    code, _ = run_json(lib, "tag", str(lib.root / "plain"), "--top", "2", "--id3v23", "--separator", " / ")
    assert code == 0
    for fmt, path in files.items():
        want = lib.expected(path, top=2)
        if fmt in ("mp3", "wav", "aiff"):
            raw = raw_id3(path)
            assert raw.version == (2, 3, 0) and raw.getall("TCON")[0].text == [" / ".join(want)], fmt
        else:
            assert read_genres(path) == want, fmt


def test_below_threshold_is_not_written(lib: Lib) -> None:
    files = lib.files("plain")
    confidences = {fmt: lib.row(p)["confidence"] for fmt, p in files.items()}
    cut = sorted(confidences.values())[len(confidences) // 2]
    before = state(files)

    code, data = run_json(lib, "tag", str(lib.root / "plain"), "--min-confidence", str(cut))

    assert code == 0
    results = by_path(data)
    for fmt, path in files.items():
        if confidences[fmt] >= cut:
            assert results[path.name]["action"] == "written" and read_genres(path) == lib.expected(path)
        else:
            assert results[path.name]["action"] == "below threshold", fmt
            assert results[path.name]["reason"].startswith(f"confidence {confidences[fmt]:.2f} < ")
            assert state({fmt: path}) == {fmt: before[fmt]}
    assert "below threshold" in data["counts"] or min(confidences.values()) == cut


def test_custom_field_leaves_the_genre_alone_and_undoes(lib: Lib) -> None:
    files = lib.files("tagged")
    snaps = {fmt: tags.snapshot(p, "GENRETAG") for fmt, p in files.items()}
    views = {fmt: tag_view(p) for fmt, p in files.items()}

    code, data = run_json(lib, "tag", str(lib.root / "tagged"), "--field", "GENRETAG")

    assert code == 0 and data["counts"] == {"written": len(files)}  # the genre field's "Ambient" is irrelevant
    for fmt, path in files.items():
        assert read_genres(path, "GENRETAG") == lib.expected(path), fmt
        assert read_genres(path) == (["Ambient; Rock"] if fmt == V23 else ["Ambient"])
    assert {h["field"] for h in lib.history()} == {"GENRETAG"}

    code, data = run_json(lib, "undo", str(lib.root / "tagged"))
    assert code == 0 and data["counts"] == {"restored": len(files)}
    for fmt, path in files.items():
        assert tags.snapshot(path, "GENRETAG") == snaps[fmt]  # absent again
        if fmt != V23:  # (the v2.3 file's tag went to v2.4 and back: same texts, re-encoded)
            assert tag_view(path) == views[fmt], fmt


def test_invalid_field_is_one_clean_error(lib: Lib) -> None:
    code, out, err = run(lib, "tag", "--field", "BAD=NAME")
    assert code == 1 and "invalid tag field name" in out + err and "Traceback" not in out + err
    assert lib.history() == []


def test_genre_map_renames_and_drops(lib: Lib, tmp_path: Path) -> None:
    files = lib.files("plain")
    labels = {json.loads(lib.row(p)["top3"])[0][0] for p in files.values()}
    text = "# my names\n\n" + "".join(f"{label} = My {label.upper()}\n" for label in labels)
    (tmp_path / "map.txt").write_text(text, encoding="utf-8")

    code, data = run_json(lib, "tag", str(lib.root / "plain"), "--genre-map", str(tmp_path / "map.txt"))

    assert code == 0 and data["counts"] == {"written": len(files)}
    for path in files.values():
        label = json.loads(lib.row(path)["top3"])[0][0]
        assert read_genres(path) == [f"My {label.upper()}"]

    (tmp_path / "drop.json").write_text(json.dumps({label: None for label in labels}), encoding="utf-8")
    before = state(lib.files("tagged"))
    code, data = run_json(lib, "tag", str(lib.root / "tagged"), "--overwrite", "--genre-map",
                          str(tmp_path / "drop.json"))  # fmt: skip
    assert code == 0 and {f["reason"] for f in data["files"]} == {"dropped by the genre map"}
    assert state(lib.files("tagged")) == before

    (tmp_path / "bad.txt").write_text("hiphop: Hip Hop\n", encoding="utf-8")
    code, _, err = run(lib, "tag", "--genre-map", str(tmp_path / "bad.txt"))
    assert code == 2 and "line 1: expected 'label = Name'" in err


# ---------------------------------------------------------------------------
# Undo.


def test_tag_twice_then_undo_restores_the_original_exactly(lib: Lib) -> None:
    files = lib.files("plain") | {f"t-{k}": p for k, p in lib.files("tagged").items()}
    snaps = {k: tags.snapshot(p) for k, p in files.items()}
    audio = {k: decode(p)[0] for k, p in files.items()}
    views = {k: others(p, k.removeprefix("t-")) for k, p in files.items()}
    originals = {k: p.read_bytes() for k, p in files.items()}

    assert run(lib, "tag", "--overwrite")[0] == 0
    assert run(lib, "tag", "--overwrite", "--top", "2")[0] == 0  # a second, different write
    assert len(lib.history()) == 2 * len(files)

    code, data = run_json(lib, "undo", "--all")

    assert code == 0 and data["counts"] == {"restored": len(files)}
    for k, path in files.items():
        assert tags.snapshot(path) == snaps[k], k  # incl. "no genre tag" for plain files
        np.testing.assert_array_equal(decode(path)[0], audio[k])
        assert others(path, k.removeprefix("t-")) == views[k], k
        assert path.read_bytes() == originals[k], k  # the ID3v2.3 one too: its converted tag goes back whole
    assert all(h["undone_at"] for h in lib.history())
    code, data = run_json(lib, "scan", str(lib.root), "--jobs", "0")
    assert (data["analysed"], data["from_cache"]) == (0, len(files))  # undo moved the cache rows along
    code, out, err = run(lib, "undo", "--all")
    assert code == 0 and "nothing to undo" in err


def test_undo_needs_paths_or_all_and_limits_to_paths(lib: Lib) -> None:
    code, _, err = run(lib, "undo")
    assert code == 2 and "or use --all" in err
    assert run(lib, "tag", str(lib.root / "plain"))[0] == 0
    flac, ogg = lib.file("plain", "flac"), lib.file("plain", "ogg")

    code, data = run_json(lib, "undo", str(flac), "--dry-run")
    assert code == 0 and data["counts"] == {"would restore": 1} and read_genres(flac) == lib.expected(flac)
    code, data = run_json(lib, "undo", str(flac))
    assert code == 0 and data["counts"] == {"restored": 1}
    assert read_genres(flac) == [] and read_genres(ogg) == lib.expected(ogg)


def test_undo_skips_a_file_changed_since_the_write_unless_forced(lib: Lib) -> None:
    flac = lib.file("plain", "flac")
    assert run(lib, "tag", str(flac))[0] == 0
    add_test_tags(flac, title="Edited later", cover=None)  # the user edits another tag

    code, out, err = run(lib, "undo", "--all")
    assert code == 0 and "skipped: changed since genretag wrote it" in out
    assert "warning:" in err and str(flac) in err
    assert read_genres(flac) == lib.expected(flac)

    code, data = run_json(lib, "undo", "--all", "--force")
    assert code == 0 and data["counts"] == {"restored": 1}
    assert read_genres(flac) == [] and tag_view(flac)["TITLE"] == ["Edited later"]


def test_undo_never_restores_over_a_later_user_change(lib: Lib) -> None:
    flac = lib.file("plain", "flac")
    assert run(lib, "tag", str(flac))[0] == 0
    tags.write_genres(flac, ["User Pick"])  # the user retags it by hand...
    code, data = run_json(lib, "scan", str(flac), "--jobs", "0")  # ...and rescans
    assert code == 0 and data["analysed"] == 1
    assert run(lib, "tag", str(flac), "--overwrite")[0] == 0
    assert [bool(h["superseded_at"]) for h in lib.history()] == [True, False]

    code, data = run_json(lib, "undo", "--all")

    assert code == 0 and read_genres(flac) == ["User Pick"]  # not genretag's first snapshot (no genre)


# ---------------------------------------------------------------------------
# Files that cannot or must not be written.


def test_changed_since_scan_is_skipped_with_a_warning(lib: Lib) -> None:
    files = lib.files("plain")
    opus = files["opus"]
    st = opus.stat()
    os.utime(opus, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    before = state({"opus": opus})

    code, out, err = run(lib, "tag", str(lib.root / "plain"), "--no-progress")

    assert code == 0
    assert "skipped: changed since it was scanned" in out and "warning:" in err and str(opus) in err
    assert state({"opus": opus}) == before and read_genres(opus) == []
    assert all(read_genres(p) == lib.expected(p) for fmt, p in files.items() if fmt != "opus")


def test_read_only_file_is_an_error_and_the_run_goes_on(lib: Lib) -> None:
    files = lib.files("plain")
    mp3 = files["mp3"]
    mp3.chmod(0o444)
    before = state({"mp3": mp3})

    code, data = run_json(lib, "tag", str(lib.root / "plain"))

    assert code == 1 and data["failed"] == 1 and data["counts"]["written"] == len(files) - 1
    result = by_path(data)[mp3.name]
    assert result["action"] == "error" and "read-only" in result["reason"]
    assert state({"mp3": mp3}) == before
    assert str(mp3) not in {h["path"] for h in lib.history()}


def test_disk_full_and_vanished_files_are_errors_and_the_run_goes_on(
    lib: Lib, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = lib.files("plain")
    flac, ogg = files["flac"], files["ogg"]
    real_write = tags.TagFile.write

    def full_disk(self: tags.TagFile, genres: object, **kw: object) -> os.stat_result:
        if Path(self.path) == flac:
            raise TagError(self.path, "disk full (no space left on device); not changed")
        return real_write(self, genres, **kw)

    monkeypatch.setattr(tags.TagFile, "write", full_disk)
    ogg.unlink()

    code, out, err = run(lib, "tag", str(lib.root / "plain"), "--no-progress")

    assert code == 1
    assert "error: disk full" in out and "error: file not found" in out and "2 error" in err
    assert read_genres(flac) == []
    assert all(read_genres(p) == lib.expected(p) for fmt, p in files.items() if fmt not in ("flac", "ogg"))
    assert {str(flac), str(ogg)}.isdisjoint(h["path"] for h in lib.history())  # the failed write's record is gone

    code, data = run_json(lib, "undo", "--all")
    assert code == 0 and data["counts"] == {"restored": len(files) - 2}


def test_missing_and_failed_rows_are_skipped_quietly(lib: Lib) -> None:
    broken = lib.root / "plain" / "broken.mp3"
    broken.write_bytes(b"not audio")
    code, data = run_json(lib, "scan", str(lib.root / "plain"), "--jobs", "0")
    assert code == 1 and data["failed"] == 1
    lib.file("plain", "wav").unlink()
    code, data = run_json(lib, "scan", str(lib.root / "plain"), "--jobs", "0")  # marks it missing

    code, data = run_json(lib, "tag", str(lib.root / "plain"))

    assert code == 0  # nothing genretag could act on is an error of this run
    results = by_path(data)
    assert (results["broken.mp3"]["action"], results["broken.mp3"]["reason"]) == (
        "skipped", "no genre (its analysis failed)")
    assert results["wav.wav"]["reason"] == "missing since the last scan"


def test_file_name_that_is_not_utf8_is_tagged_and_undone(lib: Lib) -> None:
    folder = os.fsencode(lib.root / "plain")
    odd = folder + b"/caf\xe9.flac"
    os.rename(os.fsencode(lib.file("plain", "flac")), odd)
    code, data = run_json(lib, "scan", str(lib.root / "plain"), "--jobs", "0")
    assert code == 0 and data["analysed"] == 1

    code, data = run_json(lib, "tag", str(lib.root / "plain"))
    assert code == 0 and data["counts"] == {"written": len(FORMATS), "skipped": 1}  # + the old name, missing
    assert read_genres(os.fsdecode(odd)) != []
    assert [h["path_bytes"] for h in lib.history() if h["path_bytes"]] == [odd]

    code, data = run_json(lib, "undo", "--all")
    assert code == 0 and data["counts"] == {"restored": len(FORMATS)} and read_genres(os.fsdecode(odd)) == []


# ---------------------------------------------------------------------------
# Interrupted writes.


def test_write_cut_short_between_file_and_database_is_settled(lib: Lib, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill right after the rename (landed) or right before it (not landed) leaves an unconfirmed record."""
    flac, ogg = lib.file("plain", "flac"), lib.file("plain", "ogg")
    real_write = tags.TagFile.write

    class Killed(BaseException):
        """Stands in for kill -9: nothing after this point runs (Ctrl-C is settled at once instead)."""

    def killed(self: tags.TagFile, genres: object, **kw: object) -> os.stat_result:
        if Path(self.path) == flac:
            real_write(self, genres, **kw)
        raise Killed

    monkeypatch.setattr(tags.TagFile, "write", killed)
    with Cache(lib.db) as cache:
        for path in (flac, ogg):
            with pytest.raises(Killed):
                journal.apply(cache, TagOptions(), [str(path)])
    assert [h["written_at"] for h in lib.history()] == [None, None]
    monkeypatch.setattr(tags.TagFile, "write", real_write)

    code, data = run_json(lib, "tag", str(flac), str(ogg))

    assert code == 0
    assert {f["path"]: f["action"] for f in data["files"]} == {str(flac): "unchanged", str(ogg): "written"}
    history = lib.history()
    assert [(h["path"], bool(h["written_at"])) for h in history] == [(str(flac), True), (str(ogg), True)]
    code, data = run_json(lib, "undo", "--all")
    assert code == 0 and data["counts"] == {"restored": 2}
    assert read_genres(flac) == [] and read_genres(ogg) == []


def test_kill_9_mid_run_leaves_every_file_old_or_new_and_undo_works(lib: Lib, tmp_path: Path) -> None:
    big = tmp_path / "Big"
    sources = lib.files("plain")
    audio = {fmt: decode(p)[0] for fmt, p in sources.items()}
    views = {fmt: others(p, fmt) for fmt, p in sources.items()}
    expected = {fmt: lib.expected(p) for fmt, p in sources.items()}
    copies: dict[Path, str] = {}
    rows = []
    for n in range(12):
        for fmt, src in sources.items():
            dest = big / f"disc{n:02d}" / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
            copies[dest] = fmt
            rows.append(lib.row(src) | {"path": str(dest)})
    with Cache(lib.db) as cache:
        cache.write_results(rows)  # the copies' cached results: same bytes, same prediction

    child = subprocess.Popen([GENRETAG, "tag", str(big), "--db", str(lib.db), "--no-progress"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len([h for h in lib.history() if h["written_at"]]) < 10:
            assert child.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)

    written = 0
    for path, fmt in copies.items():
        genres = read_genres(path)
        assert genres in ([], expected[fmt]), path
        written += genres == expected[fmt]
        np.testing.assert_array_equal(decode(path)[0], audio[fmt])
        assert others(path, fmt) == views[fmt]
    assert 10 <= written < len(copies)
    assert all(len(temp_files(folder)) <= 1 for folder in {p.parent for p in copies})

    code, data = run_json(lib, "tag", str(big))  # finishing the run needs no rescan
    assert code == 0 and set(data["counts"]) <= {"written", "unchanged"}
    assert all(read_genres(p) == expected[fmt] for p, fmt in copies.items())

    code, data = run_json(lib, "undo", str(big))
    assert code == 0 and data["counts"] == {"restored": len(copies)}
    assert all(read_genres(p) == [] and others(p, fmt) == views[fmt] for p, fmt in copies.items())


# ---------------------------------------------------------------------------
# scan --write.


def test_scan_write_tags_only_the_files_that_scan_covered(lib: Lib) -> None:
    code, data = run_json(lib, "scan", str(lib.root), "--jobs", "0", "--write", "--include", "*.flac")

    assert code == 0 and data["seen"] == 2
    assert data["tagging"]["counts"] == {"written": 1, "kept existing": 1}
    flac = lib.file("plain", "flac")
    assert read_genres(flac) == lib.expected(flac)
    assert all(read_genres(p) == [] for fmt, p in lib.files("plain").items() if fmt != "flac")


# ---------------------------------------------------------------------------
# The decisions, without files.


def test_propose_takes_the_top_labels_then_maps_them() -> None:
    row = Track(path="/x.mp3", genre="hiphop", confidence=0.5,
                probabilities={"blues": 0.1, "hiphop": 0.5, "jazz": 0.3, "rock": 0.1})
    assert propose(row, TagOptions()) == (["Hip-Hop"], None, "")
    assert propose(row, TagOptions(top=3)) == (["Hip-Hop", "Jazz", "Blues"], None, "")
    assert propose(row, TagOptions(top=3, write_above=0.2)) == (["Hip-Hop", "Jazz"], None, "")
    assert propose(row, TagOptions(write_above=0.6)) == ([], "below threshold", "confidence 0.50 < 0.60")
    dropped = TagOptions(genre_map={"hiphop": None})
    assert propose(row, dropped) == ([], "skipped", "dropped by the genre map")  # not replaced by jazz
    assert propose(row, TagOptions(top=2, genre_map={"hip-hop": "Rap", "jazz": "Rap"})) == (["Rap"], None, "")


def test_decide_keeps_merges_and_overwrites() -> None:
    keep, merge, over = TagOptions(), TagOptions(merge=True), TagOptions(overwrite=True)
    assert field_values([], ["Jazz"], keep) == (["Jazz"], None, "")
    assert field_values(["jazz"], ["Jazz"], keep) == (["jazz"], "unchanged", "")
    assert field_values(["Rock"], ["Jazz"], keep)[1:] == ("kept existing",
                                                          "has genre 'Rock' (use --overwrite or --merge)")
    assert field_values(["Rock;Blues"], ["Jazz", "blues"], merge) == (["Rock", "Blues", "Jazz"], None, "")
    assert field_values(["Rock", "Jazz"], ["jazz"], merge)[1] == "unchanged"
    assert field_values(["Rock"], ["Jazz"], over) == (["Jazz"], None, "")
    assert field_values(["jazz"], ["Jazz"], over)[1] is None  # overwrite means exactly this spelling
    assert field_values(["Jazz; Blues"], ["Jazz", "Blues"], TagOptions(overwrite=True, id3v23=True))[1] == "unchanged"


def test_display_names_and_genre_map_files(tmp_path: Path) -> None:
    assert [display_name(g) for g in ("hiphop", "rock", "sea shanty")] == ["Hip-Hop", "Rock", "Sea Shanty"]
    assert display_name("hiphop", {"hip-hop": "Rap"}) == "Rap"  # by default name too
    (tmp_path / "m.txt").write_text("# c\nHipHop = Hip Hop\ndisco =\n\n", encoding="utf-8")
    assert load_genre_map(tmp_path / "m.txt") == {"hiphop": "Hip Hop", "disco": None}
    (tmp_path / "m.json").write_text('{"Disco": "", "pop": "Pop Music"}', encoding="utf-8")
    assert load_genre_map(tmp_path / "m.json") == {"disco": None, "pop": "Pop Music"}
    (tmp_path / "bad.json").write_text('{"pop": 3}', encoding="utf-8")
    with pytest.raises(tagging.GenretagError, match="must be a name"):
        load_genre_map(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="exclude each other"):
        TagOptions(merge=True, overwrite=True)


# ---------------------------------------------------------------------------
# The genre tree (tagger/decide/vocabulary.py) on files of every format.


def _predict(lib: Lib, paths: list[Path], probs: dict[str, float]) -> None:
    """Make the cache say ``probs`` for these files, and take their current stat (as a rescan would)."""
    best = max(probs, key=probs.__getitem__)
    with sqlite3.connect(lib.db) as con:
        for path in paths:
            st = path.stat()
            con.execute("update tracks set probabilities = ?, genre = ?, confidence = ?, size = ?, mtime = ? "
                        "where path = ?", (json.dumps(probs), best, probs[best], st.st_size, st.st_mtime, str(path)))


def test_merge_and_keep_recognise_another_spelling_in_every_format(lib: Lib) -> None:
    files = lib.files("plain")
    for path in files.values():
        tags.write_genres(path, ["Hip Hop"])  # the user's spelling
    _predict(lib, list(files.values()), {"hiphop": 0.7, "jazz": 0.3})
    before = state(files)

    for mode in ([], ["--merge"]):
        code, data = run_json(lib, "tag", str(lib.root / "plain"), *mode)
        assert code == 0 and data["counts"] == {"unchanged": len(files)}, mode  # no "Hip-Hop" beside "Hip Hop"
    assert state(files) == before
    code, data = run_json(lib, "tag", str(lib.root / "plain"), "--merge", "--top", "2")
    assert code == 0 and data["counts"] == {"written": len(files)}
    assert {fmt: read_genres(p) for fmt, p in files.items()} == dict.fromkeys(files, ["Hip Hop", "Jazz"])


def test_with_parents_writes_two_real_values_in_every_format_and_undoes(lib: Lib, tmp_path: Path) -> None:
    files = lib.files("plain")
    _predict(lib, list(files.values()), {"alternative rock": 0.6, "indie rock": 0.3, "rock": 0.1})
    before = {fmt: tags.snapshot(p) for fmt, p in files.items()}

    code, data = run_json(lib, "tag", str(lib.root / "plain"), "--with-parents", "--top", "2")
    assert code == 0 and data["counts"] == {"written": len(files)}
    for fmt, path in files.items():
        assert read_genres(path) == ["Rock", "Alternative Rock", "Indie Rock"], fmt
        if fmt in ("mp3", "wav", "aiff"):
            assert stored(path, GENRE_KEY[fmt]) == ["Rock", "Alternative Rock", "Indie Rock"]  # one frame, 3 values
    assert run(lib, "undo", str(lib.root / "plain"))[0] == 0
    assert {fmt: tags.snapshot(p) for fmt, p in files.items()} == before  # "no genre tag" again

    # The user's map wins over the tree, for parents too; ID3v2.3 joins them with the separator.
    (tmp_path / "map.txt").write_text("rock = Rock Music\n", encoding="utf-8")
    mp3 = files["mp3"]
    code, _, _ = run(lib, "tag", str(mp3), "--with-parents", "--genre-map", str(tmp_path / "map.txt"), "--id3v23")
    assert code == 0
    assert stored(mp3, "TCON") == ["Rock Music; Alternative Rock"] and raw_id3(mp3).version == (2, 3, 0)


@pytest.mark.parametrize("bad", ["bl\0ues", "blues\nrock", "\x1b[31mblues", "x" * 10_000])
def test_a_cached_label_no_tag_may_hold_is_each_files_error_not_a_crash(lib: Lib, bad: str) -> None:
    """Issue 22: such labels passed train and scan, then `tag` exited 70 and wrote nothing."""
    files = lib.files("plain")
    _predict(lib, list(files.values()), {bad: 0.7, "jazz": 0.3})
    before = state(files)
    code, data = run_json(lib, "tag", str(lib.root / "plain"))
    assert code == 1 and data["counts"] == {"error": len(files)}
    assert all("is not a label a tag may hold" in f["reason"] for f in data["files"]), data["files"]
    assert state(files) == before


def test_a_genre_map_value_no_tag_may_hold_is_refused(lib: Lib, tmp_path: Path) -> None:
    gmap = tmp_path / "map.json"
    gmap.write_text(json.dumps({"jazz": "\x1b]0;owned\x07Jazz"}), encoding="utf-8")
    result = CliRunner().invoke(cli, ["tag", "--genre-map", str(gmap), "--db", str(lib.db)])
    assert result.exit_code == 2 and "genre map value for 'jazz' must be a name" in result.output
