"""genretag-knn: a k-nearest-neighbours genre backend, as a third party would publish it.

It imports only genretag's public plugin API (``tagger.inference.backends.Backend``)
and registers through the ``genretag.backends`` entry point in
pyproject.toml; genretag itself knows nothing about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tagger.inference.backends import Backend

__version__ = "0.1.0"
FORMAT = "genretag-knn/1"


class KNNBackend(Backend):
    """Standardised GTZAN features, then a distance-weighted k-nearest-neighbours vote.

    With validation data, ``k`` is chosen from ``k_grid`` on it, then the
    model is refitted on train + valid (the neighbours *are* the model).
    """

    name = "knn"
    input_kind = "features"
    model_suffix = ".joblib"

    def __init__(self, n_neighbors: int = 5, weights: str = "distance",
                 k_grid: Sequence[int] = (1, 3, 5, 9, 15)) -> None:
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.k_grid = tuple(k_grid)

    def _pipeline(self, k: int, n_rows: int) -> Any:
        from sklearn.neighbors import KNeighborsClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=min(k, n_rows), weights=self.weights))

    def fit(self, X: np.ndarray, y: Sequence[str], *, X_valid: np.ndarray | None = None,
            y_valid: Sequence[str] | None = None, epochs: int | None = None, seed: int = 0,
            callback: Any = None) -> KNNBackend:
        """Fit; ``epochs`` and ``seed`` do not apply (k-NN is deterministic and has no epochs)."""
        X, y = np.asarray(X, dtype=np.float64), np.asarray([str(g) for g in y])
        if X_valid is not None and y_valid is not None and len(X_valid):
            y_valid = np.asarray([str(g) for g in y_valid])
            scores = {}
            for k in self.k_grid:
                scores[k] = float(np.mean(self._pipeline(k, len(X)).fit(X, y).predict(X_valid) == y_valid))
                if callback:
                    callback({"step": f"k={k}", "val_accuracy": scores[k]})
            self.n_neighbors = max(scores, key=lambda k: (scores[k], -k))  # best, then smallest k
            X, y = np.concatenate([X, np.asarray(X_valid, dtype=np.float64)]), np.concatenate([y, y_valid])
        self.pipeline_ = self._pipeline(self.n_neighbors, len(X)).fit(X, y)
        self.genres_ = [str(g) for g in self.pipeline_.classes_]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Neighbour votes per genre, in ``genres_`` order."""
        return self.pipeline_.predict_proba(np.asarray(X, dtype=np.float64))

    def save(self, path: Path) -> None:
        """joblib (pickle): loading it runs code, so only load files you trust."""
        import joblib

        joblib.dump({"format": FORMAT, "params": self.get_params(), "pipeline": self.pipeline_}, path)

    @classmethod
    def load(cls, path: Path) -> KNNBackend:
        """Read a file written by ``save``; refuse any other joblib file."""
        import joblib

        data = joblib.load(path)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a genretag-knn model (expected format {FORMAT})")
        self = cls(**data["params"])
        self.pipeline_ = data["pipeline"]
        self.genres_ = [str(g) for g in self.pipeline_.classes_]
        return self
