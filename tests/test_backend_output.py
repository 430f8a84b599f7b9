"""A misbehaving backend is refused the same way by scan, train and report (tagger.inference.outputs).

Each bad backend here is a tiny nearest-centroid classifier with one fault,
registered in-process (tagger.inference.backends.register) and trained on a ~30-row
feature table whose clip ids come from the shipped fault-filtered lists, so
the default protocol applies.  What must hold: ``train`` ends in one
``Error:`` line naming the backend and the fault and saves nothing;
``report --backend all`` turns the bad backend into one error row and still
measures the others; scan's per-track prediction applies the same checks.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tagger.analysis.features import FEATURE_NAMES
from tagger.cli import cli
from tagger.common.errors import BackendError
from tagger.inference.backends import Backend, register, unregister
from tagger.inference.outputs import check_genres, check_probabilities
from test_train_report import CentroidBackend
from training.splits import shipped_list

GENRES = ("blues", "classical", "metal")


class Centroid(CentroidBackend):
    """A real, tiny features backend: softmax over negative distances to class centroids (saved as the slices one is)."""

    name = "goodcentroid"
    input_kind = "features"

    def fit(self, X, y, *, X_valid=None, y_valid=None, epochs=None, seed=0, callback=None):
        self.genres_ = sorted(set(y))
        y = np.asarray(y)
        self.centroids_ = np.stack([X[y == g].mean(axis=0) for g in self.genres_])
        return self

    def _probs(self, X):
        d = ((np.asarray(X)[:, None, :] - self.centroids_[None]) ** 2).sum(axis=2)
        e = np.exp(-(d - d.min(axis=1, keepdims=True)) / (d.std() + 1e-9))
        return e / e.sum(axis=1, keepdims=True)

    def predict_proba(self, X):
        return self._probs(X)


def _nan_rows(self, X):
    p = self._probs(X)
    p[::2] = np.nan  # the case: NaN rows were scored as the first genre
    return p


def _short_genres(self, X, y, **kw):
    Centroid.fit(self, X, y)
    self.genres_ = self.genres_[:-1]  # one column more than genres_
    return self


def _twice(self, X, y, **kw):
    Centroid.fit(self, X, y)
    self.genres_ = [self.genres_[0]] * len(self.genres_)
    return self


def _numbers(self, X, y, **kw):
    Centroid.fit(self, X, y)
    self.genres_ = list(range(len(self.genres_)))
    return self


def _half_save(self, path):
    Path(path).write_bytes(b"half a model")
    raise OSError("disk full")


def _renamed(self, X, y, **kw):
    Centroid.fit(self, X, y)
    self.genres_ = [f"class{i}" for i in range(len(self.genres_))]  # columns that name no genre
    return self


def _exit(code):
    def method(self, *args, **kwargs):
        sys.exit(code)  # a plugin that ends the process: genretag exited 4 with no message (issue 22)

    return method


def _label(bad):
    """fit names its first genre ``bad``: a label no tag may hold (issue 22: tag then crashed)."""

    def fit(self, X, y, **kw):
        Centroid.fit(self, X, y)
        self.genres_[0] = bad
        return self

    return fit


def _raise(message):
    def method(self, *args, **kwargs):
        raise RuntimeError(message)

    return method


#: fault name -> (methods that differ from Centroid, words the error must contain)
FAULTS = {
    "shape": ({"predict_proba": lambda self, X: self._probs(X)[:, :-1]}, "shape"),
    "nan": ({"predict_proba": _nan_rows}, "NaN or infinite values"),
    "unnormalised": ({"predict_proba": lambda self, X: 3.0 * self._probs(X)}, "sum to 1"),
    "negative": ({"predict_proba": lambda self, X: np.log(self._probs(X) + 1e-12)}, "negative"),
    "genres-short": ({"fit": _short_genres}, "one column per entry of genres_"),
    "genres-twice": ({"fit": _twice}, "twice"),
    "genres-numbers": ({"fit": _numbers}, "strings"),
    "genres-unrelated": ({"fit": _renamed}, "names none of the training labels"),
    "predict-raises": ({"predict_proba": _raise("predict exploded")}, "predict_proba failed: RuntimeError: predict exploded"),
    "fit-raises": ({"fit": _raise("fit exploded")}, "fit failed: RuntimeError: fit exploded"),
    "save-raises": ({"save": _half_save}, "save failed: OSError: disk full"),
    "predict-exits": ({"predict_proba": _exit(4)}, "predict_proba failed: it called sys.exit(4)"),
    "fit-exits": ({"fit": _exit(4)}, "fit failed: it called sys.exit(4)"),
    "save-exits": ({"save": _exit("bye")}, "save failed: it called sys.exit('bye')"),
    "label-nul": ({"fit": _label("blues\0rock")}, "printable characters"),
    "label-newline": ({"fit": _label("blues\nrock")}, "printable characters"),
    "label-ansi": ({"fit": _label("\x1b[31mred")}, "printable characters"),
    "label-long": ({"fit": _label("x" * 10_000)}, "printable characters"),
}


def faulty(name: str, fault: str) -> type[Backend]:
    """Centroid with one fault, under ``name``."""
    methods, _ = FAULTS[fault]
    return type(f"Faulty_{fault}", (Centroid,), {"name": name, **methods})


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENRETAG_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def registry():
    """Register classes for one test; forget them afterwards."""
    names = []

    def add(cls):
        register(cls)
        names.append(cls.name)
        return cls.name

    yield add
    for name in names:
        unregister(name)


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """33 rows of separable made-up features: per genre 6 train, 2 valid and 3 test clips of fault-filtered."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("table") / "features_30_sec.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "length", *FEATURE_NAMES, "label"])
        for gi, genre in enumerate(GENRES):
            for part, n in (("train", 6), ("valid", 2), ("test", 3)):
                for tid in [t for t in shipped_list("fault-filtered", part) if t.startswith(genre + ".")][:n]:
                    w.writerow([f"{tid}.wav", 661794, *(rng.normal(3 * gi, 0.5, len(FEATURE_NAMES))).round(5), genre])
    return path


def run(*args: str):
    return CliRunner().invoke(cli, [*args, "--no-progress"])


def saved_files(home: Path) -> dict[str, bytes]:
    """Everything under the models folder, with contents (the current pointers included)."""
    root = home / "models"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


# -- train ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_train_refuses_a_misbehaving_backend_and_saves_nothing(fault, table, home, registry):
    # The same backend name trained well first: its model and current pointer must survive the bad run.
    good = registry(type("Good", (Centroid,), {"name": "flaky"}))
    first = run("train", "--backend", good, "--features", str(table), "--json")
    assert first.exit_code == 0, first.output
    before = saved_files(home)
    assert (home / "models" / "flaky" / "current").is_file()

    registry(faulty("flaky", fault))  # an upgrade of the plugin that broke it
    r = run("train", "--backend", "flaky", "--features", str(table))
    assert r.exit_code == 1, r.output
    assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output  # a clean exit, not a crash
    (line,) = [x for x in r.output.splitlines() if x.startswith("Error:")]
    assert "backend 'flaky'" in line and FAULTS[fault][1] in line, line
    assert saved_files(home) == before  # no model file, no card, current pointer unchanged

    out = run("train", "--backend", "flaky", "--features", str(table), "--out", str(home / "elsewhere.npz"))
    assert out.exit_code == 1 and not (home / "elsewhere.npz").exists()


def test_all_folds_refuses_a_misbehaving_backend(table, registry):
    name = registry(faulty("nanfolds", "nan"))
    r = run("report", "--backend", name, "--features", str(table), "--split", "kfold", "--k", "3", "--all-folds")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "backend 'nanfolds'" in r.output and "NaN" in r.output


# -- report -----------------------------------------------------------------------------------------


def test_report_all_turns_a_bad_backend_into_one_error_row(table, home, registry):
    good = registry(type("Good", (Centroid,), {"name": "goodcentroid"}))
    bad = registry(type("Later", (Centroid,), {"name": "badshape"}))
    for name in (good, bad):
        assert run("train", "--backend", name, "--features", str(table), "--json").exit_code == 0
    registry(faulty("badshape", "shape"))  # its saved model now predicts with the wrong shape

    r = run("report", "--backend", "all", "--features", str(table), "--json")
    assert r.exit_code == 1, r.output  # a backend failed: said by the exit code, after the full report
    rows = {row["backend"]: row for row in json.loads(r.stdout)["rows"]}
    assert set(rows[bad]) == {"backend", "error"}
    assert "predict_proba returned shape" in rows[bad]["error"]
    assert rows[good]["n_test"] == 9 and 0.0 <= rows[good]["track_accuracy"] <= 1.0  # measured all the same

    text = run("report", "--backend", "all", "--features", str(table))
    assert text.exit_code == 1 and "Traceback" not in text.output
    assert any(x.startswith(f"{bad}: error: backend '{bad}'") for x in text.output.splitlines()), text.output
    assert any(x.split()[:1] == [good] and "held-out" in x for x in text.stdout.splitlines()), text.stdout

    one = run("report", "--backend", bad, "--features", str(table))
    assert one.exit_code == 1 and "Traceback" not in one.output
    assert [x for x in one.output.splitlines() if x.startswith("Error:")] == [f"Error: {rows[bad]['error']}"]


# -- scan and the checks themselves ----------------------------------------------------------------


def test_scan_prediction_applies_the_same_checks(table, registry):
    from tagger.inference.models import load_model
    from tagger.inference.predict import predict_tracks

    name = registry(type("Good", (Centroid,), {"name": "scanned"}))
    assert run("train", "--backend", name, "--features", str(table), "--json").exit_code == 0
    registry(faulty(name, "unnormalised"))
    model = load_model(name)
    out = predict_tracks(model, [np.zeros(len(FEATURE_NAMES))] * 2)
    assert all(isinstance(o, str) and "sum to 1" in o and f"backend '{name}'" in o for o in out), out


def test_scan_prediction_survives_a_backend_that_exits(table, registry):
    """A plugin's sys.exit in predict_proba is that track's error, as any exception is (issue 22)."""
    from tagger.inference.models import load_model
    from tagger.inference.predict import predict_tracks

    name = registry(type("Good", (Centroid,), {"name": "quits"}))
    assert run("train", "--backend", name, "--features", str(table), "--json").exit_code == 0
    registry(faulty(name, "predict-exits"))
    out = predict_tracks(load_model(name), [np.zeros(len(FEATURE_NAMES))] * 2)
    assert out == ["prediction failed: it called sys.exit(4)"] * 2


def test_a_saved_model_with_a_label_no_tag_may_hold_is_refused_at_load(table, home, registry):
    """A card (and model) whose genres hold an escape sequence: refused naming the file, in report and load."""
    from tagger.common.errors import ModelError
    from tagger.inference.models import card_path, load_model

    name = registry(type("Good", (Centroid,), {"name": "escapes"}))
    trained = run("train", "--backend", name, "--features", str(table), "--json")
    assert trained.exit_code == 0, trained.output
    model = Path(json.loads(trained.stdout)["model"])
    card = json.loads(card_path(model).read_text())
    card["genres"][0] = "\x1b]0;owned\x07blues"
    card_path(model).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="printable characters"):
        load_model(name)
    r = run("report", "--backend", name, "--features", str(table))
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    (line,) = [x for x in r.output.splitlines() if x.startswith("Error:")]
    assert str(model) in line and "printable characters" in line, line


@pytest.mark.parametrize("with_data", [True, False])
def test_report_on_a_truncated_model_is_an_error_not_a_skip(table, home, registry, with_data):
    """Issue 22: `report --model` on a truncated model printed an empty table, "skipped", and exited 0."""
    name = registry(type("Good", (Centroid,), {"name": "truncated"}))
    trained = run("train", "--backend", name, "--features", str(table), "--json")
    model = Path(json.loads(trained.stdout)["model"])
    model.write_bytes(model.read_bytes()[:40])
    data = ["--features", str(table)] if with_data else []
    r = run("report", "--backend", name, "--model", str(model), *data)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    (line,) = [x for x in r.output.splitlines() if x.startswith("Error:")]
    assert line.startswith(f"Error: {model}: corrupt or unreadable model file"), line


def test_checks_accept_probabilities_and_name_each_fault():
    b = Centroid()
    b.genres_ = ["a", "b"]
    ok = check_probabilities(b, np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32), 2)
    assert ok.dtype == np.float64 and ok.shape == (2, 2)
    assert check_probabilities(b, [[0.5, 0.5 + 5e-4]], 1).shape == (1, 2)  # within tolerance
    cases = [
        ([[0.5, 0.5]], 2, "shape (1, 2) for 2 inputs"),
        ([[0.5, np.inf]], 1, "NaN or infinite"),
        ([[1.2, -0.2]], 1, "negative"),
        ([[0.5, 0.6]], 1, "sum to 1"),
        ([["x", "y"]], 1, "not an array of numbers"),
    ]
    for probs, rows, words in cases:
        with pytest.raises(BackendError, match="backend 'goodcentroid'") as info:
            check_probabilities(b, probs, rows)
        assert words in str(info.value)
    for genres, words in ((["a", "a"], "twice"), ("ab", "list of genre names"), ([], "empty"), (["a", ""], "strings")):
        with pytest.raises(BackendError, match=words):
            check_genres(b, genres)
    del b.genres_
    with pytest.raises(BackendError, match="no genres_"):
        check_genres(b)
