"""Worker processes never run code from the folder genretag is started in (issue 11, point 1).

A music folder is not trusted code: ``cd album && genretag scan .`` must not
import ``album/numpy/__init__.py`` (or ``librosa/``, ``soundfile/``,
``tagger/``, or a ``socket.py`` shadowing the standard library) in the fork
server, in spawned workers or in Dask workers.  Each planted module writes a
marker file when imported; the scan must work and leave no marker.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audiofiles import make_audio
from tagger.inference.worker import AnalysisTask
from tagger.run.runners import LocalRunner

GENRETAG = str(Path(sys.executable).with_name("genretag"))
PACKAGES = ("numpy", "librosa", "soundfile", "tagger", "mutagen")  # what workers import
STDLIB = ("socket", "selectors")  # imported by multiprocessing itself before any of genretag


def plant(folder: Path, markers: Path) -> None:
    """Packages and modules in ``folder`` that leave ``markers/<name>`` when imported."""
    markers.mkdir()
    for name in PACKAGES + STDLIB:
        code = f"open({str(markers / name)!r}, 'w').write('imported')\n"
        if name in STDLIB:
            (folder / f"{name}.py").write_text(code)
        else:
            (folder / name).mkdir()
            (folder / name / "__init__.py").write_text(code)


@pytest.fixture
def album(tmp_path: Path) -> tuple[Path, Path]:
    """A folder of two tracks that also holds booby-trapped packages; and where markers would appear."""
    folder = tmp_path / "album"
    folder.mkdir()
    make_audio(folder / "a.wav", "wav", seconds=4.0, kind="tone", seed=1)
    make_audio(folder / "b.flac", "flac", seconds=4.0, kind="noise", seed=2)
    plant(folder, tmp_path / "markers")
    return folder, tmp_path / "markers"


def scan_in(folder: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONSAFEPATH", "PYTHONPATH")}
    env["GENRETAG_HOME"] = str(home)
    return subprocess.run([GENRETAG, "scan", ".", "--db", str(folder.parent / "db.sqlite"), "--json",
                           "--no-progress", *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def test_scan_from_a_folder_holding_packages_runs_none_of_them(album: tuple[Path, Path], genretag_home: Path) -> None:
    folder, markers = album
    proc = scan_in(folder, genretag_home, "--jobs", "2")
    assert sorted(p.name for p in markers.iterdir()) == []
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["analysed"], summary["failed"]) == (2, 0)
    assert "worker" in summary["runner"]


def test_spawned_workers_do_not_import_from_the_working_folder(
    album: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, markers = album
    monkeypatch.chdir(folder)
    monkeypatch.delenv("PYTHONSAFEPATH", raising=False)
    runner = LocalRunner(1, timeout=120)
    runner._ctx = mp.get_context("spawn")  # the start method where there is no fork server
    results = list(runner.run([AnalysisTask(str(folder / "a.wav"))]))
    assert sorted(p.name for p in markers.iterdir()) == []
    assert len(results) == 1 and results[0].error is None and results[0].features is not None
    assert "PYTHONSAFEPATH" not in os.environ  # set only while the worker started


@pytest.mark.dask
def test_local_dask_cluster_workers_do_not_import_from_the_working_folder(
    album: tuple[Path, Path], genretag_home: Path
) -> None:
    pytest.importorskip("distributed")
    folder, markers = album
    proc = scan_in(folder, genretag_home, "--cluster", "local", "--jobs", "1")
    assert sorted(p.name for p in markers.iterdir()) == []
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["analysed"] == 2
