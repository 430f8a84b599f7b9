"""Scanning through the library API: results, rescans, missing files, bad input, crashes, resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import task_funcs
from audiofiles import make_audio
from tagger.analysis.features import FEATURE_NAMES
from tagger.inference.models import load_model, make_card, save_model
from tagger.inference.worker import AnalysisTask
from tagger.run.runners import InlineRunner, LocalRunner
from tagger.run.scan import ScanOptions, scan
from tagger.store.cache import Cache


@pytest.fixture(scope="module")
def svc():
    """The svc model shipped inside the package (the default)."""
    return load_model("svc")


def rows(db: Path) -> dict[str, dict]:
    with Cache(db) as cache:
        return {r["path"]: r for r in cache.tracks()}


def run(paths, db, model, runner=None, **opts):
    with Cache(db) as cache:
        # Never abstain unless a test asks: these tests expect every track's genre (tests/test_abstain.py).
        opts.setdefault("abstain_below", 0.0)
        return scan([str(p) for p in paths], cache, model, runner or InlineRunner(), ScanOptions(**opts))


def test_first_scan_stores_every_result(library: Path, db_path: Path, svc) -> None:
    summary = run([library], db_path, svc, LocalRunner(2))
    assert (summary.seen, summary.analysed, summary.failed, summary.cached) == (4, 4, 0, 0)
    stored = rows(db_path)
    assert len(stored) == 4 and sum(summary.genres.values()) == 4
    for path, row in stored.items():
        st = os.stat(path)
        assert (row["size"], row["mtime"]) == (st.st_size, st.st_mtime)
        assert row["status"] == "ok" and row["error"] is None and row["missing"] == 0
        assert row["backend"] == "svc" and row["model_id"] == svc.id
        assert row["duration"] == pytest.approx(4.0, abs=0.1)
        probs = json.loads(row["probabilities"])
        top3 = json.loads(row["top3"])
        assert set(probs) == set(svc.genres) and sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
        assert [g for g, _ in top3] == sorted(probs, key=probs.get, reverse=True)[:3]
        assert row["genre"] == top3[0][0] and row["confidence"] == pytest.approx(max(probs.values()))
        assert json.loads(row["params"])["n_mels"] == 128
        assert row["first_seen"] and row["analysed_at"]
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
        feats = conn.execute("select * from features").fetchall()
    assert len(feats) == 4 and all(np.isfinite(f[1:]).all() and len(f) == 58 for f in feats)


def test_local_pool_and_inline_agree(library: Path, tmp_path: Path, svc) -> None:
    run([library], tmp_path / "a.db", svc, LocalRunner(2))
    run([library], tmp_path / "b.db", svc, InlineRunner())
    a, b = rows(tmp_path / "a.db"), rows(tmp_path / "b.db")
    assert {p: r["genre"] for p, r in a.items()} == {p: r["genre"] for p, r in b.items()}
    for p in a:
        assert json.loads(a[p]["probabilities"]) == pytest.approx(json.loads(b[p]["probabilities"]), abs=1e-6)


def test_rescan_touches_only_new_or_changed_files(library: Path, db_path: Path, svc) -> None:
    run([library], db_path, svc)
    before = rows(db_path)
    again = run([library], db_path, svc)
    assert (again.analysed, again.cached, again.seen) == (0, 4, 4)
    assert sum(again.genres.values()) == 4
    assert rows(db_path) == {p: r | {"updated_at": rows(db_path)[p]["updated_at"]} for p, r in before.items()}

    changed = sorted(library.rglob("*.wav"))[0]
    make_audio(changed, "wav", seconds=5.0, kind="noise", seed=9)
    os.utime(changed, (time.time() + 5, time.time() + 5))
    make_audio(library / "new.flac", "flac", seconds=4.0, seed=3)
    third = run([library], db_path, svc)
    assert (third.analysed, third.cached, third.seen) == (2, 3, 5)
    assert rows(db_path)[str(changed)]["duration"] == pytest.approx(5.0, abs=0.1)
    assert rows(db_path)[str(changed)]["first_seen"] == before[str(changed)]["first_seen"]

    forced = run([library], db_path, svc, force=True)
    assert (forced.analysed, forced.cached) == (5, 0)


def test_new_feature_model_repredicts_without_decoding(library: Path, db_path: Path, svc, tmp_path: Path) -> None:
    from plugins.svc import SVCBackend

    run([library], db_path, svc)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, len(FEATURE_NAMES)))
    y = np.array(["jazz", "metal", "pop"] * 20)
    other = SVCBackend(C=1.0).fit(X, y)
    path = save_model(other, make_card(other), out=tmp_path / "other.joblib")
    model = load_model("svc", path)
    summary = run([library], db_path, model)
    assert (summary.repredicted, summary.analysed, summary.cached) == (4, 0, 0)
    assert {r["model_id"] for r in rows(db_path).values()} == {model.id}
    assert {r["genre"] for r in rows(db_path).values()} <= {"jazz", "metal", "pop"}


def test_vanished_file_is_marked_missing_never_dropped(library: Path, db_path: Path, svc, tmp_path: Path) -> None:
    run([library], db_path, svc)
    victim = sorted(library.rglob("*.mp3"))[0]
    kept = tmp_path / "kept.mp3"
    shutil.copy2(victim, kept)
    victim.unlink()
    summary = run([library], db_path, svc)
    assert summary.missing == 1 and summary.seen == 3
    row = rows(db_path)[str(victim)]
    assert row["missing"] == 1 and row["missing_since"] and row["genre"] and row["status"] == "ok"

    shutil.copy2(kept, victim)  # back with the same size and mtime: known again, not re-analysed
    back = run([library], db_path, svc)
    assert (back.cached, back.analysed, back.missing) == (4, 0, 0)
    assert rows(db_path)[str(victim)]["missing"] == 0


def make_bad(kind: str, folder: Path) -> tuple[Path, str]:
    """A file of one bad-input kind and a pattern its error must match (None: must analyse fine)."""
    good = make_audio(folder / "source.flac", "flac", seconds=8.0, seed=4)
    data = good.read_bytes()
    good.unlink()
    path = folder / {"truncated": "cut.flac", "corrupt": "corrupt.wav", "zero-byte": "empty.mp3",
                     "not-audio": "notes.ogg", "short": "short.wav", "silence": "silence.flac",
                     "unreadable": "locked.wav", "text-mp3": "notes.mp3", "non-finite": "nan.wav",
                     "1 Hz": "slow.wav"}[kind]  # fmt: skip
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 5])
        return path, r"too short: 1\.\d+ s of audio"
    if kind == "corrupt":
        path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + os.urandom(4000))
        return path, r"cannot decode"
    if kind == "zero-byte":
        path.write_bytes(b"")
        return path, r"empty file \(0 bytes\)"
    if kind == "not-audio":
        path.write_text("Just some notes, saved with the wrong extension.\n" * 50)
        return path, r"cannot decode"
    if kind == "short":
        make_audio(path, "wav", seconds=2.0)
        return path, r"too short: 2\.00 s of audio, need at least 3 s"
    if kind == "silence":
        make_audio(path, "flac", seconds=5.0, kind="silence")
        return path, r"audio is silent"
    if kind == "text-mp3":  # issue 22 (17): was "not a regular file (possibly a pipe?)"
        path.write_text("Just some notes, saved with the wrong extension.\n" * 50)
        return path, r"^cannot decode: soundfile: Format not recognised\.; (?!.*pipe)"
    if kind == "non-finite":  # issue 22 (17): was "audio is silent"
        make_audio(path, "wav", seconds=5.0, subtype="FLOAT")
        import soundfile as sf

        with sf.SoundFile(path, "r+") as f:
            f.write(np.full((f.frames, 1), np.nan, dtype=np.float32))
        return path, r"^the audio holds non-finite samples \(NaN or infinity\)"
    if kind == "1 Hz":  # issue 22 (20): was "ok classical 0.86"
        import soundfile as sf

        sf.write(path, np.random.default_rng(0).uniform(-1, 1, 20), 1, subtype="FLOAT")
        return path, r"^sample rate 1 Hz is below 8000 Hz, too low to analyse$"
    make_audio(path, "wav", seconds=4.0)
    path.chmod(0)
    return path, r"^cannot read file: Permission denied$"


BAD_KINDS = ["truncated", "corrupt", "zero-byte", "not-audio", "short", "silence", "unreadable", "text-mp3",
             "non-finite", "1 Hz"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_gets_a_row_and_the_batch_goes_on(kind: str, library: Path, db_path: Path, svc,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    bad, pattern = make_bad(kind, library)
    if kind == "unreadable" and os.geteuid() == 0:
        # root reads anything, so the OS refusal is simulated where genretag opens the file
        real_open = open

        def refuse(file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
            if os.fspath(file) == str(bad):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr("tagger.media.audio.open", refuse, raising=False)
    summary = run([library], db_path, svc)  # in-process, so the simulation applies
    assert (summary.seen, summary.analysed, summary.failed) == (5, 4, 1)
    row = rows(db_path)[str(bad)]
    assert row["status"] == "error" and row["genre"] is None
    assert __import__("re").search(pattern, row["error"]), row["error"]
    assert summary.errors == [(str(bad), row["error"])]
    again = run([library], db_path, svc)  # a known failure is not retried until it changes...
    assert (again.failed_cached, again.analysed, again.failed) == (1, 0, 0)
    retried = run([library], db_path, svc, retry_failed=True)  # ...or the user asks
    assert (retried.failed, retried.analysed) == (1, 0)


@pytest.mark.parametrize(
    ("fmt", "kwargs"),
    [("wav", {"sr": 8000}), ("wav", {"sr": 96000, "subtype": "PCM_24"}), ("flac", {"channels": 6}),
     ("wav", {"subtype": "PCM_U8"}), ("wav", {"subtype": "FLOAT"}), ("aiff", {"subtype": "PCM_32"}),
     ("opus", {}), ("m4a-aac", {"sr": 44100, "channels": 2}), ("m4a-alac", {"subtype": 24})],
)  # fmt: skip
def test_odd_formats_rates_channels_and_depths_analyse(tmp_path: Path, db_path: Path, svc, fmt: str,
                                                       kwargs: dict) -> None:
    path = make_audio(tmp_path / f"odd.{fmt.split('-')[-1]}", fmt, seconds=4.0, kind="noise", **kwargs)
    summary = run([path], db_path, svc)
    assert summary.analysed == 1, summary.errors
    assert rows(db_path)[str(path)]["duration"] == pytest.approx(4.0, abs=0.1)


def test_unicode_and_non_utf8_names(tmp_path: Path, db_path: Path, svc) -> None:
    folder = tmp_path / "Björk – Homogenic"
    folder.mkdir()
    unicode_file = make_audio(folder / "Jóga 🎵.flac", "flac", seconds=4.0)
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9 latin-1.wav")
    os.rename(make_audio(tmp_path / "latin.wav", "wav", seconds=4.0, kind="noise"), raw)
    m4a = os.path.join(os.fsencode(tmp_path), b"\xff\xfe odd.m4a")
    os.rename(make_audio(tmp_path / "odd.m4a", "m4a-aac", seconds=4.0), m4a)
    summary = run([tmp_path], db_path, svc)
    assert (summary.analysed, summary.failed) == (3, 0), summary.errors
    stored = rows(db_path)
    assert stored[str(unicode_file)]["path_bytes"] is None
    assert sorted(r["path_bytes"] for r in stored.values() if r["path_bytes"]) == sorted([raw, m4a])
    assert any(p.endswith("caf\\xe9 latin-1.wav") for p in stored)
    again = run([tmp_path], db_path, svc)
    assert (again.cached, again.analysed) == (3, 0)


def test_a_crashing_or_hanging_worker_costs_one_file(tmp_path: Path, db_path: Path, svc) -> None:
    for name in ("a.wav", "crash.wav", "hang.wav", "b.wav"):
        make_audio(tmp_path / name, "wav", seconds=4.0, kind="noise")
    runner = LocalRunner(2, timeout=4.0, func=task_funcs.crash_or_hang)
    summary = run([tmp_path], db_path, svc, runner)
    stored = {Path(p).name: r for p, r in rows(db_path).items()}
    assert (summary.analysed, summary.failed) == (2, 2)
    assert stored["crash.wav"]["error"] == "worker process crashed (killed by SIGKILL)"
    assert stored["hang.wav"]["error"] == "timed out after 4 s"
    assert stored["a.wav"]["status"] == stored["b.wav"]["status"] == "ok"


def test_a_file_replaced_by_a_fifo_after_the_walk_does_not_hold_its_worker(tmp_path: Path) -> None:
    """Issue 22 (16): a worker opening a FIFO waited for a writer until --timeout; now it is refused at once."""
    os.mkfifo(tmp_path / "swapped.wav")  # the walk saw a regular file here
    good = make_audio(tmp_path / "good.wav", "wav", seconds=4.0, kind="noise")
    started = time.monotonic()
    results = {Path(r.path).name: r for r in LocalRunner(1, timeout=20.0).run(
        [AnalysisTask(str(tmp_path / "swapped.wav")), AnalysisTask(str(good))])}
    assert results["swapped.wav"].error == "not a regular file (a pipe, socket or device)"
    assert results["good.wav"].error is None
    assert time.monotonic() - started < 15


def test_overlapping_roots_are_analysed_once(library: Path, db_path: Path, svc) -> None:
    """Issue 22 (21): `genretag scan lib lib lib` analysed every file three times (seen 6, analysed 6 for 2)."""
    one = next(library.rglob("*.flac"))
    summary = run([library, library, one.parent, one, library], db_path, svc)
    assert (summary.seen, summary.analysed) == (4, 4)
    with sqlite3.connect(db_path) as con:
        roots = json.loads(con.execute("select roots from scans").fetchone()[0])
    assert roots == [str(library), str(one.parent), str(one)]


def test_runner_pulls_tasks_lazily(tmp_path: Path) -> None:
    """Bounded memory: the pool takes a task only when a worker is free."""
    paths = [make_audio(tmp_path / f"{i}.wav", "wav", seconds=3.5, kind="noise", seed=i) for i in range(6)]
    pulled = []

    def tasks():
        for p in paths:
            pulled.append(p)
            yield AnalysisTask(str(p))

    results = LocalRunner(2).run(tasks())
    first = next(results)
    assert first.error is None and len(pulled) <= 3
    assert len(list(results)) == 5 and len(pulled) == 6


def _scan_cmd(library: Path, db: Path, *extra: str) -> list[str]:
    exe = Path(sys.executable).with_name("genretag")
    return [str(exe), "scan", str(library), "--db", str(db), "--jobs", "1", "--json", "--no-progress", *extra]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_scan_keeps_results_and_resumes(tmp_path: Path, sig: signal.Signals) -> None:
    library = tmp_path / "lib"
    library.mkdir()
    files = 60  # analysis takes ~30 ms a file: fewer would finish between two polls
    for i in range(files):
        make_audio(library / f"t{i:02}.wav", "wav", seconds=12.0, kind="noise", seed=i)
    db = tmp_path / "c.db"
    proc = subprocess.Popen(_scan_cmd(library, db), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    committed = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=1) as conn:
                    committed = conn.execute("select count(*) from tracks where status='ok'").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if committed >= 2:
                break
    assert proc.poll() is None and committed >= 2, "scan finished before it could be interrupted"
    os.killpg(proc.pid, sig)
    proc.wait(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, proc.stderr.read().decode()
        assert json.loads(proc.stdout.read())["interrupted"] is True
    with sqlite3.connect(db) as conn:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        kept = conn.execute("select count(*) from tracks where status='ok'").fetchone()[0]
    assert kept >= committed
    resumed = subprocess.run(_scan_cmd(library, db), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)
    assert out["from_cache"] == kept and out["analysed"] == files - kept and out["failed"] == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from tracks where status='ok'").fetchone()[0] == files


def test_an_interrupt_during_a_commit_leaves_the_batch_to_the_last_flush(library: Path, db_path: Path, svc,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C or a stop signal (issue 22, 5) arriving while a batch is written: the batch was dropped."""
    real_write = Cache.write_results
    calls = []

    def interrupted_once(self, rows, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        calls.append(len(rows))
        if len(calls) == 1:
            raise KeyboardInterrupt  # as the signal handler raises it, just before the commit
        return real_write(self, rows, *args, **kwargs)

    monkeypatch.setattr(Cache, "write_results", interrupted_once)
    summary = run([library], db_path, svc, batch_size=2)
    assert summary.interrupted and calls == [2, 2]  # the same batch, written on the way out
    assert summary.analysed == 2 and sum(summary.genres.values()) == 2  # counted once
    assert sum(r["status"] == "ok" for r in rows(db_path).values()) == 2


def test_a_failing_prediction_costs_only_its_track(svc) -> None:
    from tagger.inference.predict import predict_tracks

    good = np.zeros(len(FEATURE_NAMES))
    out = predict_tracks(svc, [good, np.full(len(FEATURE_NAMES), np.nan), good])
    assert isinstance(out[1], str) and out[1].startswith("prediction failed: ValueError")
    assert all(o.shape == (len(svc.genres),) for o in (out[0], out[2]))
    assert np.allclose(out[0], out[2])
