"""MSD_musicnn (Pons & Serra, ISMIR 2019 LBD) as plain numpy inference.

The pretrained network of the ``musicnn`` package (0.1.0, ISC, (c) Music
Technology Group, Universitat Pompeu Fabra), converted once by
``scripts/convert_musicnn.py`` into ``models/musicnn_msd.npz`` (float32 arrays,
``allow_pickle=False``, so the file cannot run code; batch norms folded).
numpy rather than TensorFlow because, on the workers' one thread, TensorFlow is
barely faster and needs several times the memory. The front end reproduces
musicnn's extractor, float16 rounding and reflect padding included, with the
log taken in float32 (numpy 2 would overflow it). Details: docs/musicnn.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .npz_weights import read_arrays

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # 3 s: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
MIN_SAMPLES = (PATCH_FRAMES - 1) * HOP  # the shortest waveform that yields one patch (2.98 s)
# Patches per track, evenly spaced over the excerpt: see docs/musicnn.md for
# the speed and the embedding change behind this choice.
DEFAULT_PATCHES = 3
WEIGHTS = Path(__file__).parent / "models" / "musicnn_msd.npz"
MTT_WEIGHTS = WEIGHTS.with_name("musicnn_mtt.npz")  # MTT_musicnn: same shapes, MagnaTagATune's tags
FREQ_BLOCK = 8  # output mel bands per matmul in the timbral convolutions (see MusicnnNet._timbral)
FLOAT16_MAX = float(np.finfo(np.float16).max)

# The 50 Last.fm tags of the Million Song Dataset, in the network's output order
# (musicnn/configuration.py MSD_LABELS).
TAGS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock",
    "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental",
    "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental",
    "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy",
    "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop",
    "sad", "House", "happy",
)  # fmt: skip

# The 50 MagnaTagATune tags of MTT_musicnn, in its output order (musicnn/configuration.py MTT_LABELS).
MTT_TAGS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing", "vocals",
    "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop", "soft",
    "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal",
    "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip
# model -> its output tags; the id starts with "musicnn_<model>-".
MODELS: dict[str, tuple[str, ...]] = {"msd": TAGS, "mtt": MTT_TAGS}

# Every array the weights file must hold, with its shape.
SHAPES: dict[str, tuple[int, ...]] = {
    "mel_basis": (N_MELS, N_FFT // 2 + 1),
    "input.scale": (1,), "input.shift": (1,),
    "timbral74.w": (7, 38, 204), "timbral77.w": (7, 67, 204),
    "temporal128.w": (128, 1, 51), "temporal64.w": (64, 1, 51), "temporal32.w": (32, 1, 51),
    "mid1.w": (7, 561, 64), "mid2.w": (7, 64, 64), "mid3.w": (7, 64, 64),
    "dense.w": (1506, 200), "out.w": (200, 50), "out.b": (50,),
    "pool.scale": (1506,), "pool.shift": (1506,),
}  # fmt: skip
for _layer, _n in (("timbral74", 204), ("timbral77", 204), ("temporal128", 51), ("temporal64", 51),
                   ("temporal32", 51), ("mid1", 64), ("mid2", 64), ("mid3", 64), ("dense", 200)):
    SHAPES.update({f"{_layer}.b": (_n,), f"{_layer}.scale": (_n,), f"{_layer}.shift": (_n,)})


class TooShortError(ValueError):
    """The waveform is shorter than one 3 s patch (the caller adds the file name)."""


class MusicnnNet:
    """The MSD_musicnn network: waveform -> mel patches -> (200-d penultimate layer, 50 tag probabilities).

    ``load(model="mtt")`` gives MTT_musicnn: the same architecture and front end trained on
    MagnaTagATune, whose tags (``self.tags``, MTT_TAGS) name classical, opera, sitar, ...
    """

    def __init__(self, arrays: dict[str, np.ndarray], id: str, tags: tuple[str, ...] = TAGS) -> None:
        self.w = arrays
        self.id = id
        self.tags = tags  # the names of the 50 probabilities, in order
        self._window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann, as librosa
        self._mel_t = np.ascontiguousarray(arrays["mel_basis"].T)
        self._banded = {name: _banded(arrays[f"{name}.w"]) for name in ("timbral74", "timbral77")}

    @classmethod
    def load(cls, path: Path | None = None, model: str = "msd") -> MusicnnNet:
        """Read and check the weights; ModelError(path, reason) when missing, corrupt or incomplete.

        ``model`` ("msd" or "mtt", see MODELS) names the default file, the tags and the id's prefix.
        """
        tags = MODELS[model]
        if path is None:  # looked up at call time: WEIGHTS may be patched (tests, a relocated install)
            path = WEIGHTS if model == "msd" else MTT_WEIGHTS
        path = Path(path)
        arrays, data = read_arrays(path, SHAPES, "musicnn")
        settings = {"sr": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP, "n_mels": N_MELS,
                    "patch": PATCH_FRAMES, "stft": "centred reflect", "log": "log10(1e4*f16(S)+1)"}
        digest = hashlib.sha256(data + json.dumps(settings, sort_keys=True).encode()).hexdigest()
        return cls(arrays, f"musicnn_{model}-{digest[:12]}", tags)

    # -- front end ---------------------------------------------------------------

    def mel(self, y: np.ndarray) -> np.ndarray:
        """musicnn's log-compressed mel spectrogram, (frames, 96) float32."""
        return self._log_mel(self._frames(y))

    def patches(self, y16k: np.ndarray, n_patches: int | None = None) -> np.ndarray:
        """(n, 187, 96) float32 patches: all non-overlapping ones, or ``n_patches`` evenly spaced.

        Only the chosen patches' frames are transformed.
        """
        frames = self._frames(y16k)
        chosen = patch_indices((len(frames) - PATCH_FRAMES) // PATCH_FRAMES + 1, n_patches)
        rows = (chosen[:, None] * PATCH_FRAMES + np.arange(PATCH_FRAMES)).ravel()
        return self._log_mel(frames[rows]).reshape(len(chosen), PATCH_FRAMES, N_MELS)

    def _frames(self, y: np.ndarray) -> np.ndarray:
        """The STFT's frames as a view: centred, reflect-padded (librosa 0.7, which musicnn used)."""
        y = mono_waveform(y, MIN_SAMPLES, " (one 3 s patch)")
        return sliding_window_view(np.pad(y, N_FFT // 2, mode="reflect"), N_FFT)[::HOP]

    def _log_mel(self, frames: np.ndarray) -> np.ndarray:
        """Power mel spectrum, rounded to float16 as musicnn did, then log10(10000 S + 1) in float32.

        The float16 values are clipped to float16's range first (a waveform far beyond full
        scale would give inf), and the product is taken in float32: under numpy 2 it would
        stay float16 and overflow to inf for S > 6.55 (numpy 1.x promoted it).
        """
        power = np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2
        S = np.minimum(power.astype(np.float32) @ self._mel_t, FLOAT16_MAX)
        S = S.astype(np.float16).astype(np.float32)
        return np.log10(np.float32(10000) * S + np.float32(1))

    # -- network -----------------------------------------------------------------

    def _norm(self, name: str, z: np.ndarray) -> np.ndarray:
        """ReLU(z + bias) then batch norm, as models.py orders them (BN after the activation)."""
        z += self.w[f"{name}.b"]
        np.maximum(z, 0, out=z)
        z *= self.w[f"{name}.scale"]
        z += self.w[f"{name}.shift"]
        return z

    def _pooled(self, name: str, top: np.ndarray, low: np.ndarray) -> np.ndarray:
        """ReLU, batch norm, max over frequency, from the conv output's max and min over frequency.

        ReLU is monotonic and the batch norm affine per channel, so the max of the result comes
        from max(z) where the scale is positive and from min(z) where it is negative: the
        elementwise work is done on the pooled arrays only.
        """
        return self._norm(name, np.where(self.w[f"{name}.scale"] > 0, top, low))

    def _timbral(self, name: str, xp: np.ndarray) -> np.ndarray:
        """One timbral conv, pooled over frequency (see freq_pooled_conv)."""
        kf = self.w[f"{name}.w"].shape[1]
        top, low = freq_pooled_conv(xp, self._banded[name], kf)
        return self._pooled(name, top, low).reshape(len(xp), PATCH_FRAMES, -1)

    def forward(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, 187, 96) patches -> penultimate layer (n, 200) and tag probabilities (n, 50)."""
        x = np.asarray(patches, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (PATCH_FRAMES, N_MELS):
            raise ValueError(f"expected patches of shape (n, {PATCH_FRAMES}, {N_MELS}), got {x.shape}")
        n, w = len(x), self.w
        x = x * w["input.scale"] + w["input.shift"]

        # front end, timbral: (7 x 38) and (7 x 67) kernels, time padded by 3, max over frequency
        xp = np.pad(x, ((0, 0), (3, 3), (0, 0)))
        front = [self._timbral(name, xp) for name in ("timbral74", "timbral77")]

        # front end, temporal: (k x 1) kernels along time, TF 'same' padding, max over frequency
        xt = np.ascontiguousarray(x.transpose(0, 2, 1))  # (n, 96, 187)
        for name in ("temporal128", "temporal64", "temporal32"):
            k = w[f"{name}.w"][:, 0, :]
            size = len(k)
            xtp = np.pad(xt, ((0, 0), (0, 0), ((size - 1) // 2, size // 2)))
            z = sliding_window_view(xtp, size, axis=2).reshape(-1, size) @ k
            z = z.reshape(n, N_MELS, PATCH_FRAMES, -1)
            front.append(self._pooled(name, z.max(axis=1), z.min(axis=1)))
        front_end = np.concatenate(front, axis=2)  # (n, 187, 561)

        # mid end: three (7 x channels) convolutions over time, the last two residual
        mid = [front_end]
        h = front_end
        for i, name in enumerate(("mid1", "mid2", "mid3")):
            k = w[f"{name}.w"]  # (7, c, 64)
            hp = np.pad(h, ((0, 0), (3, 3), (0, 0)))
            cols = sliding_window_view(hp, 7, axis=1)  # (n, 187, c, 7)
            kk = k.transpose(1, 0, 2).reshape(-1, k.shape[2])  # rows ordered (c, 7) to match
            z = self._norm(name, cols.reshape(n * PATCH_FRAMES, -1) @ kk).reshape(n, PATCH_FRAMES, -1)
            h = z if i == 0 else z + h
            mid.append(h)
        features = np.concatenate(mid, axis=2)  # (n, 187, 753)

        # back end: max and mean over time, interleaved as tf's flatten of (753, 2) does
        pooled = np.stack([features.max(axis=1), features.mean(axis=1)], axis=2).reshape(n, -1)
        pooled = pooled * w["pool.scale"] + w["pool.shift"]
        penultimate = self._norm("dense", pooled @ w["dense.w"])
        logits = penultimate @ w["out.w"] + w["out.b"]
        probs = 1.0 / (1.0 + np.exp(-logits))
        return penultimate, probs.astype(np.float32)

    def __call__(self, y16k: np.ndarray, n_patches: int | None = DEFAULT_PATCHES) -> tuple[np.ndarray, np.ndarray]:
        """One track's embedding (200,) and tag probabilities (50,): means over its patches."""
        penultimate, probs = self.forward(self.patches(y16k, n_patches))
        return penultimate.mean(axis=0), probs.mean(axis=0)


def mono_waveform(y: np.ndarray, min_samples: int, why: str = "") -> np.ndarray:
    """``y`` as float32, or ValueError when it is not mono, TooShortError below ``min_samples`` (16 kHz)."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected a mono waveform, got shape {y.shape}")
    if len(y) < min_samples:
        raise TooShortError(f"too short: {len(y) / SAMPLE_RATE:.2f} s of audio, "
                            f"need at least {min_samples / SAMPLE_RATE:.2f} s{why}")
    return y


def patch_indices(total: int, n_patches: int | None) -> np.ndarray:
    """Which of ``total`` patches to use: all, or the centres of ``n_patches`` equal parts."""
    if n_patches is None or n_patches >= total:
        return np.arange(total)
    if n_patches < 1:
        raise ValueError(f"n_patches must be at least 1, got {n_patches}")
    return (np.arange(n_patches) * 2 + 1) * total // (2 * n_patches)


def freq_pooled_conv(xp: np.ndarray, banded: np.ndarray, kf: int, low: bool = True,
                     block: int = FREQ_BLOCK) -> tuple[np.ndarray, np.ndarray | None]:
    """A (time x freq) conv over mel patches, valid over frequency, as its max (and min) over frequency.

    ``xp`` is (n, frames + kt - 1, bands): patches already padded in time; ``banded`` is the
    kernel as _banded(kernel, block) lays it out. Returns (n * frames, channels) arrays.

    A plain im2col copies every (kt x kf) window of every band, and copying costs as much as
    the multiplication. Here the windows are over time only (kt x bands, one small copy); a
    band-block's input columns are then a strided view BLAS reads in place, multiplied by the
    block's banded weights: a little more arithmetic, much less copying (docs/musicnn.md).
    """
    n, padded, n_bands = xp.shape
    span = block + kf - 1
    kt = banded.shape[0] // span
    channels = banded.shape[1] // block
    frames = padded - kt + 1
    bands = n_bands - kf + 1
    blocks = -(-bands // block)
    width = blocks * block + kf - 1
    xq = np.pad(xp, ((0, 0), (0, 0), (0, width - n_bands)))
    cols = np.ascontiguousarray(sliding_window_view(xq, kt, axis=1)).reshape(n * frames, width * kt)
    top = np.full((len(cols), channels), -np.inf, np.float32)
    bottom = np.full((len(cols), channels), np.inf, np.float32) if low else None
    for j in range(blocks):
        start = j * block * kt
        z = (cols[:, start:start + span * kt] @ banded).reshape(len(cols), block, channels)
        z = z[:, :min(block, bands - j * block)]
        np.maximum(top, z.max(axis=1), out=top)
        if bottom is not None:
            np.minimum(bottom, z.min(axis=1), out=bottom)
    return top, bottom


def _banded(kernel: np.ndarray, block: int = FREQ_BLOCK) -> np.ndarray:
    """A (time x freq) conv kernel as one matmul weight for ``block`` adjacent output bands.

    Input columns are ordered (freq, time) over the block's span of block + kf - 1 bands,
    as the time-window view lays them out; output columns are (band, channel).
    """
    kt, kf, channels = kernel.shape
    span = block + kf - 1
    banded = np.zeros((span, kt, block, channels), np.float32)
    for b in range(block):
        banded[b:b + kf, :, b, :] = kernel.transpose(1, 0, 2)
    return banded.reshape(span * kt, block * channels)


def synthetic_signal(seconds: float = 6.5) -> np.ndarray:
    """A deterministic test signal (chords, a beat and noise) the parity test regenerates."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    y = np.zeros_like(t)
    for i, f in enumerate((110.0, 220.0, 277.2, 329.6, 440.0, 1318.5)):
        y += 0.08 / (1 + i % 3) * np.sin(2 * np.pi * f * t * (1 + 0.01 * np.sin(2 * np.pi * 0.5 * t)))
    beat = np.exp(-30 * ((t * 2.0) % 1.0))  # 120 bpm decaying clicks
    y += 0.3 * beat * np.sin(2 * np.pi * 60 * t)
    y += 0.02 * np.random.default_rng(0).standard_normal(len(t)) * beat
    return y.astype(np.float32)
