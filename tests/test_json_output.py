"""Every JSON genretag prints is valid UTF-8 JSON, also for file names that are not UTF-8 (issue 11, point 15).

Python's own json module accepts ``\\udce9`` escapes; strict parsers (jq, Go,
serde) reject them because a lone surrogate is no Unicode character.  So the
check here is strict: the bytes must decode as UTF-8, and no string in the
parsed document may hold a surrogate.  The exact bytes of each odd name must
still be recoverable (``path_bytes_b64``).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from audiofiles import make_audio
from tagger.cli import cli
from tagger.common.jsontext import readable, utf8_safe

ODD = b"caf\xe9 latin-1.wav"  # Latin-1 "café": not valid UTF-8
BROKEN = b"d\xe9fect.mp3"


def strict(raw: bytes) -> Any:
    """Parse as a strict parser would: UTF-8 only, no lone surrogates anywhere."""
    data = json.loads(raw.decode("utf-8", "strict"))

    def walk(value: Any) -> None:
        if isinstance(value, str):
            value.encode("utf-8", "strict")  # raises on a lone surrogate
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(k)
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(data)
    return data


def run(*args: str) -> tuple[int, bytes, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout_bytes, result.stderr


@pytest.fixture
def odd_library(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    """A folder holding a good WAV and a broken MP3, both with Latin-1 names; their exact paths."""
    folder = tmp_path / "Music"
    folder.mkdir()
    good = os.path.join(os.fsencode(folder), ODD)
    os.rename(make_audio(folder / "a.wav", "wav", seconds=4.0, kind="noise", seed=3), good)
    broken = os.path.join(os.fsencode(folder), BROKEN)
    with open(broken, "wb") as f:
        f.write(b"ID3 this is not an mp3" * 50)
    return folder, good, broken


def by_bytes(rows: list[dict]) -> dict[bytes, dict]:
    return {base64.b64decode(r["path_bytes_b64"]): r for r in rows if r.get("path_bytes_b64")}


def test_every_json_output_is_strict_utf8_and_keeps_the_exact_bytes(odd_library, tmp_path: Path) -> None:
    folder, good, broken = odd_library
    db = str(tmp_path / "db.sqlite")

    code, out, err = run("scan", str(folder), "--db", db, "--jobs", "0", "--json")
    summary = strict(out)
    assert code == 1 and (summary["analysed"], summary["failed"]) == (1, 1)
    assert list(by_bytes(summary["errors"])) == [broken]
    assert summary["errors"][0]["path"] == readable(os.fsdecode(broken))

    code, out, _ = run("show", "--db", db, "--json")
    rows = strict(out)
    assert code == 0 and set(by_bytes(rows)) == {good, broken}
    assert by_bytes(rows)[good]["path"].endswith("caf\\xe9 latin-1.wav")

    code, out, _ = run("export", "--db", db, "--format", "json")
    rows = strict(out)
    assert code == 0 and set(by_bytes(rows)) == {good, broken} and by_bytes(rows)[good]["genre"]

    code, out, _ = run("export", "--db", db, "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out.decode("utf-8", "strict"))))
    assert {base64.b64decode(r["path_bytes_b64"]) for r in table} == {good, broken}

    code, out, _ = run("tag", "--db", db, "--json")
    data = strict(out)
    assert code == 0 and sorted(f["action"] for f in data["files"]) == ["skipped", "written"]
    assert by_bytes(data["files"])[good]["action"] == "written"

    code, out, _ = run("undo", "--all", "--db", db, "--json")
    data = strict(out)
    assert code == 0 and list(by_bytes(data["files"])) == [good] and data["files"][0]["action"] == "restored"

    code, out, _ = run("scan", str(folder), "--db", db, "--jobs", "0", "--json", "--write", "--dry-run",
                       "--retry-failed")  # fmt: skip
    data = strict(out)
    assert by_bytes(data["errors"]) and by_bytes(data["tagging"]["files"])[good]["action"] == "would write"


def test_utf8_safe_escapes_text_and_keeps_bytes() -> None:
    name = os.fsdecode(b"/m/caf\xe9.mp3")
    data = utf8_safe({"path": name, "error": f"cannot read {name}", "ok": "d\u00e9j\u00e0", "n": [name, 1],
                      "path_bytes": b"/m/caf\xe9.mp3"})  # fmt: skip
    strict(json.dumps(data).encode())
    assert data["path"] == "/m/caf\\xe9.mp3" and base64.b64decode(data["path_bytes_b64"]) == b"/m/caf\xe9.mp3"
    assert data["error"] == "cannot read /m/caf\\xe9.mp3" and data["ok"] == "d\u00e9j\u00e0"
    assert data["n"] == ["/m/caf\\xe9.mp3", 1] and base64.b64decode(data["error_bytes_b64"]).endswith(b"\xe9.mp3")


def test_csv_cells_keep_accented_genre_names_readable() -> None:
    """A personal model's genres ("Électronique") read as typed in a spreadsheet, not as JSON escapes."""
    from tagger.views.records import export_rows

    class Row:
        def public(self) -> dict:
            return {"path": "/m/a.flac", "genre": "Électronique", "top3": [["Électronique", 0.9], ["Jazz", 0.1]],
                    "probabilities": {"Électronique": 0.9, "Jazz": 0.1}}

    out = io.StringIO()
    assert export_rows(None, [Row()], out, "csv") == 1
    (row,) = csv.DictReader(io.StringIO(out.getvalue()))
    assert row["genre"] == "Électronique" and "\\u00c9" not in out.getvalue()
    assert json.loads(row["top3"]) == [["Électronique", 0.9], ["Jazz", 0.1]]
    assert json.loads(row["probabilities"]) == {"Électronique": 0.9, "Jazz": 0.1}
