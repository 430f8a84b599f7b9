"""The ``svc`` backend: StandardScaler + SVC with probabilities on the 57 GTZAN features."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tagger.backends import Backend

FORMAT = "genretag-svc/1"
MODELS = Path(__file__).parent / "models"


class SVCBackend(Backend):
    """An RBF support-vector classifier on standardised GTZAN features.

    ``C`` and ``gamma`` are chosen on the validation part when one is given
    to ``fit`` (grids ``C_grid`` and ``gamma_grid``); the final model is then
    refitted on train + valid with the chosen values.
    """

    name = "svc"
    input_kind = "features"
    model_suffix = ".joblib"

    def __init__(self, C: float = 10.0, gamma: float | str = "scale", log_variances: bool = True,
                 C_grid: Sequence[float] = (0.3, 1, 3, 10, 30, 100),
                 gamma_grid: Sequence[float | str] = ("scale", 0.003, 0.01, 0.03, 0.1),
                 refit_on_valid: bool = True) -> None:
        self.C = C
        self.gamma = gamma
        self.log_variances = log_variances
        self.C_grid = tuple(C_grid)
        self.gamma_grid = tuple(gamma_grid)
        self.refit_on_valid = refit_on_valid

    def _pipeline(self, C: float, gamma: float | str, seed: int, *, proba: bool = True) -> Any:
        """Scaler + SVC; with ``proba``, Platt-scaled probabilities (what SVC(probability=True) did)."""
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import FunctionTransformer, StandardScaler
        from sklearn.svm import SVC

        steps: list[Any] = []
        if self.log_variances:
            steps.append(FunctionTransformer(_log_variances))
        svc = SVC(C=C, gamma=gamma, random_state=seed)
        clf = CalibratedClassifierCV(svc, method="sigmoid", cv=5, ensemble=False) if proba else svc
        return make_pipeline(*steps, StandardScaler(), clf)

    def fit(self, X: np.ndarray, y: Sequence[str], *, X_valid: np.ndarray | None = None,
            y_valid: Sequence[str] | None = None, epochs: int | None = None, seed: int = 0,
            callback: Any = None) -> SVCBackend:
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        self.validation_ = {}
        if X_valid is not None and y_valid is not None and len(X_valid):
            best = (-1.0, self.C, self.gamma)
            for C in self.C_grid:
                for gamma in self.gamma_grid:
                    pipe = self._pipeline(C, gamma, seed, proba=False).fit(X, y)
                    acc = float(np.mean(pipe.predict(X_valid) == np.asarray(y_valid)))
                    self.validation_[f"C={C},gamma={gamma}"] = acc
                    if callback:
                        callback({"step": f"C={C} gamma={gamma}", "val_accuracy": acc})
                    if acc > best[0]:
                        best = (acc, C, gamma)
            _, self.C, self.gamma = best
            if self.refit_on_valid:
                X = np.concatenate([X, np.asarray(X_valid, dtype=np.float64)])
                y = np.concatenate([y, np.asarray(y_valid)])
        self.pipeline_ = self._pipeline(self.C, self.gamma, seed).fit(X, y)
        self.genres_ = [str(g) for g in self.pipeline_.classes_]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.pipeline_.predict_proba(np.asarray(X, dtype=np.float64))

    def save(self, path: Path) -> None:
        import joblib

        joblib.dump({"format": FORMAT, "pipeline": self.pipeline_, "params": self.get_params()}, path)

    @classmethod
    def load(cls, path: Path) -> SVCBackend:
        import joblib

        data = joblib.load(path)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a genretag svc model (expected format {FORMAT})")
        self = cls(**data["params"])
        self.pipeline_ = data["pipeline"]
        self.genres_ = [str(g) for g in self.pipeline_.classes_]
        return self

    @classmethod
    def default_model(cls) -> Path | None:
        return MODELS / "svc.joblib"


def _log_variances(X: np.ndarray) -> np.ndarray:
    """log1p of the variance columns: their scale spans orders of magnitude."""
    from tagger.features import FEATURE_NAMES

    X = np.array(X, dtype=np.float64, copy=True)
    idx = [i for i, n in enumerate(FEATURE_NAMES) if n.endswith("_var")]
    X[:, idx] = np.log1p(np.maximum(X[:, idx], 0.0))
    return X
