"""Compiled kernels behind :mod:`tagger.features`: one pass where librosa makes several.

Each function reproduces a librosa computation exactly (same boundary
handling, same float32 accumulation where the result depends on it) but
works on the frames-major spectrogram ``S[t, f]`` that one real FFT yields,
without temporaries.  The running medians are what make HPSS affordable:
scipy's generic 2-D rank filter takes about 0.5 s per 30 s clip for each of
the two median filters HPSS needs; a sorted window per column, updated
without branches so that it vectorises across columns, takes about 16 ms.

Kernels are compiled by numba on first use and cached on disk
(``cache=True``); :func:`tagger.worker.warm_up` compiles them before
workers fork.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_F32_TINY = np.float32(np.finfo(np.float32).tiny)


@njit(cache=True, inline="always")
def _reflect(i: int, n: int) -> int:
    """scipy.ndimage ``mode="reflect"`` index: d c b a | a b c d | d c b a."""
    period = 2 * n
    i %= period
    if i < 0:
        i += period
    return i if i < n else period - 1 - i


@njit(cache=True, nogil=True)
def _median_columns_into(x: np.ndarray, size: int, out: np.ndarray) -> None:
    """Median filter along axis 0 of C-contiguous ``x`` into ``out``, reflect boundary.

    Every column keeps a sorted window ``wins[:, c]``.  A step removes the
    value leaving the window and inserts the one entering it without
    branches, position by position (w' = max(prev, min(w_del, new))), so the
    loop over columns vectorises: about 16 ms for a 1293 x 1025 spectrogram.
    """
    n, cols = x.shape
    half = size // 2
    wins = np.empty((size, cols), dtype=x.dtype)
    prev = np.empty(cols, dtype=x.dtype)
    lowest = x.dtype.type(-np.inf)
    for c in range(cols):  # first windows: insertion sort
        for j in range(size):
            v = x[_reflect(j - half, n), c]
            k = j - 1
            while k >= 0 and wins[k, c] > v:
                wins[k + 1, c] = wins[k, c]
                k -= 1
            wins[k + 1, c] = v
    out[0, :] = wins[half]
    for i in range(1, n):
        leaving = x[_reflect(i - 1 - half, n)]
        entering = x[_reflect(i + half, n)]
        prev[:] = lowest
        for j in range(size - 1):
            wj = wins[j]
            wnext = wins[j + 1]
            for c in range(cols):
                # the window without ``leaving`` at position j, then ``entering`` merged in
                d = wj[c] if wj[c] < leaving[c] else wnext[c]
                m = d if d < entering[c] else entering[c]
                p = prev[c]
                wj[c] = p if p > m else m
                prev[c] = d
        wlast = wins[size - 1]
        for c in range(cols):
            p = prev[c]
            wlast[c] = p if p > entering[c] else entering[c]
        out[i, :] = wins[half]


@njit(cache=True, nogil=True)
def median_along_columns(x: np.ndarray, size: int) -> np.ndarray:
    """Median filter of odd ``size`` along axis 0 of a C-contiguous 2-D array.

    Equals ``scipy.ndimage.median_filter(x, size=(size, 1), mode="reflect")``.
    """
    out = np.empty_like(x)
    _median_columns_into(x, size, out)
    return out


@njit(cache=True, nogil=True)
def median_along_rows(x: np.ndarray, size: int, block: int = 64) -> np.ndarray:
    """Median filter of odd ``size`` along axis 1, reflect boundary.

    Equals ``scipy.ndimage.median_filter(x, size=(1, size), mode="reflect")``.
    Rows are filtered ``block`` at a time through a transposed tile that
    stays in cache, so the column kernel's vectorised loop does the work.
    """
    rows, n = x.shape
    out = np.empty_like(x)
    for r0 in range(0, rows, block):
        b = min(block, rows - r0)
        tile = np.empty((n, b), dtype=x.dtype)
        for r in range(b):
            for c in range(n):
                tile[c, r] = x[r0 + r, c]
        res = np.empty((n, b), dtype=x.dtype)
        _median_columns_into(tile, size, res)
        for r in range(b):
            for c in range(n):
                out[r0 + r, c] = res[c, r]
    return out


@njit(cache=True, nogil=True)
def harmonic_part(stft: np.ndarray, harm: np.ndarray, perc: np.ndarray) -> np.ndarray:
    """``stft`` times the harmonic soft mask of librosa.decompose.hpss (power 2, margin 1).

    The mask is harm^2 / (harm^2 + perc^2), in float64 so squares of tiny
    magnitudes cannot underflow; where both medians are below float32
    ``tiny`` it is 0.5, as librosa's ``softmask(split_zeros=True)`` makes it.
    The percussive part is ``stft`` minus this: the two masks sum to one.
    """
    out = np.empty_like(stft)
    rows, cols = stft.shape
    for i in range(rows):
        for j in range(cols):
            h = np.float64(harm[i, j])
            p = np.float64(perc[i, j])
            a = h * h
            total = a + p * p
            m = a / total if max(h, p) >= _F32_TINY else 0.5
            out[i, j] = stft[i, j] * np.float32(m)
    return out


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def centroid_bandwidth(mag: np.ndarray, freqs: np.ndarray) -> tuple:
    """Per-frame spectral centroid and bandwidth (p=2) of ``mag[t, f]``, as librosa's.

    bandwidth^2 = E[f^2] - centroid^2 under the frame's normalised magnitude;
    an all-zero frame gives 0 Hz for both, as librosa leaves it unnormalised.
    """
    frames, bins = mag.shape
    centroid = np.empty(frames)
    bandwidth = np.empty(frames)
    for t in range(frames):
        total = 0.0
        m1 = 0.0
        m2 = 0.0
        for f in range(bins):
            v = np.float64(mag[t, f])
            total += v
            m1 += v * freqs[f]
            m2 += v * (freqs[f] * freqs[f])
        if total < _F32_TINY:
            centroid[t] = 0.0
            bandwidth[t] = 0.0
        else:
            c = m1 / total
            centroid[t] = c
            bandwidth[t] = np.sqrt(max(0.0, m2 / total - c * c))
    return centroid, bandwidth


@njit(cache=True, nogil=True)
def rolloff(mag: np.ndarray, freqs: np.ndarray, roll_percent: float) -> np.ndarray:
    """Per-frame spectral roll-off, as librosa.feature.spectral_rolloff.

    The cumulative sum is sequential float32, as numpy's in librosa, so the
    chosen bin is the same.
    """
    frames, bins = mag.shape
    out = np.empty(frames)
    roll = np.float32(roll_percent)
    for t in range(frames):
        acc = np.float32(0.0)
        for f in range(bins):
            acc += mag[t, f]
        threshold = roll * acc
        acc = np.float32(0.0)
        k = 0
        for f in range(bins):
            acc += mag[t, f]
            if not acc < threshold:
                k = f
                break
        out[t] = freqs[k]
    return out


@njit(cache=True, nogil=True)
def frame_rms(padded: np.ndarray, frame_length: int, hop: int, frames: int) -> np.ndarray:
    """Root mean square of each frame of an already centre-padded signal.

    From a float64 running sum of squares: one pass over the samples instead
    of four (frames overlap by 75%); an all-zero frame still gives exactly 0.
    """
    n = padded.shape[0]
    sums = np.empty(n + 1)
    sums[0] = 0.0
    acc = 0.0
    for i in range(n):
        v = np.float64(padded[i])
        acc += v * v
        sums[i + 1] = acc
    out = np.empty(frames)
    for t in range(frames):
        start = t * hop
        out[t] = np.sqrt(max(0.0, sums[start + frame_length] - sums[start]) / frame_length)
    return out


@njit(cache=True, nogil=True)
def frame_zcr(padded: np.ndarray, frame_length: int, hop: int, frames: int, threshold: float) -> np.ndarray:
    """Zero-crossing rate per frame, as librosa.feature.zero_crossing_rate counts it.

    Values within +-``threshold`` count as positive zero; the first sample of
    each frame never counts (``pad=False``); the rate divides by the frame length.
    """
    n = padded.shape[0]
    thr = -np.float32(threshold)
    crossings = np.zeros(n + 1, dtype=np.int64)  # crossings[i]: sign changes at positions < i
    for i in range(1, n):
        change = (padded[i] < thr) != (padded[i - 1] < thr)
        crossings[i + 1] = crossings[i] + change
    out = np.empty(frames)
    for t in range(frames):
        start = t * hop
        out[t] = (crossings[start + frame_length] - crossings[start + 1]) / frame_length
    return out


@njit(cache=True, nogil=True)
def windowed_frames(y: np.ndarray, window: np.ndarray, hop: int, count: int) -> np.ndarray:
    """Frames of ``y`` centred with reflect padding, times ``window``: (count, len(window)).

    What librosa.stft(center=True, pad_mode="reflect") feeds its FFT, built
    without materialising the padded signal.
    """
    n_fft = window.shape[0]
    half = n_fft // 2
    n = y.shape[0]
    out = np.empty((count, n_fft), dtype=np.float32)
    for t in range(count):
        start = t * hop - half
        if start >= 0 and start + n_fft <= n:
            for i in range(n_fft):
                out[t, i] = y[start + i] * window[i]
        else:
            for i in range(n_fft):
                out[t, i] = y[_mirror(start + i, n)] * window[i]
    return out


@njit(cache=True, inline="always")
def _mirror(i: int, n: int) -> int:
    """numpy ``mode="reflect"`` index (edge not repeated): c b | a b c d | c b."""
    period = 2 * n - 2
    i %= period
    if i < 0:
        i += period
    return i if i < n else period - i


@njit(cache=True, nogil=True)
def overlap_add(frames: np.ndarray, window: np.ndarray, hop: int, scale: np.ndarray,
                offset: int, length: int) -> np.ndarray:
    """Windowed overlap-add of inverse-FFT frames, scaled, samples [offset, offset + length).

    With ``scale`` the reciprocal window sum-square this is the inverse STFT
    of librosa.istft; ``offset`` drops the centring padding.
    """
    count, n_fft = frames.shape
    total = np.zeros(hop * (count - 1) + n_fft, dtype=np.float32)
    for t in range(count):
        base = t * hop
        row = frames[t]
        for i in range(n_fft):
            total[base + i] += row[i] * window[i]
    out = np.empty(length, dtype=np.float32)
    for i in range(length):
        out[i] = total[offset + i] * scale[offset + i]
    return out


@njit(cache=True, nogil=True)
def power_spectrum(stft: np.ndarray) -> np.ndarray:
    """``abs(stft) ** 2`` in float32 without the square root."""
    out = np.empty(stft.shape, dtype=np.float32)
    rows, cols = stft.shape
    for i in range(rows):
        for j in range(cols):
            v = stft[i, j]
            out[i, j] = v.real * v.real + v.imag * v.imag
    return out


@njit(cache=True, nogil=True)
def banded_product(power: np.ndarray, weights: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """``power @ weights.T`` for a filter bank whose rows are zero outside [start, stop).

    A mel bank has about two non-zero weights per FFT bin, so this does a
    65th of the multiply-adds of the dense product (frames x filters out).
    """
    frames = power.shape[0]
    filters = weights.shape[0]
    out = np.empty((frames, filters), dtype=np.float32)
    for t in range(frames):
        for m in range(filters):
            acc = np.float32(0.0)
            for f in range(starts[m], stops[m]):
                acc += weights[m, f] * power[t, f]
            out[t, m] = acc
    return out


@njit(cache=True, nogil=True)
def onset_median(mel_db: np.ndarray) -> np.ndarray:
    """Median over bands of the positive first difference in time of ``mel_db[t, band]``.

    librosa.onset.onset_strength with ``aggregate=np.median`` (lag 1, no
    reference max filter), before its centring shift.
    """
    frames, bands = mel_db.shape
    out = np.empty(max(frames - 1, 0), dtype=np.float32)
    buf = np.empty(bands, dtype=np.float32)
    for t in range(1, frames):
        for b in range(bands):
            buf[b] = max(np.float32(0.0), mel_db[t, b] - mel_db[t - 1, b])
        out[t - 1] = np.median(buf)
    return out


@njit(cache=True, nogil=True)
def normalised_mean(rows: np.ndarray, width: int) -> np.ndarray:
    """Mean over rows of ``rows[:, :width]``, each divided by its largest absolute value.

    librosa.util.normalize(norm=inf) leaves a row whose peak is below ``tiny``
    as it is; the mean accumulates in float64.
    """
    count = rows.shape[0]
    out = np.zeros(width)
    tiny = np.finfo(rows.dtype).tiny
    for t in range(count):
        peak = 0.0
        for k in range(width):
            peak = max(peak, abs(rows[t, k]))
        scale = 1.0 / peak if peak >= tiny else 1.0
        for k in range(width):
            out[k] += rows[t, k] * scale
    return out / max(count, 1)
