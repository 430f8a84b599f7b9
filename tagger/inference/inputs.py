"""Front ends by backend name, and the input-kind operations that need one loaded.

The kinds themselves live in tagger/inference/kinds.py.  An embedding backend's front
end is loaded here once per process (a worker keeps it between files) and
handed to its kind: for the analysis params, in the worker, and to find the
embeddings the cache kept.  Importable in workers without TensorFlow.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..analysis.features import preprocessing
from ..common.errors import BackendError, FileError, GenretagError
from ..media.params import AnalysisParams
from .backends import backend_info, get_backend
from .frontend import FrontEnd
from .fusion import FusedFrontEnd
from .kinds import Cached, Kind, get_kind

if TYPE_CHECKING:
    from ..analysis.wire import AnalysisTask
    from ..store.cache import Cache

TAG_DIGITS = 4


class Listening(Protocol):
    """What these functions read of a model (tagger.inference.models.Model): its kind and its loaded front end."""

    @property
    def input_kind(self) -> str: ...

    @property
    def front_end(self) -> FrontEnd | None: ...


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


def loaded_front_end(kind: str, backend: str | None) -> FrontEnd | None:
    """The front end of ``backend`` when its kind has one (:attr:`~tagger.inference.kinds.Kind.has_front_end`), else None."""
    return front_end(backend or "") if get_kind(kind).has_front_end else None


def fuse(backends: Sequence[str]) -> FusedFrontEnd:
    """The front ends of these embedding backends side by side, each loaded once per process.

    A part whose backend has no front end, or is the fused backend itself,
    is a BackendError naming it.
    """
    parts = []
    for name in backends:
        cls = get_backend(name)
        if not get_kind(cls.input_kind).has_front_end:
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

    A kind with a front end takes its sample rate and id from the backend's
    front end: ``fe`` when the caller has it loaded, else loaded here.
    """
    k = get_kind(kind)
    return k.params(backend, excerpt, (fe or front_end(backend or "")) if k.has_front_end else None)


def cache_key(params: AnalysisParams) -> str:
    """The cache's record of how a file was analysed with ``params``; a change forces re-analysis.

    The pipeline's preprocessing and the excerpt.  The input kind and the
    front end are not in it: another backend re-predicts from the inputs
    the cache kept (features, or embeddings under their front end's id)
    instead of decoding again.
    """
    return json.dumps(dict(preprocessing(), excerpt=params.excerpt), sort_keys=True)


def _where() -> str:
    return f"{socket.gethostname()} (pid {os.getpid()})"


def kind_of(params: AnalysisParams) -> Kind:
    """The kind of ``params``, in any process.

    A worker process (forkserver, spawn, Dask) starts without the plugins:
    a kind a plugin registers becomes known when its backend's module is
    imported, so an unknown kind imports the params' backend once.
    """
    try:
        return get_kind(params.kind)
    except BackendError:
        if not params.backend:
            raise
    backend_info(params.backend)  # the plugin's module registers its kind on import
    return get_kind(params.kind)


def worker_front_end(task: AnalysisTask) -> FrontEnd | None:
    """In the worker, before decoding: the task's front end, loaded and checked against the scan's rate.

    None for a kind without one; FileError naming the file when it cannot be loaded here.
    """
    if not get_kind(task.params.kind).has_front_end:
        return None
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


def check_front_end(backend: str) -> str:
    """Run on a Dask worker before any file: load the front end there, return its id (or raise)."""
    return front_end(backend).id


# -- in the parent: the cache ----------------------------------------------------
def cached_inputs(cache: Cache, model: Listening, keys: Sequence[str]) -> Cached:
    """Cached (input, tags) of these tracks that ``model`` can use (features, or its front end's embeddings),
    and the parts a fused front end has cached of the others (:func:`tagger.inference.kinds.cached_embeddings`)."""
    return get_kind(model.input_kind).cached(cache, keys, model.front_end)


def tag_probabilities(model: Listening, tags: np.ndarray | None) -> dict[str, float] | None:
    """A track's tag probabilities as kept in its record (``Track.tags``): most likely first, or None."""
    if tags is None or model.front_end is None or not model.front_end.tag_names:
        return None
    # NaN: a fused part with tag names that gave none for this track (FusedFrontEnd.join); it has nothing to say
    pairs = sorted(((n, p) for n, p in zip(model.front_end.tag_names, tags.tolist()) if np.isfinite(p)),
                   key=lambda p: -p[1])
    return {name: round(float(p), TAG_DIGITS) for name, p in pairs} or None
