"""Model pointers stay in their folder, training keeps every model, `genretag models` lists and switches them.

Issue 11, points 3 and 11.  Models here are real: trained with `genretag
train` on the feature table (the shared one, else test_train_report's
separable synthetic table), or the shipped svc model saved again with
tagger.inference.models.save_model, as `train` does.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tagger.cli import cli
from tagger.common.paths import models_dir
from tagger.inference.backends import get_backend
from tagger.inference.models import CURRENT, card_path, load_model, make_card, read_card, save_model
from test_train_report import table  # noqa: F401  (module fixture: the feature table)

SHIPPED = Path(get_backend("svc").default_model())  # in the installed package, editable or not


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def listing(*args: str) -> list[dict]:
    code, out, err = invoke("models", *args, "--json")
    assert code == 0, err
    return json.loads(out)["models"]


class Unpickled:
    """A 'model' that leaves a marker file when unpickled: proof that a file was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "unpickled"))


def planted_model(folder: Path, marker: Path) -> Path:
    """A pickle outside the data dir, with a valid svc card beside it: loading it would run code."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "svc.joblib"
    path.write_bytes(pickle.dumps(Unpickled(marker)))
    shutil.copyfile(card_path(SHIPPED), card_path(path))
    return path


# ---------------------------------------------------------------------------
# Point 3: the pointer may only name a file in its own folder.


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink", "symlinked-folder"])
def test_pointer_leading_outside_its_folder_is_refused_unloaded(how: str, tmp_path: Path, genretag_home: Path) -> None:
    marker = tmp_path / "marker"
    evil = planted_model(tmp_path / "outside", marker)
    folder = models_dir() / "svc"
    folder.mkdir(parents=True)
    if how == "absolute":
        name = str(evil)
    elif how == "dotdot":
        name = os.path.relpath(evil, folder)
        assert name.startswith("..")
        assert (folder / name).resolve() == evil.resolve()
    elif how == "symlink":
        name = "svc-20260101-000000.joblib"
        (folder / name).symlink_to(evil)
        card_path(folder / name).symlink_to(card_path(evil))
    else:
        (folder / "old").symlink_to(evil.parent, target_is_directory=True)
        name = "old/svc.joblib"
    (folder / CURRENT).write_text(name + "\n")
    music = tmp_path / "music"
    music.mkdir()

    code, out, err = invoke("scan", str(music), "--db", str(tmp_path / "db.sqlite"), "--jobs", "0")

    assert code == 1 and not marker.exists()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"Error: {folder / CURRENT}: points to "), err
    assert "Traceback" not in out + err


def test_pointer_naming_a_model_in_its_folder_is_used(tmp_path: Path, genretag_home: Path) -> None:
    path = save_model(load_model("svc").backend, make_card(load_model("svc").backend))
    assert (models_dir() / "svc" / CURRENT).read_text().strip() == path.name
    assert load_model("svc").path == path
    (models_dir() / "svc" / CURRENT).write_text("missing.joblib\n")
    code, _, err = invoke("scan", str(tmp_path), "--db", str(tmp_path / "db.sqlite"), "--jobs", "0")
    pointer = models_dir() / "svc" / CURRENT
    assert code == 1 and err.strip() == f"Error: {pointer}: points to missing.joblib, which does not exist"


# ---------------------------------------------------------------------------
# Point 11: every model is kept, listed, and can be made current again.


def test_training_keeps_earlier_models_and_models_lists_and_switches_them(
    table: Path, genretag_home: Path  # noqa: F811
) -> None:
    first = json.loads(invoke("train", "--backend", "svc", "--features", str(table), "--json")[1])
    second = json.loads(invoke("train", "--backend", "svc", "--features", str(table), "--split", "stratified",
                               "--json")[1])  # fmt: skip
    assert first["model"] != second["model"] and Path(first["model"]).is_file() and Path(second["model"]).is_file()

    rows = listing("svc")
    kept = {r["file"]: r for r in rows if not r["shipped"]}
    assert set(kept) == {first["model"], second["model"]}
    for result in (first, second):
        row, card = kept[result["model"]], read_card(Path(result["model"]))
        assert row["id"] == card["id"] and row["date"] == card["date"] and row["backend"] == "svc"
        assert (row["data"], row["protocol"]) == (str(table), card["metrics"]["protocol"])
        assert (row["accuracy"], row["n_test"]) == (card["metrics"]["track_accuracy"], card["metrics"]["n_test"])
    assert kept[second["model"]]["current"] and not kept[first["model"]]["current"]
    assert [r["shipped"] for r in rows].count(True) == 1 and not next(r for r in rows if r["shipped"])["current"]

    code, out, err = invoke("models")  # the table, every backend
    assert code == 0 and kept[first["model"]]["id"] in out and "test clips" in out and "stratified" in out

    first_id = kept[first["model"]]["id"]
    code, _, err = invoke("models", "use", first_id[:6])
    assert code == 0 and first_id in err and "now current" in err
    assert load_model("svc").path == Path(first["model"])
    assert {r["file"] for r in listing("svc") if r["current"]} == {first["model"]}

    shipped = next(r for r in rows if r["shipped"])
    code, _, err = invoke("models", "use", shipped["id"])
    assert code == 0 and load_model("svc").path == SHIPPED and not (models_dir() / "svc" / CURRENT).exists()


def test_two_models_saved_in_one_second_are_both_kept(genretag_home: Path) -> None:
    backend = load_model("svc").backend
    paths = [save_model(backend, make_card(backend)) for _ in range(3)]
    assert len(set(paths)) == 3 and all(p.is_file() and card_path(p).is_file() for p in paths)
    assert len([r for r in listing("svc") if not r["shipped"]]) == 3


def test_models_use_unknown_or_ambiguous_id_is_one_error_line(genretag_home: Path) -> None:
    backend = load_model("svc").backend
    path = save_model(backend, make_card(backend))
    copy = path.with_name("svc-copy.joblib")  # the same model under two names: one id, two files
    shutil.copyfile(path, copy)
    card_path(copy).write_text(json.dumps(dict(read_card(path), file=copy.name)))
    model_id = read_card(path)["id"]
    for args, reason in ((["use", "ffffffffffffz"], "no model with id"), (["use", model_id], "is ambiguous"),
                         (["use", " "], "give a model id")):  # fmt: skip
        code, out, err = invoke("models", *args)
        assert code == 1 and err.count("\n") == 1 and err.startswith("Error: ") and reason in err, err
    code, _, err = invoke("models", "use", copy.stem)  # the file name picks one of models sharing an id
    assert code == 0 and load_model("svc").path == copy
    code, _, err = invoke("models", "nosuchbackend")
    assert code == 1 and err.startswith("Error: ") and err.count("\n") == 1


def test_models_reads_cards_only_never_tensorflow(tmp_path: Path, genretag_home: Path) -> None:
    code = (
        "import sys, json\n"
        "from click.testing import CliRunner\n"
        "from tagger.cli import cli\n"
        "r = CliRunner().invoke(cli, ['models', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "rows = json.loads(r.stdout)['models']\n"
        "assert {'cnn', 'resnet', 'svc'} <= {row['backend'] for row in rows}\n"
        "keras = next(row for row in rows if row['backend'] == 'cnn')\n"
        "r = CliRunner().invoke(cli, ['models', 'use', keras['id']])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
