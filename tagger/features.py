"""The 57 GTZAN features and 3-second log-mel slices, from one shared STFT.

The features are defined exactly as in the published GTZAN table
(features_30_sec.csv): librosa defaults at 22050 Hz, mean and population
variance over frames.  Every spectral feature, the tempo, the MFCCs and the
log-mel slices derive from a single STFT (n_fft 2048, hop 512) instead of
each librosa call computing its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_FFT = 2048
HOP = 512
N_MELS = 128
SLICE_SECONDS = 3.0
TOP_DB = 80.0

FEATURE_NAMES: tuple[str, ...] = (
    "chroma_stft_mean", "chroma_stft_var", "rms_mean", "rms_var",
    "spectral_centroid_mean", "spectral_centroid_var",
    "spectral_bandwidth_mean", "spectral_bandwidth_var",
    "rolloff_mean", "rolloff_var", "zero_crossing_rate_mean", "zero_crossing_rate_var",
    "harmony_mean", "harmony_var", "perceptr_mean", "perceptr_var", "tempo",
    *(f"mfcc{i}_{stat}" for i in range(1, 21) for stat in ("mean", "var")),
)  # fmt: skip


def preprocessing(sr: int = 22050) -> dict:
    """The analysis parameters a model must have been trained with."""
    return {
        "sr": sr,
        "n_fft": N_FFT,
        "hop_length": HOP,
        "n_mels": N_MELS,
        "slice_seconds": SLICE_SECONDS,
        "slice_frames": slice_frames(sr),
        "log_mel": f"dB re slice max, floor -{TOP_DB:g} dB",
        "features": "gtzan-57",
    }


def slice_frames(sr: int) -> int:
    """STFT frames in one 3 s slice: 130 at 22050 Hz, as in the studies."""
    return 1 + int(SLICE_SECONDS * sr) // HOP


@dataclass
class Analysis:
    """What the backends consume: a feature vector and/or log-mel slices."""

    features: np.ndarray | None  # (57,) float64
    slices: np.ndarray | None  # (n, n_mels, slice_frames) float32


def analyse(y: np.ndarray, sr: int, *, features: bool = True, slices: bool = True) -> Analysis:
    """Compute what was asked for from one STFT of ``y``."""
    import librosa

    y = np.ascontiguousarray(y, dtype=np.float32)
    stft = librosa.stft(y, n_fft=N_FFT, hop_length=HOP)
    magnitude = np.abs(stft)
    power = magnitude**2
    mel_basis = librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=N_MELS)
    mel = mel_basis @ power
    vec = _gtzan_features(y, sr, stft, magnitude, power, mel) if features else None
    sl = log_mel_slices(mel, sr) if slices else None
    return Analysis(vec, sl)


def log_mel_slices(mel: np.ndarray, sr: int) -> np.ndarray:
    """Cut a mel power spectrogram into 3 s slices in dB relative to each slice's peak.

    Slices start every 3 s (rounded to a frame), so a 30 s excerpt gives 10.
    Per-slice peak normalisation makes the input independent of mastering level.
    """
    width = slice_frames(sr)
    step = SLICE_SECONDS * sr / HOP
    count = int((mel.shape[1] - width) // step) + 1 if mel.shape[1] >= width else 0
    out = np.empty((count, mel.shape[0], width), dtype=np.float32)
    for i in range(count):
        start = int(round(i * step))
        start = min(start, mel.shape[1] - width)
        db = 10.0 * np.log10(np.maximum(mel[:, start : start + width], 1e-10))
        db -= db.max()
        out[i] = np.maximum(db, -TOP_DB)
    return out


def _mean_var(x: np.ndarray) -> tuple[float, float]:
    return float(np.mean(x)), float(np.var(x))


def _gtzan_features(
    y: np.ndarray,
    sr: int,
    stft: np.ndarray,
    magnitude: np.ndarray,
    power: np.ndarray,
    mel: np.ndarray,
) -> np.ndarray:
    """The 57 features of features_30_sec.csv, in its column order."""
    import librosa

    freqs = librosa.fft_frequencies(sr=sr, n_fft=N_FFT)
    chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_fft=N_FFT, hop_length=HOP)
    rms = librosa.feature.rms(y=y, frame_length=N_FFT, hop_length=HOP)
    centroid = librosa.feature.spectral_centroid(S=magnitude, sr=sr, freq=freqs)
    bandwidth = librosa.feature.spectral_bandwidth(S=magnitude, sr=sr, freq=freqs, centroid=centroid)
    rolloff = librosa.feature.spectral_rolloff(S=magnitude, sr=sr, freq=freqs)
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=N_FFT, hop_length=HOP)
    harmonic, percussive = _hpss_signals(stft, len(y))
    mel_db = librosa.power_to_db(mel)
    onset = librosa.onset.onset_strength(S=mel_db, sr=sr, hop_length=HOP)
    tempo = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=onset, sr=sr, hop_length=HOP))[0])
    mfcc = librosa.feature.mfcc(S=mel_db, n_mfcc=20)
    values: list[float] = []
    for series in (chroma, rms, centroid, bandwidth, rolloff, zcr, harmonic, percussive):
        values.extend(_mean_var(series))
    values.append(tempo)
    for row in mfcc:
        values.extend(_mean_var(row))
    return np.asarray(values, dtype=np.float64)


def _hpss_signals(stft: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic and percussive waveforms, as librosa.effects.hpss returns them."""
    import librosa

    harm, perc = librosa.decompose.hpss(stft)
    return (
        librosa.istft(harm, hop_length=HOP, n_fft=N_FFT, length=length),
        librosa.istft(perc, hop_length=HOP, n_fft=N_FFT, length=length),
    )
