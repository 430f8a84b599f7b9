"""`tag` and `undo` write only inside what the user named, parse each file once, and clean up after kill -9.

Issue 11, points 2, 13 and 14.  The files are real audio made by
tests/audiofiles.py and scanned with the shipped model; what is checked is
the files' bytes, their tags and the command's report.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import mutagen
import pytest
from click.testing import CliRunner
from mutagen import id3
from mutagen.mp3 import MP3

from audiofiles import add_test_tags, make_audio, mp3_with_big_tags
from tagger.cli import cli
from tagger.media import tags
from tagger.media.tags import read_genres


def run(db: Path, *args: str) -> tuple[int, dict | str, str]:
    """Exit code, parsed --json output (or the text), stderr of `genretag <args> --db db`."""
    result = CliRunner().invoke(cli, [*args, "--db", str(db)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    out = json.loads(result.stdout) if "--json" in args else result.stdout
    return result.exit_code, out, result.stderr


def actions(data: dict) -> dict[str, tuple[str, str]]:
    return {Path(f["path"]).name: (f["action"], f["reason"]) for f in data["files"]}


# ---------------------------------------------------------------------------
# Point 2: links leading outside the roots.


@pytest.fixture
def linked(tmp_path: Path) -> tuple[Path, Path, dict[str, Path]]:
    """Music/ holding an own file, a symlinked file and a symlinked folder whose targets are outside it."""
    music, private = tmp_path / "Music", tmp_path / "private"
    (music / "inside").mkdir(parents=True)
    (private / "folder").mkdir(parents=True)
    own = make_audio(music / "inside" / "own.flac", "flac", seconds=4.0, kind="noise", seed=1)
    victim = make_audio(private / "victim.flac", "flac", seconds=4.0, kind="tone", seed=2)
    deep = make_audio(private / "folder" / "deep.flac", "flac", seconds=4.0, kind="noise", seed=3)
    (music / "link.flac").symlink_to(victim)
    (music / "linked-folder").symlink_to(private / "folder", target_is_directory=True)
    (music / "inside" / "alias.flac").symlink_to(own)  # a link that stays inside: always fine
    db = tmp_path / "db.sqlite"
    code, data, err = run(db, "scan", str(music), "--jobs", "0", "--json", "--min-confidence", "0")
    assert code == 0 and data["analysed"] == 4, err
    return music, db, {"own": own, "victim": victim, "deep": deep}


def test_links_leading_outside_are_refused_by_default_and_followed_on_request(linked) -> None:
    music, db, files = linked
    outside = {p: p.read_bytes() for p in (files["victim"], files["deep"])}

    for args in (["tag", str(music)], ["tag"], ["scan", str(music), "--jobs", "0", "--write", "--min-confidence", "0"]):
        code, data, err = run(db, *args, "--json")
        data = data.get("tagging", data)
        assert code == 0, err
        got = actions(data)
        for name in ("link.flac", "deep.flac"):
            action, reason = got[name]
            assert action == "skipped" and "a link leading outside" in reason and "--follow-links" in reason
        assert str(files["victim"]) in got["link.flac"][1]
        assert {p: p.read_bytes() for p in outside} == outside  # not a byte changed outside Music
        assert "a link leading outside" in err  # a warning line per refused file
    assert read_genres(files["own"])  # the own file (and its alias inside Music) was written

    code, data, _ = run(db, "tag", str(music), "--follow-links", "--json")
    assert code == 0 and actions(data)["link.flac"][0] == "written" and actions(data)["deep.flac"][0] == "written"
    assert read_genres(files["victim"]) and read_genres(files["deep"])

    code, data, err = run(db, "undo", "--all", "--json")
    assert code == 0 and actions(data)["link.flac"][0] == "skipped" and "a link leading outside" in err
    assert read_genres(files["victim"])  # still as genretag wrote it: undo did not write through the link either
    code, data, _ = run(db, "undo", "--all", "--follow-links", "--json")
    assert code == 0 and actions(data)["link.flac"][0] == "restored" and actions(data)["deep.flac"][0] == "restored"
    assert read_genres(files["victim"]) == [] and read_genres(files["deep"]) == []


def test_roots_are_the_paths_given(linked, tmp_path: Path) -> None:
    music, db, files = linked
    code, data, _ = run(db, "tag", str(music / "inside"), "--json")
    assert code == 0 and sorted(a for a, _ in actions(data).values()) == ["unchanged", "written"]  # one file, two names
    # Naming the link's own folder target as a root makes the link's target inside what the user named.
    code, data, _ = run(db, "tag", str(music), str(files["victim"]), "--json")
    assert actions(data)["link.flac"][0] == "written" and actions(data)["deep.flac"][0] == "skipped"


# ---------------------------------------------------------------------------
# Point 13: one parse per file per operation.


def big_mp3(path: Path) -> Path:
    return mp3_with_big_tags(path, picture_mb=1.0, frames=300)


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts every mutagen file load, by file name."""
    seen: Counter = Counter()
    real = mutagen.FileType.__init__

    def counting(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        thing = kwargs.get("filename") or (args[0] if args else kwargs.get("filething"))
        seen[os.path.basename(getattr(thing, "name", thing))] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(mutagen.FileType, "__init__", counting)
    return seen


def test_each_file_is_parsed_once_per_operation(tmp_path: Path, parses: Counter) -> None:
    music, db = tmp_path / "Music", tmp_path / "db.sqlite"
    music.mkdir()
    big_mp3(music / "big.mp3")
    for fmt, ext in (("flac", ".flac"), ("ogg", ".ogg"), ("m4a-aac", ".m4a")):
        add_test_tags(make_audio(music / f"small{ext}", fmt, seconds=4.0, seed=len(ext)))
    names = sorted(p.name for p in music.iterdir())
    code, data, err = run(db, "scan", str(music), "--jobs", "0", "--json", "--min-confidence", "0")
    assert code == 0 and data["analysed"] == 4, err

    for args, action in ((["tag", "--dry-run"], "would write"), (["tag"], "written"), (["tag"], "unchanged"),
                         (["undo", "--all"], "restored")):  # fmt: skip
        parses.clear()
        code, data, err = run(db, *args, "--json")
        assert code == 0 and {f["action"] for f in data["files"]} == {action}, err
        assert dict(parses) == {name: 1 for name in names}, args


# ---------------------------------------------------------------------------
# Point 14: stale temporaries.


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def make_temp(folder: Path, name: str, age: float) -> Path:
    path = folder / name
    path.write_bytes(b"a partial copy")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_stale_temporaries_are_removed_and_reported_others_kept(linked) -> None:
    music, db, files = linked
    folder = files["own"].parent
    dead = dead_pid()
    stale = [
        make_temp(folder, f".own.flac.ab_cd123.{dead}{tags.TEMP_SUFFIX}", age=600),  # writer gone
        make_temp(folder, f".own.flac.x1y2z3w4{tags.TEMP_SUFFIX}", age=2 * 3600),  # old name, long unmodified
    ]
    kept = [
        make_temp(folder, f".own.flac.ab_cd124.{os.getpid()}{tags.TEMP_SUFFIX}", age=600),  # its writer runs
        make_temp(folder, f".own.flac.ab_cd125.{dead}{tags.TEMP_SUFFIX}", age=10),  # just written
        make_temp(folder, f".own.flac.x1y2z3w5{tags.TEMP_SUFFIX}", age=600),  # no pid, not old enough
        make_temp(folder, f".notes{tags.TEMP_SUFFIX}", age=2 * 3600),  # not genretag's pattern
        make_temp(folder, f"own.flac.ab_cd126.{dead}{tags.TEMP_SUFFIX}", age=2 * 3600),  # not hidden
        make_temp(folder, f".own.flac.AB_CD127.{dead}{tags.TEMP_SUFFIX}", age=2 * 3600),  # not mkstemp's letters
        make_temp(music, f".x.flac.ab_cd128.{dead}{tags.TEMP_SUFFIX}.bak", age=2 * 3600),
    ]
    target = make_temp(music.parent, "target", age=2 * 3600)
    link = folder / f".own.flac.ab_cd129.{dead}{tags.TEMP_SUFFIX}"
    link.symlink_to(target)  # a link with the name: never followed or removed
    os.utime(link, (time.time() - 7200,) * 2, follow_symlinks=False)

    code, data, err = run(db, "tag", str(music / "inside"), "--dry-run", "--json")
    assert code == 0 and sorted(data["stale_temporaries"]) == sorted(map(str, stale))
    assert all(p.exists() for p in stale) and "dry run: not removed" in err

    code, data, err = run(db, "tag", str(music / "inside"), "--json")
    assert code == 0 and sorted(data["stale_temporaries"]) == sorted(map(str, stale))
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept) and link.is_symlink()
    assert target.exists() and all(f"{p}: stale temporary file of an interrupted genretag run, removed" in err
                                   for p in stale)  # fmt: skip

    later = make_temp(folder, f".own.flac.ab_cd130.{dead}{tags.TEMP_SUFFIX}", age=600)
    code, data, err = run(db, "undo", str(music / "inside"), "--json")
    assert code == 0 and data["stale_temporaries"] == [str(later)] and not later.exists()
    code, data, _ = run(db, "tag", str(music / "inside"), "--json")
    assert data["stale_temporaries"] == []


def test_a_temporary_carries_its_writers_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_audio(tmp_path / "a.flac", "flac", seconds=1.0)
    names = []
    real = tags.TagFile._edit

    def spy(self, change, *args):  # noqa: ANN001, ANN002
        def look(f):  # noqa: ANN001
            names.append(os.path.basename(f.filename))
            change(f)

        return real(self, look, *args)

    monkeypatch.setattr(tags.TagFile, "_edit", spy)
    tags.write_genres(path, ["Jazz"])
    assert len(names) == 1 and names[0].endswith(f".{os.getpid()}{tags.TEMP_SUFFIX}")
    assert tags.remove_stale_temporaries(str(tmp_path)) == []


def test_the_one_raw_parse_reads_id3v1_and_id3v22_genres_as_mutagens_translating_load(tmp_path: Path) -> None:
    only_v1 = make_audio(tmp_path / "v1.mp3", "mp3", seconds=1.0)
    tag = id3.ID3()
    tag.add(id3.TCON(encoding=0, text=["Rock"]))
    tag.save(str(only_v1), v1=id3.ID3v1SaveOptions.CREATE)
    id3.delete(str(only_v1), delete_v1=False, delete_v2=True)
    v22 = make_audio(tmp_path / "v22.mp3", "mp3", seconds=1.0)  # mutagen cannot write v2.2: made by hand
    frame = b"TCO" + len(b"\x00Jazz").to_bytes(3, "big") + b"\x00Jazz"
    size = bytes((len(frame) >> shift) & 0x7F for shift in (21, 14, 7, 0))
    v22.write_bytes(b"ID3\x02\x00\x00" + size + frame + v22.read_bytes())
    for path, genre in ((only_v1, "Rock"), (v22, "Jazz")):
        assert [str(t) for f in MP3(str(path)).tags.getall("TCON") for t in f.genres] == [genre]  # mutagen's view
        assert read_genres(path) == [genre]
        tags.write_genres(path, ["Pop"])
        assert read_genres(path) == ["Pop"]
