"""A head over several front ends (tagger/inference/fusion.py, plugins/fusion.py): one decode, each part cached by its id.

The parts here are cheap: tests/bands_plugin (a third party's embedding
backend, 8 kHz) and a loudness front end defined below (16 kHz), so nothing
needs the shipped networks.  Scans run in-process (InlineRunner) so the
front ends' calls can be counted.
"""

from __future__ import annotations

import sqlite3
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audiofiles import make_audio, signal
from tagger.common.errors import BackendError, ModelError
from tagger.inference import inputs
from tagger.inference.backends import register, unregister
from tagger.inference.fusion import FusedFrontEnd
from tagger.inference.inputs import fuse
from tagger.inference.models import load_model, make_card, save_model
from tagger.run.runners import InlineRunner
from tagger.run.scan import ScanOptions, scan
from tagger.store.cache import SCHEMA_VERSION, Cache
from test_embedding import library  # noqa: F401  (fixture: two tones, two noises)

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS / "bands_plugin"))
from genretag_bands import BandsBackend  # noqa: E402

from plugins.fusion import FusionBackend  # noqa: E402

CALLS: Counter[str] = Counter()  # front-end calls in this process, by front end id


class LoudnessFrontEnd:
    """16 kHz mono -> log RMS of four quarters and the zero-crossing rate; no tags."""

    sample_rate = 16000
    tag_names: tuple[str, ...] = ()

    def __init__(self, version: int = 1) -> None:
        self.id = f"loudness-v{version}"

    def __call__(self, y: np.ndarray) -> tuple[np.ndarray, None]:
        CALLS[self.id] += 1
        quarters = np.array_split(np.asarray(y, np.float64), 4)
        rms = [np.log(np.sqrt(np.mean(q**2)) + 1e-9) for q in quarters]
        zcr = np.mean(np.abs(np.diff(np.sign(y)))) / 2
        return np.asarray([*rms, zcr], np.float32), None


class LoudnessBackend(BandsBackend):
    """The bands head (nearest centroid) over the loudness front end."""

    name = "loudness"
    genre_tags = ()
    version = 1

    @classmethod
    def front_end(cls) -> LoudnessFrontEnd:
        return LoudnessFrontEnd(cls.version)


class CountedBands(BandsBackend):
    @classmethod
    def front_end(cls) -> Any:
        fe = BandsBackend.front_end()
        call = fe.__class__.__call__

        class Counted(fe.__class__):
            def __call__(self, y: np.ndarray) -> Any:
                CALLS[self.id] += 1
                return call(self, y)

        fe.__class__ = Counted
        return fe


class TwoEars(FusionBackend):
    """What a third party writes to combine front ends: a name, its parts, a model file."""

    name = "twoears"
    FORMAT = "genretag-twoears/1"
    PARTS = ("bands", "loudness")


@pytest.fixture(autouse=True)
def backends(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(inputs, "_front_ends", {})
    CALLS.clear()
    LoudnessBackend.version = 1
    for cls in (CountedBands, LoudnessBackend, TwoEars):
        register(cls)
    yield
    for name in ("bands", "loudness", "twoears"):
        unregister(name)


def trained(tmp_path: Path) -> Any:
    """A TwoEars head telling tones from noise, saved with its card and loaded as a scan would."""
    fe = inputs.front_end("twoears")
    X, y = [], []
    for seed in range(6):
        for kind, genre in (("tone", "tonal"), ("noise", "noisy")):
            X.append(fe(signal(4.0, fe.sample_rate, kind=kind, seed=50 + seed)[:, 0])[0])
            y.append(genre)
    head = TwoEars(C_grid=(1.0,)).fit(np.stack(X), y)
    path = save_model(head, make_card(head), out=tmp_path / "twoears.joblib")
    return load_model("twoears", path)


def run(root: Path, db: Path, model: Any) -> Any:
    with Cache(db) as cache:
        return scan([str(root)], cache, model, InlineRunner(), ScanOptions())


def stored_embeddings(db: Path) -> Counter[str]:
    with sqlite3.connect(db) as conn:
        return Counter(fe for (fe,) in conn.execute("select front_end from embeddings"))


# -- the fused front end ----------------------------------------------------------
def test_parts_hear_one_decode_each_at_its_own_rate() -> None:
    heard: dict[str, int] = {}

    class Probe:
        tag_names = ("t",)

        def __init__(self, name: str, rate: int) -> None:
            self.id, self.sample_rate = name, rate

        def __call__(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            heard[self.id] = len(y)
            return np.asarray([float(np.std(y))], np.float32), np.asarray([0.5], np.float32)

    fused = FusedFrontEnd([("low", Probe("low", 8000)), ("high", Probe("high", 32000))])
    assert fused.sample_rate == 32000 and fused.tag_names == ("low:t", "high:t")
    y = signal(2.0, 32000, kind="noise", seed=1)[:, 0]
    embedding, tags = fused(y)
    assert heard == {"low": 16000, "high": 64000}  # resampled for the 8 kHz part only
    assert embedding.shape == (2,) and tags.tolist() == [0.5, 0.5]
    assert [p.front_end for p in fused.run(y, skip={"low"})] == ["high"]
    other = FusedFrontEnd([("low", Probe("low2", 8000)), ("high", Probe("high", 32000))])
    assert other.id != fused.id  # a changed part is another fused front end
    with pytest.raises(ValueError, match="names each part once"):
        FusedFrontEnd([("a", Probe("x", 8000)), ("a", Probe("y", 8000))])


def test_a_part_that_gives_no_tags_leaves_no_tags_behind(tmp_path: Path) -> None:
    """A part with tag names may return None for a track: its names are left out, the others' kept (valid JSON)."""
    class Quiet:
        id, sample_rate, tag_names = "quiet", 8000, ("hush",)

        def __call__(self, y: np.ndarray) -> tuple[np.ndarray, None]:
            return np.asarray([float(np.mean(y**2))], np.float32), None

    class Loud(Quiet):
        id, tag_names = "loud", ("boom",)

        def __call__(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return np.asarray([1.0], np.float32), np.asarray([0.7], np.float32)

    fused = FusedFrontEnd([("quiet", Quiet()), ("loud", Loud())])
    _, tags = fused(signal(1.0, 8000, kind="noise", seed=3)[:, 0])
    model = type("M", (), {"front_end": fused})()
    assert inputs.tag_probabilities(model, tags) == {"loud:boom": 0.7}
    assert inputs.tag_probabilities(model, np.asarray([np.nan, np.nan], np.float32)) is None


def test_only_embedding_backends_can_be_fused() -> None:
    with pytest.raises(BackendError, match="backend 'svc' has no front end to fuse"):
        fuse(["bands", "svc"])
    with pytest.raises(BackendError, match="is itself fused"):
        fuse(["bands", "twoears"])


# -- scanning ---------------------------------------------------------------------
def test_each_part_is_cached_under_its_own_id_and_a_rescan_runs_nothing(tmp_path: Path, library: Path) -> None:
    model = trained(tmp_path)
    CALLS.clear()
    db = tmp_path / "cache.db"
    summary = run(library, db, model)
    assert (summary.analysed, summary.failed) == (4, 0)
    bands_id, loud_id = (fe.id for _, fe in model.front_end.parts)
    assert stored_embeddings(db) == {bands_id: 4, loud_id: 4}
    assert CALLS == {bands_id: 4, loud_id: 4}
    with Cache(db) as cache:
        genres = {Path(r.path).name: r.genre for r in cache.records()}
    assert genres == {"tone0.wav": "tonal", "noise1.flac": "noisy", "tone2.mp3": "tonal", "noise3.ogg": "noisy"}
    CALLS.clear()
    assert run(library, db, model).analysed == 0 and not CALLS


def test_adding_a_part_runs_only_that_part_on_files_the_others_heard(tmp_path: Path, library: Path) -> None:
    fe = inputs.front_end("bands")
    X = np.stack([fe(signal(4.0, fe.sample_rate, kind=k, seed=s)[:, 0])[0] for s in range(3) for k in ("tone", "noise")])
    head = CountedBands().fit(X, ["tonal", "noisy"] * 3)
    bands = load_model("bands", save_model(head, make_card(head), out=tmp_path / "bands.npz"))
    db = tmp_path / "cache.db"
    assert run(library, db, bands).analysed == 4
    model = trained(tmp_path)
    CALLS.clear()
    summary = run(library, db, model)
    assert (summary.analysed, summary.failed) == (4, 0)
    bands_id, loud_id = (fe.id for _, fe in model.front_end.parts)
    assert CALLS == {loud_id: 4}  # the bands outputs came from the cache
    assert stored_embeddings(db) == {bands_id: 4, loud_id: 4}
    with Cache(db) as cache:
        assert all(r.genre in ("tonal", "noisy") for r in cache.records())


def test_a_changed_file_drops_every_part_of_the_old_file(tmp_path: Path, library: Path) -> None:
    model = trained(tmp_path)
    db = tmp_path / "cache.db"
    run(library, db, model)
    make_audio(library / "tone0.wav", "wav", seconds=5.0, kind="noise", seed=9)
    CALLS.clear()
    assert run(library, db, model).analysed == 1
    assert sum(CALLS.values()) == 2  # both parts heard the new file
    assert set(stored_embeddings(db).values()) == {4}


def test_a_part_with_a_missing_weights_file_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_path = save_model(*_fitted(), out=tmp_path / "twoears.joblib")
    missing = tmp_path / "gone.json"
    monkeypatch.setenv("GENRETAG_BANDS_WEIGHTS", str(missing))
    monkeypatch.setattr(inputs, "_front_ends", {})
    with pytest.raises(ModelError) as info:
        load_model("twoears", model_path)
    assert str(missing) in str(info.value)


def _fitted() -> tuple[TwoEars, dict[str, Any]]:
    fe = inputs.front_end("twoears")
    X = np.stack([fe(signal(4.0, fe.sample_rate, kind=k, seed=s)[:, 0])[0] for s in range(3) for k in ("tone", "noise")])
    head = TwoEars(C_grid=(1.0,)).fit(X, ["tonal", "noisy"] * 3)
    return head, make_card(head)


def test_a_schema_1_database_keeps_its_embeddings_when_upgraded(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with Cache(db):
        pass
    with sqlite3.connect(db) as conn:  # as schema 1 made it: one embedding row per file
        conn.execute("drop table embeddings")
        conn.execute("create table embeddings (path text primary key, front_end text, vector blob, tags blob)")
        conn.execute("insert into embeddings values ('/m/a.wav', 'fe1', ?, null)", (np.ones(3, np.float32).tobytes(),))
        conn.execute("pragma user_version = 1")
    with Cache(db) as cache:
        assert cache.embeddings_for(["/m/a.wav"], "fe1")["/m/a.wav"][0].tolist() == [1.0, 1.0, 1.0]
        cache.write_results([], embeddings=[{"path": "/m/a.wav", "front_end": "fe2",
                                             "vector": np.zeros(2, np.float32).tobytes(), "tags": None}])
        assert set(cache.embeddings_for(["/m/a.wav"], "fe1")) == set(cache.embeddings_for(["/m/a.wav"], "fe2"))
    with sqlite3.connect(db) as conn:
        assert conn.execute("pragma user_version").fetchone()[0] == SCHEMA_VERSION
