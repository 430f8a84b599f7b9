"""What the scikit-learn backends (svc, musicnn's head) share: a fitted pipeline kept in a joblib file.

The file is a dict tagged with the backend's ``FORMAT`` string, so ``load``
refuses a foreign or older file with a clear reason instead of misusing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tagger.inference.backends import Backend


class SklearnBackend(Backend):
    """A backend whose fitted state is ``pipeline_`` (a scikit-learn classifier) plus a few extras."""

    model_suffix = ".joblib"
    #: Tag of the joblib file, e.g. "genretag-svc/2"; bump it when the stored dict changes.
    FORMAT: ClassVar[str]

    pipeline_: Any

    @property
    def multilabel_(self) -> bool:
        """True when the fitted classifier gives each genre an independent probability (genretag learn's heads)."""
        steps = getattr(getattr(self, "pipeline_", None), "steps", None)
        return bool(getattr(steps[-1][1] if steps else getattr(self, "pipeline_", None), "multilabel_", False))

    @property
    def classes_(self) -> np.ndarray:
        """The labels as fitted (``genres_`` is their text): scikit-learn's name for the column order."""
        return self.pipeline_.classes_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = self._check_X(X)  # before reading pipeline_: an unfitted model raises NotFittedError
        return self.pipeline_.predict_proba(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable label of each row (its top genre); a multi-label model's label sets."""
        X = self._check_X(X)
        if self.multilabel_:
            return self.pipeline_.predict(X)
        return self.classes_[np.argmax(self.pipeline_.predict_proba(X), axis=1)]

    def _check_X(self, X: Any) -> np.ndarray:
        """``X`` to predict on: a finite 2-d float array with the columns the model was fitted on."""
        from sklearn.utils.validation import check_array, check_is_fitted

        check_is_fitted(self, "pipeline_")
        return self._check_columns(check_array(X, dtype=np.float64))

    def _check_columns(self, X: np.ndarray) -> np.ndarray:
        if X.shape[1] != getattr(self, "n_features_in_", X.shape[1]):  # a model saved without the count: any
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        return X

    def _fit_data(self, X: Any, y: Any, X_valid: Any = None, y_valid: Any = None,
                  dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``fit``'s inputs checked as scikit-learn checks them (errors name the problem, not a later step).

        Sets ``n_features_in_``; the valid part, when given, must have the same columns.
        ``y`` is one label per sample; a column is accepted with scikit-learn's warning.
        """
        from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d

        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        X, y = self._fit_X(X, column_or_1d(y, warn=True), dtype)
        if X_valid is None or y_valid is None or not len(X_valid):
            return X, y, None, None
        X_valid, y_valid = check_array(X_valid, dtype=dtype), column_or_1d(y_valid, warn=True)
        check_consistent_length(X_valid, y_valid)
        return X, y, self._check_columns(X_valid), y_valid

    def _fit_X(self, X: Any, y: Any, dtype: Any = np.float64) -> tuple[np.ndarray, Any]:
        """``fit``'s ``X`` checked against its labels ``y`` (one per sample, or label sets); sets ``n_features_in_``."""
        from sklearn.utils.validation import check_array, check_consistent_length

        X = check_array(X, dtype=dtype)
        check_consistent_length(X, y)
        self.n_features_in_ = X.shape[1]
        return X, y

    def __sklearn_tags__(self) -> Any:
        """scikit-learn >= 1.6 reads an estimator's kind from its tags: a classifier that needs ``y``."""
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags(), input_tags=InputTags())

    def _more_tags(self) -> dict[str, Any]:
        """The same for scikit-learn < 1.6 (setup.cfg allows 1.4)."""
        return {"requires_y": True}

    _estimator_type = "classifier"  # scikit-learn < 1.6's is_classifier

    def _extra_state(self) -> dict[str, Any]:
        """Fitted state besides the pipeline, saved in the same file."""
        return {}

    def _set_extra_state(self, data: dict[str, Any]) -> None:
        """Restore what :meth:`_extra_state` saved."""

    def save(self, path: Path) -> None:
        import joblib

        joblib.dump({"format": self.FORMAT, "pipeline": self.pipeline_, "params": self.get_params(),
                     **self._extra_state()}, path)

    @classmethod
    def load(cls, path: Path) -> SklearnBackend:
        import joblib

        data = joblib.load(path)
        if not isinstance(data, dict) or data.get("format") != cls.FORMAT:
            raise ValueError(f"not a genretag {cls.name} model (expected format {cls.FORMAT})")
        self = cls(**data["params"])
        self.pipeline_ = data["pipeline"]
        self._set_extra_state(data)
        self.genres_ = [str(g) for g in self.pipeline_.classes_]
        if hasattr(self.pipeline_, "n_features_in_"):
            self.n_features_in_ = int(self.pipeline_.n_features_in_)
        return self
