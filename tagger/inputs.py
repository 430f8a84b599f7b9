"""Input kinds in one place: what the worker computes, what the cache keeps, how a track is predicted.

A backend declares one of three kinds (``tagger.backends.INPUT_KINDS``):

``features``
    the 57 GTZAN features of the excerpt at 22050 Hz, one row per track;
    kept in the ``features`` table, so another model re-predicts without
    decoding.
``slices``
    3 s log-mel slices at 22050 Hz, about ten rows per track whose
    probabilities are averaged; too large to keep (~0.7 MB a track), so
    another model analyses again.
``embedding``
    the backend's own pretrained front end (:class:`~tagger.backends.FrontEnd`),
    run in the worker at the front end's sample rate: one embedding row per
    track plus tag probabilities when the network has tags; kept in the
    ``embeddings`` table under the front end's id.

Scan, prediction, model checks and training ask this module instead of
testing a kind's name, so a new kind is added here.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .backends import FrontEnd, get_backend
from .errors import BackendError, FileError, GenretagError
from .features import FEATURE_NAMES, Analysis, analyse, preprocessing
from .params import AnalysisParams

if TYPE_CHECKING:
    from .cache import Cache
    from .models import Model
    from .worker import AnalysisResult, AnalysisTask

TAG_DIGITS = 4


@dataclass(frozen=True)
class Kind:
    """What differs between input kinds, as data."""

    name: str
    description: str  # for messages: "a feature table has no <description>"
    must_match: tuple[str, ...]  # preprocessing keys a model card must share with this pipeline
    one_row: bool  # one model row per track; else slices, whose probabilities are averaged
    dtype: type
    from_table: bool  # a GTZAN feature table can provide it; else only audio can


KINDS: dict[str, Kind] = {
    "features": Kind("features", "features", ("sr", "stft", "features"), True, np.float64, True),
    "slices": Kind("slices", "log-mel slices",
                   ("sr", "stft", "n_fft", "hop_length", "n_mels", "slice_frames", "log_mel"),
                   False, np.float32, False),
    "embedding": Kind("embedding", "embeddings", (), True, np.float32, False),
}  # fmt: skip


def get_kind(name: str) -> Kind:
    """The kind called ``name``; BackendError for one genretag does not know."""
    try:
        return KINDS[name]
    except KeyError:
        raise BackendError(f"unknown input kind {name!r} (known: {', '.join(KINDS)})") from None


# -- front ends ------------------------------------------------------------------
_front_ends: dict[str, FrontEnd] = {}


def front_end(backend: str) -> FrontEnd:
    """The front end of ``backend``, loaded once per process: a worker keeps it between files.

    A missing or corrupt weights file is the backend's ModelError (naming
    the file); anything else a front end raises becomes one BackendError.
    """
    loaded = _front_ends.get(backend)
    if loaded is not None:
        return loaded
    cls = get_backend(backend)
    try:
        loaded = cls.front_end()
    except GenretagError:
        raise
    except Exception as exc:  # a plugin's loader can fail in any way
        raise BackendError(f"backend {backend!r} cannot load its front end ({type(exc).__name__}: {exc})") from None
    problem = _front_end_problem(loaded)
    if problem:
        raise BackendError(f"backend {backend!r}: its front end {problem}")
    _front_ends[backend] = loaded
    return loaded


def _front_end_problem(fe: Any) -> str | None:
    if not callable(fe):
        return "is not callable"
    if not isinstance(getattr(fe, "id", None), str) or not fe.id:
        return "has no id (a content hash of its weights)"
    rate = getattr(fe, "sample_rate", None)
    if not isinstance(rate, int) or rate <= 0:
        return f"has sample_rate {rate!r}, not a positive int"
    names = getattr(fe, "tag_names", None)
    if not isinstance(names, (tuple, list)) or not all(isinstance(n, str) for n in names):
        return "has tag_names that are not a tuple of strings"
    return None


def analysis_params(kind: str, backend: str | None = None, excerpt: float | None = None,
                    fe: FrontEnd | None = None) -> AnalysisParams:
    """The one AnalysisParams for analysing files as ``kind`` (scans, training and benchmarks alike).

    An ``"embedding"`` kind takes its sample rate and id from the backend's
    front end: ``fe`` when the caller has it loaded, else loaded here.
    """
    if kind != "embedding":
        return AnalysisParams(excerpt, kind, backend)
    fe = fe or front_end(backend or "")
    return AnalysisParams(excerpt, kind, backend, fe.id, fe.sample_rate)


def cache_key(params: AnalysisParams) -> str:
    """The cache's record of how a file was analysed with ``params``; a change forces re-analysis.

    The pipeline's preprocessing and the excerpt.  The input kind and the
    front end are not in it: another backend re-predicts from the inputs
    the cache kept (features, or embeddings under their front end's id)
    instead of decoding again.  Here, not in tagger/params.py, which
    tagger/features.py imports.
    """
    return json.dumps(dict(preprocessing(), excerpt=params.excerpt), sort_keys=True)


def _where() -> str:
    return f"{socket.gethostname()} (pid {os.getpid()})"


def _worker_front_end(task: AnalysisTask) -> FrontEnd:
    backend = task.params.backend
    try:
        fe = front_end(backend or "")
    except GenretagError as exc:
        reason = f"cannot load the front end of backend {backend!r} on {_where()}: {exc}"
        raise FileError(task.path, reason) from None
    if fe.sample_rate != task.params.sample_rate:  # a Dask worker with another version of the backend
        raise FileError(task.path, f"the front end of backend {backend!r} on {_where()} takes {fe.sample_rate} Hz, "
                                   f"the scan asked for {task.params.sample_rate} Hz")
    return fe


# -- in the worker ---------------------------------------------------------------
def sample_rate(task: AnalysisTask) -> int:
    """The rate the file is decoded at: the params' (an embedding's front end is loaded and checked first)."""
    if task.params.kind == "embedding":
        _worker_front_end(task)
    return task.params.sample_rate


def checked(path: str, out: Analysis) -> dict[str, Any]:
    """An analysis's features and slices as result fields; FileError for non-finite features."""
    if out.features is not None and not np.all(np.isfinite(out.features)):
        raise FileError(path, "analysis produced non-finite feature values")
    return {"features": out.features, "slices": out.slices}


def compute(task: AnalysisTask, y: np.ndarray, sr: int) -> dict[str, Any]:
    """The inputs of the task's kind from a decoded, checked excerpt, as AnalysisResult fields.

    Raises FileError naming what went wrong; the worker turns it into the file's error.
    """
    kind, backend = task.params.kind, task.params.backend
    if kind != "embedding":
        out = analyse(y, sr, features=kind == "features", slices=kind == "slices")
        return checked(task.path, out)
    fe = _worker_front_end(task)
    try:
        embedding, tags = fe(y)
    except MemoryError:
        raise
    except Exception as exc:  # a plugin's network can fail in any way; the file's error says so
        reason = f"front end of backend {backend!r} failed: {type(exc).__name__}: {exc}"
        raise FileError(task.path, reason) from None
    embedding = np.asarray(embedding, dtype=np.float32)
    if embedding.ndim != 1 or not embedding.size or not np.all(np.isfinite(embedding)):
        raise FileError(task.path, f"front end of backend {backend!r} returned an embedding of shape "
                                   f"{embedding.shape} (expected (d,), finite)")
    if tags is not None:
        tags = np.asarray(tags, dtype=np.float32)
        if tags.shape != (len(fe.tag_names),) or not np.all(np.isfinite(tags)):
            raise FileError(task.path, f"front end of backend {backend!r} returned tags of shape {tags.shape} "
                                       f"(expected ({len(fe.tag_names)},), finite)")
    return {"embedding": embedding, "tags": tags, "front_end": fe.id}


def check_front_end(backend: str) -> str:
    """Run on a Dask worker before any file: load the front end there, return its id (or raise)."""
    return front_end(backend).id


# -- in the parent: model rows, the cache ----------------------------------------
def model_input(kind: str, result: AnalysisResult) -> np.ndarray | None:
    """The analysed input of ``kind`` in a worker's result."""
    return {"features": result.features, "slices": result.slices, "embedding": result.embedding}[kind]


def rows(kind: str, value: np.ndarray) -> np.ndarray:
    """One track's input as model rows: a single row, or its slices."""
    return value[np.newaxis] if get_kind(kind).one_row else value


def stack(kind: str, values: Sequence[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Many tracks' inputs as one batch of model rows, and the number of rows of each track."""
    per_track = [rows(kind, np.asarray(v)) for v in values]
    return np.concatenate(per_track).astype(get_kind(kind).dtype, copy=False), [len(r) for r in per_track]


def to_keep(key: str, result: AnalysisResult) -> tuple[str, dict[str, Any]] | None:
    """(table, row) the cache keeps of an analysed track, so another model needs no decoding."""
    if result.features is not None:
        return "features", {"path": key, **dict(zip(FEATURE_NAMES, map(float, result.features)))}
    if result.embedding is not None:
        tags = None if result.tags is None else np.asarray(result.tags, dtype=np.float32).tobytes()
        return "embeddings", {"path": key, "front_end": result.front_end,
                              "vector": np.asarray(result.embedding, dtype=np.float32).tobytes(), "tags": tags}
    return None


def kept(cache: Cache, model: Model, keys: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Cached (input, tags) of these tracks that ``model`` can use: features, or its front end's embeddings."""
    if model.input_kind == "features":
        return {k: (np.asarray(v, dtype=np.float64), None) for k, v in cache.features_for(keys).items()}
    if model.input_kind == "embedding" and model.front_end is not None:
        return cache.embeddings_for(keys, model.front_end.id)
    return {}


def tag_probabilities(model: Model, tags: np.ndarray | None) -> dict[str, float] | None:
    """A track's tag probabilities as kept in its record (``Track.tags``): most likely first, or None."""
    if tags is None or model.front_end is None or not model.front_end.tag_names:
        return None
    pairs = sorted(zip(model.front_end.tag_names, tags.tolist()), key=lambda p: -p[1])
    return {name: round(float(p), TAG_DIGITS) for name, p in pairs}
