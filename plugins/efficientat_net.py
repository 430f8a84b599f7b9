"""EfficientAT's mn04_as (Schmid, Koutini & Widmer, ICASSP 2023) as plain numpy inference.

A MobileNetV3 (width 0.4) trained on AudioSet, MIT licence, (c) Florian Schmid.
Converted once by ``scripts/convert_efficientat.py`` into
``models/efficientat_mn04.npz`` (float32 arrays, ``allow_pickle=False``, so the
file cannot run code; batch norms folded). No torch, TensorFlow or librosa. The
front end is ``AugmentMelSTFT`` in eval mode (32 kHz, 128 mel bands). Feature
maps are (channels, windows, freq, time), so a 1x1 convolution is one matrix
product over every window. Front end, windows and cost: docs/efficientat.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tagger.common.errors import ModelError

from .npz_weights import read_arrays

SAMPLE_RATE = 32000
N_FFT = 1024
WIN_LENGTH = 800
HOP = 320
N_MELS = 128
FMIN, FMAX = 0.0, 15000.0  # AugmentMelSTFT: fmax = sr // 2 - fmax_aug_range // 2 in eval mode
PREEMPHASIS = 0.97
MEL_BLOCK = 128  # STFT frames transformed at a time
WINDOW_SECONDS = 10  # AudioSet clips: what the network was trained on
WINDOW_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE
MIN_SECONDS = 1.0  # shorter input is refused (TooShortError), not padded: see docs/efficientat.md
MIN_SAMPLES = int(MIN_SECONDS * SAMPLE_RATE)
WHOLE = 0  # n_windows value: the whole input in one pass (the network is fully convolutional)
# The most audio one forward pass takes: activations grow with the input (block 2's expanded map
# is 24 x 64 x 100 per second), so a longer WHOLE input is cut into equal passes of at most this.
MAX_PASS_SECONDS = 40
MAX_PASS_SAMPLES = MAX_PASS_SECONDS * SAMPLE_RATE
DEFAULT_WINDOWS = WHOLE  # docs/efficientat.md: the best genre probe of 1, 2, 3 windows and WHOLE, at ~50 ms
N_CLASSES = 527
POOLED_DIM = 384  # the last conv's channels, averaged over frequency and time
EMBEDDING_DIM = 512  # the classifier's hidden layer: the embedding (see docs/efficientat.md)
WEIGHTS = Path(__file__).parent / "models" / "efficientat_mn04.npz"
LABELS_FILE = WEIGHTS.with_suffix(".labels.txt")
SYNTHETIC_SECONDS = 10.0


class Block(NamedTuple):
    """One inverted residual block of mn04 (channels already scaled by the width 0.4)."""

    inputs: int
    kernel: int
    expanded: int
    outputs: int
    se: bool  # squeeze-and-excitation over channels
    hardswish: bool  # else ReLU
    stride: int


# models/mn/model.py's MobileNetV3 table at width_mult 0.4 (channels rounded to multiples of 8).
BLOCKS: tuple[Block, ...] = (
    Block(8, 3, 8, 8, False, False, 1),
    Block(8, 3, 24, 16, False, False, 2),
    Block(16, 3, 32, 16, False, False, 1),
    Block(16, 5, 32, 16, True, False, 2),
    Block(16, 5, 48, 16, True, False, 1),
    Block(16, 5, 48, 16, True, False, 1),
    Block(16, 3, 96, 32, False, True, 2),
    Block(32, 3, 80, 32, False, True, 1),
    Block(32, 3, 72, 32, False, True, 1),
    Block(32, 3, 72, 32, False, True, 1),
    Block(32, 3, 192, 48, True, True, 1),
    Block(48, 3, 272, 48, True, True, 1),
    Block(48, 5, 272, 64, True, True, 2),
    Block(64, 5, 384, 64, True, True, 1),
    Block(64, 5, 384, 64, True, True, 1),
)  # fmt: skip
STEM_CHANNELS = BLOCKS[0].inputs


def _se_squeeze(channels: int) -> int:
    """make_divisible(channels // 4, 8), as EfficientAT sizes the SE bottleneck."""
    v = channels // 4
    rounded = max(8, (v + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * v else rounded


# Every array the weights file must hold, with its shape.
SHAPES: dict[str, tuple[int, ...]] = {
    "mel_basis": (N_MELS, N_FFT // 2 + 1),
    "stem.w": (STEM_CHANNELS, 9), "stem.b": (STEM_CHANNELS,),
    "last.w": (POOLED_DIM, BLOCKS[-1].outputs), "last.b": (POOLED_DIM,),
    "hidden.w": (EMBEDDING_DIM, POOLED_DIM), "hidden.b": (EMBEDDING_DIM,),
    "out.w": (N_CLASSES, EMBEDDING_DIM), "out.b": (N_CLASSES,),
}  # fmt: skip
for _i, _blk in enumerate(BLOCKS, start=1):
    if _blk.expanded != _blk.inputs:
        SHAPES.update({f"b{_i}.expand.w": (_blk.expanded, _blk.inputs), f"b{_i}.expand.b": (_blk.expanded,)})
    SHAPES.update({f"b{_i}.dw.w": (_blk.expanded, _blk.kernel, _blk.kernel), f"b{_i}.dw.b": (_blk.expanded,),
                   f"b{_i}.project.w": (_blk.outputs, _blk.expanded), f"b{_i}.project.b": (_blk.outputs,)})
    if _blk.se:
        _sq = _se_squeeze(_blk.expanded)
        SHAPES.update({f"b{_i}.se.fc1.w": (_sq, _blk.expanded), f"b{_i}.se.fc1.b": (_sq,),
                       f"b{_i}.se.fc2.w": (_blk.expanded, _sq), f"b{_i}.se.fc2.b": (_blk.expanded,)})


class Outputs(NamedTuple):
    """Per window: the pooled last feature map, the classifier's hidden layer, the class probabilities."""

    pooled: np.ndarray  # (n, 384)
    embedding: np.ndarray  # (n, 512)
    probs: np.ndarray  # (n, 527)


class TooShortError(ValueError):
    """The waveform is shorter than MIN_SECONDS (the caller adds the file name)."""


def _read_labels(path: Path) -> tuple[str, ...]:
    """The 527 AudioSet class names shipped beside the weights, in output order."""
    try:
        labels = tuple(path.read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(path, f"cannot read the EfficientAT labels: {exc}") from None
    if len(labels) != N_CLASSES:
        raise ModelError(path, f"expected {N_CLASSES} AudioSet labels, found {len(labels)}")
    return labels


class EfficientATNet:
    """mn04_as: 32 kHz waveform -> log mel -> (512-d hidden layer, 527 AudioSet probabilities)."""

    def __init__(self, arrays: dict[str, np.ndarray], digest: str, n_windows: int = DEFAULT_WINDOWS) -> None:
        if n_windows < 0:
            raise ValueError(f"n_windows must be {WHOLE} (whole input) or a positive count, got {n_windows}")
        self.w = arrays
        self.n_windows = n_windows
        self._digest = digest
        self.id = f"efficientat_mn04-{digest}-" + ("whole" if n_windows == WHOLE else f"w{n_windows}")
        n = np.arange(WIN_LENGTH, dtype=np.float64)
        self._window64 = 0.5 - 0.5 * np.cos(2 * np.pi * n / (WIN_LENGTH - 1))  # symmetric (periodic=False)
        self._bins = int(np.flatnonzero(arrays["mel_basis"].any(axis=0))[-1]) + 1  # 481: up to 15 kHz
        self._mel_t = np.ascontiguousarray(arrays["mel_basis"][:, : self._bins].T)

    @classmethod
    def load(cls, path: Path | None = None, n_windows: int = DEFAULT_WINDOWS) -> EfficientATNet:
        """Read and check the weights; ModelError(path, reason) when missing, corrupt or wrong-shaped."""
        path = Path(path) if path is not None else WEIGHTS
        arrays, data = read_arrays(path, SHAPES, "EfficientAT")
        settings = {"sr": SAMPLE_RATE, "n_fft": N_FFT, "win": WIN_LENGTH, "hop": HOP, "n_mels": N_MELS,
                    "preemphasis": PREEMPHASIS, "window_s": WINDOW_SECONDS, "log": "(ln(mel+1e-5)+4.5)/5",
                    "embedding": "hidden layer, mean over windows"}
        digest = hashlib.sha256(data + json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        return cls(arrays, digest, n_windows)

    def with_windows(self, n_windows: int) -> EfficientATNet:
        """The same network cutting excerpts into ``n_windows`` windows (a different id)."""
        return type(self)(self.w, self._digest, n_windows)

    # -- front end ---------------------------------------------------------------

    def mel(self, y: np.ndarray) -> np.ndarray:
        """AugmentMelSTFT's normalised log mel spectrogram (eval mode), (128, frames) float32."""
        y = _mono(y)
        z = y[1:] - np.float32(PREEMPHASIS) * y[:-1]  # conv1d with kernel (-0.97, 1): one sample shorter
        pad = N_FFT // 2
        if len(z) <= pad:
            raise TooShortError(f"too short: {len(y)} samples")
        offset = (N_FFT - WIN_LENGTH) // 2  # torch.stft centres the 800-sample window in the 1024 frame
        frames = sliding_window_view(np.pad(z, pad, mode="reflect")[offset:], WIN_LENGTH)[::HOP]
        frames = frames[: 1 + len(z) // HOP]
        # The window's zeros outside its 800 samples only shift the frame: the power spectrum of
        # the 800 windowed samples, zero-padded to 1024, is the same. numpy's float64 FFT is
        # both closer to the exact spectrum than torch's float32 one and 3x faster than its own
        # float32 FFT here (2.7 vs 8.0 ms per 10 s). Blocks of frames keep the buffers in cache.
        mel = np.empty((len(frames), N_MELS), np.float32)
        buf = np.zeros((MEL_BLOCK, N_FFT))
        for start in range(0, len(frames), MEL_BLOCK):
            block = frames[start:start + MEL_BLOCK]
            rows = buf[: len(block)]
            np.multiply(block, self._window64, out=rows[:, :WIN_LENGTH])
            spec = np.fft.rfft(rows, axis=1)[:, : self._bins]  # bins above 15 kHz have no weight
            power = spec.real**2
            power += spec.imag**2
            np.matmul(power.astype(np.float32), self._mel_t, out=mel[start:start + len(block)])
        mel += np.float32(1e-5)
        np.log(mel, out=mel)
        mel += np.float32(4.5)
        mel /= np.float32(5)
        return np.ascontiguousarray(mel.T)

    def windows(self, y: np.ndarray, n_windows: int | None = None) -> np.ndarray:
        """(n, 128, frames) mels of the parts a call runs (see ``parts``): all at once, for inspection."""
        return np.stack([self.mel(part) for part in self.parts(y, n_windows)])

    def parts(self, y: np.ndarray, n_windows: int | None = None) -> list[np.ndarray]:
        """The stretches of ``y`` the network sees, as views, all of one length.

        ``n_windows`` >= 1: that many 10 s windows spread evenly, each transformed from its own
        samples as the network saw 10 s clips. WHOLE: the input itself, or, past
        MAX_PASS_SECONDS, equal consecutive parts of at most that (up to parts - 1 trailing
        samples left out). Input of at most 10 s (but at least MIN_SECONDS) is one part as it is.
        """
        y = _mono(y)
        n_windows = self.n_windows if n_windows is None else n_windows
        if len(y) < MIN_SAMPLES:
            raise TooShortError(f"too short: {len(y) / SAMPLE_RATE:.2f} s of audio, "
                                f"need at least {MIN_SECONDS:.2f} s")
        if len(y) <= WINDOW_SAMPLES:
            return [y]
        if n_windows != WHOLE:
            return [y[s:s + WINDOW_SAMPLES] for s in window_starts(len(y), n_windows)]
        count = -(-len(y) // MAX_PASS_SAMPLES)
        size = len(y) // count
        return [y[i * size:(i + 1) * size] for i in range(count)]

    # -- network -----------------------------------------------------------------

    def forward(self, mels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, 128, frames) mels -> embeddings (n, 512) and AudioSet probabilities (n, 527)."""
        outputs = self.outputs(mels)
        return outputs.embedding, outputs.probs

    def outputs(self, mels: np.ndarray) -> Outputs:
        """(n, 128, frames) mels -> pooled features (n, 384), hidden layer (n, 512), probabilities (n, 527)."""
        x = np.asarray(mels, dtype=np.float32)
        if x.ndim != 3 or x.shape[1] != N_MELS:
            raise ValueError(f"expected mels of shape (n, {N_MELS}, frames), got {x.shape}")
        w = self.w
        x = self._conv1x1(_stem_columns(x), "stem", hardswish=True)  # (8, n, 64, frames/2)
        for i, block in enumerate(BLOCKS, start=1):
            h = self._conv1x1(x, f"b{i}.expand", block.hardswish) if block.expanded != block.inputs else x
            h = _depthwise(h, w[f"b{i}.dw.w"], w[f"b{i}.dw.b"], block.stride)
            _activate(h, block.hardswish)
            if block.se:
                h *= self._se_scale(h, f"b{i}.se")
            h = self._conv1x1(h, f"b{i}.project", None)
            x = h + x if block.stride == 1 and block.inputs == block.outputs else h
        x = self._conv1x1(x, "last", hardswish=True)
        pooled = np.ascontiguousarray(x.mean(axis=(2, 3)).T)  # (n, 384): the model's "features" output
        hidden = pooled @ w["hidden.w"].T + w["hidden.b"]
        _activate(hidden, True)  # dropout follows in training only
        logits = hidden @ w["out.w"].T + w["out.b"]
        return Outputs(pooled, hidden, _sigmoid(logits))

    def __call__(self, y: np.ndarray, n_windows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One track's embedding (512,) and AudioSet probabilities (527,): means over its windows.

        ``n_windows`` defaults to the net's own (the one in ``id``); another value is for measuring.
        """
        embedding = np.zeros(EMBEDDING_DIM, np.float32)
        probs = np.zeros(N_CLASSES, np.float32)
        parts = self.parts(y, n_windows)
        per_pass = max(1, MAX_PASS_SAMPLES // len(parts[0]))  # memory stays bounded whatever the input
        for start in range(0, len(parts), per_pass):
            e, p = self.forward(np.stack([self.mel(part) for part in parts[start:start + per_pass]]))
            embedding += e.sum(axis=0)
            probs += p.sum(axis=0)
        return embedding / np.float32(len(parts)), probs / np.float32(len(parts))

    def _conv1x1(self, x: np.ndarray, name: str, hardswish: bool | None) -> np.ndarray:
        """Pointwise conv (folded batch norm) on (c, n, f, t), then the activation (None: linear)."""
        wt, b = self.w[f"{name}.w"], self.w[f"{name}.b"]
        c, *rest = x.shape
        out = (wt @ x.reshape(c, -1)).reshape(len(wt), *rest)
        out += b[:, None, None, None]
        if hardswish is not None:
            _activate(out, hardswish)
        return out

    def _se_scale(self, x: np.ndarray, name: str) -> np.ndarray:
        """Squeeze-and-excitation over channels: mean over (f, t), fc, ReLU, fc, sigmoid -> (c, n, 1, 1)."""
        w = self.w
        s = x.mean(axis=(2, 3)).T  # (n, c)
        s = np.maximum(s @ w[f"{name}.fc1.w"].T + w[f"{name}.fc1.b"], 0)
        s = _sigmoid(s @ w[f"{name}.fc2.w"].T + w[f"{name}.fc2.b"])
        return s.T[:, :, None, None]


def _mono(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected a mono waveform, got shape {y.shape}")
    return y


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without exp's overflow for large negative x, float32."""
    return (np.float32(0.5) * (np.float32(1) + np.tanh(np.float32(0.5) * x))).astype(np.float32, copy=False)


def _activate(x: np.ndarray, hardswish: bool) -> None:
    """In place: hardswish x * clip(x + 3, 0, 6) / 6, or ReLU."""
    if not hardswish:
        np.maximum(x, 0, out=x)
        return
    t = x + np.float32(3)
    np.clip(t, 0, 6, out=t)
    x *= t
    x /= np.float32(6)


def _out_size(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * ((kernel - 1) // 2) - kernel) // stride + 1


def _stem_columns(mels: np.ndarray) -> np.ndarray:
    """The first conv's input (3x3, stride 2, padding 1, one channel) as (9, n, f/2, t/2) shifted views."""
    n, f, t = mels.shape
    fo, to = _out_size(f, 3, 2), _out_size(t, 3, 2)
    xp = np.pad(mels, ((0, 0), (1, 1), (1, 1)))
    return np.stack([xp[:, i:i + 2 * fo - 1:2, j:j + 2 * to - 1:2] for i in range(3) for j in range(3)])


def _depthwise(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """Depthwise k x k convolution, 'same' padding, on (c, n, f, t): k*k shifted multiply-adds."""
    c, n, f, t = x.shape
    k = kernel.shape[1]
    p = (k - 1) // 2
    fo, to = _out_size(f, k, stride), _out_size(t, k, stride)
    xp = np.zeros((c, n, f + 2 * p, t + 2 * p), np.float32)
    xp[:, :, p:p + f, p:p + t] = x
    out = np.empty((c, n, fo, to), np.float32)
    out[...] = bias[:, None, None, None]
    tmp = np.empty_like(out)
    for i in range(k):
        for j in range(k):
            view = xp[:, :, i:i + stride * (fo - 1) + 1:stride, j:j + stride * (to - 1) + 1:stride]
            np.multiply(view, kernel[:, i, j, None, None, None], out=tmp)
            out += tmp
    return out


def window_starts(n_samples: int, n_windows: int) -> list[int]:
    """Starts of ``n_windows`` 10 s windows spread evenly from the first to the last sample (one: the middle)."""
    if n_windows < 1:
        raise ValueError(f"n_windows must be at least 1, got {n_windows}")
    room = max(n_samples - WINDOW_SAMPLES, 0)
    if n_windows == 1:
        return [room // 2]
    return [round(room * i / (n_windows - 1)) for i in range(n_windows)]


def __getattr__(name: str) -> tuple[str, ...]:
    """``LABELS``: the 527 AudioSet class names in output order, read from LABELS_FILE on first use."""
    if name == "LABELS":
        labels = _read_labels(LABELS_FILE)
        globals()["LABELS"] = labels
        return labels
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def synthetic_signal(seconds: float = SYNTHETIC_SECONDS) -> np.ndarray:
    """A deterministic 32 kHz test signal (chords, a beat, noise) the parity test regenerates."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    y = np.zeros_like(t)
    for i, f in enumerate((110.0, 220.0, 277.2, 329.6, 440.0, 1318.5, 3520.0)):
        y += 0.08 / (1 + i % 3) * np.sin(2 * np.pi * f * t * (1 + 0.01 * np.sin(2 * np.pi * 0.5 * t)))
    beat = np.exp(-30 * ((t * 2.0) % 1.0))  # 120 bpm decaying clicks
    y += 0.3 * beat * np.sin(2 * np.pi * 60 * t)
    y += 0.05 * np.random.default_rng(0).standard_normal(len(t)) * beat
    return y.astype(np.float32)
