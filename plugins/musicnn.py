"""The ``musicnn`` backend: a logistic-regression head on MSD_musicnn's 200-d embedding.

MSD_musicnn (Pons & Serra, musicnn 0.1.0, ISC licence, (c) Music Technology
Group, Universitat Pompeu Fabra) was trained on the Million Song Dataset's
50 Last.fm tags.  Its front end (plugins/musicnn_net.py, pure NumPy) runs in
the worker processes on 16 kHz audio and gives per track the mean of its
penultimate layer over 3 s patches (200 values) and the 50 tag
probabilities.  The head learns GTZAN's genres from the embedding; the tags
are kept per track too.  Of them, ``genre_tags`` are genre-like; there is
no classical and no reggae tag, so those genres come from the head only.

Importing this module imports neither the network nor TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tagger.backends import FrontEnd

from .sklearn_base import SklearnBackend

FORMAT = "genretag-musicnn/1"
MODELS = Path(__file__).parent / "models"
C_GRID = tuple(float(c) for c in np.round(np.logspace(-3, 2, 11), 5))  # 0.001 .. 100, half-decades
#: The genre-like tags among MSD_musicnn's 50 (its spelling); none is classical or reggae.
GENRE_TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "dance", "alternative rock", "jazz", "metal",
    "chillout", "classic rock", "soul", "indie rock", "electronica", "folk", "punk", "blues", "hard rock",
    "ambient", "experimental", "Hip-Hop", "country", "easy listening", "funk", "electro", "heavy metal",
    "Progressive rock", "rnb", "indie pop", "House",
)  # fmt: skip


#: Rows per step of the multi-label head's scaler fit (bounded temporaries; see _fit_multilabel).
SCALER_CHUNK = 16384

class MusicnnFrontEnd:
    """MusicnnNet as a genretag front end: 16 kHz mono -> (200-d embedding, 50 tag probabilities).

    The embedding is a mean over ``n_patches`` 3 s patches of the excerpt
    (all of them when None), so the count is part of the id.
    """

    def __init__(self, net: Any, sample_rate: int, tag_names: Sequence[str], n_patches: int | None) -> None:
        self.net = net
        self.n_patches = n_patches
        self.id: str = f"{net.id}/patches={n_patches or 'all'}"
        self.sample_rate = int(sample_rate)
        self.tag_names = tuple(tag_names)

    def __call__(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        embedding, tags = self.net(y, n_patches=self.n_patches)
        return np.asarray(embedding, dtype=np.float32), np.asarray(tags, dtype=np.float32)


class MusicnnBackend(SklearnBackend):
    """StandardScaler + multinomial logistic regression on the MSD_musicnn embedding.

    With a validation part, ``fit`` scores each C of ``C_grid`` on it, keeps
    the best (ties to the smaller C, the stronger regularisation) and refits
    on train + valid.  Without one it fits ``C`` as given.
    """

    name = "musicnn"
    input_kind = "embedding"
    genre_tags = GENRE_TAGS
    FORMAT = FORMAT

    def __init__(self, C: float = 1.0, C_grid: Sequence[float] = C_GRID, refit_on_valid: bool = True,
                 max_iter: int = 2000, warm_start: bool = False) -> None:
        self.C = C
        self.C_grid = tuple(C_grid)
        self.refit_on_valid = refit_on_valid
        self.max_iter = max_iter
        self.warm_start = warm_start  # multi-label: start from the last fit (genretag learn's folds)

    @classmethod
    def front_end(cls) -> FrontEnd:
        """The shipped network (plugins/models/musicnn_msd.npz); ModelError naming it if missing or corrupt."""
        from .musicnn_net import DEFAULT_PATCHES, SAMPLE_RATE, TAGS, MusicnnNet

        return MusicnnFrontEnd(MusicnnNet.load(), SAMPLE_RATE, TAGS, DEFAULT_PATCHES)

    def _pipeline(self, C: float, seed: int) -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=self.max_iter, random_state=seed))

    def fit(self, X: np.ndarray, y: Sequence[str], *, X_valid: np.ndarray | None = None,
            y_valid: Sequence[str] | None = None, epochs: int | None = None, seed: int = 0,
            callback: Any = None) -> MusicnnBackend:
        if len(y) and not isinstance(y[0], str):  # label sets: a personal multi-label head (genretag learn)
            X = np.asarray(X)  # float32 stays float32: learn's 500,000 x 200 embeddings are 400 MB, not 800
            return self._fit_multilabel(X if X.dtype in (np.float32, np.float64) else X.astype(np.float64),
                                        [[str(g) for g in labels] for labels in y])
        X, y = np.asarray(X, dtype=np.float64), np.asarray([str(g) for g in y])
        self.validation_: dict[str, float] = {}
        if X_valid is not None and y_valid is not None and len(X_valid):
            X_valid, y_valid = np.asarray(X_valid, dtype=np.float64), np.asarray([str(g) for g in y_valid])
            for C in self.C_grid:
                acc = float(np.mean(self._pipeline(C, seed).fit(X, y).predict(X_valid) == y_valid))
                self.validation_[f"C={C:g}"] = acc
                if callback:
                    callback({"step": f"C={C:g}", "val_accuracy": acc})
            self.C = max(self.C_grid, key=lambda C: (self.validation_[f"C={C:g}"], -C))
            if self.refit_on_valid:
                X, y = np.concatenate([X, X_valid]), np.concatenate([y, y_valid])
        self.pipeline_ = self._pipeline(self.C, seed).fit(X, y)
        self.genres_ = [str(g) for g in self.pipeline_.classes_]
        return self

    def _fit_multilabel(self, X: np.ndarray, y: list[list[str]]) -> MusicnnBackend:
        """One logistic regression per label on the standardised embedding (plugins/ovr_logistic.py), at ``C``."""
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from .ovr_logistic import OvRLogistic

        old = getattr(self, "pipeline_", None)
        if not (self.warm_start and old is not None and isinstance(old[-1], OvRLogistic)):
            old = make_pipeline(StandardScaler(), OvRLogistic(C=self.C, warm_start=self.warm_start))
        # The scaler learns its mean and variance chunk by chunk: fitted at once, scikit-learn made a float64
        # copy of X (640 MB of 400,000 x 200 float32 embeddings) on top of the scaled one.
        scaler = StandardScaler()
        for start in range(0, len(X), SCALER_CHUNK):
            scaler.partial_fit(X[start : start + SCALER_CHUNK])
        old.steps[0] = (old.steps[0][0], scaler)
        old.steps[-1][1].fit(scaler.transform(X), y)
        self.pipeline_ = old
        self.genres_ = [str(g) for g in self.pipeline_.classes_]
        self.validation_ = {}
        return self

    @classmethod
    def default_model(cls) -> Path | None:
        return MODELS / "musicnn.joblib"

    def describe(self) -> dict[str, Any]:
        head = "one-vs-rest logistic regressions (multi-label)" if self.multilabel_ else "logistic regression"
        return {"architecture": "MSD_musicnn embedding (mean of the 200-d penultimate layer over 3 s patches) "
                                f"+ StandardScaler + {head}",
                "validation": getattr(self, "validation_", {})}
