"""genretag-bands: a tiny "pretrained" embedding backend, as a third party would write one.

Its front end is a fixed network in miniature: log energies in 16 bands of
8 kHz audio (the embedding) and two tags, "low" and "high", from the share
of energy below and above 1 kHz.  Its "weights" are bands.json, shipped in
the package; GENRETAG_BANDS_WEIGHTS names another file.  The head is a
nearest-centroid classifier saved with numpy (no pickle).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tagger.common.errors import ModelError
from tagger.inference.backends import Backend

FORMAT = "genretag-bands/1"
WEIGHTS = Path(__file__).parent / "bands.json"


class BandsFrontEnd:
    """8 kHz mono -> (16 log band energies, [p(low), p(high)])."""

    def __init__(self, path: Path) -> None:
        try:
            raw = path.read_bytes()
            spec = json.loads(raw)
            self.edges = np.asarray(spec["edges_hz"], dtype=np.float64)
            self.n_fft = int(spec["n_fft"])
            self.sample_rate = int(spec["sample_rate"])
            self.tag_names = tuple(spec["tags"])
            self.tag_bands = [np.asarray(spec["tags"][t]) for t in self.tag_names]
        except FileNotFoundError:
            raise ModelError(path, "weights file not found") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(path, f"corrupt weights file ({type(exc).__name__}: {exc})") from None
        self.id = "bands-" + hashlib.sha256(raw).hexdigest()[:12]

    def __call__(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frames = np.lib.stride_tricks.sliding_window_view(y, self.n_fft)[:: self.n_fft // 2]
        power = (np.abs(np.fft.rfft(frames * np.hanning(self.n_fft), axis=1)) ** 2).mean(axis=0)
        freqs = np.fft.rfftfreq(self.n_fft, 1.0 / self.sample_rate)
        bands = np.array([power[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in zip(self.edges[:-1], self.edges[1:])])
        share = np.array([bands[idx].sum() for idx in self.tag_bands]) / max(bands.sum(), 1e-20)
        return np.log10(bands + 1e-10).astype(np.float32), share.astype(np.float32)


class BandsBackend(Backend):
    """Nearest centroid on standardised band energies; probabilities from a softmax of -distance."""

    name = "bands"
    input_kind = "embedding"
    model_suffix = ".npz"
    genre_tags = ("low", "high")

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = temperature

    @classmethod
    def front_end(cls) -> BandsFrontEnd:
        return BandsFrontEnd(Path(os.environ.get("GENRETAG_BANDS_WEIGHTS") or WEIGHTS))

    def fit(self, X, y: Sequence[str], *, X_valid=None, y_valid=None, epochs=None, seed=0, callback=None):
        X, y = np.asarray(X, dtype=np.float64), np.asarray([str(g) for g in y])
        self.genres_ = sorted(set(y.tolist()))
        self.mean_, self.scale_ = X.mean(axis=0), X.std(axis=0) + 1e-9
        Z = (X - self.mean_) / self.scale_
        self.centroids_ = np.stack([Z[y == g].mean(axis=0) for g in self.genres_])
        return self

    def predict_proba(self, X):
        Z = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        d = np.linalg.norm(Z[:, None, :] - self.centroids_[None], axis=2) / self.temperature
        e = np.exp(-(d - d.min(axis=1, keepdims=True)))
        return e / e.sum(axis=1, keepdims=True)

    def save(self, path: Path) -> None:
        with open(path, "wb") as f:  # a file object: np.savez would add ".npz" to a name without it
            np.savez(f, format=FORMAT, genres=np.array(self.genres_), mean=self.mean_, scale=self.scale_,
                     centroids=self.centroids_, temperature=self.temperature)

    @classmethod
    def load(cls, path: Path) -> BandsBackend:
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != FORMAT:
                raise ValueError(f"not a genretag-bands model (expected format {FORMAT})")
            self = cls(float(data["temperature"]))
            self.genres_ = [str(g) for g in data["genres"]]
            self.mean_, self.scale_, self.centroids_ = data["mean"], data["scale"], data["centroids"]
        return self
