"""Abstaining instead of guessing, precision at each coverage, and `tag --from-tags`.

The threshold tests train a registered "dial" backend whose confidence and
guess are read from the feature table itself, so the table decides which
valid and test clips are right at which confidence; valid and test are made
to disagree, and the card must follow valid.  Scan tests use the shipped
svc model on made-up audio and derive every expectation from the stored
probabilities.  --from-tags writes through real files.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import training.train
from audiofiles import make_audio
from tagger.analysis.features import FEATURE_NAMES
from tagger.cli import cli
from tagger.decide import abstain
from tagger.inference.backends import Backend, register, unregister
from tagger.media.tags import read_genres
from tagger.store.cache import Cache
from training.splits import shipped_list

GENRES = ("blues", "classical", "metal")
VALID_CUT, TEST_CUT = 0.7, 0.4  # the dial is right from this confidence up, on valid and on test


def invoke(*args: str) -> dict | list:
    quiet = [] if args[0] == "show" else ["--no-progress"]
    result = CliRunner().invoke(cli, [*args, "--json", *quiet])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.stdout)


def card_of(model: str | Path) -> dict:
    return json.loads(Path(model).with_name(Path(model).name.split(".")[0] + ".card.json").read_text())


def rule(conf: np.ndarray, correct: np.ndarray, target: float = 0.8, min_kept: int = 10) -> float | None:
    """The documented rule, by brute force: lowest threshold with precision >= target keeping >= min_kept."""
    for t in sorted(set(np.round(conf, 4).tolist())):
        kept = conf >= t
        if kept.sum() >= min_kept and correct[kept].mean() >= target:
            return 0.0 if kept.all() else t
    return None


# ---------------------------------------------------------------------------
# The dial backend and its table.


class DialBackend(Backend):
    """Feature 0 is the confidence, feature 1 the index of the genre it guesses."""

    name = "dial"
    input_kind = "features"
    model_suffix = ".npz"

    def fit(self, X, y, *, X_valid=None, y_valid=None, epochs=None, seed=0, callback=None):
        self.genres_ = sorted(set(y))
        return self

    def predict_proba(self, X):
        X = np.asarray(X)
        n, k = len(X), len(self.genres_)
        conf = X[:, 0]
        out = np.repeat(((1 - conf) / (k - 1))[:, None], k, axis=1)
        out[np.arange(n), X[:, 1].astype(int)] = conf
        return out

    def save(self, path):
        with open(path, "wb") as f:
            np.savez(f, genres=np.array(self.genres_))

    @classmethod
    def load(cls, path):
        self = cls()
        self.genres_ = [str(g) for g in np.load(path)["genres"]]
        return self


@pytest.fixture
def dial():
    register(DialBackend)
    yield "dial"
    unregister("dial")


@pytest.fixture(scope="module")
def dial_table(tmp_path_factory) -> tuple[Path, dict[str, tuple[float, bool]]]:
    """Fault-filtered clips of three genres; per clip (confidence, right?) as the dial will see them.

    On valid the dial is right from 0.7 up, on test from 0.4 up: a threshold
    chosen on test would differ from one chosen on valid.
    """
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("dial") / "features_30_sec.csv"
    truth: dict[str, tuple[float, bool]] = {}
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "length", *FEATURE_NAMES, "label"])
        for part, cut in (("train", 0.0), ("valid", VALID_CUT), ("test", TEST_CUT)):
            for tid in shipped_list("fault-filtered", part):
                genre = tid.split(".")[0]
                if genre not in GENRES:
                    continue
                g = GENRES.index(genre)
                conf = round(float(rng.uniform(0.35, 0.99)), 4)
                right = conf >= cut
                guess = g if right else (g + 1) % len(GENRES)
                values = [conf, guess] + [0.0] * (len(FEATURE_NAMES) - 2)
                w.writerow([f"{tid}.wav", 661794, *values, genre])
                truth[tid] = (conf, right)
    return path, truth


def part_arrays(truth: dict[str, tuple[float, bool]], part: str) -> tuple[np.ndarray, np.ndarray]:
    ids = [t for t in shipped_list("fault-filtered", part) if t in truth]
    return np.array([truth[t][0] for t in ids]), np.array([truth[t][1] for t in ids])


# ---------------------------------------------------------------------------
# The threshold: chosen on valid, measured on test.


def test_threshold_is_chosen_on_valid_never_test(dial, dial_table, tmp_path, monkeypatch):
    monkeypatch.setattr("training.train.SMALL_VALID", 0)  # this valid part judges, however small
    table, truth = dial_table
    valid_conf, valid_ok = part_arrays(truth, "valid")
    test_conf, test_ok = part_arrays(truth, "test")
    expected, on_test = rule(valid_conf, valid_ok), rule(test_conf, test_ok)
    assert expected is not None and on_test is not None and expected != pytest.approx(on_test, abs=0.01)

    result = invoke("train", "--backend", dial, "--features", str(table), "--out", str(tmp_path / "dial.npz"), "--no-refit")
    section = card_of(tmp_path / "dial.npz")["abstain"]
    assert section["threshold"] == pytest.approx(expected)
    assert section["n_valid"] == len(valid_conf) and section["chosen_on"] == "valid part"
    kept = valid_conf >= expected
    assert section["valid_coverage"] == pytest.approx(kept.mean())
    assert section["valid_precision"] == pytest.approx(valid_ok[kept].mean()) and section["valid_precision"] >= 0.8
    # The test part only measures it.
    test = result["metrics"]["abstain"]
    kept = test_conf >= expected
    assert test["threshold"] == pytest.approx(expected) and test["n"] == len(test_conf)
    assert test["coverage"] == pytest.approx(kept.mean()) and test["precision"] == pytest.approx(test_ok[kept].mean())
    text = CliRunner().invoke(cli, ["report", "--backend", dial, "--model", str(tmp_path / "dial.npz"),
                                    "--no-progress"])
    assert "the model's threshold (chosen on valid)" in text.output


def test_a_small_valid_part_gives_way_to_out_of_fold_predictions_of_train_and_valid(dial, dial_table, tmp_path):
    """Under SMALL_VALID valid clips, every train+valid clip is judged by a model that never saw its artist."""
    table, truth = dial_table
    train_conf, train_ok = part_arrays(truth, "train")
    valid_conf, valid_ok = part_arrays(truth, "valid")
    assert len(valid_conf) < training.train.SMALL_VALID
    pooled = rule(np.r_[train_conf, valid_conf], np.r_[train_ok, valid_ok])
    assert pooled is not None and pooled != pytest.approx(rule(valid_conf, valid_ok), abs=0.01)
    invoke("train", "--backend", dial, "--features", str(table), "--out", str(tmp_path / "dial.npz"), "--no-refit")
    section = card_of(tmp_path / "dial.npz")["abstain"]
    assert "out-of-fold" in section["chosen_on"] and section["n_valid"] == len(train_conf) + len(valid_conf)
    assert section["threshold"] == pytest.approx(pooled)


class MemoDial(DialBackend):
    """A dial that, refitted on train+valid, knows every valid clip by heart (as a refit model half does)."""

    name = "memodial"

    def __init__(self, refit_on_valid: bool = True) -> None:
        self.refit_on_valid = refit_on_valid

    def fit(self, X, y, *, X_valid=None, y_valid=None, epochs=None, seed=0, callback=None):
        super().fit(X, y)
        self.memory_ = {}
        if self.refit_on_valid and X_valid is not None:
            self.memory_ = {tuple(x[:2]): label for x, label in zip(np.asarray(X_valid), y_valid)}
        return self

    def predict_proba(self, X):
        out = super().predict_proba(X)
        for i, x in enumerate(np.asarray(X)):
            if tuple(x[:2]) in self.memory_:
                out[i] = [float(g == self.memory_[tuple(x[:2])]) for g in self.genres_]
        return out


def test_a_model_refitted_on_valid_is_not_judged_on_it(dial_table, tmp_path, monkeypatch):
    monkeypatch.setattr("training.train.SMALL_VALID", 0)
    register(MemoDial)
    try:
        table, truth = dial_table
        invoke("train", "--backend", "memodial", "--features", str(table), "--out", str(tmp_path / "m.npz"), "--no-refit")
    finally:
        unregister("memodial")
    section = card_of(tmp_path / "m.npz")["abstain"]
    # Judged on its own (memorised) valid clips it would never abstain; the copy without the refit does.
    assert section["threshold"] > 0 and section["threshold"] == pytest.approx(rule(*part_arrays(truth, "valid")))
    assert "without its refit" in section["chosen_on"]


def test_choose_threshold_stays_sane_with_few_or_no_valid_clips():
    none = abstain.choose_threshold([], [])
    assert none["threshold"] is None and none["n_valid"] == 0 and "too few" in none["why_none"]
    few = abstain.choose_threshold(np.full(5, 0.9), np.ones(5, bool))
    assert few["threshold"] is None and "5 valid clips" in few["why_none"]
    # Precision 1.0 on a handful of clips is not enough: a threshold must keep MIN_KEPT clips.
    conf = np.r_[np.linspace(0.9, 0.99, 3), np.linspace(0.3, 0.8, 40)]
    right = np.r_[np.ones(3, bool), np.arange(40) % 2 == 0]
    hard = abstain.choose_threshold(conf, right)
    assert hard["threshold"] is None and "reaches precision 0.80" in hard["why_none"]
    # Everything right: nothing to abstain from.
    easy = abstain.choose_threshold(np.linspace(0.4, 0.9, 30), np.ones(30, bool))
    assert easy["threshold"] == 0.0 and easy["valid_coverage"] == 1.0


def test_precision_coverage_table_is_sane():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.2, 1.0, 200)
    right = rng.uniform(size=200) < conf
    rows = abstain.coverage_table(conf, right, extra=0.55)
    thresholds = [r["threshold"] for r in rows]
    assert thresholds == sorted(thresholds) and 0.55 in thresholds
    coverages = [r["coverage"] for r in rows]
    assert coverages == sorted(coverages, reverse=True) and coverages[0] == 1.0
    assert rows[0]["precision"] == pytest.approx(right.mean())  # full coverage: plain accuracy
    for r in rows:
        assert r["n_kept"] == (conf >= r["threshold"]).sum()
    points = abstain.curve(conf, right)
    assert points[-1][1] == 1.0 and points[-1][2] == pytest.approx(right.mean())
    assert [p[1] for p in points] == sorted(p[1] for p in points)


def test_report_table_plot_and_json(dial, dial_table, tmp_path, monkeypatch):
    monkeypatch.setattr("training.train.SMALL_VALID", 0)  # the valid part's threshold (not 0) is marked
    pytest.importorskip("matplotlib", reason="--plots needs matplotlib (extra 'plots')")
    table, truth = dial_table
    model = tmp_path / "dial.npz"
    invoke("train", "--backend", dial, "--features", str(table), "--out", str(model), "--no-refit")
    threshold = card_of(model)["abstain"]["threshold"]
    out = invoke("report", "--backend", dial, "--model", str(model), "--features", str(table),
                 "--plots", str(tmp_path / "plots"))
    (row,) = out["rows"]
    pc = row["precision_coverage"]
    test_conf, test_ok = part_arrays(truth, "test")
    assert pc["threshold"] == pytest.approx(threshold)
    assert [t["coverage"] for t in pc["table"]] == sorted((t["coverage"] for t in pc["table"]), reverse=True)
    full = pc["table"][0]
    assert full["threshold"] == 0.0 and full["coverage"] == 1.0
    assert full["precision"] == pytest.approx(row["track_accuracy"])
    assert row["track_accuracy"] == pytest.approx(test_ok.mean())
    marked = next(t for t in pc["table"] if t["threshold"] == threshold)
    assert marked["n_kept"] == (test_conf >= threshold).sum()
    png = tmp_path / "plots" / "dial-fault-filtered-precision-coverage.png"
    assert str(png) in out["plots"] and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_all_folds_pools_precision_coverage(dial, dial_table):
    table, truth = dial_table
    (row,) = invoke("report", "--backend", dial, "--features", str(table), "--split", "kfold", "--k", "3",
                    "--all-folds")["rows"]
    pc = row["precision_coverage"]
    assert pc["table"][0]["n"] == row["n_test"] == len(truth)  # every clip once, pooled
    assert pc["table"][0]["precision"] == pytest.approx(row["track_accuracy"], abs=0.02)  # pooled vs mean of folds
    assert len(pc["folds"]) == 3 and all(f["valid"]["n_valid"] > 0 for f in pc["folds"])
    assert pc["at_valid_thresholds"]["folds"] == 3


# ---------------------------------------------------------------------------
# scan abstains, tag skips.


@pytest.fixture
def scanned(tmp_path) -> tuple[Path, Path, list[dict]]:
    """Four made-up tracks scanned by the shipped svc, never abstaining: their stored results."""
    lib, db = tmp_path / "Music", tmp_path / "cache.db"
    lib.mkdir()
    for i, kind in enumerate(("tone", "noise", "tone", "noise")):
        make_audio(lib / f"t{i}.wav", "wav", seconds=4.0, kind=kind, seed=i)
    result = CliRunner().invoke(cli, ["scan", str(lib), "--db", str(db), "--jobs", "0", "--min-confidence", "0",
                                      "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    with Cache(db) as cache:
        rows = list(cache.tracks())
    return lib, db, rows


def scan_json(lib: Path, db: Path, *args: str) -> dict:
    return invoke("scan", str(lib), "--db", str(db), "--jobs", "0", *args)


def test_scan_abstains_with_reason_and_tag_writes_nothing(scanned, tmp_path):
    lib, db, first = scanned
    assert all(r["genre"] and r["abstained"] is None for r in first)
    confs = sorted(r["confidence"] for r in first)
    cut = round((confs[1] + confs[2]) / 2, 6)  # two tracks below, two above
    summary = scan_json(lib, db, "--abstain-below", str(cut))
    assert summary["analysed"] == 0 and summary["redecided"] == 4  # re-decided from the cache, not re-analysed
    assert summary["abstained"] == 2 and sum(summary["genres"].values()) == 2
    with Cache(db) as cache:
        rows = {r["path"]: r for r in cache.tracks()}
    for r in first:
        now = rows[r["path"]]
        assert now["status"] == "ok" and now["probabilities"] == r["probabilities"] and now["top3"] == r["top3"]
        if r["confidence"] < cut:
            assert now["genre"] is None
            why = f"uncertain: best {r['genre']} {r['confidence']:.3f} below {cut:.4g} (--abstain-below)"
            assert now["abstained"] == why
        else:
            assert now["genre"] == r["genre"] and now["abstained"] is None
    shown = invoke("show", "--db", str(db), "--status", "abstained")
    assert sorted(s["path"] for s in shown) == sorted(r["path"] for r in first if r["confidence"] < cut)
    text = CliRunner().invoke(cli, ["show", "--db", str(db), "--status", "abstained"]).output
    assert text.count("abstained: uncertain: best") == 2

    before = {p: Path(p).read_bytes() for p in rows}
    result = CliRunner().invoke(cli, ["tag", "--db", str(db), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "2 written, 2 abstained" in result.output and "2 skipped as abstained" in result.output
    for path, r in rows.items():
        if r["abstained"]:
            assert Path(path).read_bytes() == before[path] and read_genres(path) == []
        else:
            assert read_genres(path) != []

    # Back to never abstaining: every track gets its genre again, still without re-analysis.
    summary = scan_json(lib, db, "--min-confidence", "0")
    assert summary["abstained"] == 0 and summary["analysed"] == 0 and sum(summary["genres"].values()) == 4
    with Cache(db) as cache:
        assert all(r["genre"] and not r["abstained"] for r in cache.tracks())


def test_scan_uses_the_card_threshold_unless_overridden(scanned, tmp_path):
    lib, db, first = scanned
    from tagger.inference.models import load_model

    shipped = load_model("svc").path
    model = tmp_path / "svc.joblib"
    model.write_bytes(shipped.read_bytes())
    card = card_of(shipped)
    top = max(r["confidence"] for r in first)
    card["abstain"] = dict(card.get("abstain") or {}, threshold=round(top + 1e-3, 4))  # above every track
    (tmp_path / "svc.card.json").write_text(json.dumps(card))
    summary = scan_json(lib, db, "--model", str(model))
    assert summary["abstained"] == 4 and summary["analysed"] == 0
    with Cache(db) as cache:
        assert all("(the model's threshold, chosen on valid)" in r["abstained"] for r in cache.tracks())
    summary = scan_json(lib, db, "--model", str(model), "--min-confidence", "0")
    assert summary["abstained"] == 0


def test_old_database_gains_the_abstained_column(tmp_path):
    db = tmp_path / "old.db"
    with Cache(db) as cache:
        cache.write_results([{"path": "/x.wav", "status": "ok", "genre": "rock"}])
    con = sqlite3.connect(db)  # as a genretag made before abstaining (and before the application_id mark)
    for column in ("abstained", "abstain_threshold"):
        con.execute(f"alter table tracks drop column {column}")
    con.execute("pragma application_id = 0")
    con.commit()
    con.close()
    with Cache(db) as cache:
        (row,) = cache.tracks()
    assert row["abstained"] is None and "abstain_threshold" in row and row["genre"] == "rock"


# ---------------------------------------------------------------------------
# --from-tags.


class TagToy(DialBackend):
    """A backend whose rows carry tags; four of its tags are genre-like."""

    name = "tagtoy"
    genre_tags = ("rock", "Hip-Hop", "electronic", "punk")


@pytest.fixture
def tagged_rows(tmp_path):
    """Three real files with cached rows: two with tags (one abstained on its genre), one without."""
    register(TagToy)
    lib, db = tmp_path / "Music", tmp_path / "cache.db"
    lib.mkdir()
    files = [make_audio(lib / f"{n}.{ext}", ext, seconds=1.0, seed=i)
             for i, (n, ext) in enumerate((("a", "flac"), ("b", "mp3"), ("c", "wav")))]
    tags = {"female vocalists": 0.9, "rock": 0.71, "Hip-Hop": 0.52, "electronic": 0.34, "punk": 0.12}
    with Cache(db) as cache:
        if "tags" not in cache.db["tracks"].columns_dict:  # the embedding helper's column, when not merged yet
            cache.db["tracks"].add_column("tags", str)
        rows = []
        for f, row_tags, abstained in zip(files, (tags, tags, None), (None, "uncertain: test", None)):
            st = os.stat(f)
            rows.append({"path": str(f), "size": st.st_size, "mtime": st.st_mtime, "status": "ok",
                         "backend": "tagtoy", "model_id": "x", "genre": None if abstained else "metal",
                         "abstained": abstained, "confidence": 0.9, "missing": 0,
                         "probabilities": json.dumps({"metal": 0.9, "blues": 0.1}),
                         "tags": json.dumps(row_tags) if row_tags else None})
        cache.write_results(rows)
    yield lib, db, files
    unregister("tagtoy")


def test_from_tags_writes_genre_like_tags(tagged_rows, tmp_path):
    lib, db, (a, b, c) = tagged_rows
    out = invoke("tag", str(lib), "--db", str(db), "--from-tags", "--top", "3")
    actions = {Path(f["path"]).name: f for f in out["files"]}
    assert read_genres(a) == ["Rock", "Hip-Hop", "Electronic"]  # default 0.3: punk out; non-genre tags never
    assert read_genres(b) == ["Rock", "Hip-Hop", "Electronic"]  # its genre abstained; its tags stand on their own
    assert actions["c.wav"]["action"] == "no tags" and "no tags cached" in actions["c.wav"]["reason"]
    assert read_genres(c) == []


def test_from_tags_min_confidence_and_genre_map(tagged_rows, tmp_path):
    lib, db, (a, b, c) = tagged_rows
    gmap = tmp_path / "map.txt"
    gmap.write_text("rock = Rock & Roll\nhip-hop =\n")
    invoke("tag", str(a), "--db", str(db), "--from-tags", "--top", "3", "--min-confidence", "0.5",
           "--genre-map", str(gmap))
    assert read_genres(a) == ["Rock & Roll"]  # Hip-Hop dropped by the map, electronic under 0.5
    out = invoke("tag", str(b), "--db", str(db), "--from-tags", "--min-confidence", "0.8")
    assert out["files"][0]["action"] == "below threshold" and read_genres(b) == []
    # Without --from-tags the abstained row b is not written.
    out = invoke("tag", str(b), "--db", str(db))
    assert out["files"][0]["action"] == "abstained" and read_genres(b) == []


def test_from_tags_needs_a_backend_with_genre_tags(tagged_rows):
    lib, db, (a, b, c) = tagged_rows
    unregister("tagtoy")
    out = invoke("tag", str(a), "--db", str(db), "--from-tags")
    assert out["files"][0]["action"] == "no tags" and "declares no genre-like tags" in out["files"][0]["reason"]
    assert read_genres(a) == []


def test_scan_write_from_tags_skips_tracks_without_tags(scanned):
    lib, db, first = scanned
    before = {r["path"]: Path(r["path"]).read_bytes() for r in first}
    out = scan_json(lib, db, "--write", "--from-tags", "--min-confidence", "0")
    files = out["tagging"]["files"]
    assert len(files) == 4 and {f["action"] for f in files} == {"no tags"}
    assert all("no tags cached (the svc backend gives none" in f["reason"] for f in files)
    assert all(Path(p).read_bytes() == b for p, b in before.items())
