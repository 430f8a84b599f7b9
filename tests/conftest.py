"""Shared fixtures: an isolated data directory, real shared data when present, test libraries."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/audiofiles.py, tests/task_funcs.py

from audiofiles import make_audio  # noqa: E402

# Module-scoped fixtures scan before the autouse fixture below runs: they get svc too.
os.environ["GENRETAG_BACKEND"] = "svc"

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GTZAN = SHARED / "gtzan"
SAMPLES = SHARED / "library-samples"


@pytest.fixture(autouse=True)
def genretag_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own data directory, so no user database or model leaks in."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("GENRETAG_HOME", str(home))
    monkeypatch.delenv("GENRETAG_DB", raising=False)
    monkeypatch.delenv("GENRETAG_DEBUG", raising=False)  # a developer's debug setting would add tracebacks
    # The suite's scans were written against svc (fast, no network weights); a test about the
    # default backend, or about musicnn, unsets this or says --backend itself.
    monkeypatch.setenv("GENRETAG_BACKEND", "svc")
    return home


@pytest.fixture
def gtzan_audio() -> Path:
    """The real GTZAN clips in ../shared, or a skip saying why."""
    path = GTZAN / "audio"
    if not path.is_dir():
        pytest.skip(f"real GTZAN clips not present at {path}")
    return path


@pytest.fixture
def library_samples() -> Path:
    if not SAMPLES.is_dir():
        pytest.skip(f"real library samples not present at {SAMPLES}")
    return SAMPLES


def make_library(root: Path, formats: tuple[str, ...] = ("wav", "flac", "mp3", "ogg"), seconds: float = 4.0) -> list[Path]:
    """A small library of good files in nested folders, one per format, different signals."""
    files = []
    for i, fmt in enumerate(formats):
        folder = root / f"artist{i % 2}" / f"album{i}"
        folder.mkdir(parents=True, exist_ok=True)
        ext = {"m4a-aac": ".m4a", "m4a-alac": ".m4a", "aiff": ".aiff"}.get(fmt, f".{fmt}")
        kind = "tone" if i % 2 == 0 else "noise"
        files.append(make_audio(folder / f"track{i}{ext}", fmt, seconds=seconds, kind=kind, seed=i))
    return files


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """A folder of four good 4 s tracks in wav, flac, mp3 and ogg."""
    root = tmp_path / "Music"
    make_library(root)
    return root


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cache.db"


def scan_for_module(lib: Path, db: Path, home: Path, *args: str) -> dict:
    """Scan ``lib`` into ``db`` with svc in-process, never abstaining, from a module-scoped fixture.

    Module fixtures run before the autouse ``genretag_home``: the environment is set here.
    Returns the scan's JSON summary.
    """
    import json

    from click.testing import CliRunner

    from tagger.cli import cli

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENRETAG_HOME", str(home))
        mp.delenv("GENRETAG_DB", raising=False)
        mp.setenv("GENRETAG_BACKEND", "svc")
        result = CliRunner().invoke(cli, ["scan", str(lib), "--db", str(db), "--jobs", "0", "--json",
                                          "--min-confidence", "0", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def copy_scanned(src: Path, src_db: Path, dest: Path) -> tuple[Path, Path]:
    """A private copy of a scanned library (mtimes kept) and its database, rows and scan roots re-pointed at it."""
    import json
    import shutil
    import sqlite3

    root, db = dest / src.name, dest / src_db.name
    shutil.copytree(src, root)
    shutil.copyfile(src_db, db)
    with sqlite3.connect(db) as con:
        con.execute("update tracks set path = ? || substr(path, ?)", (str(root), len(str(src)) + 1))
        con.execute("update scans set roots = replace(roots, ?, ?)", (json.dumps(str(src))[1:-1], json.dumps(str(root))[1:-1]))
    con.close()
    return root, db
