"""The array kernels behind :mod:`tagger.analysis.features`: one pass where librosa makes several.

Each function reproduces a librosa computation (same boundaries, same float32
accumulation where it matters) on the frames-major spectrogram ``S[t, f]``.
HPSS's running median and a few hot passes are numba loops, compiled eagerly
for their one signature and cached on disk (:func:`kernels` announces the
one-time compile); the rest is NumPy. Timings: docs/speed.md, "The analysis kernels".
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np

_TINY = float(np.finfo(np.float32).tiny)  # a compile-time constant in the kernels


# -- compiled kernels: plain loops, one signature each ---------------------------------------


def _median_columns_into(x, size, out):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Median filter along axis 0 of C-contiguous ``x`` into ``out``, reflect boundary.

    Every column keeps a sorted window ``wins[:, c]``.  A step removes the
    value leaving the window and inserts the one entering it without
    branches, position by position (w' = max(prev, min(w_del, new))), so the
    loop over columns vectorises.  Rows are indexed as scipy.ndimage's
    ``mode="reflect"`` extends them: d c b a | a b c d | d c b a.
    """
    n, cols = x.shape
    half = size // 2
    period = 2 * n
    wins = np.empty((size, cols), dtype=np.float32)
    prev = np.empty(cols, dtype=np.float32)
    for c in range(cols):  # first windows: insertion sort
        for j in range(size):
            r = (j - half) % period
            if r >= n:
                r = period - 1 - r
            v = x[r, c]
            k = j - 1
            while k >= 0 and wins[k, c] > v:
                wins[k + 1, c] = wins[k, c]
                k -= 1
            wins[k + 1, c] = v
    for c in range(cols):
        out[0, c] = wins[half, c]
    for i in range(1, n):
        a = (i - 1 - half) % period  # the row leaving the window
        if a >= n:
            a = period - 1 - a
        b = (i + half) % period  # the row entering it
        if b >= n:
            b = period - 1 - b
        for c in range(cols):
            prev[c] = -np.inf
        for j in range(size - 1):
            for c in range(cols):
                # the window without the leaving value at position j, then the entering one merged in
                w = wins[j, c]
                d = w if w < x[a, c] else wins[j + 1, c]
                e = x[b, c]
                m = d if d < e else e
                p = prev[c]
                wins[j, c] = p if p > m else m
                prev[c] = d
        for c in range(cols):
            p = prev[c]
            e = x[b, c]
            wins[size - 1, c] = p if p > e else e
        for c in range(cols):
            out[i, c] = wins[half, c]


def _harmonic_part(stft, harm, perc):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    rows, cols = stft.shape
    out = np.empty((rows, cols), dtype=np.complex64)
    for i in range(rows):
        for j in range(cols):
            h = np.float64(harm[i, j])
            p = np.float64(perc[i, j])
            a = h * h
            m = a / (a + p * p) if max(h, p) >= _TINY else 0.5
            out[i, j] = stft[i, j] * np.float32(m)
    return out


def _power_spectrum(stft):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    rows, cols = stft.shape
    out = np.empty((rows, cols), dtype=np.float32)
    for i in range(rows):
        for j in range(cols):
            v = stft[i, j]
            out[i, j] = v.real * v.real + v.imag * v.imag
    return out


def _centroid_bandwidth(mag, freqs, centroid, bandwidth):  # type: ignore[no-untyped-def]  # pragma: no cover
    frames, bins = mag.shape
    for t in range(frames):
        total = 0.0
        m1 = 0.0
        m2 = 0.0
        for f in range(bins):
            v = np.float64(mag[t, f])
            total += v
            m1 += v * freqs[f]
            m2 += v * (freqs[f] * freqs[f])
        if total < _TINY:
            centroid[t] = 0.0
            bandwidth[t] = 0.0
        else:
            c = m1 / total
            centroid[t] = c
            bandwidth[t] = np.sqrt(max(0.0, m2 / total - c * c))


def _rolloff(mag, freqs, roll_percent):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
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


def _frame_rms(padded, frame_length, hop, frames):  # type: ignore[no-untyped-def]  # pragma: no cover
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


#: kernel -> (its one signature, extra numba options); the quickest to compile first, so a cold
#: cache is known (and announced) about 0.8 s in.
_KERNELS: dict[str, tuple[str, dict]] = {
    "_power_spectrum": ("float32[:, ::1](complex64[:, ::1])", {}),
    "_median_columns_into": ("void(float32[:, ::1], int64, float32[:, ::1])", {}),
    # numpy's error model: no zero-division check per element, so the loop vectorises (4.1 -> 2.3 ms a clip,
    # same values; the mask's division never has a zero denominator where its result is used)
    "_harmonic_part": ("complex64[:, ::1](complex64[:, ::1], float32[:, ::1], float32[:, ::1])",
                       {"error_model": "numpy"}),
    "_centroid_bandwidth": ("void(float32[:, ::1], float64[::1], float64[::1], float64[::1])",
                            {"fastmath": {"reassoc", "contract"}}),
    "_rolloff": ("float64[::1](float32[:, ::1], float64[::1], float64)", {}),
    "_frame_rms": ("float64[::1](float32[::1], int64, int64, int64)", {}),
}
#: What compiling them all takes on the reference machine (2 cores, docs/speed.md): 3.5 to 4 s of CPU.
COMPILE_SECONDS = 4
ANNOUNCEMENT = f"preparing the analysis (once, ~{COMPILE_SECONDS} s)"


@functools.cache
def kernels() -> SimpleNamespace:
    """The compiled kernels, by name without the underscore: compiled, or loaded from numba's cache.

    Importing numba waits until here, so importing this module costs
    nothing.  The fork server calls this once (:func:`tagger.inference.worker.warm_up`)
    and every worker forked from it has the machine code.  When the first
    kernel was not in the cache, the rest are not either: the wait is
    announced on stderr (:func:`announce`).
    """
    from numba import njit

    compiled = {}
    for name, (signature, options) in _KERNELS.items():
        dispatcher = njit(signature, cache=True, nogil=True, **options)(globals()[name])
        if not compiled and dispatcher.stats.cache_misses:
            announce()
        compiled[name.lstrip("_")] = dispatcher
    return SimpleNamespace(**compiled)


def announce() -> None:
    """Tell the user why the first scan pauses, on a line of its own even under a progress bar."""
    import sys

    clear = "\r\x1b[2K" if sys.stderr.isatty() else ""  # the bar, if any, redraws on the next line
    print(f"{clear}{ANNOUNCEMENT}", file=sys.stderr, flush=True)


def prepare() -> None:
    """Compile the kernels now (or load them from the cache): what the first analysis would otherwise do."""
    kernels()


# -- the kernels' entry points -------------------------------------------------------------


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def median_along_columns(x: np.ndarray, size: int) -> np.ndarray:
    """Median filter of odd ``size`` along axis 0 of a 2-D array (float32 result).

    Equals ``scipy.ndimage.median_filter(x, size=(size, 1), mode="reflect")``,
    many times faster (docs/speed.md).
    """
    x = _f32(x)
    out = np.empty_like(x)
    if x.size:
        kernels().median_columns_into(x, size, out)
    return out


def median_along_rows(x: np.ndarray, size: int, block: int = 64) -> np.ndarray:
    """Median filter of odd ``size`` along axis 1, reflect boundary (float32 result).

    Equals ``scipy.ndimage.median_filter(x, size=(1, size), mode="reflect")``.
    Rows are filtered ``block`` at a time through a transposed tile that
    stays in cache, so the column kernel's vectorised loop does the work.
    """
    x = np.asarray(x, dtype=np.float32)
    out = np.empty_like(x)
    if not x.size:
        return out
    kernel = kernels().median_columns_into
    for r0 in range(0, x.shape[0], block):
        tile = np.ascontiguousarray(x[r0 : r0 + block].T)
        res = np.empty_like(tile)
        kernel(tile, size, res)
        out[r0 : r0 + block] = res.T
    return out


def harmonic_part(stft: np.ndarray, harm: np.ndarray, perc: np.ndarray) -> np.ndarray:
    """``stft`` times the harmonic soft mask of librosa.decompose.hpss (power 2, margin 1).

    The mask is harm^2 / (harm^2 + perc^2), in float64 so squares of tiny
    magnitudes cannot underflow; where both medians are below float32
    ``tiny`` it is 0.5, as librosa's ``softmask(split_zeros=True)`` makes it.
    The percussive part is ``stft`` minus this: the two masks sum to one.
    """
    return kernels().harmonic_part(np.ascontiguousarray(stft, dtype=np.complex64), _f32(harm), _f32(perc))


def power_spectrum(stft: np.ndarray) -> np.ndarray:
    """``abs(stft) ** 2`` in float32 without the square root."""
    return kernels().power_spectrum(np.ascontiguousarray(stft, dtype=np.complex64))


def centroid_bandwidth(mag: np.ndarray, freqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame spectral centroid and bandwidth (p=2) of ``mag[t, f]``, as librosa's.

    bandwidth^2 = E[f^2] - centroid^2 under the frame's normalised magnitude;
    an all-zero frame gives 0 Hz for both, as librosa leaves it unnormalised.
    """
    centroid, bandwidth = np.empty(len(mag)), np.empty(len(mag))
    kernels().centroid_bandwidth(_f32(mag), np.ascontiguousarray(freqs, dtype=np.float64), centroid, bandwidth)
    return centroid, bandwidth


def rolloff(mag: np.ndarray, freqs: np.ndarray, roll_percent: float) -> np.ndarray:
    """Per-frame spectral roll-off, as librosa.feature.spectral_rolloff.

    The cumulative sum is sequential float32, as numpy's in librosa, so the
    chosen bin is the same.
    """
    return kernels().rolloff(_f32(mag), np.ascontiguousarray(freqs, dtype=np.float64), float(roll_percent))


def frame_rms(padded: np.ndarray, frame_length: int, hop: int, frames: int) -> np.ndarray:
    """Root mean square of each frame of an already centre-padded float32 signal.

    From a float64 running sum of squares: one pass over the samples instead
    of four (frames overlap by 75%); an all-zero frame still gives exactly 0.
    """
    return kernels().frame_rms(_f32(padded), frame_length, hop, frames)


# -- NumPy: as fast as compiled loops, or within 2 ms a clip: not worth compiling -------------


def frame_zcr(padded: np.ndarray, frame_length: int, hop: int, frames: int, threshold: float) -> np.ndarray:
    """Zero-crossing rate per frame, as librosa.feature.zero_crossing_rate counts it.

    Values within +-``threshold`` count as positive zero; the first sample of
    each frame never counts (``pad=False``); the rate divides by the frame length.
    """
    negative = padded < -np.float32(threshold)
    changes = np.flatnonzero(negative[1:] != negative[:-1]) + 1  # positions whose sign differs from the last
    starts = np.arange(frames) * hop
    counted = np.searchsorted(changes, starts + frame_length) - np.searchsorted(changes, starts + 1)
    return counted / frame_length


def windowed_frames(y: np.ndarray, window: np.ndarray, hop: int, count: int) -> np.ndarray:
    """Frames of ``y`` centred with reflect padding, times ``window``: (count, len(window)).

    What librosa.stft(center=True, pad_mode="reflect") feeds its FFT.
    """
    n_fft = window.shape[0]
    padded = np.pad(y, n_fft // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:count]
    return np.multiply(frames, window, dtype=np.float32)


def overlap_add(frames: np.ndarray, window: np.ndarray, hop: int, scale: np.ndarray,
                offset: int, length: int, *, overwrite: bool = False) -> np.ndarray:
    """Windowed overlap-add of inverse-FFT frames, scaled, samples [offset, offset + length).

    With ``scale`` the reciprocal window sum-square this is the inverse STFT
    of librosa.istft; ``offset`` drops the centring padding.  Frames are
    added in time order at every sample, as a frame-by-frame loop would.
    With ``overwrite`` a float32 C-contiguous ``frames`` is windowed in place,
    which spares a second copy of the frames.
    """
    count, n_fft = frames.shape
    total = np.zeros(hop * (count - 1) + n_fft, dtype=np.float32)
    if overwrite and frames.dtype == np.float32 and frames.flags.writeable and frames.flags.c_contiguous:
        windowed = np.multiply(frames, window, out=frames)
    else:
        windowed = np.multiply(frames, window, dtype=np.float32)
    if n_fft % hop == 0:
        parts = n_fft // hop
        blocks = total.reshape(-1, hop)  # (count - 1 + parts, hop)
        pieces = windowed.reshape(count, parts, hop)
        for j in reversed(range(parts)):  # block b gets frame b - j: earliest frame first
            blocks[j : j + count] += pieces[:, j]
    else:  # pragma: no cover - only for hops that do not divide the FFT size
        for t in range(count):
            total[t * hop : t * hop + n_fft] += windowed[t]
    return total[offset : offset + length] * scale[offset : offset + length]


def banded_product(power: np.ndarray, weights: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """``power @ weights.T`` for a filter bank whose rows are zero outside [start, stop).

    A mel bank has about two non-zero weights per FFT bin, so one product per
    filter over its own bins does a 65th of the dense product's multiply-adds
    (frames x filters out).
    """
    out = np.empty((power.shape[0], weights.shape[0]), dtype=np.float32)
    for m, (start, stop) in enumerate(zip(starts.tolist(), stops.tolist())):
        out[:, m] = power[:, start:stop] @ weights[m, start:stop]
    return out


def onset_median(mel_db: np.ndarray) -> np.ndarray:
    """Median over bands of the positive first difference in time of ``mel_db[t, band]``.

    librosa.onset.onset_strength with ``aggregate=np.median`` (lag 1, no
    reference max filter), before its centring shift.
    """
    flux = np.maximum(np.float32(0.0), np.diff(mel_db, axis=0)).astype(np.float32, copy=False)
    return np.median(flux, axis=1).astype(np.float32, copy=False)
