"""The model loads only when a file needs a prediction, in a thread while the pool starts (issue 12, point 4).

The card and the model file are still checked up front (tests/test_backends.py
keeps the corrupt-model tests); here: an unchanged rescan never loads the
model (nor, for a Keras backend, TensorFlow), the runner gets work before
the load finishes, and a model that only fails once loaded still ends the
scan with one clean error line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from audiofiles import make_audio
from conftest import make_library
from tagger.cli import cli
from tagger.inference import models
from tagger.inference.backends import get_backend
from tagger.inference.models import card_path, file_id, load_model, open_model
from tagger.inference.worker import analyse_file
from tagger.run.runners import InlineRunner
from tagger.run.scan import ScanOptions, scan
from tagger.store.cache import Cache

SVC = Path(get_backend("svc").default_model())
CNN = Path(get_backend("cnn").default_model())
# Lines of -X importtime output that name TensorFlow or Keras (as in test_backends.py).
TF_IMPORT = re.compile(r"\|\s+(tensorflow|keras)(\.|\s*$)", re.M)


def run_scan(paths: list[Path], db: Path, model: models.Model, runner: Any = None) -> Any:
    with Cache(db) as cache:
        return scan([str(p) for p in paths], cache, model, runner or InlineRunner(), ScanOptions())


def test_unchanged_rescan_never_loads_the_model_and_a_new_file_does(tmp_path: Path) -> None:
    library = tmp_path / "lib"
    make_library(library, ("wav", "flac"))
    db = tmp_path / "c.db"
    first = run_scan([library], db, load_model("svc"))
    assert first.analysed == 2

    checked = open_model("svc")
    assert not checked.loaded and checked.genres == read_genres(SVC)  # the card's genres, unloaded
    again = run_scan([library], db, checked)
    assert (again.cached, again.analysed) == (2, 0)
    assert not checked.loaded

    make_audio(library / "new.wav", "wav", seconds=4.0, kind="noise", seed=9)
    fresh = open_model("svc")
    third = run_scan([library], db, fresh)
    assert (third.cached, third.analysed, third.failed) == (2, 1, 0)
    assert fresh.loaded


def read_genres(model: Path) -> list[str]:
    return json.loads(card_path(model).read_text())["genres"]


def test_the_runner_gets_work_while_the_model_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    library = tmp_path / "lib"
    make_library(library, ("wav", "mp3"))
    got_work = threading.Event()
    seen: list[tuple[bool, str]] = []
    real_load = models._load_backend

    def slow_load(*args: Any) -> Any:
        got_work.wait(30)  # a load that ran before the runner had any work would wait here in vain
        seen.append((got_work.is_set(), threading.current_thread().name))
        return real_load(*args)

    class Watching(InlineRunner):
        def run(self, tasks: Any) -> Any:
            for task in tasks:
                got_work.set()
                yield analyse_file(task)

    monkeypatch.setattr(models, "_load_backend", slow_load)
    model = open_model("svc")
    summary = run_scan([library], tmp_path / "c.db", model, Watching())
    assert (summary.analysed, summary.failed) == (2, 0)
    assert seen == [(True, "genretag-model-load")]


def test_a_model_that_fails_only_when_loaded_ends_the_scan_with_one_error_line(tmp_path: Path) -> None:
    """A card vouching for the file (its hash) skips the up-front load; loading it later still fails cleanly."""
    model = tmp_path / "svc.joblib"
    model.write_bytes(os.urandom(4096))
    card = json.loads(card_path(SVC).read_text())
    card_path(model).write_text(json.dumps(dict(card, id=file_id(model))))
    assert not open_model("svc", model).loaded  # checked, not loaded
    library = tmp_path / "lib"
    make_library(library, ("wav",))
    result = CliRunner().invoke(cli, ["scan", "--model", str(model), "--db", str(tmp_path / "c.db"), "-j", "0",
                                      "--no-progress", str(library)])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: {model}: corrupt or unreadable model file"), line


def test_a_damaged_copy_of_a_vouched_model_is_still_refused_up_front(tmp_path: Path) -> None:
    """The hash no longer matches the card, and svc has no cheaper check: the model is loaded, and fails, first."""
    model = tmp_path / "svc.joblib"
    data = SVC.read_bytes()
    model.write_bytes(data[: len(data) // 2])
    shutil.copyfile(card_path(SVC), card_path(model))
    with pytest.raises(models.ModelError, match="corrupt or unreadable model file"):
        open_model("svc", model)


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from tagger.cli import main; main()", *args],
                          capture_output=True, text=True, env=dict(os.environ, **env), timeout=600)


@pytest.mark.slow
def test_unchanged_rescan_with_a_keras_backend_never_imports_tensorflow(tmp_path: Path) -> None:
    library = tmp_path / "lib"
    library.mkdir()
    make_audio(library / "a.flac", "flac", seconds=7.0)
    args = ["scan", "--backend", "cnn", "--model", str(CNN), "--jobs", "0", "--json", "--no-progress",
            "--db", str(tmp_path / "c.db"), str(library)]
    # TF_CPP_MIN_LOG_LEVEL set: plugins.keras_base then leaves stderr, and so the import trace, alone.
    trace = {"PYTHONPROFILEIMPORTTIME": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    first = run_cli(*args, env=trace)
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads(first.stdout)["analysed"] == 1
    assert TF_IMPORT.search(first.stderr)  # the control: predicting does import TensorFlow, and the trace shows it

    again = run_cli(*args, env=trace)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["from_cache"] == 1
    assert "import time:" in again.stderr
    assert not TF_IMPORT.search(again.stderr), "an unchanged rescan imported TensorFlow/Keras"
