"""`genretag train` and `genretag report` end to end: protocols, cache, leak labels, contamination.

Models go to a temporary data dir (GENRETAG_HOME).  The shared GTZAN feature
table and audio are used where present; otherwise a synthetic table and
made-up clips named like GTZAN's stand in.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from tagger.analysis.features import FEATURE_NAMES
from tagger.cli import cli
from tagger.inference.backends import Backend, discover, register, unregister
from training.data import GENRES, find_clips
from training.dataset import ClipSet, from_table, partition
from training.splits import PROTOCOLS, get_split, shipped_list

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "gtzan"
TABLE = SHARED / "features" / "features_30_sec.csv"
AUDIO = SHARED / "audio"
GENRE3 = ("blues", "classical", "metal")


# --- helpers -------------------------------------------------------------------------------------


def invoke(*args: str) -> dict | list:
    """Run the CLI with --json and return the parsed output; fail with the output on error."""
    result = CliRunner().invoke(cli, [*args, "--json", "--no-progress"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.stdout)


def card_of(model: str) -> dict:
    return json.loads(Path(model).with_name(Path(model).name.split(".")[0] + ".card.json").read_text())


def check_metrics(row: dict) -> None:
    """What must hold for any measured row: accuracies in [0, 1], a confusion matrix over its clips."""
    assert 0.0 <= row["track_accuracy"] <= 1.0
    assert 0.0 <= row["macro_f1"] <= 1.0
    if row["slice_accuracy"] is not None:
        assert 0.0 <= row["slice_accuracy"] <= 1.0
    cm = np.asarray(row["confusion"])
    assert cm.shape == (len(row["labels"]),) * 2
    assert cm.sum() == row["n_test"] > 0
    assert set(row["per_genre"]) == set(row["labels"])
    assert sum(v["support"] for v in row["per_genre"].values()) == row["n_test"]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENRETAG_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """The shared feature table, else 1000 synthetic rows whose genres are separable."""
    if TABLE.is_file():
        return TABLE
    path = tmp_path_factory.mktemp("table") / "features_30_sec.csv"
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "length", *FEATURE_NAMES, "label"])
        for gi, genre in enumerate(GENRES):
            for n in range(100):
                values = rng.normal(gi, 0.8, len(FEATURE_NAMES)) + 5.0
                w.writerow([f"{genre}.{n:05d}.wav", 661794, *values.round(6), genre])
    return path


def clip_ids(protocol: str = "fault-filtered", per_part: dict[str, int] | None = None) -> dict[str, list[str]]:
    """GTZAN ids per genre taken from a shipped list, so made-up clips fall in known parts."""
    per_part = per_part or {"train": 4, "valid": 2, "test": 2}
    out: dict[str, list[str]] = {g: [] for g in GENRE3}
    for part, n in per_part.items():
        ids = shipped_list(protocol, part)
        for g in GENRE3:
            out[g] += [t for t in ids if t.startswith(g + ".")][:n]
    return out


def tone_clip(path: Path, genre_index: int, seed: int, seconds: float = 6.2, sr: int = 22050) -> None:
    """A genre-specific chord with a little noise: separable by ear and by any model."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    base = 110.0 * 2 ** genre_index * (1 + 0.02 * rng.standard_normal())
    y = sum(np.sin(2 * np.pi * base * h * t) / h for h in (1, 2, 3))
    y = 0.2 * y * (1 + 0.5 * np.sin(2 * np.pi * (genre_index + 1) * t)) + 0.02 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), y.astype(np.float32), sr)


@pytest.fixture(scope="module")
def audio_tree(tmp_path_factory) -> Path:
    """A plain <genre>/ tree of 6 s made-up clips with GTZAN names, plus one unreadable file."""
    root = tmp_path_factory.mktemp("gtzan")
    for gi, (genre, ids) in enumerate(clip_ids().items()):
        for n, tid in enumerate(ids):
            tone_clip(root / genre / f"{tid}.wav", gi, seed=100 * gi + n)
    (root / "blues" / "blues.00099.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    return root


@pytest.fixture(scope="module")
def clip_tree(tmp_path_factory, audio_tree) -> Path:
    """Links to a few real clips per fault-filtered part (three genres) where present, else made-up clips."""
    if not AUDIO.is_dir():
        return audio_tree
    clips = {c.track_id: c for c in find_clips(AUDIO)}
    split = get_split("fault-filtered", list(clips), [c.genre for c in clips.values()])
    genre_of = {t: c.genre for t, c in clips.items()}
    genres = [g for g in GENRES if sum(genre_of[t] == g for t in split.train) >= 2][:3]
    root = tmp_path_factory.mktemp("real")
    for part, n in (("train", 2), ("valid", 1), ("test", 1)):
        for genre in genres:
            for tid in [t for t in getattr(split, part) if genre_of[t] == genre][:n]:
                (root / genre).mkdir(exist_ok=True)
                (root / genre / clips[tid].path.name).symlink_to(clips[tid].path)
    return root


class CentroidBackend(Backend):
    """A real, tiny slices backend: nearest class centroid of the time-averaged log-mel."""

    name = "centroid"
    input_kind = "slices"
    model_suffix = ".npz"

    def fit(self, X, y, *, X_valid=None, y_valid=None, epochs=None, seed=0, callback=None):
        self.genres_ = sorted(set(y))
        v = X.mean(axis=2)
        y = np.asarray(y)
        self.centroids_ = np.stack([v[y == g].mean(axis=0) for g in self.genres_])
        if callback:
            callback({"epoch": 1, "train_rows": len(X)})
        self.history_ = {"loss": [1.0, 0.5]}
        return self

    def predict_proba(self, X):
        d = ((X.mean(axis=2)[:, None, :] - self.centroids_[None]) ** 2).sum(axis=2)
        e = np.exp(-(d - d.min(axis=1, keepdims=True)) / (d.std() + 1e-9))
        return e / e.sum(axis=1, keepdims=True)

    def save(self, path):
        with open(path, "wb") as f:
            np.savez(f, centroids=self.centroids_, genres=np.array(self.genres_))

    @classmethod
    def load(cls, path):
        data = np.load(path)
        self = cls()
        self.centroids_, self.genres_ = data["centroids"], [str(g) for g in data["genres"]]
        return self


@pytest.fixture
def centroid():
    register(CentroidBackend)
    yield "centroid"
    unregister("centroid")


# --- the split comes first ----------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_partition_keeps_tracks_on_one_side_except_slice_random(protocol):
    ids = [f"{g}.{n:05d}" for g in GENRES for n in range(100)]
    labels = [t.split(".")[0] for t in ids]
    clips = ClipSet("slices", "mem", ids, labels, [np.full((3, 2, 2), i, np.float32) for i in range(len(ids))])
    split = get_split(protocol, ids, labels, seed=1)
    parts = partition(clips, split)
    train, test = set(parts["train"].tracks()) | set(parts["valid"].tracks()), set(parts["test"].tracks())
    assert len(parts["test"]) > 0
    if protocol == "slice-random":
        assert split.leaky and train & test  # the studies' leak, reproduced on purpose
    else:
        assert not split.leaky and not train & test
        assert set(parts["test"].tracks()) == set(split.test)
    for part in parts.values():  # every row still carries its own clip's input and label
        assert all(int(x[0, 0]) == ids.index(o) for x, o in zip(part.X, part.owners))
        assert all(o.split(".")[0] == y for o, y in zip(part.owners, part.y))


# --- svc from the feature table -----------------------------------------------------------------


def test_train_svc_from_table_then_report(table, home):
    result = invoke("train", "--backend", "svc", "--features", str(table), "--no-refit")
    assert result["current"] and Path(result["model"]).parent == home / "models" / "svc"
    assert (home / "models" / "svc" / "current").read_text().strip() == Path(result["model"]).name
    card = card_of(result["model"])
    assert card["training"]["split"] == "fault-filtered" and card["metrics"]["n_test"] == 290
    test = set(shipped_list("fault-filtered", "test"))
    assert not test & set(card["training"]["track_ids"])
    assert len(card["training"]["track_ids"]) == 443 + 197

    out = invoke("report", "--features", str(table), "--backend", "svc")
    (row,) = out["rows"]
    check_metrics(row)
    assert row["n_test"] == row["test_present"] == 290 and row["protocol"] == "fault-filtered"
    assert row["contamination"]["status"] == "clean" and row["model"] == result["model"]
    assert row["track_accuracy"] == pytest.approx(card["metrics"]["track_accuracy"])
    if table == TABLE:  # the reference point for the honest protocol
        assert row["track_accuracy"] > 0.50

    # The same model on the stratified test part: it trained on many of those clips, and says so.
    (strat,) = invoke("report", "--features", str(table), "--backend", "svc", "--split", "stratified")["rows"]
    check_metrics(strat)
    assert strat["contamination"]["status"] == "contaminated"
    overlap = set(strat["contamination"]["overlap"])
    assert overlap == set(shipped_list("stratified", "test")) & set(card["training"]["track_ids"])
    assert strat["clean"]["n_test"] == 250 - len(overlap)
    assert any("contaminated" in n for n in strat["notes"])

    # Without data, report shows what the card recorded, marked as such.
    (from_card,) = invoke("report", "--backend", "svc")["rows"]
    assert from_card["source"] == "card" and from_card["track_accuracy"] == card["metrics"]["track_accuracy"]


@pytest.mark.parametrize("protocol", ["stratified", "kfold", "slice-random"])
def test_every_protocol_trains_and_labels_itself(table, tmp_path, protocol):
    out = tmp_path / f"{protocol}.joblib"
    result = invoke("train", "--backend", "svc", "--features", str(table), "--split", protocol, "--out", str(out),
                    "--seed", "3", "--no-refit")
    assert not result["current"] and out.is_file()
    card = card_of(str(out))
    assert card["training"]["split"] == protocol and card["metrics"]["leaky"] == (protocol == "slice-random")
    clips = from_table(table)
    test = partition(clips, get_split(protocol, clips.track_ids, clips.labels, seed=3))["test"].tracks()
    # One feature row per track: even slice-random cannot put a track on both sides here.
    assert test and not set(card["training"]["track_ids"]) & set(test)
    (row,) = invoke("report", "--features", str(table), "--model", str(out), "--backend", "svc",
                    "--split", protocol)["rows"]
    check_metrics(row)
    assert row["split_seed"] == 3  # taken from the card, so the same test part is measured
    assert row["n_test"] == len(test)
    assert row["leaky"] == (protocol == "slice-random")
    assert any("leaky" in n for n in row["notes"]) == (protocol == "slice-random")


def test_refit_saves_a_model_that_heard_every_clip_and_report_measures_its_recipe(table, tmp_path):
    out = tmp_path / "refit.joblib"
    result = invoke("train", "--backend", "svc", "--features", str(table), "--out", str(out))
    card = card_of(str(out))
    test = set(shipped_list("fault-filtered", "test"))
    assert test <= set(card["training"]["track_ids"])  # the saved model heard the test clips too
    refit = card["training"]["refit"]
    assert refit["clips"] == 443 + 197 + 290 == len(card["training"]["track_ids"])
    assert refit["params"]["pairs"]  # the voters chosen on valid, not tuned again on all clips
    assert card["metrics"]["n_test"] == 290  # the protocol's measure stays the card's figure
    assert "out-of-fold predictions of all 930 clips" in card["abstain"]["chosen_on"]
    assert refit["protocol_abstain"]["chosen_on"].startswith("valid part")
    # The refit model differs from the protocol's: it learned from clips that one did not.
    proto = tmp_path / "proto.joblib"
    invoke("train", "--backend", "svc", "--features", str(table), "--out", str(proto), "--no-refit")
    from tagger.inference.models import load_model

    rows = from_table(table)
    X = np.asarray(rows.inputs[:50], dtype=np.float64)
    assert not np.allclose(load_model("svc", out).backend.predict_proba(X),
                           load_model("svc", proto).backend.predict_proba(X))
    assert result["metrics"]["track_accuracy"] == card_of(str(proto))["metrics"]["track_accuracy"]

    # report never scores a model on clips it heard: it measures the recipe with a fresh model instead.
    (row,) = invoke("report", "--features", str(table), "--model", str(out), "--backend", "svc")["rows"]
    assert row["source"] == "a fresh model on the protocol's train part" and row["n_test"] == 290
    assert row["track_accuracy"] == pytest.approx(card["metrics"]["track_accuracy"])
    assert any("fit on every clip" in n for n in row["notes"])
    assert "contamination" not in row


def test_kfold_all_folds_reports_mean_and_std(table):
    (row,) = invoke("report", "--features", str(table), "--backend", "svc", "--split", "kfold", "--k", "3",
                    "--all-folds")["rows"]
    assert row["n_test"] == 1000 == np.asarray(row["confusion"]).sum()  # every clip is tested exactly once
    assert len(row["folds"]) == 3 and all(0 <= a <= 1 for a in row["folds"])
    assert row["track_accuracy"] == pytest.approx(np.mean(row["folds"]))
    assert row["track_accuracy_std"] == pytest.approx(np.std(row["folds"]))


def test_artist_kfold_all_folds_on_pooled_folders(audio_tree, tmp_path):
    """Two --data folders pool their clips; a 16 kHz copy is said to be upsampled; every clip tested once."""
    low = tmp_path / "low"
    moved = []
    for genre_dir in sorted(p for p in audio_tree.iterdir() if p.is_dir()):
        clip = sorted(genre_dir.glob("*.0*.wav"))[0]
        if clip.stat().st_size < 1000:
            continue
        y, sr = soundfile.read(str(clip))
        (low / genre_dir.name).mkdir(parents=True)
        soundfile.write(str(low / genre_dir.name / clip.name), y[::2], 11025)  # a duplicate id
        moved.append(clip.stem)
    extra = low / "metal" / "metal.00500.wav"
    tone_clip(extra, 2, seed=7, sr=16000)
    out = invoke("report", "--data", str(audio_tree), "--data", str(low), "--backend", "svc",
                 "--split", "artist-kfold", "--k", "3", "--all-folds")
    (row,) = out["rows"]
    ids = {c.track_id for c in find_clips(audio_tree)} - {"blues.00099"}  # the unreadable one is skipped
    assert row["n_test"] == len(ids) + 1 == np.asarray(row["confusion"]).sum()
    assert row["protocol"] == "artist-kfold" and len(row["folds"]) == 3
    assert any("1 of" in n and "upsampled" in n and "8000 Hz" in n for n in row["notes"])
    assert out["data"] == f"{audio_tree}; {low}"
    train = invoke("train", "--backend", "svc", "--data", str(audio_tree), "--data", str(low),
                   "--split", "artist-kfold", "--k", "3", "--fold", "1")
    assert train["training"]["k"] == 3 and train["training"]["fold"] == 1
    assert "upsampled" in train["training"]["upsampled"]
    assert train["metrics"]["protocol"] == "artist-kfold"
    skipped = [p for p, why in train["skipped"] if "duplicate" in why]
    assert sorted(Path(p).stem for p in skipped) == sorted(moved)


def test_artist_kfold_all_folds_by_album_compares_track_and_album_mode(audio_tree):
    """`report --by album` pools every fold's out-of-fold predictions and groups the clips by artist."""
    (row,) = invoke("report", "--data", str(audio_tree), "--backend", "svc", "--split", "artist-kfold", "--k", "3",
                    "--all-folds", "--by", "album")["rows"]
    album = row["by_album"]
    assert album["clips"] == row["n_test"] == np.asarray(row["confusion"]).sum()  # every clip, once
    for mode in ("track", "album", "album_keep_outliers"):
        assert len(album[mode]["folds"]) == 3 and 0 <= album[mode]["accuracy"] <= 1
    assert album["clips_in_albums"] <= album["clips"]


def test_svc_path_never_imports_tensorflow(table, tmp_path):
    code = (
        "import sys, json\nfrom click.testing import CliRunner\nfrom tagger.cli import cli\n"
        f"r = CliRunner().invoke(cli, ['train', '--backend', 'svc', '--features', {str(table)!r}, '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"r = CliRunner().invoke(cli, ['report', '--backend', 'all', '--features', {str(table)!r}, '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))))\n"
    )
    env = {"GENRETAG_HOME": str(tmp_path / "h"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_errors_are_one_line(table, tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["train", "--backend", "svc"])
    assert r.exit_code == 1 and "give --data" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli, ["train", "--backend", "svc", "--features", str(table), "--split", "kfold", "--k", "5000"])
    assert r.exit_code == 1 and "kfold needs 3 <= k" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli, ["train", "--backend", "nope", "--features", str(table)])
    assert r.exit_code == 1 and "unknown backend 'nope'" in r.output
    plain = tmp_path / "x" / "jazz"
    tone_clip(plain / "song.wav", 0, 0, seconds=3.5)
    r = runner.invoke(cli, ["train", "--backend", "svc", "--data", str(tmp_path / "x")])
    assert r.exit_code == 1 and "use --split kfold" in r.output


# --- from audio ---------------------------------------------------------------------------------


def test_train_svc_from_audio_caches_and_is_deterministic(audio_tree, home):
    first = invoke("train", "--backend", "svc", "--data", str(audio_tree), "--jobs", "2", "--no-refit")
    assert first["cached"] == 0 and [Path(p).name for p, _ in first["skipped"]] == ["blues.00099.wav"]
    assert first["counts"]["train"]["found"] == 12 and first["counts"]["test"]["found"] == 6
    assert len(list((home / "cache" / "training").glob("*.npy"))) == 24
    second = invoke("train", "--backend", "svc", "--data", str(audio_tree), "--jobs", "2", "--no-refit")
    assert second["cached"] == 24  # nothing decoded the second time
    assert second["metrics"]["confusion"] == first["metrics"]["confusion"]
    from tagger.inference.models import load_model

    X = np.random.default_rng(0).normal(size=(4, 57))
    a, b = (load_model("svc", r["model"]).backend.predict_proba(X) for r in (first, second))
    np.testing.assert_allclose(a, b)
    (row,) = invoke("report", "--data", str(audio_tree), "--backend", "svc", "--jobs", "2")["rows"]
    check_metrics(row)
    assert row["n_test"] == 6 and row["test_listed"] == 290 and row["slice_accuracy"] is None
    assert any("only 6 of the 290" in n for n in row["notes"])


def test_slices_backend_slice_random_is_labelled_leaky(audio_tree, centroid, tmp_path):
    honest = invoke("train", "--backend", centroid, "--data", str(audio_tree), "--jobs", "2", "--no-refit")
    card = card_of(honest["model"])
    assert card["training"]["n_train_rows"] == 2 * 12  # two 3 s slices per 6 s clip, sliced after the split
    assert not set(card["training"]["track_ids"]) & set(shipped_list("fault-filtered", "test"))
    (row,) = invoke("report", "--data", str(audio_tree), "--backend", centroid, "--jobs", "2")["rows"]
    check_metrics(row)
    assert row["slice_accuracy"] is not None and row["contamination"]["status"] == "clean" and not row["leaky"]

    leaky = invoke("train", "--backend", centroid, "--data", str(audio_tree), "--split", "slice-random",
                   "--out", str(tmp_path / "leaky.npz"), "--no-refit")
    assert leaky["leaky"]
    out = invoke("report", "--data", str(audio_tree), "--backend", centroid, "--model", str(tmp_path / "leaky.npz"),
                 "--split", "slice-random")
    (row,) = out["rows"]
    check_metrics(row)
    assert row["leaky"] and row["contamination"]["status"] == "leaky" and row["contamination"]["overlap"]
    assert any(n.startswith("leaky protocol") for n in row["notes"])
    r = CliRunner().invoke(cli, ["report", "--data", str(audio_tree), "--backend", centroid, "--model",
                                 str(tmp_path / "leaky.npz"), "--split", "slice-random", "--no-progress"])
    table_row = next(line for line in r.stdout.splitlines() if line.startswith(centroid))
    assert r.exit_code == 0 and table_row.split()[-1] == "leaky" and "leaky protocol" in r.output


def test_augmented_copies_only_for_training_clips(audio_tree, centroid):
    result = invoke("train", "--backend", centroid, "--data", str(audio_tree), "--augment", "1", "--jobs", "2")
    training = result["training"]
    assert training["augment"]["copies"] == 1
    assert training["augment"]["rows_added"] == 2 * training["n_train"]  # train clips only, never valid or test
    assert training["n_train_rows"] == 2 * 2 * training["n_train"]


def test_plots_are_png(audio_tree, centroid, tmp_path):
    pytest.importorskip("matplotlib", reason="--plots needs matplotlib (extra 'plots')")
    invoke("train", "--backend", centroid, "--data", str(audio_tree), "--jobs", "2", "--no-refit")
    out = invoke("report", "--data", str(audio_tree), "--backend", centroid, "--plots", str(tmp_path / "p"))
    names = sorted(Path(p).name for p in out["plots"])
    assert names == ["centroid-curves.png", "centroid-fault-filtered-confusion.png",
                     "centroid-fault-filtered-precision-coverage.png"]
    assert all((tmp_path / "p" / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)


def test_valid_is_recut_when_train_part_lacks_a_genre(tmp_path, centroid):
    """metal has valid clips only: pooled train+valid is re-split so the model still learns metal."""
    root = tmp_path / "tree"
    ids = clip_ids(per_part={"train": 3, "valid": 3, "test": 1})
    for gi, (genre, tids) in enumerate(ids.items()):
        for n, tid in enumerate(tids):
            if genre == "metal" and tid in shipped_list("fault-filtered", "train"):
                continue
            tone_clip(root / genre / f"{tid}.wav", gi, seed=n, seconds=3.5)
    result = invoke("train", "--backend", centroid, "--data", str(root), "--jobs", "2", "--no-refit")
    training = result["training"]
    assert "re-cut" in training["valid_part"] and "metal" in training["valid_part"]
    assert "metal" in card_of(result["model"])["genres"]
    assert not set(training["track_ids"]) & set(shipped_list("fault-filtered", "test"))  # test untouched
    assert result["counts"]["train"]["found"] == 6  # the protocol's own part, as found


# --- keras backends -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_keras_backend_one_epoch(name, clip_tree):
    info = discover().get(name)
    if info is None or not info.ok:
        pytest.skip(f"backend {name} not installed yet: {info.error if info else 'no entry point'}")
    result = invoke("train", "--backend", name, "--data", str(clip_tree), "--epochs", "1", "--jobs", "2")
    assert result["current"] and result["training"]["epochs_run"] == 1
    assert result["training"]["n_train_rows"] > result["training"]["n_train"]  # several slices per clip
    (row,) = invoke("report", "--data", str(clip_tree), "--backend", name, "--jobs", "2")["rows"]
    check_metrics(row)
    assert row["slice_accuracy"] is not None
