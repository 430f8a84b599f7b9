"""What tagging keeps besides the tags: metadata, link state, exact bytes, and a clear Ctrl-C.

Issue 22, defects 9 (extended attributes and ACLs), 14 (Ctrl-C in the first
file) and 19 (byte-exact undo after an ID3 version conversion); issue 25,
point 4 (hard links on purpose).  Files are real audio from
tests/audiofiles.py, scanned once per module with the svc backend; each test
copies them, then checks bytes, inodes, modes, xattrs and ACLs on disk.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from mutagen import id3

from audiofiles import add_test_tags, make_audio
from conftest import SAMPLES, copy_scanned
from tagger.cli import cli
from tagger.media import tags
from tagger.media.tags import TagFile, read_genres
from tagger.store.cache import Cache

FORMATS = {"mp3": ".mp3", "flac": ".flac", "wav": ".wav", "aiff": ".aiff"}


def run(db: Path, *args: str) -> tuple[int, dict, str]:
    result = CliRunner().invoke(cli, [*args, "--db", str(db), "--json"], catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout), result.stderr


def history(db: Path) -> list[dict]:
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute("select * from tag_history order by id")]


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Music/<fmt> with ID3v2.4 (or Vorbis) tags holding non-Latin-1 text, no genre; scanned once."""
    root = tmp_path_factory.mktemp("meta")
    music, db = root / "Music", root / "cache.db"
    music.mkdir()
    for i, (fmt, ext) in enumerate(FORMATS.items()):
        add_test_tags(make_audio(music / f"{fmt}{ext}", fmt, seconds=4.0, kind="noise", seed=i),
                      artist="Sigur Rós — Jónsi", title="Ára bátur")  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENRETAG_HOME", str(root / "home"))
        mp.setenv("GENRETAG_BACKEND", "svc")
        result = CliRunner().invoke(cli, ["scan", str(music), "--db", str(db), "--jobs", "0", "--json",
                                          "--min-confidence", "0"])  # fmt: skip
    assert result.exit_code == 0 and json.loads(result.stdout)["analysed"] == len(FORMATS), result.output
    return music, db


@pytest.fixture
def lib(scanned: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the scanned library (mtimes kept, rows re-pointed), and its database."""
    return copy_scanned(*scanned, tmp_path)


# ---------------------------------------------------------------------------
# Issue 22, defect 9: mode, owner, extended attributes and ACLs.


def acl(path: Path) -> str:
    return subprocess.run(["getfacl", "-cp", str(path)], capture_output=True, text=True, check=True).stdout


def xattrs(path: Path) -> dict[str, bytes]:
    return {n: os.getxattr(path, n) for n in sorted(os.listxattr(path))}


def metadata(path: Path) -> tuple:
    st = path.stat()
    return st.st_mode, st.st_uid, st.st_gid, xattrs(path), acl(path)


def needs_acls(path: Path) -> None:
    """Skip unless the file system under ``path`` takes user xattrs and POSIX ACLs."""
    if shutil.which("setfacl") is None:
        pytest.skip("setfacl not installed (apt-get install acl)")
    try:
        os.setxattr(path, "user.genretag-probe", b"1")
        os.removexattr(path, "user.genretag-probe")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            pytest.skip(f"the file system of {path} has no user extended attributes")
        raise
    probe = subprocess.run(["setfacl", "-m", "u:nobody:r", str(path)], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"the file system of {path} has no POSIX ACLs: {probe.stderr.strip()}")
    subprocess.run(["setfacl", "-b", str(path)], check=True)


@pytest.mark.parametrize("links", ["in-place", "split"])
def test_tag_and_undo_keep_mode_owner_xattrs_and_acls(lib: tuple[Path, Path], links: str) -> None:
    music, db = lib
    files = sorted(p for p in music.iterdir())
    needs_acls(files[0])
    for i, path in enumerate(files):
        os.setxattr(path, "user.comment", f"rated {i} by me".encode())
        os.setxattr(path, "user.xdg.origin.url", b"https://example.org/album")
        if i:  # the ACL: group may only read, but the mask (shown as the group mode bits) is rw
            subprocess.run(["setfacl", "-m", "u:nobody:rw,g::r,m::rw", str(path)], check=True)
        else:  # no ACL: the folder's default ACL must not give the new version one
            path.chmod(0o640)
    if os.geteuid() == 0:  # only root may give files away: the owner is kept where allowed
        for path in files:
            os.chown(path, 65534, 65534)
    # The folder's default ACL would give a new file access the originals do not have.
    subprocess.run(["setfacl", "-d", "-m", "u:nobody:rwx,o::rwx", str(music)], check=True)
    os.utime(music, None)
    with sqlite3.connect(db) as con:  # xattrs and ACLs change ctime only: the cached rows stay current
        assert con.execute("select count(*) from tracks").fetchone()[0] == len(files)
    before = {p: metadata(p) for p in files}
    assert all("user:nobody:rw-" in m[4] and "group::r--" in m[4] for m in list(before.values())[1:])
    assert "nobody" not in before[files[0]][4] and "other::---" in before[files[0]][4]

    code, data, err = run(db, "tag", str(music), "--hard-links", links)
    assert code == 0 and data["counts"] == {"written": len(files)}, err
    assert {p: metadata(p) for p in files} == before
    assert all(read_genres(p) for p in files)
    assert all(oct(p.stat().st_mode & 0o777) == oct(before[p][0] & 0o777) for p in files)  # not 664

    code, data, err = run(db, "undo", str(music))
    assert code == 0 and data["counts"] == {"restored": len(files)}, err
    assert {p: metadata(p) for p in files} == before
    assert not any(read_genres(p) for p in files)


def test_an_attribute_that_cannot_be_kept_stops_the_write(lib: tuple[Path, Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    music, db = lib
    path = music / "flac.flac"
    needs_acls(path)
    os.setxattr(path, "user.comment", b"mine")
    data_before = path.read_bytes()
    real = os.setxattr

    def refused(target, name, value, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if name == "user.comment" and tags.TEMP_SUFFIX in os.fsdecode(target):
            raise OSError(errno.E2BIG, "Argument list too long")
        return real(target, name, value, *args, **kwargs)

    monkeypatch.setattr(os, "setxattr", refused)
    code, data, err = run(db, "tag", str(path))
    assert code == 1 and data["files"][0]["action"] == "error"
    assert "cannot keep its extended attribute user.comment" in data["files"][0]["reason"]
    assert path.read_bytes() == data_before and os.getxattr(path, "user.comment") == b"mine"
    assert not [p for p in music.iterdir() if p.name.startswith(".")]  # no temporary left
    assert history(db) == []


# ---------------------------------------------------------------------------
# Issue 22, defect 19: undo after a version conversion is byte for byte.


@pytest.mark.parametrize("fmt", ["mp3", "wav", "aiff"])
def test_id3v23_then_undo_restores_the_file_byte_for_byte(lib: tuple[Path, Path], fmt: str) -> None:
    music, db = lib
    path = music / f"{fmt}{FORMATS[fmt]}"
    original = path.read_bytes()
    assert TagFile(path)._file.tags.version[:2] == (2, 4)

    code, data, err = run(db, "tag", str(path), "--id3v23")
    assert code == 0 and data["counts"] == {"written": 1}, err
    assert TagFile(path)._file.tags.version[:2] == (2, 3) and path.read_bytes() != original
    code, data, err = run(db, "tag", str(path), "--id3v23", "--overwrite", "--top", "2")  # a second write
    assert code == 0 and data["counts"] == {"written": 1}, err

    with sqlite3.connect(db) as con:  # the tag before the conversion is kept apart, for the first write only
        assert con.execute("select count(*) from whole_tags").fetchone()[0] == 1

    code, data, err = run(db, "undo", str(path))
    assert code == 0 and data["counts"] == {"restored": 1}, err
    assert path.read_bytes() == original
    with sqlite3.connect(db) as con:  # and dropped once undone
        assert con.execute("select count(*) from whole_tags").fetchone()[0] == 0


def test_undo_of_a_converted_tag_changed_since_keeps_the_users_change(lib: tuple[Path, Path]) -> None:
    """--force on a file edited after the write restores only the genre field (the whole tag would undo the edit)."""
    music, db = lib
    path = music / "mp3.mp3"
    assert run(db, "tag", str(path), "--id3v23")[0] == 0
    tag = id3.ID3(str(path))
    tag.add(id3.TIT2(encoding=1, text=["Renamed by me"]))
    tag.save(str(path), v2_version=3, v1=id3.ID3v1SaveOptions.UPDATE)
    code, data, _ = run(db, "undo", str(path), "--force")
    assert code == 0 and data["counts"] == {"restored": 1}
    assert read_genres(path) == [] and str(id3.ID3(str(path))["TIT2"]) == "Renamed by me"


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"{SAMPLES} not present (shared data is optional)")
def test_real_id3v23_file_tagged_as_v24_undoes_byte_for_byte(tmp_path: Path) -> None:
    name = "Borewit_music-metadata/Discogs - Beth Hart - Sinner's Prayer [id3v2.3].mp3"
    path = tmp_path / "beth.mp3"
    shutil.copyfile(SAMPLES / name, path)  # copyfile: the shared files are read-only
    original = path.read_bytes()
    tf = TagFile(path)
    assert tf._file.tags.version[:2] == (2, 3)
    snap, whole = tf.snapshot(), tf.whole_tag(id3v23=False)
    assert whole is not None and tf.whole_tag(id3v23=True) is None  # only a conversion needs it
    TagFile(path).write(["Soul"], id3v23=False)
    assert TagFile(path)._file.tags.version[:2] == (2, 4)
    TagFile(path).restore(snap, whole=whole)
    assert path.read_bytes() == original


# ---------------------------------------------------------------------------
# Issue 22, defect 14: Ctrl-C while the first file is written.

# Runs genretag, which sends itself a real SIGINT when it fsyncs the new version (before the rename)
# or the folder (after the rename) of the first file it writes.
CTRL_C_AT = """
import os, signal, sys
from tagger.media import tags
folder, real = sys.argv.pop(1) == "folder", tags._fsync
def ctrl_c(path, directory=False):
    if directory == folder:
        os.kill(os.getpid(), signal.SIGINT)
    return real(path, directory)
tags._fsync = ctrl_c
from tagger.cli import main
main()
"""


@pytest.mark.parametrize("when", ["file", "folder"])
def test_ctrl_c_in_the_first_file_says_so_exits_130_and_settles_the_journal(lib: tuple[Path, Path],
                                                                             when: str) -> None:
    music, db = lib
    first = sorted(music.iterdir())[0]  # the run goes by path
    originals = {p: p.read_bytes() for p in music.iterdir()}
    proc = subprocess.run([sys.executable, "-c", CTRL_C_AT, when, "tag", str(music), "--db", str(db), "--no-progress"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip

    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and "nothing to tag" not in proc.stderr
    assert f"interrupted while writing {first}" in proc.stderr and "run it again to finish" in proc.stderr
    rows = history(db)
    assert all(r["written_at"] for r in rows)  # settled at once: no record left in flight
    if when == "file":  # stopped before the rename: the file is as it was, its record dropped
        assert {p: p.read_bytes() for p in music.iterdir()} == originals and rows == []
    else:  # stopped after the rename: the file is new, its record confirmed
        assert [Path(r["path"]) for r in rows] == [first] and read_genres(first)
        assert {p: p.read_bytes() for p in music.iterdir() if p != first} == {
            p: b for p, b in originals.items() if p != first}
    assert not [p for p in music.iterdir() if p.name.startswith(".")]  # no temporary left

    code, data, err = run(db, "tag", str(music))  # finishing needs no rescan
    assert code == 0 and set(data["counts"]) <= {"written", "unchanged"}, err
    code, data, err = run(db, "undo", str(music))
    assert code == 0 and {p: p.read_bytes() for p in music.iterdir()} == originals


# ---------------------------------------------------------------------------
# Issue 25, point 4: hard links.


@pytest.fixture
def seeded(lib: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """Music/flac.flac hard-linked from a seeding folder outside the library (as a download client leaves it)."""
    music, db = lib
    path = music / "flac.flac"
    seeding = tmp_path / "Seeding" / "album.flac"
    seeding.parent.mkdir()
    os.link(path, seeding)
    return music, db, path, seeding


def test_hard_links_are_counted_in_dry_runs_and_summaries(seeded) -> None:
    music, db, path, seeding = seeded
    code, data, err = run(db, "tag", str(music), "--dry-run")
    assert code == 0 and data["hard_linked"] == 1
    assert [f["links"] for f in data["files"] if f["path"] == str(path)] == [2]
    for choice in ("in-place", "skip"):
        result = CliRunner().invoke(cli, ["tag", str(music), "--db", str(db), "--hard-links", choice, "--dry-run"])
        assert result.exit_code == 0 and f"1 hard-linked (--hard-links {choice})" in result.stderr


def test_default_writes_a_hard_linked_file_in_place_and_undo_keeps_the_link(seeded) -> None:
    music, db, path, seeding = seeded
    original, inode = path.read_bytes(), path.stat().st_ino
    code, data, err = run(db, "tag", str(music))
    assert code == 0 and data["counts"] == {"written": len(FORMATS)}, err
    assert path.stat().st_ino == inode == seeding.stat().st_ino and path.stat().st_nlink == 2
    assert read_genres(seeding) == read_genres(path) != []  # the seeding name sees the new tags
    assert [r["hard_links"] for r in history(db) if r["path"] == str(path)] == ["in-place"]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]

    code, data, err = run(db, "undo", str(music))
    assert code == 0 and data["counts"] == {"restored": len(FORMATS)}, err
    assert path.stat().st_ino == inode and path.stat().st_nlink == 2 and seeding.read_bytes() == original


def test_skip_leaves_a_hard_linked_file_alone(seeded) -> None:
    music, db, path, seeding = seeded
    original = path.read_bytes()
    code, data, _ = run(db, "tag", str(music), "--hard-links", "skip")
    row = [f for f in data["files"] if f["path"] == str(path)][0]
    assert code == 0 and row["action"] == "skipped" and "hard-linked (2 names)" in row["reason"]
    assert path.read_bytes() == original and path.stat().st_nlink == 2


def test_split_gives_the_name_its_own_copy_and_undo_joins_the_link_again(seeded) -> None:
    music, db, path, seeding = seeded
    original, inode = path.read_bytes(), path.stat().st_ino
    code, data, err = run(db, "tag", str(music), "--hard-links", "split")
    assert code == 0 and data["counts"] == {"written": len(FORMATS)}, err
    assert path.stat().st_ino != inode and path.stat().st_nlink == 1 and read_genres(path)
    assert seeding.read_bytes() == original  # the seeding copy is untouched

    code, data, err = run(db, "undo", str(music), "--dry-run")
    assert code == 0 and data["counts"] == {"would restore": len(FORMATS)}
    code, data, err = run(db, "undo", str(music))
    assert code == 0 and data["counts"] == {"restored": len(FORMATS)}, err
    assert path.stat().st_ino == inode == seeding.stat().st_ino and path.stat().st_nlink == 2
    assert path.read_bytes() == original
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # the link kept for undo is gone


# Runs genretag, which is killed (SIGKILL) half-way through copying the first new version into its inode.
KILLED_IN_COPY = """
import os, signal, sys
from tagger.media import tags
def half(src, dest):
    with open(src, "rb") as new, open(dest, "r+b") as out:
        out.write(new.read()[: os.path.getsize(src) // 2])
        out.flush()
    os.kill(os.getpid(), signal.SIGKILL)
tags._copy_into = half
from tagger.cli import main
main()
"""


def test_in_place_write_killed_mid_copy_is_finished_by_the_next_run(seeded) -> None:
    """kill -9 half-way through the copy into the inode: the journal names the verified copy, the next run finishes."""
    music, db, path, seeding = seeded
    original = path.read_bytes()
    proc = subprocess.run([sys.executable, "-c", KILLED_IN_COPY, "tag", str(path), "--db", str(db), "--no-progress"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == -9, proc.stderr
    [row] = history(db)
    aside = Path(os.fsdecode(row["aside"]))
    assert row["written_at"] is None and aside.name.endswith(tags.INPLACE_SUFFIX) and aside.is_file()
    assert path.read_bytes() != original  # the copy into the inode had begun: this step is not atomic

    code, data, err = run(db, "tag", str(path))  # settles first: the copy is finished, then confirmed
    assert code == 0 and data["counts"] == {"unchanged": 1}, err
    [row] = history(db)
    assert row["written_at"] and not aside.exists()
    assert read_genres(path) == read_genres(seeding) == json.loads(row["written"])
    assert path.stat().st_nlink == 2 and path.read_bytes() == seeding.read_bytes()
    with Cache(db) as cache:
        assert list(cache.journal.open_writes(stage="in_flight")) == []
    code, data, _ = run(db, "undo", str(path))
    assert code == 0 and data["counts"] == {"restored": 1} and read_genres(seeding) == []
    assert path.read_bytes() == original and path.stat().st_nlink == 2


def test_a_file_with_two_names_in_the_library_is_written_once(lib: tuple[Path, Path]) -> None:
    """Both names scanned: the second follows the first's in-place write (no rescan needed), never writes again."""
    music, db = lib
    path, twin = music / "flac.flac", music / "zz" / "flac.flac"  # after it, by path
    twin.parent.mkdir()
    os.link(path, twin)
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        row = dict(con.execute("select * from tracks where path = ?", (str(path),)).fetchone())
    probs = json.loads(row["probabilities"])
    other = min(probs, key=probs.get)  # the twin's row says another genre: writing it would undo the first
    with Cache(db) as cache:
        cache.write_results([row | {"path": str(twin)}])

    code, data, err = run(db, "tag", str(music))
    got = {f["path"]: (f["action"], f["reason"]) for f in data["files"]}
    assert code == 0 and got[str(path)][0] == "written" and got[str(twin)][0] == "unchanged", err
    assert data["hard_linked"] == 2 and path.stat().st_ino == twin.stat().st_ino
    code, data, _ = run(db, "scan", str(music), "--jobs", "0", "--min-confidence", "0")
    assert code == 0 and data["analysed"] == 0  # the twin's row followed the write
    assert len(history(db)) == len(FORMATS)

    with sqlite3.connect(db) as con:
        con.execute("update tracks set genre = ?, probabilities = ? where path = ?",
                    (other, json.dumps(probs | {other: 2.0}), str(twin)))  # fmt: skip
    code, data, err = run(db, "tag", str(music), "--overwrite", "--top", "2")
    got = {f["path"]: (f["action"], f["reason"]) for f in data["files"]}
    assert got[str(path)][0] == "written"
    assert got[str(twin)] == ("skipped", f"the same file as {path} (a hard link), written in this run")
    assert read_genres(twin) == read_genres(path) and len(read_genres(path)) == 2
