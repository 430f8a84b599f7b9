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

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.pipeline_.predict_proba(np.asarray(X, dtype=np.float64))

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
        return self
