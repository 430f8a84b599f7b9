"""What the heads over pretrained front ends share: StandardScaler + logistic regression on an embedding.

musicnn, efficientat, jamendo and fusion differ only in the front end they
listen through (``front_end``) and their model file; the head, its choice
of C on the valid part and genretag learn's multi-label variant are here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .sklearn_base import SklearnBackend

C_GRID = tuple(float(c) for c in np.round(np.logspace(-3, 2, 11), 5))  # 0.001 .. 100, half-decades
MODELS = Path(__file__).parent / "models"
#: Rows per step of the multi-label head's scaler fit (bounded temporaries; see _fit_multilabel).
SCALER_CHUNK = 16384


class NetFrontEnd:
    """A pretrained network as a genretag front end (tagger.inference.backends.FrontEnd).

    The network's ``id`` already names its weights and settings (windows or
    patches heard), so cached outputs are reused only under the same ones.
    """

    def __init__(self, net: Any, sample_rate: int, tag_names: Sequence[str]) -> None:
        self.net = net
        self.id: str = net.id
        self.sample_rate = int(sample_rate)
        self.tag_names = tuple(tag_names)

    def __call__(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        embedding, tags = self.net(y)
        return np.asarray(embedding, dtype=np.float32), None if tags is None else np.asarray(tags, dtype=np.float32)


class EmbeddingHead(SklearnBackend):
    """StandardScaler + multinomial logistic regression on a front end's embedding.

    With a valid part, ``fit`` scores each C of ``C_grid`` on it, keeps the
    best (ties to the smaller C, the stronger regularisation) in ``C_`` and
    ``best_params_`` and refits on train + valid.  Without one it fits ``C``.
    """

    input_kind = "embedding"
    #: Words for the model card: what the front end is (the head is described here).
    EMBEDDING: str = "a pretrained front end's embedding"

    def __init__(self, C: float = 1.0, C_grid: Sequence[float] = C_GRID, refit_on_valid: bool = True,
                 max_iter: int = 2000, warm_start: bool = False) -> None:
        self.C = C
        self.C_grid = C_grid
        self.refit_on_valid = refit_on_valid
        self.max_iter = max_iter
        self.warm_start = warm_start  # multi-label: start from the last fit (genretag learn's folds)

    def _pipeline(self, C: float, seed: int) -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=self.max_iter, random_state=seed))

    def fit(self, X: np.ndarray, y: Sequence[str], *, X_valid: np.ndarray | None = None,
            y_valid: Sequence[str] | None = None, epochs: int | None = None, seed: int = 0,
            callback: Any = None) -> EmbeddingHead:
        labels = y if y is None or isinstance(y, (list, tuple)) else np.asarray(y)
        if labels is not None and len(labels) and isinstance(labels[0], (list, tuple, set, frozenset)):
            # label sets: a personal multi-label head (genretag learn). float32 stays float32: learn's
            # 500,000 x 200 embeddings are 400 MB, not 800.
            X, _ = self._fit_X(X, y, dtype=(np.float64, np.float32))
            return self._fit_multilabel(X, [[str(g) for g in genres] for genres in labels])
        X, y, X_valid, y_valid = self._fit_data(X, y, X_valid, y_valid)
        self.validation_: dict[str, float] = {}
        self.C_ = float(self.C)
        if X_valid is not None and y_valid is not None:
            for C in self.C_grid:
                acc = float(np.mean(self._pipeline(C, seed).fit(X, y).predict(X_valid) == y_valid))
                self.validation_[f"C={C:g}"] = acc
                if callback:
                    callback({"step": f"C={C:g}", "val_accuracy": acc})
            self.C_ = max(self.C_grid, key=lambda C: (self.validation_[f"C={C:g}"], -C))
            if self.refit_on_valid:
                X, y = np.concatenate([X, X_valid]), np.concatenate([y, y_valid])
        self.best_params_ = {"C": self.C_}
        self.pipeline_ = self._pipeline(self.C_, seed).fit(X, y)
        self.genres_ = [str(g) for g in self.pipeline_.classes_]
        return self

    def _fit_multilabel(self, X: np.ndarray, y: list[list[str]]) -> EmbeddingHead:
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

    @property
    def n_iter_(self) -> Any:
        """The solver's iterations in the last fit (scikit-learn's convention beside ``max_iter``)."""
        return self.pipeline_[-1].n_iter_

    @classmethod
    def default_model(cls) -> Path | None:
        """The head genretag ships for this backend: plugins/models/<name>.joblib (a subclass's own name finds none)."""
        return MODELS / f"{cls.name}.joblib"

    def _extra_state(self) -> dict[str, Any]:
        return {"C_": getattr(self, "C_", None)}

    def _set_extra_state(self, data: dict[str, Any]) -> None:
        if data.get("C_") is not None:
            self.C_ = float(data["C_"])

    def describe(self) -> dict[str, Any]:
        head = "one-vs-rest logistic regressions (multi-label)" if self.multilabel_ else "logistic regression"
        return {"architecture": f"{self.EMBEDDING} + StandardScaler + {head}",
                "C": getattr(self, "C_", None), "validation": getattr(self, "validation_", {})}
