"""Walking: recursion, explicit files, symlink loops, unreadable and hidden folders, globs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tagger.media.walk import WalkOptions, walk


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    for rel in ("a/1.mp3", "a/b/2.flac", "a/b/c/3.ogg", "d/4.opus", "d/notes.txt", "5.M4A", ".hidden/6.wav",
                "a/.7.wav", "Podcasts/ep.mp3", "x/8.aiff", "x/9.wav"):
        touch(root / rel)
    return root


def names(paths) -> list[str]:
    return sorted(os.path.basename(p) for p in paths)


def test_recursive_audio_only_sorted_hidden_skipped(tree: Path) -> None:
    found = list(walk([str(tree)]))
    assert names(found) == ["1.mp3", "2.flac", "3.ogg", "4.opus", "5.M4A", "8.aiff", "9.wav", "ep.mp3"]
    assert all(os.path.isabs(p) for p in found)
    assert found == sorted(found, key=lambda p: p.split(os.sep))  # depth-first, sorted by name


def test_hidden_when_asked(tree: Path) -> None:
    assert {".7.wav", "6.wav"} <= set(names(walk([str(tree)], WalkOptions(hidden=True))))


def test_files_and_folders_as_arguments(tree: Path) -> None:
    found = list(walk([str(tree / "a" / "b"), str(tree / "5.M4A"), str(tree / ".hidden" / "6.wav")]))
    assert names(found) == ["2.flac", "3.ogg", "5.M4A", "6.wav"]


def test_include_exclude_globs(tree: Path) -> None:
    assert names(walk([str(tree)], WalkOptions(include=("*.mp3",)))) == ["1.mp3", "ep.mp3"]
    assert "ep.mp3" not in names(walk([str(tree)], WalkOptions(exclude=("Podcasts",))))
    assert names(walk([str(tree)], WalkOptions(include=("a/*",)))) == ["1.mp3", "2.flac", "3.ogg"]
    assert names(walk([str(tree)], WalkOptions(exclude=("x/*", "*.flac")))) == [
        "1.mp3", "3.ogg", "4.opus", "5.M4A", "ep.mp3"]


def test_symlink_loop_terminates_and_is_reported(tree: Path) -> None:
    os.symlink(tree / "a", tree / "a" / "b" / "loop")
    os.symlink(tree, tree / "d" / "up")
    errors: list[tuple[str, str]] = []
    found = list(walk([str(tree)], on_error=lambda p, r: errors.append((p, r))))
    assert len(found) == len(set(found)) == 8
    assert any("loop" in r for _, r in errors)


def test_symlinked_folder_is_followed_once(tmp_path: Path, tree: Path) -> None:
    os.symlink(tree / "x", tmp_path / "linked")
    found = list(walk([str(tmp_path / "linked")]))
    assert names(found) == ["8.aiff", "9.wav"]


def test_unreadable_folder_is_reported_and_skipped(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, for whom chmod 000 hides nothing, so the OS refusal is simulated.
    real = os.scandir
    blocked = str(tree / "a" / "b")

    def scandir(path):  # noqa: ANN001
        if os.fspath(path) == blocked:
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    errors: list[tuple[str, str]] = []
    found = names(walk([str(tree)], on_error=lambda p, r: errors.append((p, r))))
    assert "1.mp3" in found and "2.flac" not in found and "9.wav" in found
    assert errors == [(blocked, "cannot read folder: Permission denied")]


def test_missing_argument_is_reported(tmp_path: Path) -> None:
    errors: list[tuple[str, str]] = []
    assert list(walk([str(tmp_path / "nope")], on_error=lambda p, r: errors.append((p, r)))) == []
    assert errors and "cannot access" in errors[0][1]


def test_a_named_pipe_is_refused_not_opened(tmp_path: Path) -> None:
    pipe = tmp_path / "stuck.wav"
    os.mkfifo(pipe)
    errors: list[tuple[str, str]] = []
    assert list(walk([str(pipe)], on_error=lambda p, r: errors.append((p, r)))) == []
    assert errors == [(str(pipe), "not a regular file")]
    assert list(walk([str(tmp_path)])) == []  # inside a folder it is skipped too


def test_overlapping_arguments_yield_each_file_once(tree: Path) -> None:
    """Issue 22 (21): `genretag scan lib lib lib` analysed every file three times."""
    once = sorted(walk([str(tree)]))
    a, b = tree / "a", tree / "a" / "b"
    os.symlink(a, tree / "link-to-a")
    for args in ([tree, tree, tree], [tree, a], [a, tree], [b, a, b / "2.flac"], [tree, b / "2.flac", tree / "x"],
                 [b / "2.flac", tree, b / "2.flac"], [tree / "link-to-a", a]):
        found = list(walk([str(p) for p in args]))
        assert len(found) == len(set(found)) == len({os.path.realpath(p) for p in found}), args
    assert sorted(walk([str(tree), str(tree), str(a)])) == once
    assert sorted(walk([str(a), str(tree)])) == once
    assert sorted(walk([str(b / "2.flac"), str(tree)])) == once  # a named file keeps its place, and only it
    assert list(walk([str(b / "2.flac"), str(b)])) == [str(b / "2.flac"), str(b / "c" / "3.ogg")]


def test_a_named_hidden_file_inside_a_named_folder_is_still_yielded(tree: Path) -> None:
    found = list(walk([str(tree / "a"), str(tree / "a" / ".7.wav")]))
    assert names(found) == [".7.wav", "1.mp3", "2.flac", "3.ogg"]
