"""The command line: exit codes, summary, show and export reading the cache, plain output when piped."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tagger.analysis.features import FEATURE_NAMES
from tagger.cli import cli

GENRETAG = str(Path(sys.executable).with_name("genretag"))


def invoke(*args: str) -> tuple[int, str]:
    """Exit code and stdout (stderr carries progress and errors)."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout if result.exit_code == 0 or "--json" in args else result.output


@pytest.fixture
def scanned(library: Path, db_path: Path) -> Path:
    (library / "broken.mp3").write_text("not audio at all")
    # Never abstain here, so every good file has a genre (abstaining: tests/test_abstain.py).
    code, out = invoke("scan", str(library), "--db", str(db_path), "--jobs", "0", "--json", "--min-confidence", "0")
    assert code == 1, out
    return db_path


def test_scan_json_summary_and_exit_code_1_when_a_file_failed(scanned: Path, library: Path) -> None:
    code, out = invoke("scan", str(library), "--db", str(scanned), "--jobs", "0", "--json")
    data = json.loads(out)
    assert code == 1  # the broken file is still broken
    assert (data["seen"], data["from_cache"], data["failed"], data["analysed"]) == (5, 4, 1, 0)
    assert sum(data["genres"].values()) + data["abstained"] == 4 and data["backend"] == "svc"


def test_exit_code_0_when_everything_analysed(library: Path, db_path: Path) -> None:
    code, out = invoke("scan", str(library), "--db", str(db_path), "--jobs", "0")
    assert code == 0, out
    assert "analysed" in out and "Genres" in out


def test_usage_errors_exit_2_and_clean_errors_exit_1(tmp_path: Path, library: Path) -> None:
    code, out = invoke("scan", str(tmp_path / "no-such-folder"))
    assert code == 2 and "does not exist" in out
    code, out = invoke("scan", str(library), "--jobs", "-1")
    assert code == 2
    code, out = invoke("scan", str(library), "--backend", "nope")
    assert code == 1 and out.startswith("Error: unknown backend 'nope'") and "Traceback" not in out
    bad_model = tmp_path / "m.joblib"
    bad_model.write_bytes(b"garbage")
    code, out = invoke("scan", str(library), "--model", str(bad_model))
    assert code == 1 and f"Error: {bad_model}" in out


def test_show_filters_and_json(scanned: Path, library: Path) -> None:
    code, out = invoke("show", "--db", str(scanned), "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 5
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 4 and all(len(r["top3"]) == 3 and r["genre"] == r["top3"][0][0] for r in ok)
    code, out = invoke("show", "--db", str(scanned), "--status", "error", "--json")
    assert [r["path"] for r in json.loads(out)] == [str(library / "broken.mp3")]
    sub = library / "artist0"
    code, out = invoke("show", str(sub), "--db", str(scanned), "--json")
    assert {r["path"] for r in json.loads(out)} == {str(p) for p in sub.rglob("*.*")}
    genre = ok[0]["genre"]
    code, out = invoke("show", "--db", str(scanned), "--genre", genre, "--json")
    assert {r["genre"] for r in json.loads(out)} == {genre}
    code, out = invoke("show", "--db", str(scanned))
    assert code == 0 and "broken.mp3" in out and "error: cannot decode" in out


def test_export_csv_and_json(scanned: Path) -> None:
    code, out = invoke("export", "--db", str(scanned), "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(table) == 5
    ok = [r for r in table if r["status"] == "ok"]
    assert all(json.loads(r["top3"])[0][0] == r["genre"] for r in ok)
    code, out = invoke("export", "--db", str(scanned), "--format", "json", "--features", "--status", "ok")
    data = json.loads(out)
    assert len(data) == 4 and all(isinstance(r[FEATURE_NAMES[-1]], float) for r in data)


def test_piped_scan_prints_plain_progress_lines(library: Path, db_path: Path) -> None:
    proc = subprocess.run([GENRETAG, "scan", str(library), "--db", str(db_path), "-j", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "scanning: 4/4 files" in proc.stderr or "scanning: 4 files" in proc.stderr
    assert "\x1b[" not in proc.stdout + proc.stderr  # no terminal escapes into a pipe


def test_default_database_lives_in_the_data_dir(library: Path, genretag_home: Path) -> None:
    code, out = invoke("scan", str(library), "-j", "0")
    assert code == 0, out
    assert (genretag_home / "genretag.db").is_file()
    code, out = invoke("show", "--json")
    assert len(json.loads(out)) == 4


def test_scan_without_backend_uses_fusion_with_its_shipped_model(tmp_path: Path, monkeypatch) -> None:
    """The default backend is fusion (README "Results", docs/training.md: +4.6 points over musicnn under artist-kfold)."""
    from audiofiles import make_audio

    monkeypatch.delenv("GENRETAG_BACKEND")
    lib = tmp_path / "Music"
    for i, fmt in enumerate(("flac", "mp3")):
        lib.mkdir(exist_ok=True)
        make_audio(lib / f"{i}.{fmt}", fmt, seconds=8.0, kind="tone", seed=i)
    help_text = CliRunner().invoke(cli, ["scan", "--help"]).output
    assert "[default: fusion]" in " ".join(help_text.split())
    result = CliRunner().invoke(cli, ["scan", str(lib), "--db", str(tmp_path / "db.sqlite"), "--jobs", "0",
                                      "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["backend"] == "fusion" and summary["analysed"] == 2
    rows = json.loads(CliRunner().invoke(cli, ["show", "--db", str(tmp_path / "db.sqlite"), "--json"]).stdout)
    assert all(r["backend"] == "fusion" and len(r["tags"]) == 50 + 527 for r in rows)  # both networks' tags
    assert all(any(t.startswith("musicnn:") for t in r["tags"]) and any(t.startswith("efficientat:") for t in r["tags"])
               for r in rows)
