"""The heads follow scikit-learn's estimator conventions (issue 23, point 6).

``OvRLogistic`` (learn's head), the svc and the embedding heads (musicnn,
efficientat, jamendo and fusion share EmbeddingHead's code: musicnn stands
for them) run scikit-learn's own checks, less the few named in SKIPPED,
each with why.  The backends do not inherit scikit-learn's BaseEstimator
(listing backends must not import scikit-learn); they give the same
interface themselves (plugins/sklearn_base.py).  The rules are also checked
directly on every head as training and learn build it (``fit`` leaves the
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


#: The backends' heads as the checks fit them: ``fit(X, y)`` without a valid part fits ``C`` (and ``gamma``)
#: alone. The svc's log of its variance columns presumes the 57 GTZAN features, and the checks' data has
#: 1 to 10 columns: there it is off (test_svc_log_variances_need_the_57_features covers it).
SKLEARN_HEADS = [SVCBackend(log_variances=False), MusicnnBackend()]


#: (head, check) pairs not run, and why.
SKIPPED_HEADS = {
    ("SVCBackend", "check_estimators_pickle"): "with readonly_memmap: scikit-learn's own SVC(probability=True) fails "
    "it (libsvm's predict_proba needs writable arrays); genretag loads its models into memory, never memory-mapped",
}


with warnings.catch_warnings():  # on purpose: listing backends must not import scikit-learn
    warnings.filterwarnings("ignore", message="Estimator .* does not inherit from `sklearn.base.BaseEstimator`")
    _CHECK_HEADS = parametrize_with_checks(SKLEARN_HEADS)


@_CHECK_HEADS
def test_backend_heads_pass_scikit_learns_checks(estimator: Any, check: Any) -> None:
    key = (type(estimator).__name__, _name(check))
    if key in SKIPPED_HEADS and (key[1] != "check_estimators_pickle" or check.keywords.get("readonly_memmap")):
        pytest.skip(SKIPPED_HEADS[key])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        check(estimator)


def test_svc_log_variances_need_the_57_features() -> None:
    X, y = _data(len(FEATURE_NAMES))
    model = SVCBackend().fit(X, y)
    assert model.n_features_in_ == len(FEATURE_NAMES) and list(model.classes_) == sorted(set(y))
    with pytest.raises(ValueError, match=f"X has 3 features, but SVCBackend is expecting {len(FEATURE_NAMES)}"):
        model.predict_proba(X[:, :3])
    with pytest.raises(ValueError, match="log_variances needs the 57 GTZAN features as columns, got 3"):
        SVCBackend().fit(X[:, :3], y)


def test_repr_names_the_changed_parameters_so_check_ids_are_stable() -> None:
    assert repr(SVCBackend(log_variances=False, vote=3)) == "SVCBackend(log_variances=False, vote=3)"
    assert repr(MusicnnBackend()) == "MusicnnBackend()"


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
