"""The "embedding" input kind: a backend bringing its own pretrained front end, run in the workers.

The backend here is tests/bands_plugin (genretag-bands), written as a third
party would from docs/backends.md: its front end turns 8 kHz audio into 16
log band energies and two tags ("low", "high"), its "weights" are a JSON
file in its package.  In-process tests register its class; the local pool,
``-j 0`` and Dask tests pip-install it (``--target``, on PYTHONPATH), since
workers find backends through entry points only.  None of this needs
musicnn's weights; the few musicnn tests skip without them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from audiofiles import make_audio, signal
from tagger.cli import cli
from tagger.common.errors import GenretagError
from tagger.inference import inputs
from tagger.inference.backends import Backend, check_backend_class, register, unregister
from tagger.inference.models import load_model, make_card, save_model
from tagger.media.audio import decode
from tagger.run.runners import InlineRunner
from tagger.run.scan import ScanOptions, scan
from tagger.store.cache import Cache

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
BANDS_PLUGIN = TESTS / "bands_plugin"
sys.path.insert(0, str(BANDS_PLUGIN))
from genretag_bands import BandsBackend  # noqa: E402

MUSICNN_WEIGHTS = REPO / "plugins" / "models" / "musicnn_msd.npz"


# -- helpers and fixtures -----------------------------------------------------------
def run_cli(*args: str, site: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``genretag ARGS`` in a fresh interpreter, with ``site`` (an installed plugin) on PYTHONPATH."""
    full = dict(os.environ, **(env or {}))
    if site is not None:
        full["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-c", "from tagger.cli import main; main()", *args],
                          capture_output=True, text=True, env=full, timeout=300)


def install_bands(dest: Path, version: str = "0.1.0") -> Path:
    """genretag-bands at ``version``, pip-installed into ``dest``/site from a copy of its source."""
    src = dest / f"src-{version}"
    shutil.copytree(BANDS_PLUGIN, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    project = src / "pyproject.toml"
    project.write_text(project.read_text().replace('version = "0.1.0"', f'version = "{version}"'))
    site = dest / f"site-{version}"
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *isolation,
                           "--target", str(site), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (site / "genretag_bands" / "bands.json").is_file()
    return site


@pytest.fixture(scope="module")
def bands_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_bands(tmp_path_factory.mktemp("bands"))


@pytest.fixture(autouse=True)
def fresh_front_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test loads front ends anew (they are cached per process), e.g. after changing their weights."""
    monkeypatch.setattr(inputs, "_front_ends", {})


@pytest.fixture
def registered() -> Any:
    register(BandsBackend)
    yield BandsBackend
    unregister("bands")


def train_bands(out: Path, temperature: float = 1.0) -> Path:
    """A bands head that tells tones ("tonal") from white noise ("noisy"), saved with its card."""
    fe = BandsBackend.front_end()
    X, y = [], []
    for seed in range(6):
        for kind, genre in (("tone", "tonal"), ("noise", "noisy")):
            X.append(fe(signal(4.0, fe.sample_rate, kind=kind, seed=100 + seed)[:, 0])[0])
            y.append(genre)
    head = BandsBackend(temperature=temperature).fit(np.stack(X), y)
    return save_model(head, make_card(head), out=out)


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """Two tones and two noises in four formats."""
    root = tmp_path / "Music"
    root.mkdir()
    for i, (fmt, kind) in enumerate((("wav", "tone"), ("flac", "noise"), ("mp3", "tone"), ("ogg", "noise"))):
        make_audio(root / f"{kind}{i}.{fmt}", fmt, seconds=4.0, kind=kind, seed=i)
    return root


def run(root: Path, db: Path, model: Any, runner: Any = None, **opts: Any) -> Any:
    with Cache(db) as cache:
        return scan([str(root)], cache, model, runner or InlineRunner(), ScanOptions(**opts))


def rows(db: Path) -> dict[str, dict[str, Any]]:
    with Cache(db) as cache:
        return {Path(r["path"]).name: r for r in cache.tracks()}


def embeddings(db: Path) -> dict[str, tuple[str, np.ndarray]]:
    with sqlite3.connect(db) as conn:
        return {Path(p).name: (fe, np.frombuffer(v, dtype=np.float32))
                for p, fe, v in conn.execute("select path, front_end, vector from embeddings")}


def other_weights(monkeypatch: pytest.MonkeyPatch, path: Path, **changes: Any) -> None:
    """From now on the bands front end loads weights with ``changes`` (so another front end id)."""
    spec = json.loads((BANDS_PLUGIN / "genretag_bands" / "bands.json").read_text())
    path.write_text(json.dumps(dict(spec, **changes)))
    monkeypatch.setenv("GENRETAG_BANDS_WEIGHTS", str(path))
    monkeypatch.setattr(inputs, "_front_ends", {})


def expected_genre(name: str) -> str:
    return "tonal" if name.startswith("tone") else "noisy"


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths decoded from here on (in this process: use the inline runner)."""
    seen: list[str] = []

    def counting(path: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(path))
        return decode(path, *args, **kwargs)

    monkeypatch.setattr("tagger.inference.worker.decode", counting)
    return seen


def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any decode from here on fails loudly (in this process: use the inline runner)."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("decoded a file that should have come from the cache")

    monkeypatch.setattr("tagger.inference.worker.decode", refuse)


# -- the protocol -------------------------------------------------------------------
def test_embedding_backends_must_bring_a_front_end() -> None:
    assert check_backend_class("bands", BandsBackend) is None
    no_front = type("NoFront", (Backend,), {
        "name": "nofront", "input_kind": "embedding", "fit": lambda s, X, y, **k: s,
        "predict_proba": lambda s, X: X, "save": lambda s, p: None, "load": classmethod(lambda c, p: c())})
    assert check_backend_class("nofront", no_front) == "input_kind 'embedding' needs a front_end() classmethod"


def test_the_front_end_is_checked_when_loaded(registered: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        id, sample_rate, tag_names = "x", 0, ()

        def __call__(self, y: np.ndarray) -> tuple[np.ndarray, None]:
            return y, None

    monkeypatch.setattr(BandsBackend, "front_end", classmethod(lambda cls: Broken()))
    with pytest.raises(GenretagError, match=r"backend 'bands': its front end has sample_rate 0, not a positive int"):
        inputs.front_end("bands")


# -- scanning -------------------------------------------------------------------------
def test_scan_runs_the_front_end_at_its_rate_and_caches_embeddings_and_tags(registered: Any, library: Path,
                                                                            tmp_path: Path) -> None:
    model = load_model("bands", train_bands(tmp_path / "bands.npz"))
    db = tmp_path / "cache.db"
    summary = run(library, db, model)
    assert (summary.analysed, summary.failed) == (4, 0)
    stored, vectors = rows(db), embeddings(db)
    fe = BandsBackend.front_end()
    for name, row in stored.items():
        assert row["status"] == "ok" and row["genre"] == expected_genre(name), (name, row)
        tags = json.loads(row["tags"])
        assert list(tags) == sorted(tags, key=tags.get, reverse=True) and set(tags) == {"low", "high"}
        assert next(iter(tags)) == ("low" if name.startswith("tone") else "high")
        made_by, vector = vectors[name]
        assert made_by == fe.id == model.front_end.id
        clip = decode(library / name, sr=8000)  # the front end's rate, not the pipeline's 22050 Hz
        np.testing.assert_allclose(vector, fe(clip.samples)[0], rtol=1e-5)
        assert tags == pytest.approx(dict(zip(fe.tag_names, fe(clip.samples)[1].tolist())), abs=1e-4)


def test_rescan_and_a_new_head_use_the_cache_without_decoding(registered: Any, library: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "cache.db"
    run(library, db, load_model("bands", train_bands(tmp_path / "a.npz")))
    before = rows(db)
    no_decoding(monkeypatch)
    again = run(library, db, load_model("bands", train_bands(tmp_path / "a.npz")))
    assert (again.cached, again.analysed, again.repredicted) == (4, 0, 0)
    other = load_model("bands", train_bands(tmp_path / "b.npz", temperature=3.0))
    summary = run(library, db, other)
    assert (summary.repredicted, summary.analysed, summary.failed) == (4, 0, 0)
    after = rows(db)
    for name, row in after.items():
        assert row["model_id"] == other.id and row["genre"] == expected_genre(name)
        assert row["confidence"] < before[name]["confidence"]  # a softer head: the new model's output
        assert row["tags"] == before[name]["tags"]  # kept with the embedding


def test_another_front_end_does_not_reuse_embeddings(registered: Any, library: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "cache.db"
    run(library, db, load_model("bands", train_bands(tmp_path / "a.npz")))
    other_weights(monkeypatch, tmp_path / "bands-v2.json", n_fft=256)  # other settings: another id
    model = load_model("bands", train_bands(tmp_path / "v2.npz"))
    summary = run(library, db, model)
    assert (summary.analysed, summary.repredicted) == (4, 0)
    assert {fe for fe, _ in embeddings(db).values()} == {model.front_end.id}


def test_head_trained_on_another_front_end_is_refused(registered: Any, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = train_bands(tmp_path / "a.npz")
    other_weights(monkeypatch, tmp_path / "bands-v2.json", n_fft=1024)
    with pytest.raises(GenretagError, match=r"a\.npz: model was trained on front end bands-\w+, but backend "
                                            r"'bands' now has front end bands-\w+"):
        load_model("bands", path)


@pytest.mark.parametrize("kind, pattern", [("short", r"^too short: 2\.00 s of audio, need at least 3 s$"),
                                           ("silence", r"^audio is silent \(peak below -80 dBFS\)$")])
def test_short_and_silent_clips_get_the_usual_errors(registered: Any, library: Path, tmp_path: Path, kind: str,
                                                     pattern: str) -> None:
    bad = make_audio(library / f"bad-{kind}.wav", "wav", seconds=2.0 if kind == "short" else 5.0,
                     kind="tone" if kind == "short" else "silence")
    db = tmp_path / "cache.db"
    summary = run(library, db, load_model("bands", train_bands(tmp_path / "a.npz")))
    assert (summary.analysed, summary.failed) == (4, 1)
    row = rows(db)[bad.name]
    assert row["status"] == "error" and __import__("re").match(pattern, row["error"]), row["error"]
    assert bad.name not in embeddings(db)


@pytest.mark.parametrize("damage, reason", [("missing", "weights file not found"),
                                            ("corrupt", "corrupt weights file")])
def test_missing_or_corrupt_weights_is_one_error_line(registered: Any, library: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, damage: str,
                                                      reason: str) -> None:
    model = train_bands(tmp_path / "a.npz")
    weights = tmp_path / "weights.json"
    if damage == "corrupt":
        weights.write_text('{"format": "genretag-bands-weights/1", "edges_hz": [')
    monkeypatch.setenv("GENRETAG_BANDS_WEIGHTS", str(weights))
    monkeypatch.setattr(inputs, "_front_ends", {})  # as in a new process
    result = CliRunner().invoke(cli, ["scan", "--backend", "bands", "--model", str(model), "--db",
                                      str(tmp_path / "c.db"), "-j", "0", str(library)])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: {weights}: {reason}"), line


def test_a_worker_that_cannot_load_the_front_end_fails_that_file_with_the_reason(
        registered: Any, library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tagger.inference.worker import AnalysisTask, analyse_file
    from tagger.media.params import AnalysisParams

    missing = tmp_path / "gone.json"
    monkeypatch.setenv("GENRETAG_BANDS_WEIGHTS", str(missing))
    params = AnalysisParams(kind="embedding", backend="bands", sample_rate=8000)  # the rate of bands' weights
    result = analyse_file(AnalysisTask(str(library / "tone0.wav"), params))
    assert result.embedding is None
    assert result.error == (f"cannot load the front end of backend 'bands' on {socket.gethostname()} "
                            f"(pid {os.getpid()}): {missing}: weights file not found")


def test_tags_in_show_and_export(registered: Any, library: Path, tmp_path: Path) -> None:
    db = tmp_path / "cache.db"
    run(library, db, load_model("bands", train_bands(tmp_path / "a.npz")))
    runner = CliRunner()
    shown = json.loads(runner.invoke(cli, ["show", "--json", "--db", str(db)]).stdout)
    by_name = {Path(r["path"]).name: r for r in shown}
    assert set(by_name["tone0.wav"]["tags"]) == {"low", "high"} and by_name["tone0.wav"]["tags"]["low"] > 0.5
    exported = json.loads(runner.invoke(cli, ["export", "--format", "json", "--db", str(db)]).stdout)
    assert [r["tags"] for r in exported] == [r["tags"] for r in shown]
    csv_out = runner.invoke(cli, ["export", "--db", str(db)]).stdout
    header, first = csv_out.splitlines()[:2]
    assert "tags" in header.split(",") and '""low"": ' in first
    table = runner.invoke(cli, ["show", "--db", str(db)], terminal_width=250).stdout
    assert "top tags" in table and "low 0." in table and "high 0." in table


def test_features_backends_show_no_tags(tmp_path: Path, library: Path) -> None:
    db = tmp_path / "cache.db"
    run(library, db, load_model("svc"))
    assert all(r["tags"] is None for r in rows(db).values())
    assert "top tags" not in CliRunner().invoke(cli, ["show", "--db", str(db)], terminal_width=250).stdout


def test_switching_backends_keeps_both_inputs_until_the_file_changes(registered: Any, library: Path,
                                                                     tmp_path: Path) -> None:
    db = tmp_path / "cache.db"
    bands = load_model("bands", train_bands(tmp_path / "a.npz"))
    run(library, db, bands)
    svc = load_model("svc")
    assert run(library, db, svc).analysed == 4  # no features cached yet
    assert len(embeddings(db)) == 4  # an unchanged file keeps its embedding
    back = run(library, db, bands)
    assert (back.repredicted, back.analysed) == (4, 0)
    make_audio(library / "tone0.wav", "wav", seconds=5.0, kind="noise", seed=9)  # now a different file
    assert run(library, db, svc).analysed == 1
    assert set(embeddings(db)) == {"noise1.flac", "tone2.mp3", "noise3.ogg"}  # the old file's is gone
    last = run(library, db, bands)
    assert (last.analysed, last.repredicted) == (1, 3)
    assert rows(db)["tone0.wav"]["genre"] == "noisy"


# -- prediction failures (issue 11 point 10) -------------------------------------------
class FailingBands(BandsBackend):
    name = "failingbands"

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raise ValueError("this head is broken")


def test_prediction_failure_is_retried_by_another_model_without_decoding(registered: Any, library: Path,
                                                                         tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    register(FailingBands)
    try:
        head = FailingBands().fit(np.eye(16)[:2], ["a", "b"])
        broken = load_model("failingbands", save_model(head, make_card(head), out=tmp_path / "f.npz"))
    finally:
        unregister("failingbands")
    db = tmp_path / "cache.db"
    failed = run(library, db, broken)
    assert (failed.failed, failed.analysed) == (4, 0)
    for row in rows(db).values():
        assert row["status"] == "error" and row["error"] == "prediction failed: ValueError: this head is broken"
    assert len(embeddings(db)) == 4  # analysed inputs are kept although prediction failed
    no_decoding(monkeypatch)
    same = run(library, db, broken)  # the same model is not retried
    assert (same.failed_cached, same.repredicted) == (4, 0)
    good = load_model("bands", train_bands(tmp_path / "a.npz"))
    retried = run(library, db, good)  # another model is, without --retry-failed and without decoding
    assert (retried.repredicted, retried.analysed, retried.failed, retried.failed_cached) == (4, 0, 0, 0)
    assert all(r["status"] == "ok" and r["error"] is None for r in rows(db).values())


class FailingFeatures(Backend):
    name = "failingfeatures"
    input_kind = "features"
    model_suffix = ".json"
    genres_ = ["x", "y"]

    def fit(self, X: Any, y: Any, **kwargs: Any) -> FailingFeatures:
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.full((len(X), 3), 0.5)  # wrong shape: every track's prediction fails

    def save(self, path: Path) -> None:
        path.write_text("{}")

    @classmethod
    def load(cls, path: Path) -> FailingFeatures:
        return cls()


def test_features_prediction_failure_is_retried_by_svc_from_cached_features(library: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    register(FailingFeatures)
    try:
        broken = load_model("failingfeatures", save_model(FailingFeatures(), make_card(FailingFeatures()),
                                                          out=tmp_path / "f.json"))
        db = tmp_path / "cache.db"
        assert run(library, db, broken).failed == 4
    finally:
        unregister("failingfeatures")
    errors = {r["error"] for r in rows(db).values()}
    assert len(errors) == 1
    error = errors.pop()
    assert error.startswith("prediction failed") and "shape (1, 3)" in error
    no_decoding(monkeypatch)
    retried = run(library, db, load_model("svc"))
    assert (retried.repredicted, retried.analysed, retried.failed) == (4, 0, 0)


def test_a_file_failure_is_still_not_retried_by_another_model(registered: Any, library: Path, tmp_path: Path) -> None:
    make_audio(library / "short.wav", "wav", seconds=2.0)
    db = tmp_path / "cache.db"
    run(library, db, load_model("svc"))
    summary = run(library, db, load_model("bands", train_bands(tmp_path / "a.npz")))
    assert (summary.failed_cached, summary.analysed) == (1, 4)


# -- schema migration -----------------------------------------------------------------
def test_an_older_database_gains_the_embedding_columns_and_table(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    Cache(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("drop table embeddings")
        conn.execute("alter table tracks drop column tags")
        conn.execute("alter table tracks drop column failed_model")
        conn.execute("insert into tracks (path, status) values ('/x.wav', 'ok')")
    with Cache(db) as cache:
        assert {"tags", "failed_model"} <= set(cache.db["tracks"].columns_dict)
        assert "embeddings" in cache.db.table_names()
        assert [r["path"] for r in cache.tracks()] == ["/x.wav"]


# -- the installed plugin: local pool, -j 0, version upgrade ------------------------------
def test_installed_plugin_scans_in_the_pool_and_inline(bands_site: Path, registered: Any, library: Path,
                                                       tmp_path: Path) -> None:
    model = train_bands(tmp_path / "a.npz")  # the installed copy has the same weights, so the same front end
    for jobs in ("2", "0"):
        db = tmp_path / f"j{jobs}.db"
        proc = run_cli("scan", "--backend", "bands", "--model", str(model), "-j", jobs, "--json", "--no-progress",
                       "--db", str(db), str(library), site=bands_site)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert (summary["analysed"], summary["failed"]) == (4, 0)
        assert summary["model_id"].endswith(" genretag-bands==0.1.0")
        assert {n: r["genre"] for n, r in rows(db).items()} == {n: expected_genre(n) for n in rows(db)}
        assert len(embeddings(db)) == 4


def test_plugin_upgrade_repredicts_from_cached_embeddings(bands_site: Path, registered: Any, library: Path,
                                                          tmp_path: Path) -> None:
    upgraded = install_bands(tmp_path, "0.2.0")
    model = train_bands(tmp_path / "a.npz")
    db = tmp_path / "cache.db"

    def scan_with(site: Path) -> dict[str, Any]:
        proc = run_cli("scan", "--backend", "bands", "--model", str(model), "-j", "1", "--json", "--no-progress",
                       "--db", str(db), str(library), site=site)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    first = scan_with(bands_site)
    assert first["analysed"] == 4
    assert scan_with(bands_site)["from_cache"] == 4
    after = scan_with(upgraded)  # same model file, new package version: predictions redone, nothing decoded
    assert (after["repredicted"], after["analysed"], after["from_cache"]) == (4, 0, 0)
    assert after["model_id"] == first["model_id"].replace("==0.1.0", "==0.2.0")
    assert {r["model_id"] for r in rows(db).values()} == {after["model_id"]}


def test_svc_model_id_names_genretag_and_its_version() -> None:
    from tagger import __version__
    from tagger.inference.models import file_id

    svc = load_model("svc")
    assert svc.id == f"{file_id(svc.path)} genretag=={__version__}"


# -- training and report ---------------------------------------------------------------
def gtzan_like(root: Path) -> Path:
    for i in range(6):
        for genre, kind in (("classical", "tone"), ("metal", "noise")):
            folder = root / genre
            folder.mkdir(parents=True, exist_ok=True)
            make_audio(folder / f"{genre}.{i:05d}.wav", "wav", seconds=4.0, kind=kind, seed=i)
    return root


def test_training_data_for_embeddings_is_cached_per_front_end(registered: Any, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from training.dataset import from_audio

    data = gtzan_like(tmp_path / "gtzan")
    first = from_audio(data, "embedding", backend="bands", jobs=0)
    assert first.kind == "embedding" and len(first.track_ids) == 12 and first.cached == 0
    assert all(x.shape == (16,) and x.dtype == np.float32 for x in first.inputs)
    decoded = count_decodes(monkeypatch)
    again = from_audio(data, "embedding", backend="bands", jobs=0)
    assert again.cached == 12 and decoded == []
    for a, b in zip(first.inputs, again.inputs):
        np.testing.assert_array_equal(a, b)
    other_weights(monkeypatch, tmp_path / "v2.json", n_fft=256)
    result = from_audio(data, "embedding", backend="bands", jobs=0)  # another front end: not from the cache
    assert result.cached == 0 and len(decoded) == 12
    assert not np.allclose(result.inputs[0], first.inputs[0])


def test_train_and_report_an_embedding_backend(bands_site: Path, tmp_path: Path) -> None:
    data = gtzan_like(tmp_path / "gtzan")
    model = tmp_path / "trained.npz"
    home = {"GENRETAG_HOME": str(tmp_path / "home")}
    proc = run_cli("train", "--backend", "bands", "--data", str(data), "--split", "kfold", "--k", "3", "--out",
                   str(model), "--json", "--no-progress", "-j", "1", "--no-refit", site=bands_site, env=home)
    assert proc.returncode == 0, proc.stderr
    trained = json.loads(proc.stdout)
    assert trained["metrics"]["track_accuracy"] == 1.0
    card = json.loads(model.with_name("trained.card.json").read_text())
    assert card["input_kind"] == "embedding" and card["front_end"].startswith("bands-")
    proc = run_cli("report", "--backend", "bands", "--model", str(model), "--data", str(data), "--split", "kfold",
                   "--k", "3", "--json", "--no-progress", "-j", "1", site=bands_site, env=home)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)["rows"]
    assert row["source"] == "measured" and row["track_accuracy"] == 1.0


# -- Dask ----------------------------------------------------------------------------------
@pytest.mark.dask
def test_dask_workers_run_the_front_end_and_one_without_weights_is_named(bands_site: Path, library: Path,
                                                                         tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("distributed")
    from tagger.run.dask_runner import DaskRunner

    monkeypatch.syspath_prepend(str(bands_site))  # this process finds the plugin by its entry point...
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(bands_site), os.environ.get("PYTHONPATH")) if p))
    register(BandsBackend)  # ...and trains with it; the workers use the installed copy
    try:
        path = train_bands(tmp_path / "a.npz")
    finally:
        unregister("bands")
    model = load_model("bands", path)
    db = tmp_path / "dask.db"
    summary = run(library, db, model, DaskRunner(cluster="local", workers=1))
    assert (summary.analysed, summary.failed) == (4, 0)
    assert {n: r["genre"] for n, r in rows(db).items()} == {n: expected_genre(n) for n in rows(db)}

    missing = tmp_path / "nowhere" / "bands.json"
    monkeypatch.setenv("GENRETAG_BANDS_WEIGHTS", str(missing))  # the workers', not this process's (loaded)
    other = tmp_path / "other"
    shutil.copytree(library, other)
    with pytest.raises(GenretagError) as exc:
        run(other, tmp_path / "dask2.db", model, DaskRunner(cluster="local", workers=1))
    message = str(exc.value)
    assert message.startswith("Dask worker tcp://127.0.0.1:")
    assert f"cannot load the front end of backend 'bands': {missing}: weights file not found" in message
    assert message.endswith("and backend 'bands' with its weights.")


# -- musicnn ------------------------------------------------------------------------------
def test_musicnn_is_a_registered_embedding_backend_that_imports_no_tensorflow() -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import plugins.musicnn"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "import time:" in proc.stderr and "tensorflow" not in proc.stderr and "keras" not in proc.stderr
    from tagger.inference.backends import get_backend

    cls = get_backend("musicnn")
    assert cls.input_kind == "embedding" and check_backend_class("musicnn", cls) is None
    assert {"rock", "jazz", "Hip-Hop", "ambient", "House"} <= set(cls.genre_tags)
    assert not {"classical", "reggae"} & {t.lower() for t in cls.genre_tags}


def test_musicnn_head_picks_C_on_valid_and_round_trips(tmp_path: Path) -> None:
    from plugins.musicnn import MusicnnBackend

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 200))
    y = np.repeat(["blues", "jazz", "rock"], 20)
    X = centres[np.repeat(np.arange(3), 20)] + rng.normal(scale=2.0, size=(60, 200))
    head = MusicnnBackend(C_grid=(1e-3, 1.0)).fit(X[:45], y[:45], X_valid=X[45:], y_valid=y[45:])
    assert head.C_ in (1e-3, 1.0) and set(head.validation_) == {"C=0.001", "C=1"}
    assert head.C == 1.0 and head.best_params_ == {"C": head.C_}  # fit leaves the constructor's parameter alone
    assert head.genres_ == ["blues", "jazz", "rock"]
    head.save(tmp_path / "m.joblib")
    back = MusicnnBackend.load(tmp_path / "m.joblib")
    np.testing.assert_allclose(back.predict_proba(X), head.predict_proba(X))
    assert back.C_ == head.C_
    assert np.mean(np.array(back.genres_)[back.predict_proba(X).argmax(1)] == y) > 0.9
    with pytest.raises(ValueError, match="not a genretag musicnn model"):
        from plugins.svc import SVCBackend

        MusicnnBackend.load(SVCBackend.default_model())


def musicnn_net() -> Any:
    if importlib.util.find_spec("plugins.musicnn_net") is None or not MUSICNN_WEIGHTS.is_file():
        pytest.skip("plugins/musicnn_net.py or plugins/models/musicnn_msd.npz not present (helper `net`)")
    import plugins.musicnn_net as net

    return net


def test_musicnn_front_end_gives_the_embedding_and_the_50_tags() -> None:
    net = musicnn_net()
    from plugins.musicnn import GENRE_TAGS, MusicnnBackend

    fe = MusicnnBackend.front_end()
    assert fe.sample_rate == 16000 and fe.tag_names == tuple(net.TAGS) and len(fe.tag_names) == 50
    assert set(GENRE_TAGS) <= set(fe.tag_names)
    embedding, tags = fe(signal(4.0, 16000, kind="noise")[:, 0])
    assert embedding.shape == (200,) and tags.shape == (50,) and np.all((tags >= 0) & (tags <= 1))


def test_musicnn_without_its_weights_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = musicnn_net()
    missing = tmp_path / "musicnn_msd.npz"
    monkeypatch.setattr(net, "WEIGHTS", missing)
    model = tmp_path / "m.joblib"
    model.write_bytes(b"not read: the front end fails first")
    model.with_name("m.card.json").write_text(json.dumps({"backend": "musicnn", "preprocessing": {}}))
    make_audio(tmp_path / "a.wav", "wav", seconds=4.0)
    result = CliRunner().invoke(cli, ["scan", "--backend", "musicnn", "--model", str(model), "--db",
                                      str(tmp_path / "c.db"), str(tmp_path / "a.wav")])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: {missing}: "), line


def test_musicnn_scans_and_keeps_its_tags(tmp_path: Path) -> None:
    musicnn_net()
    from plugins.musicnn import MusicnnBackend

    fe = MusicnnBackend.front_end()
    X = np.stack([fe(signal(4.0, 16000, kind=kind, seed=s)[:, 0])[0] for s in range(4) for kind in ("tone", "noise")])
    head = MusicnnBackend(C_grid=(1.0,)).fit(X, ["tonal", "noisy"] * 4)
    model = load_model("musicnn", save_model(head, make_card(head), out=tmp_path / "musicnn.joblib"))
    assert model.card["front_end"] == fe.id and model.id.endswith(" genretag==" + __import__("tagger").__version__)
    root = tmp_path / "lib"
    root.mkdir()
    make_audio(root / "tone.wav", "wav", seconds=8.0, kind="tone")
    make_audio(root / "noise.flac", "flac", seconds=8.0, kind="noise")
    db = tmp_path / "cache.db"
    summary = run(root, db, model)
    assert (summary.analysed, summary.failed) == (2, 0)
    for name, row in rows(db).items():
        assert row["genre"] == expected_genre(name)
        assert len(json.loads(row["tags"])) == 50
    assert {fe_id for fe_id, v in embeddings(db).values() if v.shape == (200,)} == {fe.id}
