"""One-vs-rest logistic regression for many labels at once: the head of a personal model.

``genretag learn`` fits one binary logistic regression per genre (a file tagged
"Rock; Blues" is a positive of both). All of them are one L-BFGS run over the
weight matrix; the labels share no parameter, so the minimum is that of fitting
each alone with the same ``C`` (scikit-learn's objective). Probabilities are
independent per label. A scikit-learn estimator (tests/test_sklearn_checks.py):
``y`` may also be one plain label per sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

#: Relative change of the objective at which L-BFGS stops (thresholds rank scores; 1e-9 changed none of them).
FTOL = 1e-6
#: Preconditioning: inputs are whitened with eigenvalues floored by this share of their mean (see fit).
SHRINK = 0.05
#: Samples per block of fit's and predict_proba's (samples x labels) products: their memory is a block's,
#: whatever the samples (500,000 files x 200 genres would be 400 MB per float32 matrix, and fit made several).
BLOCK = 16384


def _label_sets(y: Any) -> tuple[list[set[Any]], bool]:
    """(one label set per sample, whether ``y`` gave sets): a 1-d array of scalars gives one label each.

    A set's labels are kept as text (learn's genre names); single labels as they are, so ``classes_`` and
    ``predict`` speak the target's type as a scikit-learn classifier does.
    """
    if y is None:
        raise ValueError("OvRLogistic requires y to be passed, but the target y is None")
    if not isinstance(y, (list, tuple)):
        y = np.asarray(y)
    if len(y) and all(_is_set(labels) for labels in y):
        return [{str(label) for label in labels} for labels in y], True
    y = column_or_1d(y, warn=True)
    kind = type_of_target(y)
    if kind not in ("binary", "multiclass"):
        raise ValueError(f"Unknown label type: {kind}; OvRLogistic takes labels or label sets")
    return [{label} for label in y.tolist()], False


def _is_set(labels: Any) -> bool:
    return isinstance(labels, (list, tuple, set, frozenset))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|, and one pass (np.where took 4x longer)


def _softplus_sum(z: np.ndarray) -> float:
    """sum(log(1 + exp(z))), without overflow, accumulated in float64."""
    return float(np.maximum(z, 0).sum(dtype=np.float64) + np.log1p(np.exp(-np.abs(z))).sum(dtype=np.float64))


class OvRLogistic(ClassifierMixin, BaseEstimator):
    """Independent logistic regressions, one per label, fitted jointly; ``y`` is one label set per sample."""

    #: predict_proba gives one independent probability per label (tagger.inference.outputs skips its sum check).
    multilabel_ = True

    def __init__(self, C: float = 1.0, max_iter: int = 300, tol: float = 1e-5, warm_start: bool = False) -> None:
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start

    def fit(self, X: np.ndarray, y: Sequence[Iterable[str]] | Sequence[Any]) -> OvRLogistic:
        """Fit on ``y``: one label set per sample (learn), or one label per sample (scikit-learn's 1-d target)."""
        from scipy.optimize import minimize

        X = check_array(X, dtype=(np.float64, np.float32))  # float32 stays float32 (learn's embeddings), uncopied
        last = (self.coef_, self.intercept_, list(self.classes_)) if hasattr(self, "coef_") else None
        sets, self.label_sets_ = _label_sets(y)
        if len(sets) != len(X):
            raise ValueError(f"{len(X)} samples but {len(sets)} label sets")
        labels = sorted(set().union(*sets))
        self.classes_ = np.array(labels, dtype=object) if self.label_sets_ else np.array(labels)
        if not len(self.classes_):
            raise ValueError("no labels to learn")
        index = {label: j for j, label in enumerate(self.classes_)}
        # The positive (sample, label) pairs, by sample: no dense (samples x labels) matrix of targets.
        pos_rows = np.fromiter((i for i, labels in enumerate(sets) for _ in labels), dtype=np.int64)
        pos_cols = np.fromiter((index[label] for labels in sets for label in sorted(labels)), dtype=np.int64)
        n, d = X.shape
        L = len(self.classes_)
        rate = np.bincount(pos_cols, minlength=L) / n
        # Solved for U with W = P U, P the inverse square root of the inputs' (shrunk) covariance: the same
        # objective and minimum, but correlated inputs (a network's embedding) no longer slow L-BFGS down
        # (78 iterations -> 26 on correlated synthetic embeddings).  Moments accumulate block by block.
        total, gram = np.zeros(d), np.zeros((d, d))
        for a in range(0, n, BLOCK):
            part = X[a : a + BLOCK].astype(np.float64)
            total += part.sum(axis=0)
            gram += part.T @ part
        mean = total / n
        lam, V = np.linalg.eigh(gram / n - np.outer(mean, mean))
        lam = np.maximum(lam, 0) + SHRINK * max(float(lam.mean()), 1e-12)
        P = (V / np.sqrt(lam)) @ V.T
        P2 = P @ P
        C = float(self.C)
        bounds = np.searchsorted(pos_rows, np.arange(0, n + BLOCK, BLOCK))  # each block's positive pairs

        def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
            U = flat.reshape(d + 1, L)
            W = P @ U[:-1]
            W32, b32 = W.astype(np.float32), U[-1].astype(np.float32)
            loss, G, gb = 0.0, np.zeros((d, L)), np.zeros(L)
            # float32 for the big (block x labels) products: half the time of float64; sums stay float64.
            for k, a in enumerate(range(0, n, BLOCK)):
                part = X[a : a + BLOCK].astype(np.float32, copy=False)
                Z = part @ W32 + b32
                rows, cols = pos_rows[bounds[k] : bounds[k + 1]] - a, pos_cols[bounds[k] : bounds[k + 1]]
                loss += _softplus_sum(Z) - float(Z[rows, cols].sum(dtype=np.float64))
                S = _sigmoid(Z)
                S[rows, cols] -= 1.0  # sigmoid(z) - y; each (sample, label) pair once
                G += part.T @ S
                gb += S.sum(axis=0, dtype=np.float64)
            loss += 0.5 * float(np.sum(W * W)) / C
            grad = np.vstack([P @ G + P2 @ U[:-1] / C, gb])  # d/dU of the loss, through W = P U
            return loss / n, grad.ravel() / n  # scaled by 1/n: the same minimum, better conditioned

        start = self._start(rate, d, last)
        start[:-1] = np.linalg.solve(P, start[:-1])  # the start in U's coordinates
        result = minimize(objective, start.ravel(), jac=True, method="L-BFGS-B",
                          options={"maxiter": self.max_iter, "gtol": self.tol, "ftol": FTOL})
        U = result.x.reshape(d + 1, L)
        W = np.vstack([P @ U[:-1], U[-1:]])
        self.coef_, self.intercept_ = W[:-1].T.copy(), W[-1].copy()
        self.n_iter_ = int(result.nit)
        self.n_features_in_ = d
        return self

    def _start(self, rate: np.ndarray, d: int, last: tuple[np.ndarray, np.ndarray, list[str]] | None) -> np.ndarray:
        """Initial weights: the last fit's for labels it knew (warm_start), else zero with base-rate intercepts."""
        W = np.zeros((d + 1, len(rate)))
        W[-1] = np.log((rate + 1e-6) / (1 - rate + 1e-6))
        if self.warm_start and last is not None and last[0].shape[1] == d:
            coef, intercept, labels = last
            where = {label: j for j, label in enumerate(labels)}
            for j, label in enumerate(self.classes_):
                if label in where:
                    W[:-1, j], W[-1, j] = coef[where[label]], intercept[where[label]]
        return W

    def _checked(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = check_array(X, dtype=(np.float64, np.float32))
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        return X

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self._checked(X), dtype=np.float64) @ self.coef_.T + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, labels): each label's probability on its own, in ``classes_`` order."""
        X = self._checked(X)
        out = np.empty((len(X), len(self.classes_)))
        for a in range(0, len(X), BLOCK):  # no (samples x labels) temporaries beyond a block
            out[a : a + BLOCK] = _sigmoid(self.decision_function(X[a : a + BLOCK]))
        return out

    def predict(self, X: np.ndarray) -> list[list[str]] | np.ndarray:
        """Fitted on label sets: the labels above 0.5 per sample (learn chooses its own thresholds; this is for
        completeness).  Fitted on one label per sample: the most probable one, as scikit-learn's classifiers."""
        proba = self.predict_proba(X)
        if not getattr(self, "label_sets_", True):  # a model pickled before label_sets_ was fitted on sets
            return self.classes_[np.argmax(proba, axis=1)]
        return [[str(c) for c in self.classes_[row >= 0.5]] for row in proba]

    def __sklearn_tags__(self) -> Any:  # multi-label, not the usual one-label classifier
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
