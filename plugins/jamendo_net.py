"""The MTG-Jamendo taggers of Won et al. (SMC 2020), musicnn and FCN, as plain numpy inference.

Trained by Minz Won, Andres Ferraro, Dmitry Bogdanov and Xavier Serra ("Evaluation
of CNN-based automatic music tagging models", SMC 2020; MIT licence) on the
MTG-Jamendo top-50 tags, converted once by ``scripts/convert_jamendo.py`` into
``models/jamendo_{musicnn,fcn}.npz`` (float32 arrays, ``allow_pickle=False``; batch
norms folded). No torch, TensorFlow or librosa. The front end reproduces
torchaudio's (16 kHz, 96 HTK mel bands, dB); a track's output is the mean over
``n_patches`` fixed windows (musicnn 3 s, FCN 29 s; the count is part of the id),
and input shorter than a window is repeated, not padded. Details: docs/jamendo.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from plugins import musicnn_net
from plugins.musicnn_net import TooShortError, _banded, freq_pooled_conv, mono_waveform
from plugins.npz_weights import read_arrays

__all__ = ["SAMPLE_RATE", "TAGS", "GENRE_TAGS", "WEIGHTS", "JamendoNet", "JamendoMusicnn", "JamendoFCN", "NETWORKS",
           "TooShortError", "synthetic_signal", "load"]

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
AMIN = 1e-10  # AmplitudeToDB's floor
# Output mel bands per matmul in the timbral convolutions: 3 instead of MSD_musicnn's 8 does less
# wasted arithmetic on these 30 and 59 bands, 10% faster (benchmarks/jamendo_net.py blocks).
TIMBRAL_BLOCK = 3
MIN_SECONDS = 1.0
MIN_SAMPLES = int(MIN_SECONDS * SAMPLE_RATE)
MODELS = Path(__file__).parent / "models"
WEIGHTS = {"musicnn": MODELS / "jamendo_musicnn.npz", "fcn": MODELS / "jamendo_fcn.npz"}

# The 50 tags, in the networks' output order (sorted, as the training code binarised them).
TAGS: tuple[str, ...] = (
    "genre---alternative", "genre---ambient", "genre---atmospheric", "genre---chillout",
    "genre---classical", "genre---dance", "genre---downtempo", "genre---easylistening",
    "genre---electronic", "genre---experimental", "genre---folk", "genre---funk", "genre---hiphop",
    "genre---house", "genre---indie", "genre---instrumentalpop", "genre---jazz", "genre---lounge",
    "genre---metal", "genre---newage", "genre---orchestral", "genre---pop", "genre---popfolk",
    "genre---poprock", "genre---reggae", "genre---rock", "genre---soundtrack", "genre---techno",
    "genre---trance", "genre---triphop", "genre---world",
    "instrument---acousticguitar", "instrument---bass", "instrument---computer",
    "instrument---drummachine", "instrument---drums", "instrument---electricguitar",
    "instrument---electricpiano", "instrument---guitar", "instrument---keyboard", "instrument---piano",
    "instrument---strings", "instrument---synthesizer", "instrument---violin", "instrument---voice",
    "mood/theme---emotional", "mood/theme---energetic", "mood/theme---film", "mood/theme---happy",
    "mood/theme---relaxing",
)  # fmt: skip
# The 31 genre outputs (the "genre---" tags, in output order: they are TAGS[:31]).
GENRE_TAGS: tuple[str, ...] = tuple(t for t in TAGS if t.startswith("genre---"))


def _front_end_shapes() -> dict[str, tuple[int, ...]]:
    return {"window": (N_FFT,), "mel_fb": (N_FFT // 2 + 1, N_MELS), "input.scale": (1,), "input.shift": (1,)}


class JamendoNet:
    """What both networks share: weights file, id, mel front end, windows, the mean over them."""

    name: str
    INPUT_SAMPLES: int
    DEFAULT_PATCHES: int
    EMBEDDING: int
    SHAPES: dict[str, tuple[int, ...]]

    def __init__(self, arrays: dict[str, np.ndarray], id: str, n_patches: int) -> None:
        self.w = arrays
        self.id = id
        self.n_patches = n_patches
        self._prepare()

    def _prepare(self) -> None:
        """Matmul-ready layouts computed once at load."""

    @classmethod
    def load(cls, path: Path | None = None, n_patches: int | None = None) -> JamendoNet:
        """Read and check the weights; ModelError(path, reason) when missing, corrupt or mis-shaped.

        The id names the weights' content, the front-end settings and the patch count.
        """
        path = Path(path) if path is not None else WEIGHTS[cls.name]
        n_patches = cls.DEFAULT_PATCHES if n_patches is None else n_patches
        if n_patches < 1:
            raise ValueError(f"n_patches must be at least 1, got {n_patches}")
        arrays, data = read_arrays(path, cls.SHAPES, f"MTG-Jamendo {cls.name}")
        settings = {"sr": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP, "n_mels": N_MELS, "window": cls.INPUT_SAMPLES,
                    "stft": "centred reflect, per window", "log": "10log10(max(S,1e-10))", "short": "repeat"}
        digest = hashlib.sha256(data + json.dumps(settings, sort_keys=True).encode()).hexdigest()
        return cls(arrays, f"jamendo_{cls.name}-{digest[:12]}-p{n_patches}", n_patches)

    # -- front end ---------------------------------------------------------------

    def mel(self, y: np.ndarray) -> np.ndarray:
        """The log mel spectrogram in dB, (frames, 96) float32, before the input batch norm."""
        y = np.asarray(y, dtype=np.float32)
        padded = np.pad(y, [(0, 0)] * (y.ndim - 1) + [(N_FFT // 2, N_FFT // 2)], mode="reflect")
        frames = sliding_window_view(padded, N_FFT, axis=-1)[..., ::HOP, :]
        power = np.abs(np.fft.rfft(frames * self.w["window"], axis=-1)) ** 2
        S = power.astype(np.float32) @ self.w["mel_fb"]
        return np.float32(10) * np.log10(np.maximum(S, np.float32(AMIN)))

    @classmethod
    def windows(cls, y: np.ndarray, n_patches: int) -> np.ndarray:
        """(n, INPUT_SAMPLES) float32: windows centred on the centres of ``n_patches`` equal parts.

        Clipped to the waveform, so they overlap when it is shorter than n windows; ten 3 s
        windows tile a 30 s excerpt exactly. A waveform shorter than one window is repeated.
        """
        y = mono_waveform(y, MIN_SAMPLES)
        if n_patches < 1:
            raise ValueError(f"n_patches must be at least 1, got {n_patches}")
        size = cls.INPUT_SAMPLES
        if len(y) < size:
            y = np.resize(y, size)  # repeated end to end
        centres = len(y) * (2 * np.arange(n_patches) + 1) // (2 * n_patches)
        starts = np.clip(centres - size // 2, 0, len(y) - size)
        return np.stack([y[s:s + size] for s in starts])

    # -- network -----------------------------------------------------------------

    def normalised_mel(self, windows: np.ndarray) -> np.ndarray:
        """(n, INPUT_SAMPLES) windows -> the network's input: mel in dB through its input batch norm."""
        return (self.mel(windows) * self.w["input.scale"] + self.w["input.shift"]).astype(np.float32)

    def forward(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, INPUT_SAMPLES) windows -> embeddings (n, EMBEDDING) and tag probabilities (n, 50)."""
        embedding, logits = self._network(self.normalised_mel(windows))
        return embedding, (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    def _network(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __call__(self, y16k: np.ndarray, n_patches: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One track's embedding (EMBEDDING,) and 50 tag probabilities: means over its windows.

        ``n_patches`` defaults to the count the net was loaded with (the one its id names).
        """
        embedding, probs = self.forward(self.windows(y16k, self.n_patches if n_patches is None else n_patches))
        return embedding.mean(axis=0), probs.mean(axis=0)


def _relu_bias(z: np.ndarray, b: np.ndarray) -> np.ndarray:
    z += b
    return np.maximum(z, 0, out=z)


class JamendoMusicnn(JamendoNet):
    """Musicnn (Pons et al.) trained on MTG-Jamendo: 3 s windows -> (200-d penultimate layer, 50 tags).

    Timbral front end: (67 x 7) and (38 x 7) mel x time kernels, 204 channels each, max over
    frequency; temporal: the mean over mel bands convolved with 129-, 65- and 33-frame kernels,
    51 channels each; three 7-frame convolutions (64 channels, the last two residual); max and
    mean over time (1506); dense 200 with batch norm and ReLU; dense 50, sigmoid.
    """

    name = "musicnn"
    INPUT_SAMPLES = 3 * SAMPLE_RATE
    FRAMES = 1 + INPUT_SAMPLES // HOP  # 188
    DEFAULT_PATCHES = 10  # tiles a 30 s excerpt
    EMBEDDING = 200
    SHAPES = {
        **_front_end_shapes(),
        "timbral67.w": (7, 67, 204), "timbral67.b": (204,), "timbral38.w": (7, 38, 204), "timbral38.b": (204,),
        "temporal129.w": (129, 51), "temporal129.b": (51,), "temporal65.w": (65, 51), "temporal65.b": (51,),
        "temporal33.w": (33, 51), "temporal33.b": (51,),
        "mid1.w": (7, 561, 64), "mid1.b": (64,), "mid2.w": (7, 64, 64), "mid2.b": (64,),
        "mid3.w": (7, 64, 64), "mid3.b": (64,),
        "dense.w": (1506, 200), "dense.b": (200,), "out.w": (200, 50), "out.b": (50,),
    }  # fmt: skip

    def _prepare(self) -> None:
        self._banded = {name: _banded(self.w[f"{name}.w"], TIMBRAL_BLOCK) for name in ("timbral67", "timbral38")}
        # mid kernels with rows ordered (channel, time) as the time-window view lays out its columns
        self._mid = {name: np.ascontiguousarray(self.w[f"{name}.w"].transpose(1, 0, 2).reshape(-1, 64))
                     for name in ("mid1", "mid2", "mid3")}

    def _network(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.head(self.pooled(x))

    def head(self, pooled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, 1506) pooled features -> penultimate layer (n, 200) and tag logits (n, 50)."""
        penultimate = _relu_bias(pooled @ self.w["dense.w"], self.w["dense.b"])
        return penultimate, penultimate @ self.w["out.w"] + self.w["out.b"]

    def pooled(self, x: np.ndarray) -> np.ndarray:
        """Normalised mel windows (n, 188, 96) -> the 753 feature maps' max and mean over time, (n, 1506)."""
        n, frames, w = len(x), self.FRAMES, self.w
        xp = np.pad(x, ((0, 0), (3, 3), (0, 0)))
        front = []
        for name in ("timbral67", "timbral38"):  # batch norm folded in: ReLU after the max is the same
            top, _ = freq_pooled_conv(xp, self._banded[name], w[f"{name}.w"].shape[1], low=False, block=TIMBRAL_BLOCK)
            front.append(_relu_bias(top, w[f"{name}.b"]).reshape(n, frames, -1))
        mean = x.mean(axis=2)  # (n, frames): the temporal branch averages the bands first
        for name in ("temporal129", "temporal65", "temporal33"):
            k = w[f"{name}.w"]
            cols = sliding_window_view(np.pad(mean, ((0, 0), (len(k) // 2, len(k) // 2))), len(k), axis=1)
            front.append(_relu_bias(cols @ k, w[f"{name}.b"]))
        h = np.concatenate(front, axis=2)  # (n, 188, 561)
        features = [h]
        for i, name in enumerate(("mid1", "mid2", "mid3")):
            cols = sliding_window_view(np.pad(h, ((0, 0), (3, 3), (0, 0))), 7, axis=1)  # (n, 188, c, 7)
            z = _relu_bias(cols.reshape(n * frames, -1) @ self._mid[name], w[f"{name}.b"]).reshape(n, frames, -1)
            h = z if i == 0 else z + h
            features.append(h)
        f = np.concatenate(features, axis=2)  # (n, 188, 753)
        return np.concatenate([f.max(axis=1), f.mean(axis=1)], axis=1)


FCN_POOLS = ((2, 4), (2, 4), (2, 4), (3, 5), (4, 4))  # (mel, time) max-pooling after each conv
FCN_CHANNELS = (1, 64, 128, 128, 128, 64)


class JamendoFCN(JamendoNet):
    """FCN (Choi et al. 2016) trained on MTG-Jamendo: 29 s windows -> (64-d last conv layer, 50 tags).

    Five 3x3 convolutions (64, 128, 128, 128, 64 channels) with batch norm, ReLU and max-pooling
    (2x4, 2x4, 2x4, 3x5, 4x4 over mel x time) bring (96, 1813) down to 64 values: the embedding,
    the only layer before the 50-way dense output.
    """

    name = "fcn"
    INPUT_SAMPLES = 29 * SAMPLE_RATE
    DEFAULT_PATCHES = 1
    EMBEDDING = 64
    POOLS = FCN_POOLS
    CHANNELS = FCN_CHANNELS
    SHAPES = {
        **_front_end_shapes(),
        **{f"conv{i + 1}.w": (3, 3, FCN_CHANNELS[i], FCN_CHANNELS[i + 1]) for i in range(5)},
        **{f"conv{i + 1}.b": (FCN_CHANNELS[i + 1],) for i in range(5)},
        "out.w": (64, 50), "out.b": (50,),
    }  # fmt: skip

    def _prepare(self) -> None:
        # per mel offset i: rows ordered (time offset j, channel) as _conv3x3 lays out its columns
        self._kernels = [[np.ascontiguousarray(self.w[f"conv{L}.w"][i].reshape(-1, self.CHANNELS[L]))
                          for i in range(3)] for L in range(1, 6)]

    def _network(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for patch in x:  # (frames, 96)
            h = patch.T[:, :, None]  # (mel, time, channel)
            for L, (pf, pt) in enumerate(self.POOLS):
                z = _conv3x3(h, self._kernels[L])
                F, T = z.shape[0] // pf * pf, z.shape[1] // pt * pt
                z = z[:F, :T].reshape(F // pf, pf, T // pt, pt, -1).max(axis=(1, 3))
                h = _relu_bias(z, self.w[f"conv{L + 1}.b"])  # the bias and ReLU commute with the max
            out.append(h.reshape(-1))
        embedding = np.stack(out)
        return embedding, embedding @ self.w["out.w"] + self.w["out.b"]


def _conv3x3(h: np.ndarray, kernels: list[np.ndarray]) -> np.ndarray:
    """A 3x3 convolution with zero padding 1 of (H, W, C) -> (H, W, O), bias-free.

    The three time offsets are copied side by side once ((H + 2) * W rows of 3C); each mel
    offset is then a contiguous block of those rows: three matmuls, no 9x im2col copy.
    """
    H, W, C = h.shape
    hp = np.pad(h, ((1, 1), (1, 1), (0, 0)))
    cols = np.ascontiguousarray(sliding_window_view(hp, 3, axis=1).transpose(0, 1, 3, 2)).reshape((H + 2) * W, 3 * C)
    z = cols[:H * W] @ kernels[0]
    for i in (1, 2):
        z += cols[i * W:(i + H) * W] @ kernels[i]
    return z.reshape(H, W, -1)


def synthetic_signal(seconds: float = 30.0) -> np.ndarray:
    """musicnn_net's test signal (chords, a beat, noise on the beat) over a steady noise floor.

    The floor (white noise at -34 dBFS) keeps every mel band far above float32's rounding
    noise: without it the bands above the chords fall to -100 dB between beats, 125 dB below
    the loudest, where any two float32 STFTs (numpy's and torch's) differ by tenths of a dB.
    """
    y = musicnn_net.synthetic_signal(seconds)
    return (y + 0.02 * np.random.default_rng(1).standard_normal(len(y))).astype(np.float32)


NETWORKS: dict[str, type[JamendoNet]] = {"musicnn": JamendoMusicnn, "fcn": JamendoFCN}


def load(name: str, path: Path | None = None, n_patches: int | None = None) -> JamendoNet:
    """One of NETWORKS by name ("musicnn" or "fcn")."""
    return NETWORKS[name].load(path, n_patches)
