"""Memory is bounded whatever the file's length: long windows are decoded and analysed in chunks.

``--excerpt 0`` (the whole file) on a one-hour WAV used to peak at 8 GB per
worker: every sample, then an STFT of every frame, was held at once.  These
tests check the bounded behaviour cheaply, without timing: a 10-minute file
is analysed whole in a fresh process under 1 GB of peak RSS (one-piece
analysis took 1.6 GB), decoders hand out chunks of bounded size, pooling chunk statistics
is exact, and the chunked features stay close to those of one-piece analysis.
benchmarks/bench_memory.py measures the real peak RSS (docs/speed.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiofiles import EXTENSIONS, make_audio
from tagger.analysis import features
from tagger.analysis.features import FEATURE_NAMES, analyse, analyse_chunks
from tagger.inference import worker
from tagger.inference.worker import AnalysisTask, analyse_file
from tagger.media import audio
from tagger.media.params import AnalysisParams

SR = 22050
#: Features near zero whatever the audio (waveform means): compared on an absolute scale.
NEAR_ZERO = {"harmony_mean", "perceptr_mean"}


def music_like(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A gliding chord with a beat and a little noise: every feature has something to measure."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 220.0 * (1 + 0.1 * np.sin(2 * np.pi * t / 40))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(h * phase) / h for h in (1, 2, 3)) * (0.6 + 0.4 * (np.sin(2 * np.pi * 2 * t) > 0))
    return (0.25 * y + 0.03 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def ten_minutes(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("long") / "ten-minutes.wav"
    sf.write(str(path), music_like(600.0), SR, subtype="PCM_16")
    return path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc")
def test_whole_ten_minute_file_is_analysed_within_a_memory_bound(ten_minutes):
    """In a fresh interpreter, as a worker: all 600 s analysed, peak RSS under 1 GB (one piece: 1.58 GB; now 0.54)."""
    code = (
        "import json, sys\n"
        # VmHWM, not ru_maxrss: a child forked from a large pytest inherits its ru_maxrss across exec
        "def peak_mb():\n"
        "    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "    return int(line.split()[1]) / 1024\n"
        "import numpy as np\n"
        "from tagger.media.params import AnalysisParams\n"
        "from tagger.inference.worker import AnalysisTask, analyse_file\n"
        "r, s = (analyse_file(AnalysisTask(sys.argv[1], AnalysisParams(None, k))) for k in ('features', 'slices'))\n"
        "print(json.dumps({'error': r.error or s.error, 'seconds': r.seconds, 'duration': r.duration,\n"
        "                  'finite': bool(r.features is not None and np.isfinite(r.features).all()),\n"
        "                  'slices': None if s.slices is None else len(s.slices),\n"
        "                  'peak_mb': peak_mb()}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(ten_minutes)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["error"] is None and out["finite"]
    assert out["seconds"] == pytest.approx(600.0) and out["duration"] == pytest.approx(600.0)  # all of it
    assert out["slices"] == worker.MAX_SLICES  # 200 slices of 3 s: every one of the 600 s here
    assert out["peak_mb"] < 1000, f"peak RSS {out['peak_mb']:.0f} MB"


def test_long_window_keeps_at_most_max_slices_spread_over_it(tmp_path, monkeypatch):
    """A 10-minute rising sweep: the kept slices' pitch rises steadily from start to end."""
    t = np.arange(600 * SR) / SR
    y = 0.3 * np.sin(2 * np.pi * 100.0 * (40 ** (t / 600) - 1) * 600 / np.log(40))  # 100 Hz -> 4 kHz
    path = tmp_path / "sweep.wav"
    sf.write(str(path), y.astype(np.float32), SR, subtype="PCM_16")
    monkeypatch.setattr(worker, "MAX_SLICES", 20)
    result = analyse_file(AnalysisTask(str(path), AnalysisParams(excerpt=0, kind="slices")))
    assert result.error is None and result.features is None and result.seconds == pytest.approx(600.0)
    assert len(result.slices) == 20  # of 200
    band = result.slices.mean(axis=2).argmax(axis=1)  # loudest mel band of each kept slice
    assert np.all(np.diff(band) >= 0) and band[0] <= 12 and band[-1] >= 75, band  # from the start to the end


@pytest.mark.parametrize("fmt, native_sr", [("flac", 44100), ("mp3", 44100), ("m4a-aac", 48000), ("ogg", 22050)])
def test_decoders_stream_bounded_chunks(tmp_path, fmt, native_sr):
    """soundfile and PyAV files alike: chunks of the asked size (the last up to 1.25x), nothing lost."""
    path = make_audio(tmp_path / f"long{EXTENSIONS[fmt]}", fmt, seconds=47.0, sr=native_sr, channels=2)
    stream = audio.open_stream(path, excerpt=None)
    assert stream.sr == SR and stream.offset == 0.0 and stream.length == pytest.approx(47.0, abs=0.1)
    sizes = [len(y) for y in stream.chunks(seconds=10.0)]
    assert all(n == 10 * SR for n in sizes[:-1]) and 0 < sizes[-1] <= 12.5 * SR, sizes
    assert sum(sizes) == pytest.approx(47.0 * SR, abs=0.1 * SR)  # every sample, decoded once
    whole = audio.decode(path, excerpt=None).samples
    streamed = np.concatenate(list(stream.chunks(seconds=10.0)))
    n = min(len(whole), len(streamed))
    assert abs(len(whole) - len(streamed)) < 0.05 * SR
    assert np.corrcoef(whole[:n], streamed[:n])[0, 1] > 0.999  # the same audio, in order


def test_a_long_excerpt_is_streamed_from_the_middle(tmp_path):
    path = tmp_path / "ramp.wav"
    sf.write(str(path), music_like(400.0), SR, subtype="PCM_16")
    stream = audio.open_stream(path, excerpt=200.0)
    assert stream.offset == pytest.approx(100.0) and stream.length == pytest.approx(200.0)
    assert sum(len(y) for y in stream.chunks()) == 200 * SR


def test_unreadable_and_short_files_keep_their_reasons(tmp_path):
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"\x00not audio" * 100)
    short = make_audio(tmp_path / "short.wav", "wav", seconds=1.0)
    whole = AnalysisParams(excerpt=None)
    errors = {p.name: analyse_file(AnalysisTask(str(p), whole)).error for p in (empty, garbage, short)}
    assert errors["empty.flac"] == "empty file (0 bytes)"
    assert errors["garbage.mp3"].startswith("cannot decode")
    assert errors["short.wav"].startswith("too short: 1.00 s")
    silent = make_audio(tmp_path / "silent.wav", "wav", seconds=200.0, kind="silence")
    silent_result = analyse_file(AnalysisTask(str(silent), AnalysisParams(excerpt=0)))
    assert silent_result.error == "audio is silent (peak below -80 dBFS)"


def test_pooled_statistics_are_exact():
    rng = np.random.default_rng(1)
    y = music_like(20.0, seed=2)
    whole = features._analyse_stretch(y, SR, features=True, slices=False)[0]
    a = features._analyse_stretch(y[: 7 * SR], SR, features=True, slices=False)[0]
    b = features._analyse_stretch(y[7 * SR :], SR, features=True, slices=False)[0]
    merged = a.merge(b)
    assert merged.counts.sum() == a.counts.sum() + b.counts.sum() and merged.mfcc_frames == a.mfcc_frames + b.mfcc_frames
    # Pooling two groups' (count, mean, var) gives the mean and variance of the groups together.
    g1, g2 = rng.normal(0, 1, 1000), rng.normal(5, 3, 333)
    n, m, v = features._pool(len(g1), g1.mean(), g1.var(), len(g2), g2.mean(), g2.var())
    both = np.concatenate([g1, g2])
    assert n == len(both) and m == pytest.approx(both.mean(), rel=1e-12) and v == pytest.approx(both.var(), rel=1e-12)
    assert np.isfinite(whole.vector()).all() and np.isfinite(merged.vector()).all()


def test_one_chunk_is_exactly_one_piece_analysis():
    y = music_like(31.0, seed=3)
    one = analyse(y, SR, features=True, slices=True)
    chunked = analyse_chunks(iter([y]), SR, features=True, slices=True)
    np.testing.assert_array_equal(one.features, chunked.features)
    np.testing.assert_array_equal(one.slices, chunked.slices)


def test_chunked_features_stay_close_to_one_piece():
    """Five minutes in 60 s chunks against one piece: within 3% (near-zero means: 1e-4 absolute)."""
    y = music_like(300.0, seed=4)
    one = analyse(y, SR, features=True, slices=False).features
    chunked = analyse_chunks((y[i : i + 60 * SR] for i in range(0, len(y), 60 * SR)), SR, features=True,
                             slices=False).features
    for i, name in enumerate(FEATURE_NAMES):
        if name in NEAR_ZERO:
            assert abs(chunked[i] - one[i]) < 1e-4, name
        else:
            assert chunked[i] == pytest.approx(one[i], rel=0.03), name
