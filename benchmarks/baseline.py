"""The baseline: GTZAN features as the studies computed them, then the svc model.

``python -m benchmarks.baseline --jobs 2 FILE...`` loads each whole file with
``librosa.load`` (decode everything, resample to 22050 Hz mono), keeps its
middle 30 s so the analysed audio equals genretag's, and calls each librosa
feature function on it separately: every one computes its own STFT, HPSS
runs on scipy's median filter and the tempo comes from ``beat_track``.  A
``multiprocessing.Pool`` with one process per job analyses files in
parallel, and the shipped svc model classifies the rows at the end, so the
job is the same as ``genretag scan``'s minus the cache.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from multiprocessing import Pool

import librosa  # the study code imports it at the top, so pool workers inherit it
import numpy as np

EXCERPT = 30.0


def load_whole(path: str) -> tuple[np.ndarray, int]:
    """``librosa.load(path)``: the whole file, 22050 Hz mono.

    librosa reads MP4/AAC only through audioread's FFmpeg backend, which is not
    installed here; for those the whole file goes through tagger.media.audio.decode
    with no excerpt, which decodes it with PyAV and resamples with soxr HQ as
    librosa.load does.
    """
    if path.lower().endswith((".m4a", ".mp4", ".aac")):
        from tagger.media.audio import decode

        return decode(path, excerpt=None).samples, 22050
    return librosa.load(path)


def study_features(path: str) -> list[float]:
    """The 57 GTZAN features of the middle 30 s of ``path``, one librosa call each."""
    y, sr = load_whole(path)
    keep = int(EXCERPT * sr)
    if len(y) > keep:
        start = (len(y) - keep) // 2
        y = y[start : start + keep]
    values: list[float] = []

    def add(x: np.ndarray) -> None:
        values.extend((float(np.mean(x)), float(np.var(x))))

    add(librosa.feature.chroma_stft(y=y, sr=sr))
    add(librosa.feature.rms(y=y))
    add(librosa.feature.spectral_centroid(y=y, sr=sr))
    add(librosa.feature.spectral_bandwidth(y=y, sr=sr))
    add(librosa.feature.spectral_rolloff(y=y, sr=sr))
    add(librosa.feature.zero_crossing_rate(y))
    harmonic, percussive = librosa.effects.hpss(y)
    add(harmonic)
    add(percussive)
    tempo, _ = librosa.beat.beat_track(y=y, sr=sr)
    values.append(float(np.atleast_1d(tempo)[0]))
    for row in librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20):
        add(row)
    return values


def warm_up() -> None:
    """Run the pipeline once on 4 s of tones in each pool process, before its first file.

    librosa compiles (or loads from numba's cache) its kernels on first use,
    several CPU-seconds per process; done here, that cost lands before the
    first file finishes, so the steady-state rate is the per-file cost alone.
    It is still part of the end-to-end time.
    """
    import soundfile as sf

    t = np.arange(4 * 22050) / 22050
    y = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + (t % 0.5 < 0.05))).astype(np.float32)
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        sf.write(f.name, y, 22050)
        study_features(f.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    events: list[float] = []  # when each file finished, for the steady-state rate
    rows: list[list[float]] = []
    with Pool(args.jobs, initializer=warm_up) as pool:
        for row in pool.imap_unordered(study_features, args.files, chunksize=1):
            rows.append(row)
            events.append(time.monotonic())
    from tagger.inference.models import load_model

    model = load_model("svc")
    probs = model.backend.predict_proba(np.asarray(rows))
    genres = [model.genres[i] for i in np.argmax(probs, axis=1)]
    json.dump({"files": len(rows), "genres": genres, "events": events}, sys.stdout)


if __name__ == "__main__":
    main()
