"""Tests for tagger.media.tags: genre tags in every format, exact undo, and crash-safe writes.

Every format gets a real file made by tests/audiofiles.py (tone + noise,
artist, title and a PNG cover), so the tests check real mutagen structures,
decoded audio and cover bytes, not mocks.  The real-world files in
../shared/library-samples are used when present.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mutagen
import numpy as np
import pytest
from mutagen.flac import Picture
from mutagen.id3 import ID3, TCON, TSOP
from mutagen.id3 import delete as delete_id3
from mutagen.mp4 import MP4, MP4FreeForm

from audiofiles import COVER, EXTENSIONS, FORMATS, add_test_tags, decode, make_audio
from tagger.common.errors import GenretagError
from tagger.media import tags
from tagger.media.tags import (TEMP_SUFFIX, TagError, read_genres, restore, snapshot, split_genres, supported,
                               write_genres)

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "library-samples"
ID3_FORMATS = ("mp3", "wav", "aiff")
VORBIS_FORMATS = ("flac", "ogg", "opus")
MP4_FORMATS = ("m4a-aac", "m4a-alac")
GENRE_KEY = {
    **dict.fromkeys(ID3_FORMATS, "TCON"),
    **dict.fromkeys(VORBIS_FORMATS, "GENRE"),
    **dict.fromkeys(MP4_FORMATS, "\xa9gen"),
}
CUSTOM_KEY = {
    **dict.fromkeys(ID3_FORMATS, "TXXX:GENRETAG"),
    **dict.fromkeys(VORBIS_FORMATS, "GENRETAG"),
    **dict.fromkeys(MP4_FORMATS, "----:com.apple.iTunes:GENRETAG"),
}


# ---------------------------------------------------------------------------
# Fixtures and helpers.


@pytest.fixture(scope="session")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tagged (artist, title, cover) file per format, made once; tests copy them."""
    folder = tmp_path_factory.mktemp("originals")
    made = {}
    for fmt in FORMATS:
        path = make_audio(folder / f"{fmt}{EXTENSIONS[fmt]}", fmt, seconds=1.0)
        add_test_tags(path)
        made[fmt] = path
    return made


def copy_of(originals: dict[str, Path], fmt: str, tmp_path: Path) -> Path:
    dest = tmp_path / f"song{EXTENSIONS[fmt]}"
    shutil.copyfile(originals[fmt], dest)
    return dest


@pytest.fixture(params=FORMATS)
def song(request: pytest.FixtureRequest, originals: dict[str, Path], tmp_path: Path) -> tuple[str, Path]:
    return request.param, copy_of(originals, request.param, tmp_path)


def tag_view(path: Path, drop: set[str] = frozenset()) -> dict[str, object]:
    """Every tag mutagen sees (full frame reprs, so encodings and picture bytes count), minus ``drop`` keys."""
    f = mutagen.File(path)
    if f is None or f.tags is None:
        return {}
    if isinstance(f.tags, ID3):
        return {k: repr(v) for k, v in f.tags.items() if k not in drop}
    if isinstance(f, MP4):
        return {k: repr(v) for k, v in f.tags.items() if k not in drop}
    view: dict[str, object] = {}
    for k, v in f.tags:  # Vorbis comments: keep duplicates and order
        if k.upper() not in drop:
            view.setdefault(k.upper(), []).append(v)
    if hasattr(f, "pictures"):
        view["pictures"] = [p.data for p in f.pictures]
    return view


def cover_of(path: Path) -> bytes:
    f = mutagen.File(path)
    if isinstance(f.tags, ID3):
        return f.tags.getall("APIC")[0].data
    if isinstance(f, MP4):
        return bytes(f.tags["covr"][0])
    if getattr(f, "pictures", None):
        return f.pictures[0].data
    return Picture(base64.b64decode(f.tags["METADATA_BLOCK_PICTURE"][0])).data


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX))


def raw_id3(path: Path) -> ID3:
    """The ID3 tag as stored (no v2.3 -> v2.4 translation), from an MP3, WAV or AIFF file."""
    return type(mutagen.File(path))(path, translate=False).tags


def stored(path: Path, key: str) -> object:
    """The field exactly as mutagen reads it back: ID3 text list, Vorbis pairs, MP4 values."""
    f = mutagen.File(path)
    if isinstance(f.tags, ID3):
        raw = raw_id3(path)
        return raw[key].text if key in raw else None
    if isinstance(f, MP4):
        return f.tags.get(key)
    return [(k, v) for k, v in f.tags if k.upper() == key]


# ---------------------------------------------------------------------------
# Formats table and helpers.


def test_supported_by_extension() -> None:
    for name in ("a.mp3", "b.FLAC", "c.ogg", "d.oga", "e.opus", "f.m4a", "g.mp4", "h.aiff", "i.aif", "j.wav"):
        assert supported(name), name
    for name in ("a.aac", "b.txt", "c", ".song.mp3.x1y2" + TEMP_SUFFIX, "d.wma"):
        assert not supported(name), name


def test_formats_table_is_one_row_per_format() -> None:
    names = [f.name for f in tags.FORMATS]
    extensions = [e for f in tags.FORMATS for e in f.extensions]
    assert len(names) == len(set(names))
    assert len(extensions) == len(set(extensions))
    assert all(e == e.lower() and e.startswith(".") for e in extensions)


def test_tag_error_carries_path_and_reason() -> None:
    err = TagError("/music/a.mp3", "file is read-only")
    assert (err.path, err.reason, str(err)) == ("/music/a.mp3", "file is read-only", "/music/a.mp3: file is read-only")
    assert isinstance(err, GenretagError)  # so the CLI prints one clean "Error:" line


def test_split_genres() -> None:
    assert split_genres(["Rock;Blues"]) == ["Rock", "Blues"]
    assert split_genres(["Rock / Pop", "rock", " Jazz ;; "]) == ["Rock", "Pop", "Jazz"]
    assert split_genres(["Drum & Bass"]) == ["Drum & Bass"]
    assert split_genres(["Rock/Pop"], separators=";") == ["Rock/Pop"]


def test_only_tags_module_imports_mutagen() -> None:
    offenders = []
    for path in (REPO / "tagger").rglob("*.py"):
        if path.name == "tags.py":
            continue
        text = path.read_text(encoding="utf-8")
        if "import mutagen" in text or "from mutagen" in text:
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


# ---------------------------------------------------------------------------
# Writing and reading, per format.


def test_write_multi_value_keeps_audio_tags_and_cover(song: tuple[str, Path]) -> None:
    fmt, path = song
    audio_before, sr_before = decode(path)
    others_before = tag_view(path, drop={GENRE_KEY[fmt]})
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))

    result = write_genres(path, ["Rock", "Blues"])

    assert read_genres(path) == ["Rock", "Blues"]
    key = GENRE_KEY[fmt]
    if fmt in ID3_FORMATS:  # one TCON frame, two null-separated values, ID3v2.4
        raw = raw_id3(path)
        assert raw.version == (2, 4, 0)
        assert raw.getall("TCON")[0].text == ["Rock", "Blues"]
    elif fmt.startswith("m4a"):  # one ©gen atom holding a list
        assert MP4(path).tags[key] == ["Rock", "Blues"]
    else:  # two separate GENRE comments
        assert stored(path, key) == [("GENRE", "Rock"), ("GENRE", "Blues")]
    audio_after, sr_after = decode(path)
    assert sr_after == sr_before
    np.testing.assert_array_equal(audio_after, audio_before)
    assert tag_view(path, drop={key}) == others_before
    assert cover_of(path) == COVER
    # The write moves mtime forward on purpose and reports the new stat.
    now = os.stat(path)
    assert (result.st_size, result.st_mtime_ns, result.st_ino) == (now.st_size, now.st_mtime_ns, now.st_ino)
    assert now.st_mtime_ns > 1_000_000_000_000_000_000
    assert temp_files(path.parent) == []


def test_rewrite_replaces_and_empty_list_removes(song: tuple[str, Path]) -> None:
    fmt, path = song
    write_genres(path, ["Rock", "Blues"])
    write_genres(path, ["Jazz"])
    assert read_genres(path) == ["Jazz"]
    write_genres(path, [])
    assert read_genres(path) == []
    assert stored(path, GENRE_KEY[fmt]) in (None, [])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("separator", ["; ", "/"])
def test_id3v23_joins_with_separator_only_where_needed(
    fmt: str, separator: str, originals: dict[str, Path], tmp_path: Path
) -> None:
    path = copy_of(originals, fmt, tmp_path)
    write_genres(path, ["Rock", "Blues"], id3v23=True, separator=separator)
    if fmt in ID3_FORMATS:
        raw = raw_id3(path)
        assert raw.version == (2, 3, 0)
        assert raw["TCON"].text == [f"Rock{separator}Blues"]
        assert read_genres(path) == [f"Rock{separator}Blues"]
        assert raw["TPE1"].text == ["Test Artist"] and raw["APIC:Cover"].data == COVER
    else:  # formats with real multi-values ignore the ID3 options
        assert read_genres(path) == ["Rock", "Blues"]


def test_id3_version_conversion_keeps_other_frames(tmp_path: Path) -> None:
    path = make_audio(tmp_path / "old.mp3", "mp3")
    add_test_tags(path, genres=["Pop"], id3v23=True)
    snap = snapshot(path)
    assert snap["tag"] == {"version": [2, 3, 0]}
    write_genres(path, ["Rock", "Blues"])  # default: v2.4
    raw = ID3(path, translate=False)
    assert raw.version == (2, 4, 0) and raw["TCON"].text == ["Rock", "Blues"]
    assert raw["TIT2"].text == ["Test Title"] and raw["APIC:Cover"].data == COVER
    restore(path, snap)
    raw = ID3(path, translate=False)
    assert raw.version == (2, 3, 0) and raw["TCON"].text == ["Pop"]

    # v2.4 -> v2.3 keeps frames v2.3 has no equivalent for (mutagen alone would drop them).
    tagged = ID3(path)
    tagged.add(TSOP(encoding=3, text=["Artist, Test"]))
    tagged.save(v2_version=4)
    write_genres(path, ["Rock"], id3v23=True)
    raw = ID3(path, translate=False)
    assert raw.version == (2, 3, 0) and raw["TSOP"].text == ["Artist, Test"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_custom_field(fmt: str, originals: dict[str, Path], tmp_path: Path) -> None:
    path = copy_of(originals, fmt, tmp_path)
    write_genres(path, ["Pop"])
    write_genres(path, ["Rock", "Blues"], field="GENRETAG")
    assert read_genres(path, field="GENRETAG") == ["Rock", "Blues"]
    assert read_genres(path) == ["Pop"]  # the standard field is untouched
    key = CUSTOM_KEY[fmt]
    if fmt in ID3_FORMATS:
        frame = raw_id3(path)[key]
        assert (frame.FrameID, frame.desc, frame.text) == ("TXXX", "GENRETAG", ["Rock", "Blues"])
    elif fmt.startswith("m4a"):
        values = MP4(path).tags[key]
        assert [bytes(v) for v in values] == [b"Rock", b"Blues"]
        assert all(v.dataformat == 1 for v in values)  # UTF-8 text atoms
    else:
        assert stored(path, key) == [("GENRETAG", "Rock"), ("GENRETAG", "Blues")]
    # "genre" in any case means the format's own genre field.
    assert read_genres(path, field="Genre") == ["Pop"]


def test_invalid_arguments_raise_value_error(tmp_path: Path) -> None:
    path = make_audio(tmp_path / "a.flac", "flac")
    with pytest.raises(ValueError):
        write_genres(path, ["Rock", ""])
    with pytest.raises(ValueError):
        write_genres(path, ["Ro\0ck"])
    with pytest.raises(ValueError):
        write_genres(path, ["Rock"], field="A=B")


@pytest.mark.parametrize(
    ("stored_text", "expected"),
    [
        (["(17)"], ["Rock"]),
        (["17"], ["Rock"]),
        (["(17)(18)"], ["Rock", "Techno"]),
        (["(17)Rock"], ["Rock"]),
        (["Rock;Blues"], ["Rock;Blues"]),
    ],
)
@pytest.mark.parametrize("version", [3, 4])
def test_read_numeric_tcon(stored_text: list[str], expected: list[str], version: int, tmp_path: Path) -> None:
    path = make_audio(tmp_path / "n.mp3", "mp3")
    tagged = ID3()
    tagged.add(TCON(encoding=0, text=stored_text))
    tagged.save(path, v2_version=version)
    assert read_genres(path) == expected
    # The snapshot keeps the raw number, and restore writes it back verbatim.
    snap = snapshot(path)
    assert snap["frame"]["text"] == stored_text
    write_genres(path, ["Jazz"], id3v23=version == 3)
    restore(path, snap)
    assert ID3(path, translate=False)["TCON"].text == stored_text


# ---------------------------------------------------------------------------
# Snapshot and restore.


@pytest.mark.parametrize("before", [["Pop"], ["Pop", "Soul"], None], ids=["one", "two", "absent"])
@pytest.mark.parametrize("field", [None, "GENRETAG"])
def test_snapshot_restore_is_exact(song: tuple[str, Path], before: list[str] | None, field: str | None) -> None:
    fmt, path = song
    if before is not None:
        write_genres(path, before, field=field)
    original = path.read_bytes()
    view = tag_view(path)
    snap = snapshot(path, field)
    assert json.loads(json.dumps(snap)) == snap
    assert read_genres(path, field) == (before or [])

    write_genres(path, ["Rock", "Blues"], field=field)
    assert read_genres(path, field) == ["Rock", "Blues"]
    restore(path, json.loads(json.dumps(snap)))

    assert read_genres(path, field) == (before or [])
    assert tag_view(path) == view
    assert path.read_bytes() == original  # no version change involved: byte for byte
    assert snapshot(path, field) == snap
    assert temp_files(path.parent) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_restore_file_without_any_tag(fmt: str, tmp_path: Path) -> None:
    path = make_audio(tmp_path / f"bare{EXTENSIONS[fmt]}", fmt)
    original = path.read_bytes()
    snap = snapshot(path)
    audio = decode(path)[0]
    write_genres(path, ["Rock"])
    restore(path, snap)
    assert read_genres(path) == []
    np.testing.assert_array_equal(decode(path)[0], audio)
    if fmt in ID3_FORMATS:  # "no ID3 tag at all" comes back exactly
        assert snap["tag"] is None and snap["frame"] is None
        assert mutagen.File(path).tags is None
        assert path.read_bytes() == original


def test_mp3_id3v1_block_is_kept_byte_for_byte(tmp_path: Path) -> None:
    path = make_audio(tmp_path / "v1.mp3", "mp3")
    tagged = ID3()
    tagged.add(TCON(encoding=0, text=["Electronic"]))
    tagged.save(path, v1=2)  # writes ID3v1 too ...
    delete_id3(path, delete_v1=False, delete_v2=True)  # ... then leave only the ID3v1 block
    original = path.read_bytes()
    assert original[-128:].startswith(b"TAG")
    assert read_genres(path) == ["Electronic"]  # read falls back to ID3v1
    snap = snapshot(path)
    assert snap["tag"] is None

    write_genres(path, ["Rock"])
    assert read_genres(path) == ["Rock"]
    assert path.read_bytes()[-128:] == original[-128:]
    restore(path, snap)
    assert path.read_bytes() == original


def test_restore_does_not_rewrite_an_unchanged_file(tmp_path: Path) -> None:
    path = make_audio(tmp_path / "a.flac", "flac")
    write_genres(path, ["Rock"])
    snap = snapshot(path)
    os.utime(path, ns=(10**18, 10**18))
    restore(path, snap)
    assert os.stat(path).st_mtime_ns == 10**18


def test_restore_rejects_foreign_snapshots(tmp_path: Path) -> None:
    mp3 = make_audio(tmp_path / "a.mp3", "mp3")
    flac = make_audio(tmp_path / "a.flac", "flac")
    with pytest.raises(TagError, match="snapshot is for a mp3 file"):
        restore(flac, snapshot(mp3))
    with pytest.raises(TagError, match="not a genretag tag snapshot"):
        restore(flac, {"genre": "Rock"})


def test_restore_rejects_damaged_snapshots(tmp_path: Path) -> None:
    path = make_audio(tmp_path / "a.flac", "flac")
    snap = snapshot(path)
    del snap["items"]
    with pytest.raises(TagError, match="damaged tag snapshot"):
        restore(path, snap)


def test_mp4_freeform_bytes_that_are_not_utf8_survive_json(tmp_path: Path) -> None:
    path = make_audio(tmp_path / "a.m4a", "m4a-aac")
    f = MP4(path)
    f.tags["----:com.apple.iTunes:GENRETAG"] = [MP4FreeForm(b"\xff\xfeRock", dataformat=0)]
    f.save()
    snap = json.loads(json.dumps(snapshot(path, "GENRETAG")))
    write_genres(path, ["Jazz"], field="GENRETAG")
    restore(path, snap)
    value = MP4(path).tags["----:com.apple.iTunes:GENRETAG"][0]
    assert (bytes(value), value.dataformat) == (b"\xff\xfeRock", 0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_removing_genres_from_a_tagless_file_adds_no_tag(fmt: str, tmp_path: Path) -> None:
    path = make_audio(tmp_path / f"bare{EXTENSIONS[fmt]}", fmt)
    original = path.read_bytes()
    write_genres(path, [])
    assert path.read_bytes() == original


# ---------------------------------------------------------------------------
# Safety: permissions, errors, interrupted writes.


def test_read_only_file_is_refused_even_for_root(tmp_path: Path) -> None:
    path = make_audio(tmp_path / "ro.mp3", "mp3")
    snap = snapshot(path)
    path.chmod(0o444)
    original = path.read_bytes()
    if os.geteuid() == 0:
        assert os.access(path, os.W_OK)  # why the mode bits are checked too
    with pytest.raises(TagError, match="read-only") as info:
        write_genres(path, ["Rock"])
    assert info.value.path == str(path)
    with pytest.raises(TagError, match="read-only"):
        restore(path, {**snap, "frame": {"encoding": 3, "text": ["Pop"]}})
    assert path.read_bytes() == original
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444
    assert temp_files(tmp_path) == []


def test_permission_bits_and_symlinks_are_kept(tmp_path: Path) -> None:
    path = make_audio(tmp_path / "p.flac", "flac")
    path.chmod(0o640)
    link = tmp_path / "link.flac"
    link.symlink_to(path.name)
    write_genres(link, ["Rock"])
    assert link.is_symlink()
    assert read_genres(path) == ["Rock"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_unwritable_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Root ignores folder permissions, so the refusal is simulated where the temp file is made."""
    path = make_audio(tmp_path / "a.flac", "flac")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tags.tempfile, "mkstemp", refuse)
    with pytest.raises(TagError, match="folder is not writable"):
        write_genres(path, ["Rock"])


def test_vanished_file(tmp_path: Path) -> None:
    path = tmp_path / "gone.mp3"
    for call in (lambda: write_genres(path, ["Rock"]), lambda: read_genres(path), lambda: snapshot(path)):
        with pytest.raises(TagError, match="not found") as info:
            call()
        assert info.value.path == str(path)
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("name", ["notes.txt", "raw.aac", "noextension"])
def test_unsupported_format(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(b"\xff\xf1" + bytes(500))
    with pytest.raises(TagError, match="unsupported format"):
        write_genres(path, ["Rock"])
    with pytest.raises(TagError, match="unsupported format"):
        read_genres(path)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_file_raises_and_is_left_alone(
    fmt: str, damage: str, originals: dict[str, Path], tmp_path: Path
) -> None:
    path = copy_of(originals, fmt, tmp_path)
    data = path.read_bytes()
    path.write_bytes(random.Random(0).randbytes(4000) if damage == "garbage" else data[:40])
    before = path.read_bytes()
    with pytest.raises(TagError) as info:
        write_genres(path, ["Rock"])
    assert info.value.reason
    assert path.read_bytes() == before
    assert temp_files(tmp_path) == []


def test_disk_full_during_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = make_audio(tmp_path / "a.wav", "wav")
    original = path.read_bytes()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tags.shutil, "copyfileobj", full)
    with pytest.raises(TagError, match="disk full"):
        write_genres(path, ["Rock"])
    assert path.read_bytes() == original
    assert temp_files(tmp_path) == []


def test_disk_full_inside_mutagen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """mutagen wraps OSError in its own errors; the reason must still say 'disk full'."""
    path = make_audio(tmp_path / "a.flac", "flac")
    original = path.read_bytes()

    def full(self: object, *args: object, **kwargs: object) -> None:
        raise mutagen.MutagenError(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    monkeypatch.setattr(mutagen.flac.FLAC, "save", full)
    with pytest.raises(TagError, match="disk full"):
        write_genres(path, ["Rock"])
    assert path.read_bytes() == original
    assert temp_files(tmp_path) == []


_FULL_DISK_CHILD = textwrap.dedent(
    """
    import json, os, shutil, sys
    from tagger.media import tags
    folder, source = sys.argv[1], sys.argv[2]
    path = os.path.join(folder, os.path.basename(source))
    shutil.copyfile(source, path)
    page = 4096
    vfs = os.statvfs(folder)
    room = -(-os.path.getsize(path) // page) * page  # exactly enough for the copy, not for a bigger tag
    with open(os.path.join(folder, "filler"), "wb") as out:
        out.write(bytes(vfs.f_bavail * vfs.f_frsize - room))
    before = open(path, "rb").read()
    try:
        tags.write_genres(path, ["Rock", "Blues"] * 400)
        outcome = "written"
    except tags.TagError as e:
        outcome = e.reason
    print(json.dumps({"outcome": outcome, "intact": open(path, "rb").read() == before,
                      "left": [n for n in os.listdir(folder) if n.endswith(tags.TEMP_SUFFIX)]}))
    """
)


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac"])
def test_disk_full_on_a_real_full_file_system(fmt: str, originals: dict[str, Path], tmp_path: Path) -> None:
    """A real, tiny tmpfs in a private mount namespace (skipped where unshare is not allowed)."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a private tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = 'mount -t tmpfs -o size=256k tmpfs "$1" || exit 77; shift; exec "$@"'
    child = [sys.executable, "-c", _FULL_DISK_CHILD, str(mnt), str(originals[fmt])]
    cmd = ["unshare", "-rm", "sh", "-c", script, "sh", str(mnt), *child]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0 and (proc.returncode == 77 or "unshare" in proc.stderr):
        pytest.skip(f"cannot mount a private tmpfs here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result == {"outcome": "disk full (no space left on device); not changed", "intact": True, "left": []}


def test_failed_rename_leaves_original_intact(
    monkeypatch: pytest.MonkeyPatch, originals: dict[str, Path], tmp_path: Path
) -> None:
    path = copy_of(originals, "mp3", tmp_path)
    original, audio = path.read_bytes(), decode(path)[0]

    def broken(src: object, dst: object) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(tags.os, "replace", broken)
    with pytest.raises(TagError, match="Input/output error"):
        write_genres(path, ["Rock"])
    monkeypatch.undo()
    assert path.read_bytes() == original
    np.testing.assert_array_equal(decode(path)[0], audio)
    assert temp_files(tmp_path) == []


def test_file_changed_during_write_is_not_overwritten(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = make_audio(tmp_path / "a.flac", "flac")
    real_fsync = tags._fsync

    def meddle(p: str, directory: bool = False) -> None:
        real_fsync(p, directory)
        if not directory:  # another program saves the file between our copy and our rename
            with open(path, "ab") as out:
                out.write(b"\0")

    monkeypatch.setattr(tags, "_fsync", meddle)
    with pytest.raises(TagError, match="changed while"):
        write_genres(path, ["Rock"])
    assert temp_files(tmp_path) == []


_KILL_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from tagger.media import tags
    mode, path, marker = sys.argv[1:4]
    if mode == "stall":
        def stall(src, dst):
            with open(marker, "w") as out:
                out.write(src)
            time.sleep(120)
        tags.os.replace = stall
        tags.write_genres(path, ["Jazz"])
    else:
        open(marker, "w").close()
        i = 0
        while True:
            tags.write_genres(path, ["A"] if i % 2 else ["B", "C"])
            i += 1
    """
)


def _start_child(mode: str, path: Path, marker: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", _KILL_CHILD, mode, str(path), str(marker)], env=env)


def _wait_for(marker: Path, child: subprocess.Popen[bytes], filled: bool = False) -> None:
    deadline = time.monotonic() + 60
    while not marker.exists() or (filled and marker.stat().st_size == 0):
        assert child.poll() is None, "child exited early"
        assert time.monotonic() < deadline, "child never got there"
        time.sleep(0.01)


def _kill(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)


@pytest.mark.parametrize("fmt", ["mp3", "flac", "m4a-aac"])
def test_kill_between_temp_write_and_rename(fmt: str, originals: dict[str, Path], tmp_path: Path) -> None:
    path = copy_of(originals, fmt, tmp_path)
    write_genres(path, ["Pop"])
    original, audio = path.read_bytes(), decode(path)[0]
    marker = tmp_path / "marker"
    child = _start_child("stall", path, marker)
    try:
        _wait_for(marker, child, filled=True)
    finally:
        _kill(child)
    assert path.read_bytes() == original
    assert read_genres(path) == ["Pop"]
    np.testing.assert_array_equal(decode(path)[0], audio)
    # Nothing can clean up after kill -9: the finished copy stays, hidden and recognisable,
    # and is never taken for music (supported() is False, scanners skip dot files).
    tmp = Path(marker.read_text())
    assert temp_files(tmp_path) == [tmp.name]
    assert tmp.name.startswith(".") and not supported(tmp)
    finished = mutagen.File(tmp, options=[type(mutagen.File(path))])
    assert "Jazz" in finished.tags.pprint()  # it was complete: the rename alone was missing


@pytest.mark.parametrize("fmt", ["mp3", "ogg", "m4a-alac"])
def test_kill_at_random_moments_leaves_old_or_new(fmt: str, originals: dict[str, Path], tmp_path: Path) -> None:
    path = copy_of(originals, fmt, tmp_path)
    audio, view = decode(path)[0], tag_view(path, drop={GENRE_KEY[fmt]})
    rng = random.Random(fmt)
    for attempt in range(4):
        marker = tmp_path / f"marker{attempt}"
        child = _start_child("loop", path, marker)
        try:
            _wait_for(marker, child)
            time.sleep(rng.uniform(0.0, 0.4))
        finally:
            _kill(child)
        assert read_genres(path) in ([], ["A"], ["B", "C"])
        np.testing.assert_array_equal(decode(path)[0], audio)
        assert tag_view(path, drop={GENRE_KEY[fmt]}) == view
        left = temp_files(tmp_path)
        assert len(left) <= 1  # at most the one write that was cut short
        for name in left:
            (tmp_path / name).unlink()


# ---------------------------------------------------------------------------
# The audio makers other tests reuse.


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", ["tone", "noise", "silence"])
def test_make_audio_makes_what_it_claims(fmt: str, kind: str, tmp_path: Path) -> None:
    sr = 48000 if fmt == "opus" else 16000
    path = make_audio(tmp_path / f"x{EXTENSIONS[fmt]}", fmt, seconds=0.5, sr=sr, channels=2, kind=kind)
    data, got_sr = decode(path)
    assert got_sr == sr and data.shape[1] == 2
    assert abs(len(data) / sr - 0.5) < 0.1  # lossy codecs add a little priming
    loudness = float(np.abs(data).max())
    assert loudness < 1e-3 if kind == "silence" else loudness > 0.1


@pytest.mark.parametrize(
    ("fmt", "subtype", "bits"),
    [("wav", "PCM_24", 24), ("flac", "PCM_24", 24), ("aiff", "PCM_16", 16), ("m4a-alac", 24, 24)],
)
def test_make_audio_bit_depth(fmt: str, subtype: str | int, bits: int, tmp_path: Path) -> None:
    path = make_audio(tmp_path / f"x{EXTENSIONS[fmt]}", fmt, subtype=subtype)
    assert mutagen.File(path).info.bits_per_sample == bits


def test_make_audio_rejects_impossible_requests(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="opus needs"):
        make_audio(tmp_path / "x.opus", "opus", sr=22050)
    with pytest.raises(ValueError, match="unknown format"):
        make_audio(tmp_path / "x.wma", "wma")
    with pytest.raises(ValueError, match="unknown signal"):
        make_audio(tmp_path / "x.wav", "wav", kind="chirp")


# ---------------------------------------------------------------------------
# Real files from the wild (../shared/library-samples).

SAMPLE_GENRES = {
    "Borewit_music-metadata/29 - Dominator.mp3": ["Electronic"],
    "Borewit_music-metadata/Dethklok-mergeTagHeaders.mp3": ["Metal"],
    "Borewit_music-metadata/ogg-multipagemetadata-bug.ogg": ["Dubstep"],
    "Borewit_music-metadata/issue-266.flac": ["Pop"],
    "Borewit_music-metadata/issue-2574.mp3": ["[stage banter]"],
    "Borewit_music-metadata/id3v1_Blood_Sugar.mp3": ["Electronic"],
    "Borewit_music-metadata/a kind of magic.flac": ["Rock"],
    "Borewit_music-metadata/Discogs - Beth Hart - Sinner's Prayer [id3v2.3].mp3": ["Rock;Blues"],
    "Borewit_music-metadata/id4.m4a": ["Electronic"],
    "Borewit_music-metadata/04 Long Drive.flac": ["Pop"],
    "Hguimaraes_gtzan.keras/iza_meu_talisma.mp3": [],
    "Hguimaraes_gtzan.keras/jake_bugg_two_fingers.mp3": [],
    "Hguimaraes_gtzan.keras/muse_knights_of_cydonia.mp3": [],
}
# Truncated mid-stream: mutagen reads its tags but cannot renumber the Ogg pages after a grown comment.
SAMPLES_THAT_CANNOT_BE_WRITTEN = {"Borewit_music-metadata/ogg-multipagemetadata-bug.ogg"}
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"{SAMPLES} not present (shared data is optional)")


@needs_samples
def test_every_sample_is_known() -> None:
    found = {str(p.relative_to(SAMPLES)) for p in SAMPLES.rglob("*") if p.is_file() and supported(p)}
    assert found == set(SAMPLE_GENRES)


@needs_samples
@pytest.mark.parametrize("name", sorted(SAMPLE_GENRES))
def test_sample_read_write_restore(name: str, tmp_path: Path) -> None:
    path = tmp_path / Path(name).name
    shutil.copyfile(SAMPLES / name, path)  # copyfile: the shared files are read-only
    assert read_genres(path) == SAMPLE_GENRES[name]
    view, audio = tag_view(path), decode(path)[0]
    snap = snapshot(path)
    if name in SAMPLES_THAT_CANNOT_BE_WRITTEN:
        original = path.read_bytes()
        with pytest.raises(TagError, match="corrupt"):  # the longer comment needs every later page renumbered
            write_genres(path, ["Jazz", "Ambient"])
        assert path.read_bytes() == original and temp_files(tmp_path) == []
        return
    write_genres(path, ["Jazz", "Ambient"])
    assert read_genres(path) == ["Jazz", "Ambient"]
    write_genres(path, ["Rock"], field="GENRETAG")
    restore(path, snap)
    restore(path, snapshot(SAMPLES / name, "GENRETAG"))
    assert read_genres(path) == SAMPLE_GENRES[name]
    assert tag_view(path) == view
    np.testing.assert_array_equal(decode(path)[0], audio)
    assert temp_files(tmp_path) == []


@needs_samples
@pytest.mark.parametrize("name", sorted(n for n in SAMPLE_GENRES if n.endswith(".mp3")))
def test_sample_id3v23_round_trip_keeps_every_text(name: str, tmp_path: Path) -> None:
    """Converting to v2.3 and back may change text encodings (v2.3 has no UTF-8), never the text."""
    path = tmp_path / Path(name).name
    shutil.copyfile(SAMPLES / name, path)
    snap = snapshot(path)
    before = id3_content(path)
    write_genres(path, ["Jazz", "Ambient"], id3v23=True)
    assert read_genres(path) == ["Jazz; Ambient"]
    restore(path, snap)
    assert id3_content(path) == before


def id3_content(path: Path) -> dict[str, object]:
    """Each frame's text, picture bytes or printable form, ignoring text encodings."""
    out: dict[str, object] = {}
    for key, frame in ID3(path).items():
        if hasattr(frame, "data"):
            out[key] = bytes(frame.data)
        elif hasattr(frame, "text"):
            out[key] = [str(t) for t in frame.text]
        else:
            out[key] = frame.pprint()
    return out
