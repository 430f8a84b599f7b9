"""librosa's mel and chroma filter banks, in NumPy, so the analysis never imports librosa.

librosa builds these with plain NumPy too, but importing the modules that
hold them compiles librosa's numba kernels (zero crossings, local maxima,
pitch interpolation, ...), a long wait after installing and a slower start
of every fork server (docs/speed.md).  The definitions below
are librosa 0.10/0.11's (``librosa.filters.mel`` with Slaney's mel scale and
normalisation, ``librosa.filters.chroma`` with its defaults), and
tests/test_features.py checks them against librosa itself.
"""

from __future__ import annotations

import numpy as np

_F_SP = 200.0 / 3  # Slaney's mel scale: linear below 1 kHz ...
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0  # ... logarithmic above


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """librosa.hz_to_mel(htk=False), of an array."""
    hz = np.asarray(hz, dtype=np.float64)
    mels = hz / _F_SP
    high = hz >= _MIN_LOG_HZ
    mels[high] = _MIN_LOG_MEL + np.log(hz[high] / _MIN_LOG_HZ) / _LOGSTEP
    return mels


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """librosa.mel_to_hz(htk=False), of an array."""
    mels = np.asarray(mels, dtype=np.float64)
    hz = _F_SP * mels
    high = mels >= _MIN_LOG_MEL
    hz[high] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels[high] - _MIN_LOG_MEL))
    return hz


def mel(sr: float, n_fft: int, n_mels: int = 128) -> np.ndarray:
    """librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels): (n_mels, 1 + n_fft // 2) float32.

    Triangles between mel-spaced centres from 0 Hz to sr/2, each scaled to
    2 / its width in Hz (Slaney's equal-area normalisation).
    """
    fftfreqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    low, high = hz_to_mel(np.array([0.0, float(sr) / 2]))
    mel_f = mel_to_hz(np.linspace(low, high, n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((n_mels, len(fftfreqs)), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    return weights


def chroma(sr: float, n_fft: int, tuning: float = 0.0, n_chroma: int = 12) -> np.ndarray:
    """librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=tuning): (n_chroma, 1 + n_fft // 2) float32.

    A Gaussian bump per pitch class on every FFT bin's position in octaves,
    each bin's column normalised to unit length, weighted by a Gaussian
    over octaves centred on octave 5 (2 octaves wide), starting at C.
    """
    frequencies = np.linspace(0, sr, n_fft, endpoint=False)[1:]
    a440 = 440.0 * 2.0 ** (tuning / n_chroma)
    frqbins = n_chroma * np.log2(frequencies / (float(a440) / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))  # 0 Hz: 1.5 octaves below bin 1
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    d = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    half = np.round(float(n_chroma) / 2)
    d = np.remainder(d + half + 10 * n_chroma, n_chroma) - half
    wts = np.exp(-0.5 * (2 * d / np.tile(binwidthbins, (n_chroma, 1))) ** 2)
    length = np.sqrt(np.sum(np.abs(wts) ** 2, axis=0, keepdims=True))
    length[length < np.finfo(wts.dtype).tiny] = 1.0
    wts = wts / length
    wts *= np.tile(np.exp(-0.5 * (((frqbins / n_chroma - 5.0) / 2.0) ** 2)), (n_chroma, 1))
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(wts[:, : int(1 + n_fft / 2)], dtype=np.float32)
