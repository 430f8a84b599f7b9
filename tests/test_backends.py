"""Backends as entry-point plugins: the registry, broken plugins, model files, Keras backends, a real third party.

The third-party proof is real: tests/knn_plugin (genretag-knn, its own
pyproject) is pip-installed in a session fixture and then driven through
the command line in subprocesses.  It is installed with ``--target`` into a
temporary directory put on PYTHONPATH rather than into the shared virtual
environment, so other test sessions running at the same time never see it
and nothing needs uninstalling; entry-point discovery is the same either way.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from audiofiles import make_audio
from tagger.analysis.features import FEATURE_NAMES, preprocessing
from tagger.cli import cli
from tagger.common.errors import BackendError
from tagger.inference.backends import Backend, check_backend_class, discover, get_backend

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
KNN_PLUGIN = TESTS / "knn_plugin"
SVC_MODEL = REPO / "plugins" / "models" / "svc.joblib"
# Lines of -X importtime output that name TensorFlow or Keras.
TF_IMPORT = re.compile(r"\|\s+(tensorflow|keras)(\.|\s*$)", re.M)


def run_cli(*args: str, site: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``genretag ARGS`` in a fresh interpreter, optionally with ``site`` on PYTHONPATH."""
    full_env = dict(os.environ, **(env or {}))
    if site is not None:
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-c", "from tagger.cli import main; main()", *args],
                          capture_output=True, text=True, env=full_env, timeout=timeout)


def rows_by_name(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert proc.returncode == 0, proc.stderr
    return {row["name"]: row for row in json.loads(proc.stdout)}


def scan_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def has_command(name: str) -> bool:
    return name in cli.commands


# -- fixtures -----------------------------------------------------------------
@pytest.fixture(scope="session")
def knn_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """genretag-knn, pip-installed once per session from a copy (setuptools writes build files in the source)."""
    src = tmp_path_factory.mktemp("knn_src") / "knn_plugin"
    shutil.copytree(KNN_PLUGIN, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = tmp_path_factory.mktemp("knn_site")
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *isolation,
                           "--target", str(site), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(site.glob("genretag_knn-0.1.0.dist-info/entry_points.txt"))
    return site


@pytest.fixture(scope="session")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An installed distribution (dist-info on the path) whose three backends are each broken differently."""
    site = tmp_path_factory.mktemp("broken_site")
    (site / "genretag_broken_import.py").write_text('raise ImportError("needs libfoo, which is not installed")\n')
    (site / "genretag_broken_classes.py").write_text(
        "from tagger.inference.backends import Backend\n\n"
        "class NotABackend:\n    name = 'notbackend'\n\n"
        "class Misnamed(Backend):\n    name = 'other'\n    input_kind = 'features'\n"
        "    def fit(self, X, y, **kw): return self\n    def predict_proba(self, X): return X\n"
        "    def save(self, path): pass\n    @classmethod\n    def load(cls, path): return cls()\n"
    )
    dist = site / "genretag_broken-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: genretag-broken\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text(
        "[genretag.backends]\n"
        "raises = genretag_broken_import:Anything\n"
        "notbackend = genretag_broken_classes:NotABackend\n"
        "mismatch = genretag_broken_classes:Misnamed\n"
    )
    return site


@pytest.fixture(scope="session")
def gtzan_like(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[str], Path]:
    """12 clips in two clearly different 'genres' and their feature table in features_30_sec.csv format.

    The features are computed by genretag's own pipeline from the clips, so
    a model trained on the table must recognise the clips when scanning them.
    """
    from tagger.inference.worker import AnalysisTask, analyse_file

    root = tmp_path_factory.mktemp("clips")
    files, labels = [], []
    for i in range(6):
        for genre, kind in (("classical", "tone"), ("metal", "noise")):
            files.append(make_audio(root / f"{genre}.{i:05d}.wav", "wav", seconds=4.0, kind=kind, seed=i))
            labels.append(genre)
    table = root / "features.csv"
    with table.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "length", *FEATURE_NAMES, "label"])
        for path, genre in zip(files, labels):
            result = analyse_file(AnalysisTask(str(path)))
            assert result.error is None, result.error
            writer.writerow([path.name, 4 * 22050, *result.features.tolist(), genre])
    return files, labels, table


@pytest.fixture
def svc_copy(tmp_path: Path) -> Path:
    """The shipped svc model and its card, copied so a test may damage them."""
    for name in ("svc.joblib", "svc.card.json"):
        shutil.copy(SVC_MODEL.parent / name, tmp_path / name)
    return tmp_path / "svc.joblib"


# -- the registry ---------------------------------------------------------------
def test_builtins_are_found_through_entry_points_only() -> None:
    found = discover()
    for name, module in (("svc", "plugins.svc"), ("cnn", "plugins.cnn"), ("resnet", "plugins.resnet")):
        assert found[name].ok, found[name].error
        assert found[name].value.startswith(module + ":")
        assert found[name].distribution == "genretag"
    assert found["cnn"].input_kind == found["resnet"].input_kind == "slices"
    assert found["svc"].input_kind == "features"
    core = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "tagger").rglob("*.py"))
    assert not re.search(r"^\s*(from|import)\s+plugins\b", core, re.M), "tagger/ must not import plugins/"


def test_check_backend_class_names_each_problem() -> None:
    svc = get_backend("svc")
    assert check_backend_class("svc", svc) is None
    assert "not a class" in check_backend_class("x", svc())
    assert "registered as 'other'" in check_backend_class("other", svc)
    assert "abstract methods not implemented: predict_proba" in check_backend_class(
        "half", type("Half", (Backend,), {"name": "half", "input_kind": "features", "fit": lambda s, X, y: s,
                                          "save": lambda s, p: None, "load": classmethod(lambda c, p: c())}))


def test_name_conflict_is_listed_and_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    real = metadata.entry_points

    def fake(**kw: Any) -> Any:
        extra = [metadata.EntryPoint("svc", "somebody_else:SVC", "genretag.backends")]
        return [*real(**kw), *extra] if kw.get("group") == "genretag.backends" else real(**kw)

    monkeypatch.setattr(metadata, "entry_points", fake)
    found = discover()
    assert not found["svc"].ok and "claimed by genretag (plugins.svc:SVCBackend) and ?" in found["svc"].error
    assert found["cnn"].ok  # the other backends are unaffected
    with pytest.raises(BackendError, match="'svc' is claimed by"):
        get_backend("svc")


def test_broken_plugins_are_listed_and_svc_still_scans(broken_site: Path, tmp_path: Path) -> None:
    rows = rows_by_name(run_cli("backends", "--json", site=broken_site))
    for name in ("raises", "notbackend", "mismatch"):
        assert rows[name]["status"] == "broken"
        assert rows[name]["distribution"] == "genretag-broken" and rows[name]["version"] == "0.3"
    assert "ImportError: needs libfoo" in rows["raises"]["error"]
    assert "missing fit, predict_proba, save, load" in rows["notbackend"]["error"]
    assert "declares name 'other' but is registered as 'mismatch'" in rows["mismatch"]["error"]
    assert rows["svc"]["status"] == "ok" and rows["svc"]["trained"]

    table = run_cli("backends", site=broken_site, env={"COLUMNS": "250"})
    assert table.returncode == 0 and "broken: failed to import" in table.stdout
    make_audio(tmp_path / "a.wav", "wav", seconds=4.0)
    summary = scan_json(run_cli("scan", "--backend", "svc", "--jobs", "0", "--json", "--db",
                                str(tmp_path / "c.db"), str(tmp_path), site=broken_site))
    assert summary["analysed"] == 1 and summary["failed"] == 0
    refused = run_cli("scan", "--backend", "raises", str(tmp_path), site=broken_site)
    assert refused.returncode == 1
    assert "Error: backend 'raises' is broken: failed to import" in refused.stderr


# -- TensorFlow stays out of the svc path ------------------------------------------
def test_tensorflow_is_not_imported_on_the_svc_path(tmp_path: Path) -> None:
    make_audio(tmp_path / "a.wav", "wav", seconds=4.0)
    trace = {"PYTHONPROFILEIMPORTTIME": "1"}  # inherited by scan's worker processes too
    for args in (["--help"], ["backends"], ["backends", "--json"],
                 ["scan", "--backend", "svc", "--jobs", "1", "--json", "--db", str(tmp_path / "c.db"), str(tmp_path)]):
        proc = run_cli(*args, env=trace)
        assert proc.returncode == 0, proc.stderr
        assert "import time:" in proc.stderr  # the trace is on, so its silence about TF means something
        assert not TF_IMPORT.search(proc.stderr), f"genretag {' '.join(args)} imported TensorFlow/Keras"


# -- model files: corrupt, truncated, mismatched -----------------------------------
def _scan_error(model: Path, backend: str, tmp_path: Path) -> str:
    result = CliRunner().invoke(cli, ["scan", "--backend", backend, "--model", str(model), str(tmp_path)])
    assert result.exit_code == 1, result.output
    return result.output


def _slices_card(model: Path, **changes: Any) -> None:
    pre = dict(preprocessing(), **changes)
    card = {"backend": model.stem, "input_kind": "slices", "genres": ["blues", "jazz"], "preprocessing": pre}
    model.with_name(f"{model.stem}.card.json").write_text(json.dumps(card), encoding="utf-8")


@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_corrupt_svc_model_names_the_file(svc_copy: Path, tmp_path: Path, damage: str) -> None:
    data = svc_copy.read_bytes()
    svc_copy.write_bytes(data[: len(data) // 2] if damage == "truncated" else os.urandom(4096))
    out = _scan_error(svc_copy, "svc", tmp_path)
    assert f"Error: {svc_copy}: corrupt or unreadable model file" in out


@pytest.mark.parametrize("backend", ["cnn", "resnet"])
@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_corrupt_keras_model_names_the_file(tmp_path: Path, backend: str, damage: str, tiny_models: dict) -> None:
    model = tmp_path / f"{backend}.keras"
    data = tiny_models[backend].read_bytes()
    model.write_bytes(data[: len(data) * 2 // 3] if damage == "truncated" else os.urandom(len(data)))
    _slices_card(model)
    out = _scan_error(model, backend, tmp_path)
    assert f"Error: {model}: corrupt or unreadable model file" in out


def test_preprocessing_mismatch_names_the_file(svc_copy: Path, tmp_path: Path) -> None:
    card_path = svc_copy.with_name("svc.card.json")
    card = json.loads(card_path.read_text())
    card["preprocessing"]["sr"] = 16000
    card_path.write_text(json.dumps(card))
    out = _scan_error(svc_copy, "svc", tmp_path)
    assert f"Error: {svc_copy}: preprocessing does not match the pipeline (sr: model 16000, pipeline 22050)" in out

    model = tmp_path / "cnn.keras"
    shutil.copy(SVC_MODEL, model)  # never read: the card is refused first
    _slices_card(model, n_mels=96)
    assert f"Error: {model}: preprocessing does not match the pipeline (n_mels: model 96" in _scan_error(
        model, "cnn", tmp_path)


def test_model_of_another_backend_and_missing_card_are_refused(svc_copy: Path, tmp_path: Path) -> None:
    assert "model is for backend 'svc', not 'cnn'" in _scan_error(svc_copy, "cnn", tmp_path)
    svc_copy.with_name("svc.card.json").unlink()
    assert f"Error: {svc_copy}: no model card (expected svc.card.json beside it)" in _scan_error(
        svc_copy, "svc", tmp_path)


# -- the Keras backends ----------------------------------------------------------
def _tiny_data(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Slices in the pipeline's range (dB re max, floor -80) whose genre shows in their loudness."""
    rng = np.random.default_rng(seed)
    labels = ["blues", "jazz", "rock"] * (n // 3 + 1)
    X = rng.uniform(-80, 0, (n, 128, 130)).astype(np.float32)
    X[:, :40] -= 20 * np.array([["blues", "jazz", "rock"].index(g) for g in labels[:n]])[:, None, None]
    return np.maximum(X, -80), labels[:n]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """cnn and resnet trained for one epoch on 20 random slices, saved with cards via the core."""
    from tagger.inference.models import make_card, save_model

    folder = tmp_path_factory.mktemp("tiny_models")
    X, y = _tiny_data(20, 0)
    Xv, yv = _tiny_data(6, 1)
    out = {}
    for name in ("cnn", "resnet"):
        backend = get_backend(name)().fit(X, y, X_valid=Xv, y_valid=yv, epochs=1, seed=0)
        out[name] = save_model(backend, make_card(backend), folder / f"{name}.keras")
    return out


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_keras_backend_fits_saves_and_loads_in_safe_mode(name: str, tiny_models: dict, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    from tagger.inference.models import load_model, read_card

    calls = []
    real_load = keras.models.load_model
    monkeypatch.setattr(keras.models, "load_model", lambda *a, **kw: calls.append(kw) or real_load(*a, **kw))
    model = load_model(name, tiny_models[name])
    assert calls == [{"safe_mode": True, "compile": False}]
    assert model.genres == ["blues", "jazz", "rock"] and model.input_kind == "slices"

    X, y = _tiny_data(20, 0)
    again = get_backend(name)().fit(X, y, X_valid=_tiny_data(6, 1)[0], y_valid=_tiny_data(6, 1)[1], epochs=1, seed=0)
    probs = again.predict_proba(X[:7])
    assert probs.shape == (7, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(model.backend.predict_proba(X[:7]), probs, atol=1e-6)  # same seed, same model
    card = read_card(tiny_models[name])
    assert card["model"]["changes_from_study"] and card["model"]["parameters"] > 10_000
    assert set(again.history()) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_keras_fit_reports_epochs_and_seed_matters() -> None:
    cls = get_backend("cnn")
    X, y = _tiny_data(12, 0)
    rows: list[dict] = []
    a = cls(augment=False).fit(X, y, X_valid=X[:3], y_valid=y[:3], epochs=2, seed=1, callback=rows.append)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0]["epochs"] == 2
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(rows[0])
    b = cls(augment=False).fit(X, y, epochs=1, seed=2)
    assert not np.allclose(a.predict_proba(X[:4]), b.predict_proba(X[:4]))
    with pytest.raises(ValueError, match="validation genres not in the training data: pop"):
        cls().fit(X, y, X_valid=X[:1], y_valid=["pop"], epochs=1)
    with pytest.raises(ValueError, match=r"model expects \(128, 130\)"):
        a.predict_proba(X[:, :96])


def test_get_params_follows_kwargs_to_the_parent() -> None:
    cls = get_backend("resnet")
    params = cls(filters=(8, 16), learning_rate=5e-4, epochs=3).get_params()
    assert params["filters"] == (8, 16) and params["learning_rate"] == 5e-4 and params["epochs"] == 3
    assert "common" not in params and cls(**params).get_params() == params
    assert set(get_backend("svc")().get_params()) == {"C", "gamma", "log_variances", "C_grid", "gamma_grid",
                                                      "vote", "refit_on_valid", "pairs"}


def test_resnet_schedule_warms_up_then_decays() -> None:
    from plugins.keras_base import import_keras

    keras = import_keras()
    backend = get_backend("resnet")(learning_rate=1e-3, warmup_epochs=2, min_lr_ratio=0.01)
    schedule = backend.learning_rate_for(keras, steps_per_epoch=10, epochs=10)
    lr = [float(schedule(step)) for step in (0, 10, 20, 60, 100)]
    assert lr[0] == pytest.approx(1e-4) and lr[0] < lr[1] < lr[2]
    assert lr[2] == pytest.approx(1e-3) and lr[3] < lr[2]
    assert lr[4] == pytest.approx(1e-5, rel=1e-3)


def test_spec_augment_masks_bands_without_touching_input() -> None:
    from plugins.keras_base import spec_augment

    X = np.random.default_rng(0).uniform(-80, 0, (4, 128, 130)).astype(np.float32)
    before = X.copy()
    out = spec_augment(X, np.random.default_rng(3), freq_masks=2, freq_width=12, time_masks=2, time_width=13)
    np.testing.assert_array_equal(X, before)
    changed = out != X
    assert changed.any() and changed.mean() < 0.5
    assert out.min() >= -80 and out.max() <= 0
    np.testing.assert_array_equal(out, spec_augment(X, np.random.default_rng(3), 2, 12, 2, 13))


def test_keras_load_refuses_a_foreign_zip(tmp_path: Path) -> None:
    import zipfile

    from plugins.keras_base import FORMAT, META_ENTRY

    path = tmp_path / "x.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(META_ENTRY, json.dumps({"format": FORMAT, "backend": "resnet"}))
    with pytest.raises(ValueError, match="not a genretag cnn model"):
        get_backend("cnn").load(path)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", "{}")
    with pytest.raises(ValueError, match="no genretag.json inside"):
        get_backend("cnn").load(path)


def test_cnn_scan_end_to_end_imports_tensorflow(tiny_models: dict, tmp_path: Path) -> None:
    """The positive control for the svc test: a Keras scan does show TensorFlow in the import trace."""
    make_audio(tmp_path / "a.flac", "flac", seconds=7.0)
    proc = run_cli("scan", "--backend", "cnn", "--model", str(tiny_models["cnn"]), "--jobs", "1", "--json",
                   "--db", str(tmp_path / "c.db"), str(tmp_path), env={"PYTHONPROFILEIMPORTTIME": "1"})
    summary = scan_json(proc)
    assert summary["analysed"] == 1 and summary["backend"] == "cnn" and summary["failed"] == 0
    assert set(summary["genres"]) <= {"blues", "jazz", "rock"}
    assert TF_IMPORT.search(proc.stderr)


# -- a third party's plugin, for real ----------------------------------------------
def test_third_party_plugin_listed_with_its_package(knn_site: Path) -> None:
    rows = rows_by_name(run_cli("backends", "--json", site=knn_site))
    knn = rows["knn"]
    assert (knn["distribution"], knn["version"], knn["input_kind"], knn["status"]) == (
        "genretag-knn", "0.1.0", "features", "ok")
    assert knn["entry_point"] == "genretag_knn:KNNBackend"
    assert knn["trained"] is False and "run `genretag train --backend knn`" in knn["model_error"]
    assert {"svc", "cnn", "resnet"} <= set(rows)
    assert "knn" not in rows_by_name(run_cli("backends", "--json"))  # only where it is installed


def _train_knn(site: Path, table: Path, out: Path) -> None:
    """`genretag train` when the command exists; else the same steps through the library API."""
    if has_command("train"):
        proc = run_cli("train", "--backend", "knn", "--features", str(table), "--split", "kfold", "--k", "3",
                       "--out", str(out), "--json", "--no-progress", site=site)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(proc.stdout)
        assert result["backend"] == "knn" and Path(result["model"]) == out
        return
    code = ("import sys, csv, numpy as np; from genretag_knn import KNNBackend;"
            "from tagger.inference.models import make_card, save_model;"
            "rows = list(csv.DictReader(open(sys.argv[1]))); names = list(rows[0])[2:-1];"
            "X = np.array([[float(r[n]) for n in names] for r in rows]);"
            "b = KNNBackend().fit(X, [r['label'] for r in rows]);"
            "save_model(b, make_card(b, metrics={}), sys.argv[2])")
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = subprocess.run([sys.executable, "-c", code, str(table), str(out)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr


def test_third_party_plugin_trains_scans_and_reports(knn_site: Path, gtzan_like: tuple, tmp_path: Path) -> None:
    files, labels, table = gtzan_like
    model = tmp_path / "knn.joblib"
    _train_knn(knn_site, table, model)
    card = json.loads(model.with_name("knn.card.json").read_text())
    assert card["backend"] == "knn" and card["genres"] == ["classical", "metal"]

    db = tmp_path / "c.db"
    summary = scan_json(run_cli("scan", "--backend", "knn", "--model", str(model), "--jobs", "1", "--json",
                                "--db", str(db), str(files[0].parent), site=knn_site))
    assert summary["analysed"] == 12 and summary["failed"] == 0 and summary["backend"] == "knn"
    shown = json.loads(run_cli("show", "--json", "--db", str(db)).stdout)
    assert {Path(r["path"]).name: r["genre"] for r in shown} == {f.name: g for f, g in zip(files, labels)}

    if not has_command("report"):
        pytest.skip("`genretag report` is not in tagger/cli.py yet")
    proc = run_cli("report", "--backend", "knn", "--model", str(model), "--features", str(table),
                   "--split", "kfold", "--k", "3", "--json", "--no-progress", site=knn_site)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = json.loads(proc.stdout)["rows"]
    assert row["backend"] == "knn" and row["track_accuracy"] == 1.0
