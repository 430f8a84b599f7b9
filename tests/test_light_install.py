"""A light install (issue 24): genretag without its keras extra, and what the package declares.

Installing into a fresh virtual environment needs the network and minutes,
so these tests check what such an install decides: the installed metadata
(TensorFlow and Keras only under the ``keras`` extra, every plain requirement
imported by the code that ships) and the import guard.  For the guard,
genretag runs in subprocesses whose ``sitecustomize`` makes ``import
tensorflow`` and ``import keras`` fail as if they were not installed; it is
on PYTHONPATH, so a scan's worker processes run without them too.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from audiofiles import make_audio
from conftest import REPO, make_library
from tagger.inference.models import Model, open_model
from tagger.run.runners import InlineRunner
from tagger.run.scan import ScanOptions, scan
from tagger.store.cache import Cache

KERAS_DISTS = {"tensorflow", "tensorflow-cpu", "keras"}
NEEDS = "needs genretag[keras]"
PIP = "pip install 'genretag[keras]'"
SHIPPED = ("tagger", "plugins", "training")  # setup.cfg's packages
# Where pip would install each: Linux x86-64 (tensorflow-cpu) and a Mac (tensorflow).
PLATFORMS = ({"sys_platform": "linux", "platform_machine": "x86_64"},
             {"sys_platform": "darwin", "platform_machine": "arm64"})

NOT_INSTALLED = '''\
"""Make TensorFlow and Keras unimportable in this interpreter, as in a plain `pip install genretag`."""
import sys


class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("tensorflow", "keras"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
'''


def error_line(backend: str) -> str:
    return f"Error: backend {backend!r} {NEEDS} (tensorflow, keras not installed): {PIP}"


# -- the installed metadata -------------------------------------------------------
def requirements() -> list[Requirement]:
    return [Requirement(r) for r in metadata.requires("genretag") or []]


def wanted_by(req: Requirement, extra: str) -> bool:
    """Whether installing genretag (``extra`` "": plainly) installs ``req`` on some platform pip supports."""
    return req.marker is None or any(req.marker.evaluate(dict(env, extra=extra)) for env in PLATFORMS)


def test_tensorflow_and_keras_come_only_with_the_keras_extra() -> None:
    reqs = requirements()
    plain = {canonicalize_name(r.name) for r in reqs if wanted_by(r, "")}
    assert plain and not plain & KERAS_DISTS, f"a plain install pulls in {plain & KERAS_DISTS}"
    for extra in ("keras", "test"):  # the test extra too: `pip install '.[test]' && pytest` tests cnn and resnet
        got = {canonicalize_name(r.name) for r in reqs if r.marker is not None and wanted_by(r, extra)}
        assert got >= KERAS_DISTS, f"extra {extra!r} lacks {KERAS_DISTS - got}"
    assert "tqdm" not in plain


def shipped_imports() -> set[str]:
    """Top-level modules imported anywhere in the shipped packages (lazily or not)."""
    found: set[str] = set()
    for package in SHIPPED:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.partition(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module.partition(".")[0])
    return found


def test_every_plain_requirement_is_imported_by_shipped_code() -> None:
    providers: dict[str, set[str]] = {}  # distribution -> the top-level modules it installs
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            providers.setdefault(canonicalize_name(dist), set()).add(module)
    imported = shipped_imports()
    plain = {canonicalize_name(r.name) for r in requirements() if wanted_by(r, "")}
    unused = sorted(d for d in plain if not providers.get(d, set()) & imported)
    assert not unused, f"declared but imported by no module of {SHIPPED}: {unused}"


def test_readme_says_what_each_dependency_is_for() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Dependencies", 1)[1].split("\n#", 1)[0]
    items = [line for line in section.splitlines() if line.startswith("- ")]
    named = {canonicalize_name(line[2:].split("`")[1]) for line in items if "`" in line}
    plain = {canonicalize_name(r.name) for r in requirements() if wanted_by(r, "")}
    assert plain <= named, f"README's Dependencies note lacks {sorted(plain - named)}"
    assert "tqdm" not in named and len(items) == len(named)  # a line each, none stale


# -- the import guard -----------------------------------------------------------------
@pytest.fixture(scope="module")
def no_tensorflow(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for subprocesses in which TensorFlow and Keras are not importable."""
    site = tmp_path_factory.mktemp("no_tensorflow")
    (site / "sitecustomize.py").write_text(NOT_INSTALLED, encoding="utf-8")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "COLUMNS": "250"}


def genretag(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``genretag ARGS`` in a fresh interpreter with ``env`` added (GENRETAG_HOME comes from the test's fixture)."""
    return subprocess.run([sys.executable, "-c", "from tagger.cli import main; main()", *args],
                          capture_output=True, text=True, env=dict(os.environ, **env), timeout=timeout)


def test_the_guard_hides_tensorflow_and_keras_and_nothing_else(no_tensorflow: dict[str, str]) -> None:
    for module in ("tensorflow", "keras"):
        proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                              env=dict(os.environ, **no_tensorflow), timeout=60)
        assert proc.returncode == 1 and f"No module named '{module}'" in proc.stderr, proc.stderr
    ok = subprocess.run([sys.executable, "-c", "import tagger.cli, plugins.cnn, plugins.resnet, numpy, sklearn"],
                        capture_output=True, text=True, env=dict(os.environ, **no_tensorflow), timeout=120)
    assert ok.returncode == 0, ok.stderr


def test_backends_lists_cnn_and_resnet_with_the_pip_command(no_tensorflow: dict[str, str]) -> None:
    proc = genretag("backends", "--json", env=no_tensorflow)
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    for name in ("cnn", "resnet"):
        assert (rows[name]["status"], rows[name]["error"]) == (NEEDS, PIP)
        assert rows[name]["trained"] and rows[name]["model"].endswith(f"{name}.keras")  # its shipped model is there
    assert rows["musicnn"]["status"] == rows["svc"]["status"] == "ok"
    table = genretag("backends", env=no_tensorflow)
    assert table.returncode == 0, table.stderr
    lines = [line for line in table.stdout.splitlines() if line.split()[:1] in (["cnn"], ["resnet"])]
    assert len(lines) == 2 and all(f"{NEEDS}: {PIP}" in line for line in lines), table.stdout


def test_with_tensorflow_the_keras_backends_are_ok() -> None:
    """The control: the same listing in this (test-extra) environment says ok."""
    if not all(importlib.util.find_spec(m) for m in ("tensorflow", "keras")):
        pytest.skip("TensorFlow or Keras is not installed here (the test extra installs them)")
    proc = genretag("backends", "--json", env={})
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    assert rows["cnn"]["status"] == rows["resnet"]["status"] == "ok"


@pytest.mark.slow
def test_default_scan_works_without_tensorflow(no_tensorflow: dict[str, str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    library = tmp_path / "Music"
    files = make_library(library, ("mp3", "flac"), seconds=5.0)
    monkeypatch.delenv("GENRETAG_BACKEND")  # conftest's svc: this scan is the default backend's
    proc = genretag("scan", "--jobs", "1", "--json", "--no-progress", "--db", str(tmp_path / "c.db"), str(library),
                    env=no_tensorflow)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["backend"], summary["analysed"], summary["failed"]) == ("fusion", len(files), 0)


def args_of(command: str, tmp_path: Path, backend: str) -> list[str]:
    data = tmp_path / "gtzan"
    data.mkdir(exist_ok=True)
    return {
        "scan": ["scan", "--backend", backend, "--jobs", "1", "--no-progress", "--db", str(tmp_path / "c.db"),
                 str(tmp_path / "Music")],
        "train": ["train", "--backend", backend, "--data", str(data), "--no-progress"],
        "report": ["report", "--backend", backend, "--data", str(data), "--no-progress"],
        "models use": ["models", "use", backend],  # the shipped model's file name
    }[command]


@pytest.mark.parametrize(("command", "backend"), [("scan", "cnn"), ("scan", "resnet"), ("train", "cnn"),
                                                  ("train", "resnet"), ("report", "cnn"), ("models use", "resnet")])
def test_a_command_needing_keras_stops_first_with_one_line(no_tensorflow: dict[str, str], tmp_path: Path,
                                                           genretag_home: Path, command: str, backend: str) -> None:
    make_library(tmp_path / "Music", ("wav",))
    proc = genretag(*args_of(command, tmp_path, backend), env=no_tensorflow)
    assert (proc.returncode, proc.stdout, proc.stderr.splitlines()) == (1, "", [error_line(backend)])
    if command == "scan":  # before any work: not one file analysed or recorded
        with sqlite3.connect(tmp_path / "c.db") as con:
            assert con.execute("select count(*) from tracks").fetchone() == (0,)
        con.close()
    assert not (genretag_home / "models").exists()  # no model trained, no pointer changed


def test_report_over_all_backends_still_shows_what_cards_recorded(no_tensorflow: dict[str, str]) -> None:
    proc = genretag("report", "--json", env=no_tensorflow)
    assert proc.returncode == 0, proc.stderr
    rows = {row["backend"]: row for row in json.loads(proc.stdout)["rows"]}
    assert rows["cnn"]["source"] == rows["resnet"]["source"] == "card" and rows["cnn"]["track_accuracy"] > 0


class FirstSliceBright:
    """Stands in for the cnn network in this process only, to fill the cache (TensorFlow costs seconds here)."""

    def __init__(self, genres: list[str]) -> None:
        self.genres_ = genres

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        n = len(self.genres_)
        probs = np.full((len(X), n), 0.02 / (n - 1))
        probs[np.arange(len(X)), (X.mean(axis=(1, 2)) > -40).astype(int)] = 0.98
        return probs


@pytest.mark.slow
def test_a_library_cached_by_cnn_still_scans_from_the_cache(no_tensorflow: dict[str, str], tmp_path: Path) -> None:
    library, db = tmp_path / "Music", tmp_path / "c.db"
    make_library(library, ("wav", "flac"))
    checked = open_model("cnn")  # the shipped model: the id the subprocess will compute
    model = Model(checked.cls, checked.path, checked.card, checked.id, backend=FirstSliceBright(checked.genres))
    with Cache(db) as cache:
        first = scan([str(library)], cache, model, InlineRunner(), ScanOptions(abstain_below=0))
    assert (first.analysed, first.failed) == (2, 0)

    args = ["scan", "--backend", "cnn", "--abstain-below", "0", "--jobs", "1", "--json", "--no-progress",
            "--db", str(db), str(library)]
    again = genretag(*args, env=no_tensorflow)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["from_cache"], summary["analysed"], summary["backend"]) == (2, 0, "cnn")
    assert summary["genres"] == dict(first.genres)

    make_audio(library / "new.wav", "wav", seconds=4.0, kind="noise", seed=7)  # this one needs the network
    refused = genretag(*args, env=no_tensorflow)
    assert (refused.returncode, refused.stderr.splitlines()) == (1, [error_line("cnn")])
    with sqlite3.connect(db) as con:
        rows = dict(con.execute("select path, genre from tracks where status = 'ok'").fetchall())
    con.close()
    assert len(rows) == 2 and str(library / "new.wav") not in rows  # the cached results kept, nothing new
