"""The heads follow scikit-learn's estimator conventions (issue 23, point 6).

``OvRLogistic`` (learn's head) is a scikit-learn estimator: it runs
scikit-learn's own checks, less the few named in SKIPPED, each with why.
The backends' heads (svc, the embedding heads, fusion, learn's personal
model) are genretag backends over scikit-learn pipelines, not estimators
themselves: for them the rules are checked directly (``fit`` leaves the
constructor's parameters as they were, everything it learns ends in ``_``,
and ``cls(**get_params())`` rebuilds the same parameters).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from plugins.cnn import CNNBackend
from plugins.efficientat import EfficientATBackend
from plugins.embedding_head import EmbeddingHead
from plugins.fusion import FusionBackend
from plugins.jamendo import JamendoBackend
from plugins.musicnn import MusicnnBackend
from plugins.ovr_logistic import OvRLogistic
from plugins.resnet import ResNetBackend
from plugins.svc import SVCBackend
from tagger.analysis.features import FEATURE_NAMES

_BINARY_COLUMNS = ("a two-label problem gives two independent columns, one per label (learn reads each genre's "
                   "own score), not scikit-learn's single binary column; and the probabilities are independent "
                   "per label, so a row need not sum to 1")
#: The checks OvRLogistic is not run on, and why: each is about single-label classification, which it does not do.
SKIPPED = {
    "check_classifiers_train": _BINARY_COLUMNS,
    "check_classifiers_classes": _BINARY_COLUMNS,
    "check_decision_proba_consistency": _BINARY_COLUMNS,
    "check_classifier_multioutput": "its multi-label target is one label set per sample (learn's input), "
                                    "not scikit-learn's (samples x outputs) matrix of classes",
}


def _name(check: Any) -> str:
    while isinstance(check, functools.partial):
        check = check.func
    return str(check.__name__)


@parametrize_with_checks([OvRLogistic(max_iter=50)])
def test_ovr_logistic_passes_scikit_learns_checks(estimator: Any, check: Any) -> None:
    if _name(check) in SKIPPED:
        pytest.skip(SKIPPED[_name(check)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the checks' degenerate data (one sample, constant columns)
        check(estimator)


def test_ovr_logistic_keeps_learns_label_sets_and_reads_a_string_as_one_label() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    sets = [["rock", "blues"] if x[0] > 0 else ["jazz"] for x in X]
    model = OvRLogistic().fit(X, sets)
    assert list(model.classes_) == ["blues", "jazz", "rock"] and model.label_sets_
    assert all(isinstance(p, list) for p in model.predict(X[:3]))
    single = OvRLogistic().fit(X, ["rock" if x[0] > 0 else "jazz" for x in X])  # was read letter by letter
    assert list(single.classes_) == ["jazz", "rock"] and not single.label_sets_
    assert set(single.predict(X)) == {"jazz", "rock"}


def _data(d: int, n: int = 24, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    y = ["jazz", "rock", "metal"] * (n // 3)
    X = rng.normal(size=(n, d)) + np.repeat([[0.0], [2.0], [4.0]], n // 3, axis=1).T.reshape(n, 1)
    return np.abs(X) + 0.1, y  # positive: the svc takes the log of the variance columns


HEADS: dict[str, tuple[type, dict[str, Any]]] = {  # each head as training or learn builds it; small grids, fast
    "svc": (SVCBackend, {"C_grid": [1.0, 10.0], "gamma_grid": [0.01], "vote": 1}),
    "svc-pairs": (SVCBackend, {"pairs": [(1.0, 0.01), (10.0, "scale")]}),
    "embedding": (EmbeddingHead, {"C_grid": [0.1, 1.0]}),
    "musicnn": (MusicnnBackend, {"C_grid": [0.1, 1.0]}),
    "efficientat": (EfficientATBackend, {"C_grid": [0.1, 1.0]}),
    "jamendo": (JamendoBackend, {"C_grid": [0.1, 1.0]}),
    "fusion": (FusionBackend, {"C_grid": [0.1, 1.0]}),
    "learn": (MusicnnBackend, {"C": 0.5, "warm_start": True}),  # tagger/run/learn.py's personal model
}


#: The Keras backends too (their fit needs TensorFlow and minutes: only __init__ is checked here).
BACKENDS = {**HEADS, "cnn": (CNNBackend, {"filters": [4, 8]}), "resnet": (ResNetBackend, {"filters": [4, 8]})}


def _make(name: str) -> Any:
    cls, kwargs = BACKENDS[name]
    return cls(**kwargs)


def _fit(name: str, model: Any, seed: int = 0) -> None:
    d = len(FEATURE_NAMES) if name.startswith("svc") else 8
    X, y = _data(d, seed=seed)
    if name == "learn":
        model.fit(X, [[g, "all"] for g in y])  # label sets: the multi-label head
    else:
        Xv, yv = _data(d, n=12, seed=seed + 1)
        model.fit(X, y, X_valid=None if name == "svc-pairs" else Xv, y_valid=yv)


@pytest.mark.parametrize("name", list(HEADS))
def test_fit_leaves_the_parameters_alone_and_what_it_learns_ends_in_underscore(name: str) -> None:
    model = _make(name)
    params = model.get_params()
    before = joblib.hash(params)
    attributes = set(vars(model))
    _fit(name, model)
    _fit(name, model, seed=2)  # a second fit (learn's folds warm-start from the first)
    assert joblib.hash(model.get_params()) == before
    assert all(model.get_params()[k] is v for k, v in params.items())  # the very objects given
    learned = set(vars(model)) - attributes
    assert learned and all(a.endswith("_") and not a.startswith("_") for a in learned), sorted(learned)
    assert model.predict_proba(_data(len(FEATURE_NAMES) if name.startswith("svc") else 8)[0]).shape[1] == len(
        model.genres_)


@pytest.mark.parametrize("name", list(BACKENDS))
def test_init_only_stores_so_get_params_rebuilds_the_same_head(name: str) -> None:
    model = _make(name)
    params = model.get_params()
    assert all(params[k] is v for k, v in BACKENDS[name][1].items())  # stored as given, not converted
    again = type(model)(**params).get_params()
    assert joblib.hash(again) == joblib.hash(params)
    assert all(again[k] is v for k, v in params.items())
