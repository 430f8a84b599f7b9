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
from .fusion import FusedFrontEnd, by_id
from .params import AnalysisParams

if TYPE_CHECKING:
    from .cache import Cache
    from .models import Model
    from .wire import AnalysisResult, AnalysisTask

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


def fuse(backends: Sequence[str]) -> FusedFrontEnd:
    """The front ends of these embedding backends side by side, each loaded once per process.

    A part whose backend is not an embedding backend, or is the fused
    backend itself, is a BackendError naming it.
    """
    parts = []
    for name in backends:
        cls = get_backend(name)
        if cls.input_kind != "embedding":
            raise BackendError(f"backend {name!r} has no front end to fuse (its input is {cls.input_kind})")
        fe = front_end(name)
        if isinstance(fe, FusedFrontEnd):
            raise BackendError(f"backend {name!r} is itself fused; name its parts instead")
        parts.append((name, fe))
    return FusedFrontEnd(parts)


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
    if isinstance(fe, FusedFrontEnd):
        run = [(name, part) for name, part in fe.parts if part.id not in task.skip]
        outputs = _run_front_end(task, f"backend {backend!r}", lambda: fe.run(y, skip=task.skip))
        for out, (name, part) in zip(outputs, run):
            _check_output(task.path, f"part {name!r} of the front end of backend {backend!r}", part,
                          out.embedding, out.tags)
        fields: dict[str, Any] = {"parts": outputs, "front_end": fe.id}
        if not task.skip:  # else the scan joins the cached parts in (join_parts)
            fields["embedding"], fields["tags"] = fe.join(by_id(outputs))
        return fields
    embedding, tags = _run_front_end(task, f"backend {backend!r}", lambda: fe(y))
    embedding, tags = _check_output(task.path, f"front end of backend {backend!r}", fe, embedding, tags)
    return {"embedding": embedding, "tags": tags, "front_end": fe.id}


def _run_front_end(task: AnalysisTask, who: str, run: Any) -> Any:
    try:
        return run()
    except MemoryError:
        raise
    except Exception as exc:  # a plugin's network can fail in any way; the file's error says so
        raise FileError(task.path, f"front end of {who} failed: {type(exc).__name__}: {exc}") from None


def _check_output(path: str, who: str, fe: FrontEnd, embedding: Any,
                  tags: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A front end's (embedding, tags) as float32 arrays; FileError when their shapes or values are wrong."""
    embedding = np.asarray(embedding, dtype=np.float32)
    if embedding.ndim != 1 or not embedding.size or not np.all(np.isfinite(embedding)):
        raise FileError(path, f"{who} returned an embedding of shape {embedding.shape} (expected (d,), finite)")
    if tags is not None:
        tags = np.asarray(tags, dtype=np.float32)
        if tags.shape != (len(fe.tag_names),) or not np.all(np.isfinite(tags)):
            raise FileError(path, f"{who} returned tags of shape {tags.shape} (expected ({len(fe.tag_names)},), finite)")
    return embedding, tags


def check_front_end(backend: str) -> str:
    """Run on a Dask worker before any file: load the front end there, return its id (or raise)."""
    return front_end(backend).id


# -- in the parent: model rows, the cache ----------------------------------------
def model_input(kind: str, result: AnalysisResult) -> np.ndarray | None:
    """The analysed input of ``kind`` in a worker's result (one that skipped cached parts: :func:`join_parts`)."""
    return {"features": result.features, "slices": result.slices, "embedding": result.embedding}[kind]


def join_parts(cache: Cache, key: str, result: AnalysisResult, fe: FusedFrontEnd) -> None:
    """Set the embedding and tags of a fused result that skipped parts, taking those from the cache.

    A part the cache no longer holds (another scan changed it meanwhile)
    makes the result an error that a rescan analyses again.
    """
    outputs = by_id(result.parts or ())
    missing = [part.id for _, part in fe.parts if part.id not in outputs]
    for part_id in missing:
        found = cache.embeddings_for([key], part_id)
        if key in found:
            outputs[part_id] = found[key]
    try:
        result.embedding, result.tags = fe.join(outputs)
    except KeyError as exc:
        result.error = f"the cached output of front end {exc.args[0]} vanished during the scan; scan again"


def rows(kind: str, value: np.ndarray) -> np.ndarray:
    """One track's input as model rows: a single row, or its slices."""
    return value[np.newaxis] if get_kind(kind).one_row else value


def stack(kind: str, values: Sequence[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Many tracks' inputs as one batch of model rows, and the number of rows of each track."""
    per_track = [rows(kind, np.asarray(v)) for v in values]
    return np.concatenate(per_track).astype(get_kind(kind).dtype, copy=False), [len(r) for r in per_track]


def to_keep(key: str, result: AnalysisResult) -> list[tuple[str, dict[str, Any]]]:
    """(table, row) pairs the cache keeps of an analysed track, so another model needs no decoding.

    A fused front end's result is kept part by part, each under its own id.
    """
    if result.features is not None:
        return [("features", {"path": key, **dict(zip(FEATURE_NAMES, map(float, result.features)))})]
    if result.parts is not None:
        return [("embeddings", _embedding_row(key, p.front_end, p.embedding, p.tags)) for p in result.parts]
    if result.embedding is not None:
        return [("embeddings", _embedding_row(key, result.front_end, result.embedding, result.tags))]
    return []


def _embedding_row(key: str, front_end: str | None, embedding: np.ndarray, tags: np.ndarray | None) -> dict[str, Any]:
    return {"path": key, "front_end": front_end, "vector": np.asarray(embedding, dtype=np.float32).tobytes(),
            "tags": None if tags is None else np.asarray(tags, dtype=np.float32).tobytes()}


def cached_inputs(cache: Cache, model: Model, keys: Sequence[str]
                  ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray | None]], dict[str, frozenset[str]]]:
    """Cached (input, tags) of these tracks that ``model`` can use (features, or its front end's embeddings),
    and the parts a fused front end has cached of the others (:func:`cached_embeddings`)."""
    if model.input_kind == "features":
        return {k: (np.asarray(v, dtype=np.float64), None) for k, v in cache.features_for(keys).items()}, {}
    if model.input_kind == "embedding" and model.front_end is not None:
        return cached_embeddings(cache, model.front_end, keys)
    return {}, {}


def cached_embeddings(cache: Cache, fe: FrontEnd, keys: Sequence[str]
                      ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray | None]], dict[str, frozenset[str]]]:
    """Cached (embedding, tags) of ``fe`` for these tracks, and for a fused one the part ids cached of the rest.

    A fused front end's embedding is joined from its parts' rows; a track
    holding only some of them is in the second dict, so its analysis can
    skip the parts it has.
    """
    if not isinstance(fe, FusedFrontEnd):
        return cache.embeddings_for(keys, fe.id), {}
    found = {part.id: cache.embeddings_for(keys, part.id) for _, part in fe.parts}
    whole, partial = {}, {}
    for key in keys:
        have = {part_id: rows[key] for part_id, rows in found.items() if key in rows}
        if len(have) == len(fe.parts):
            whole[key] = fe.join(have)
        elif have:
            partial[key] = frozenset(have)
    return whole, partial


def tag_probabilities(model: Model, tags: np.ndarray | None) -> dict[str, float] | None:
    """A track's tag probabilities as kept in its record (``Track.tags``): most likely first, or None."""
    if tags is None or model.front_end is None or not model.front_end.tag_names:
        return None
    # NaN: a fused part with tag names that gave none for this track (FusedFrontEnd.join); it has nothing to say
    pairs = sorted(((n, p) for n, p in zip(model.front_end.tag_names, tags.tolist()) if np.isfinite(p)),
                   key=lambda p: -p[1])
    return {name: round(float(p), TAG_DIGITS) for name, p in pairs} or None
