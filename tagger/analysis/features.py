"""The 57 GTZAN features and 3-second log-mel slices, from one shared STFT.

The features follow the published GTZAN table (features_30_sec.csv: librosa
defaults at 22050 Hz, reflect-padded centred STFT, mean and population
variance over frames, ``beat_track`` tempo); tests/test_features.py measures
the parity. One real FFT feeds every feature, the slices and HPSS (compiled
running medians in :mod:`tagger.analysis.dsp`, percussive = input minus
harmonic), so nothing is transformed twice. Timings: docs/speed.md.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..media.params import SAMPLE_RATE

N_FFT = 2048
HOP = 512
N_MELS = 128
SLICE_SECONDS = 3.0
TOP_DB = 80.0
HPSS_KERNEL = 31
N_MFCC = 20
ROLL_PERCENT = 0.85
ZC_THRESHOLD = 1e-10
TEMPO_WINDOW = 8.0  # seconds of onset envelope per tempogram frame (librosa's ac_size)
TUNING_BAND = (150.0, 4000.0)  # piptrack's default fmin/fmax in librosa.estimate_tuning

FEATURE_NAMES: tuple[str, ...] = (
    "chroma_stft_mean", "chroma_stft_var", "rms_mean", "rms_var",
    "spectral_centroid_mean", "spectral_centroid_var",
    "spectral_bandwidth_mean", "spectral_bandwidth_var",
    "rolloff_mean", "rolloff_var", "zero_crossing_rate_mean", "zero_crossing_rate_var",
    "harmony_mean", "harmony_var", "perceptr_mean", "perceptr_var", "tempo",
    *(f"mfcc{i}_{stat}" for i in range(1, 21) for stat in ("mean", "var")),
)  # fmt: skip


def preprocessing(sr: int = SAMPLE_RATE) -> dict:
    """The analysis parameters a model must have been trained with."""
    return {
        "sr": sr,
        "n_fft": N_FFT,
        "hop_length": HOP,
        "stft": "centred, reflect padding",
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
    """Compute what was asked for from one STFT of ``y`` (mono, at least 2 samples)."""
    stats, sl = _analyse_stretch(y, sr, features=features, slices=slices)
    return Analysis(None if stats is None else stats.vector(), sl)


def analyse_chunks(chunks: Iterable[np.ndarray], sr: int, *, features: bool = True, slices: bool = True,
                   max_slices: int | None = None) -> Analysis:
    """Analyse a long recording chunk by chunk, in memory bounded by one chunk.

    Each chunk is analysed as a clip; the features are the exactly pooled
    statistics of every chunk's frames and the tempo comes from the frame-weighted
    mean tempogram, so only chunk edges and per-chunk references differ from a
    whole-file analysis (tests/test_worker_memory.py). At most ``max_slices``
    evenly spread slices are kept without knowing the length: whenever twice that
    many are held, every other one is dropped.
    """
    stats: FeatureStats | None = None
    kept: list[tuple[int, np.ndarray]] = []
    seen, stride = 0, 1
    for y in chunks:
        part, sl = _analyse_stretch(y, sr, features=features, slices=slices)
        if part is not None:
            stats = part if stats is None else stats.merge(part)
        if sl is None:
            continue
        kept += [(seen + i, sl[i].copy()) for i in range((-seen) % stride, len(sl), stride)]
        seen += len(sl)
        while max_slices and len(kept) > 2 * max_slices:
            stride *= 2
            kept = [(g, x) for g, x in kept if g % stride == 0]
    if max_slices and len(kept) > max_slices:
        kept = [kept[i] for i in np.linspace(0, len(kept) - 1, max_slices).round().astype(int)]
    out = None
    if slices:
        out = np.stack([x for _, x in kept]) if kept else np.empty((0, N_MELS, slice_frames(sr)), dtype=np.float32)
    return Analysis(None if stats is None else stats.vector(), out)


def _analyse_stretch(y: np.ndarray, sr: int, *, features: bool, slices: bool
                     ) -> tuple[FeatureStats | None, np.ndarray | None]:
    """Feature statistics and/or log-mel slices of one stretch of audio, from one STFT."""
    if not (features or slices):
        return None, None
    from . import dsp

    y = np.ascontiguousarray(y, dtype=np.float32)
    stft = _stft(y)
    power = dsp.power_spectrum(stft)
    mel = dsp.banded_product(power, *_mel_bank(sr)).T  # (n_mels, frames), a view
    stats = _gtzan_stats(y, sr, stft, power, mel) if features else None
    sl = log_mel_slices(mel, sr) if slices else None
    return stats, sl


@dataclass
class FeatureStats:
    """What the 57 features are computed from: per series, its count, mean and population variance.

    Kept apart from the final vector so the statistics of consecutive chunks
    of one recording can be pooled exactly (:meth:`merge`).  Series 0-7 are
    chroma, rms, centroid, bandwidth, roll-off, zero crossings (frames) and
    the harmonic and percussive waveforms (samples); then the 20 MFCCs over
    frames; the tempo comes from the mean tempogram.
    """

    sr: int
    counts: np.ndarray  # (8,) values per series
    means: np.ndarray  # (8,)
    variances: np.ndarray  # (8,)
    mfcc_frames: int
    mfcc_means: np.ndarray  # (N_MFCC,)
    mfcc_vars: np.ndarray  # (N_MFCC,)
    tempogram: np.ndarray  # mean over its frames
    tempo_frames: int

    def merge(self, other: FeatureStats) -> FeatureStats:
        """The statistics of both stretches together."""
        counts, means, variances = _pool(self.counts, self.means, self.variances,
                                         other.counts, other.means, other.variances)
        frames, mfcc_means, mfcc_vars = _pool(self.mfcc_frames, self.mfcc_means, self.mfcc_vars,
                                              other.mfcc_frames, other.mfcc_means, other.mfcc_vars)
        t = self.tempo_frames + other.tempo_frames
        tempogram = (self.tempogram * self.tempo_frames + other.tempogram * other.tempo_frames) / max(t, 1)
        return FeatureStats(self.sr, counts, means, variances, int(frames), mfcc_means, mfcc_vars, tempogram, t)

    def vector(self) -> np.ndarray:
        """The 57 features of features_30_sec.csv, in its column order."""
        values: list[float] = []
        for mean, var in zip(self.means.tolist(), self.variances.tolist()):
            values.extend((mean, var))
        values.append(_tempo_from(self.tempogram, self.sr))
        values.extend(np.column_stack([self.mfcc_means, self.mfcc_vars]).ravel())
        return np.asarray(values, dtype=np.float64)


def _pool(n1: Any, m1: np.ndarray, v1: np.ndarray, n2: Any, m2: np.ndarray, v2: np.ndarray) -> tuple[Any, Any, Any]:
    """Count, mean and population variance of two groups together (Chan et al.'s pairwise update)."""
    n = n1 + n2
    delta = m2 - m1
    mean = m1 + delta * (n2 / n)
    var = (v1 * n1 + v2 * n2 + delta**2 * (n1 * n2 / n)) / n
    return n, mean, var


def log_mel_slices(mel: np.ndarray, sr: int) -> np.ndarray:
    """Cut a mel power spectrogram into 3 s slices in dB relative to each slice's peak.

    Slices start every 3 s (rounded to a frame); the last may start one frame
    early to fit, so a 30 s excerpt (1292 frames) gives 10, as a 30.01 s GTZAN
    clip does.  Per-slice peak normalisation makes the input independent of
    mastering level.
    """
    width = slice_frames(sr)
    step = SLICE_SECONDS * sr / HOP
    count = int((mel.shape[1] - width + 1) // step) + 1 if mel.shape[1] >= width else 0
    out = np.empty((count, mel.shape[0], width), dtype=np.float32)
    for i in range(count):
        start = int(round(i * step))
        start = min(start, mel.shape[1] - width)
        db = 10.0 * np.log10(np.maximum(mel[:, start : start + width], 1e-10))
        db -= db.max()
        out[i] = np.maximum(db, -TOP_DB)
    return out


@functools.lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    """librosa's default window, periodic Hann, in float32: ``scipy.signal.get_window("hann", n)``.

    Computed as scipy computes it (a symmetric window one longer, cut), so
    the values are the same bits; importing scipy.signal for it cost every
    scan's worker start-up about a second (it imports scipy.stats).
    """
    if n <= 1:
        return np.ones(n, dtype=np.float32)
    angles = np.linspace(-np.pi, np.pi, n + 1)
    window = np.zeros(n + 1)
    window += 0.5 * np.cos(0 * angles)
    window += 0.5 * np.cos(angles)
    return window[:n].astype(np.float32)


def _window() -> np.ndarray:
    return _hann(N_FFT)


@functools.lru_cache(maxsize=8)
def _mel_bank(sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """librosa's mel filters and each filter's non-zero bin range."""
    from . import filterbanks

    weights = filterbanks.mel(sr, N_FFT, N_MELS)
    nonzero = weights != 0
    starts = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), 0)
    stops = np.where(nonzero.any(axis=1), weights.shape[1] - nonzero[:, ::-1].argmax(axis=1), 0)
    return weights, starts.astype(np.int64), stops.astype(np.int64)


@functools.lru_cache(maxsize=8)
def _freqs(sr: int) -> np.ndarray:
    return np.fft.rfftfreq(N_FFT, 1.0 / sr)


@functools.lru_cache(maxsize=256)  # tuning lies on a 0.01 grid: few distinct banks
def _chroma_bank(sr: int, tuning: float) -> np.ndarray:
    from . import filterbanks

    return np.ascontiguousarray(filterbanks.chroma(sr, N_FFT, tuning).T)


@functools.lru_cache(maxsize=1)
def _dct_matrix() -> np.ndarray:
    import scipy.fft

    return scipy.fft.dct(np.eye(N_MELS), type=2, norm="ortho", axis=0)[:N_MFCC]


def _stft(y: np.ndarray) -> np.ndarray:
    """librosa.stft(y, center=True, pad_mode="reflect"), frames-major: (frames, 1 + N_FFT // 2)."""
    import scipy.fft

    from . import dsp

    frames = dsp.windowed_frames(y, _window(), HOP, 1 + len(y) // HOP)
    return scipy.fft.rfft(frames, axis=1, overwrite_x=True)


def _istft(stft: np.ndarray, length: int) -> np.ndarray:
    """librosa.istft(stft.T, length=length) for a frames-major STFT."""
    import scipy.fft

    from . import dsp

    frames = scipy.fft.irfft(stft, n=N_FFT, axis=1)
    scale = _inverse_window_sumsquare(stft.shape[0])
    out = dsp.overlap_add(frames, _window(), HOP, scale, N_FFT // 2, min(length, len(scale) - N_FFT // 2),
                           overwrite=True)
    if len(out) < length:
        out = np.concatenate([out, np.zeros(length - len(out), dtype=np.float32)])
    return out


@functools.lru_cache(maxsize=16)
def _inverse_window_sumsquare(count: int) -> np.ndarray:
    """1 / the summed squared windows of ``count`` frames (1 where that is ~0), as istft divides."""
    total = np.zeros(N_FFT + HOP * (count - 1), dtype=np.float32)
    square = _window() ** 2
    for t in range(count):
        total[t * HOP : t * HOP + N_FFT] += square
    nonzero = total > np.finfo(np.float32).tiny
    return np.where(nonzero, 1.0 / np.where(nonzero, total, 1.0), 1.0).astype(np.float32)


def _mean_var(x: np.ndarray) -> tuple[float, float]:
    return float(np.mean(x)), float(np.var(x))


def _gtzan_stats(y: np.ndarray, sr: int, stft: np.ndarray, power: np.ndarray, mel: np.ndarray) -> FeatureStats:
    """The statistics behind the 57 features of features_30_sec.csv (:meth:`FeatureStats.vector`)."""
    from . import dsp

    count = stft.shape[0]
    magnitude = np.sqrt(power)
    freqs = _freqs(sr)
    chroma = _chroma(power, sr)
    rms = dsp.frame_rms(np.pad(y, N_FFT // 2, mode="reflect"), N_FFT, HOP, count)
    zcr = dsp.frame_zcr(np.pad(y, N_FFT // 2, mode="edge"), N_FFT, HOP, count, ZC_THRESHOLD)
    centroid, bandwidth = dsp.centroid_bandwidth(magnitude, freqs)
    rolloff = dsp.rolloff(magnitude, freqs, ROLL_PERCENT)
    harmonic = _harmonic(y, stft, magnitude)
    mel_db = _power_to_db(mel)
    tempogram = _mean_tempogram(_onset_envelope(mel_db), sr)
    mfcc = _dct_matrix() @ mel_db
    series = (chroma, rms, centroid, bandwidth, rolloff, zcr, harmonic, y - harmonic)
    moments = np.array([_mean_var(x) for x in series])
    return FeatureStats(sr, np.array([x.size for x in series], dtype=np.float64), moments[:, 0], moments[:, 1],
                        mfcc.shape[1], mfcc.mean(axis=1), mfcc.var(axis=1), tempogram, mel_db.shape[1])


def _harmonic(y: np.ndarray, stft: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """The harmonic waveform of librosa.effects.hpss (kernel 31, power 2, margin 1)."""
    from . import dsp

    harm = dsp.median_along_columns(magnitude, HPSS_KERNEL)  # along time
    perc = dsp.median_along_rows(magnitude, HPSS_KERNEL)  # along frequency
    return _istft(dsp.harmonic_part(stft, harm, perc), len(y))


def _tempo(mel_db: np.ndarray, sr: int) -> float:
    """Tempo as librosa.beat.beat_track estimates it: median-aggregated onset strength.

    The tempogram (windowed autocorrelation of the onset envelope, max-normalised
    per frame) is computed frames-major and averaged here; librosa applies its
    prior to the average (:meth:`FeatureStats.vector` does the same).
    """
    return _tempo_from(_mean_tempogram(_onset_envelope(mel_db), sr), sr)


def _tempo_from(tempogram: np.ndarray, sr: int) -> float:
    """librosa.feature.tempo(tg=...): the lag whose autocorrelation, under a log-normal prior, is largest.

    The prior is centred on 120 BPM with a standard deviation of one octave,
    and tempi from 320 BPM up are ruled out (librosa's defaults).
    """
    lags = np.arange(1.0, len(tempogram))
    bpms = np.concatenate([[np.inf], 60.0 * sr / (HOP * lags)])
    with np.errstate(divide="ignore"):
        logprior = -0.5 * (np.log2(bpms) - np.log2(120.0)) ** 2
    logprior[: int(np.argmax(bpms < 320.0))] = -np.inf
    return float(bpms[np.argmax(np.log1p(1e6 * tempogram) + logprior)])


def _power_to_db(power: np.ndarray) -> np.ndarray:
    """librosa.power_to_db(power, top_db=TOP_DB): dB re 1, floored at the peak minus TOP_DB."""
    db = 10.0 * np.log10(np.maximum(1e-10, power))
    return np.maximum(db, db.max() - TOP_DB)


def _onset_envelope(mel_db: np.ndarray) -> np.ndarray:
    """librosa.onset.onset_strength(S=mel_db, aggregate=np.median): centred spectral flux."""
    from . import dsp

    lag_and_centre = 1 + N_FFT // (2 * HOP)
    flux = dsp.onset_median(np.ascontiguousarray(mel_db.T))
    return np.concatenate([np.zeros(lag_and_centre, dtype=flux.dtype), flux])[: mel_db.shape[1]]


def _mean_tempogram(onset: np.ndarray, sr: int) -> np.ndarray:
    """The frame average of librosa.feature.tempogram(onset_envelope=onset) (8 s window).

    librosa divides each frame's autocorrelation by its largest value, which
    is the lag-0 one (the frame's energy: no lag correlates more).  The
    inverse FFT is linear, so the mean of the normalised autocorrelations is
    one inverse FFT of the energy-weighted mean power spectrum: one
    transform instead of one per frame (a frame whose energy is below
    ``tiny`` keeps its unnormalised autocorrelation, as librosa leaves it).
    """
    import scipy.fft

    from . import dsp

    win = int(TEMPO_WINDOW * sr) // HOP  # librosa.time_to_frames
    padded = np.pad(onset.astype(np.float32), win // 2, mode="linear_ramp", end_values=0)
    n_fft = scipy.fft.next_fast_len(2 * win - 1, real=True)
    windowed = np.zeros((len(onset), n_fft), dtype=np.float32)  # zero tail: linear, not circular
    windowed[:, :win] = np.lib.stride_tricks.sliding_window_view(padded, win)[: len(onset)]
    windowed[:, :win] *= _hann(win)
    power = dsp.power_spectrum(scipy.fft.rfft(windowed, axis=1, overwrite_x=True))
    energy = (power @ _parseval(n_fft)).astype(np.float64)  # the lag-0 autocorrelation, from the spectrum
    tiny = np.finfo(np.float32).tiny
    weights = np.where(energy >= tiny, 1.0 / np.where(energy > 0, energy, 1.0), 1.0) / max(len(onset), 1)
    return scipy.fft.irfft(weights @ power, n=n_fft)[:win]


@functools.lru_cache(maxsize=4)
def _parseval(n_fft: int) -> np.ndarray:
    """``c`` such that ``power @ c`` is the sum of squares of the real signal of ``n_fft`` samples."""
    c = np.full(n_fft // 2 + 1, 2.0 / n_fft, dtype=np.float32)
    c[0] = 1.0 / n_fft
    if n_fft % 2 == 0:
        c[-1] = 1.0 / n_fft
    return c


def _chroma(power: np.ndarray, sr: int) -> np.ndarray:
    """librosa.feature.chroma_stft(S=power): tuning estimated, then max-normalised per frame."""
    raw = power @ _chroma_bank(sr, _tuning(power, sr))  # (frames, 12)
    peak = raw.max(axis=1, keepdims=True)
    peak[peak < np.finfo(raw.dtype).tiny] = 1.0
    return raw / peak


def _tuning(power: np.ndarray, sr: int) -> float:
    """librosa.estimate_tuning(S=power), computed only on the bins piptrack can keep.

    piptrack keeps local maxima between 150 and 4000 Hz that exceed a tenth
    of their frame's peak; the tuning is the histogram mode (0.01 bins) of
    their deviation from equal temperament, for those at least as strong as
    the median.  Same float32 arithmetic as librosa, on a third of the bins.
    """
    freqs = _freqs(sr)
    band = np.flatnonzero((TUNING_BAND[0] <= freqs) & (freqs < min(TUNING_BAND[1], sr / 2)))
    lo, hi = int(band[0]), int(band[-1]) + 1
    if lo < 1 or hi > power.shape[1] - 1:  # pragma: no cover - only for exotic sample rates
        import librosa

        return float(librosa.estimate_tuning(S=power.T, sr=sr, n_fft=N_FFT))
    floor = np.float32(0.1) * power.max(axis=1, keepdims=True)
    s = power[:, lo - 1 : hi + 1]
    below, mid, above = s[:, :-2], s[:, 1:-1], s[:, 2:]
    z = s * (s > floor)
    peaks = (z[:, 1:-1] > z[:, :-2]) & (z[:, 1:-1] >= z[:, 2:])
    frame_idx, bin_idx = np.nonzero(peaks)
    if len(bin_idx) == 0:
        return 0.0
    a = above[frame_idx, bin_idx] + below[frame_idx, bin_idx] - 2 * mid[frame_idx, bin_idx]
    b = (above[frame_idx, bin_idx] - below[frame_idx, bin_idx]) / 2
    shift = np.where(np.abs(b) >= np.abs(a), np.float32(0.0), -b / np.where(a == 0, np.float32(1.0), a))
    pitch = ((bin_idx + lo + shift) * float(sr) / N_FFT).astype(np.float32)
    mag = mid[frame_idx, bin_idx] + np.float32(0.5) * b * shift
    strong = pitch[(mag >= np.median(mag)) & (pitch > 0)]
    if len(strong) == 0:
        return 0.0
    octs = np.log2(strong / (float(440.0) / 16))
    residual = np.mod(12 * octs, 1.0)
    residual[residual >= 0.5] -= 1.0
    edges = np.linspace(-0.5, 0.5, 101)
    counts, _ = np.histogram(residual, edges)
    return float(edges[np.argmax(counts)])
