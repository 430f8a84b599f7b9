"""Input kinds as objects: what a backend's model reads, and what each kind needs on both sides of the process boundary.

A backend names its kind (``Backend.input_kind``); :data:`KINDS` is the only
list of kinds.  A kind says how a worker makes its input from audio (window,
streaming, compute), how the parent turns it into model rows, what the cache
keeps of it and reads back, and which preprocessing a model card must share
with the pipeline.  Callers ask the kind instead of testing its name, so a
new kind (a plugin's, or a test's) is one :func:`register_kind` call.

Kinds whose backends bring a front end (:attr:`Kind.has_front_end`) are handed
it loaded; loading front ends by backend name is tagger/inference/inputs.py's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..analysis.features import FEATURE_NAMES, Analysis, analyse, analyse_chunks
from ..analysis.wire import AnalysisResult, AnalysisTask
from ..common.errors import BackendError, FileError
from ..media.audio import CHUNK_SECONDS
from ..media.params import AnalysisParams
from .frontend import FrontEnd
from .fusion import FusedFrontEnd, by_id

if TYPE_CHECKING:
    from ..store.cache import Cache

#: What a kind finds in the cache: (input, tags) by track key, and the fused parts cached of the others.
Cached = tuple[dict[str, tuple[np.ndarray, np.ndarray | None]], dict[str, frozenset[str]]]
#: (table, row) pairs the cache keeps of an analysed track.
Kept = list[tuple[str, dict[str, Any]]]


class Kind:
    """One input kind; subclasses override what differs.

    The defaults suit a kind computed from one decoded excerpt at the
    params' sample rate, one row per track, kept nowhere.  A kind without
    a field of its own in :class:`~tagger.analysis.wire.AnalysisResult` returns
    ``{"extra": {name: value}}`` from :meth:`compute`.
    """

    name: str = ""
    description: str = ""  # for messages: "a feature table has no <description>"
    must_match: tuple[str, ...] = ()  # preprocessing keys a model card must share with this pipeline
    one_row: bool = True  # one model row per track; else rows (slices) whose probabilities are averaged
    dtype: type = np.float32
    from_table: bool = False  # a GTZAN feature table can provide it; else only audio can
    streams: bool = False  # a window longer than CHUNK_SECONDS is analysed chunk by chunk, not cut to it
    has_front_end: bool = False  # its backends bring a front end (Backend.front_end) that the worker runs

    # -- both sides ------------------------------------------------------------
    def params(self, backend: str | None, excerpt: float | None, fe: FrontEnd | None) -> AnalysisParams:
        """The one AnalysisParams for analysing files as this kind."""
        return AnalysisParams(excerpt, self.name, backend)

    # -- in the worker ---------------------------------------------------------
    def window(self, params: AnalysisParams) -> float | None:
        """Seconds decoded at once: the excerpt, or CHUNK_SECONDS from the middle for a kind that does not stream.

        A front end summarises a track from a few patches (musicnn: 3 of
        3 s), so a longer window adds decoding memory and no information.
        """
        return CHUNK_SECONDS if not self.streams and params.longer_than(CHUNK_SECONDS) else params.excerpt

    def compute(self, task: AnalysisTask, y: np.ndarray, sr: int, fe: FrontEnd | None) -> dict[str, Any]:
        """This kind's input from a decoded, checked excerpt, as AnalysisResult fields; FileError naming the problem."""
        raise NotImplementedError(f"input kind {self.name!r} has no compute()")

    def compute_stream(self, path: str, chunks: Iterable[np.ndarray], sr: int, max_slices: int) -> dict[str, Any]:
        """Like :meth:`compute`, chunk by chunk over a long window (kinds that :attr:`streams`)."""
        raise NotImplementedError(f"input kind {self.name!r} does not stream")

    # -- in the parent: model rows, the cache ------------------------------------
    def model_input(self, result: AnalysisResult) -> np.ndarray | None:
        """The input of this kind in a worker's result."""
        return result.extra.get(self.name)

    def rows(self, value: np.ndarray) -> np.ndarray:
        """One track's input as model rows: a single row, or its slices."""
        return value[np.newaxis] if self.one_row else value

    def stack(self, values: Sequence[np.ndarray]) -> tuple[np.ndarray, list[int]]:
        """Many tracks' inputs as one batch of model rows, and the number of rows of each track."""
        per_track = [self.rows(np.asarray(v)) for v in values]
        return np.concatenate(per_track).astype(self.dtype, copy=False), [len(r) for r in per_track]

    def accept(self, cache: Cache, key: str, result: AnalysisResult, fe: FrontEnd | None) -> None:
        """Complete or refuse a worker's result before the parent predicts from it; refusing sets ``result.error``."""

    def to_keep(self, key: str, result: AnalysisResult) -> Kept:
        """(table, row) pairs the cache keeps of an analysed track, so another model needs no decoding."""
        return []

    def cached(self, cache: Cache, keys: Sequence[str], fe: FrontEnd | None) -> Cached:
        """Cached (input, tags) of these tracks, and the parts a fused front end has cached of the others."""
        return {}, {}


# -- the GTZAN pipeline: features and log-mel slices at 22050 Hz --------------------
class _Pipeline(Kind):
    """A kind the GTZAN pipeline computes (tagger.analysis.features); long windows stream."""

    streams = True
    _features = False
    _slices = False

    def compute(self, task: AnalysisTask, y: np.ndarray, sr: int, fe: FrontEnd | None) -> dict[str, Any]:
        return _checked(task.path, analyse(y, sr, features=self._features, slices=self._slices))

    def compute_stream(self, path: str, chunks: Iterable[np.ndarray], sr: int, max_slices: int) -> dict[str, Any]:
        out = analyse_chunks(chunks, sr, features=self._features, slices=self._slices, max_slices=max_slices)
        return _checked(path, out)


def _checked(path: str, out: Analysis) -> dict[str, Any]:
    """An analysis's features and slices as result fields; FileError for non-finite features."""
    if out.features is not None and not np.all(np.isfinite(out.features)):
        raise FileError(path, "analysis produced non-finite feature values")
    return {"features": out.features, "slices": out.slices}


class Features(_Pipeline):
    """The 57 GTZAN features of the excerpt, one row per track; kept, so another model re-predicts without decoding."""

    name, description, dtype, from_table, _features = "features", "features", np.float64, True, True
    must_match = ("sr", "stft", "features")

    def model_input(self, result: AnalysisResult) -> np.ndarray | None:
        return result.features

    def to_keep(self, key: str, result: AnalysisResult) -> Kept:
        if result.features is None:
            return []
        return [("features", {"path": key, **dict(zip(FEATURE_NAMES, map(float, result.features)))})]

    def cached(self, cache: Cache, keys: Sequence[str], fe: FrontEnd | None) -> Cached:
        return {k: (np.asarray(v, dtype=np.float64), None) for k, v in cache.features_for(keys).items()}, {}


class Slices(_Pipeline):
    """3 s log-mel slices, about ten rows per track; too large to keep, so another model analyses again."""

    name, description, one_row, _slices = "slices", "log-mel slices", False, True
    must_match = ("sr", "stft", "n_fft", "hop_length", "n_mels", "slice_frames", "log_mel")

    def model_input(self, result: AnalysisResult) -> np.ndarray | None:
        return result.slices


# -- a backend's own pretrained front end ----------------------------------------------
class Embedding(Kind):
    """The backend's front end run in the worker at its own rate: one embedding row per track (plus tag
    probabilities when the network has tags), kept in the ``embeddings`` table under the front end's id."""

    name, description, has_front_end = "embedding", "embeddings", True

    def params(self, backend: str | None, excerpt: float | None, fe: FrontEnd | None) -> AnalysisParams:
        assert fe is not None, "an embedding kind is analysed through its backend's front end"
        return AnalysisParams(excerpt, self.name, backend, fe.id, fe.sample_rate)

    def compute(self, task: AnalysisTask, y: np.ndarray, sr: int, fe: FrontEnd | None) -> dict[str, Any]:
        assert fe is not None
        backend = task.params.backend
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

    def model_input(self, result: AnalysisResult) -> np.ndarray | None:
        return result.embedding

    def accept(self, cache: Cache, key: str, result: AnalysisResult, fe: FrontEnd | None) -> None:
        """Refuse an embedding made by other weights (a Dask worker's); join in the fused parts the worker skipped."""
        if fe is not None and result.front_end != fe.id:
            result.error = (f"analysed with front end {result.front_end} on worker {result.worker}, "
                            f"but this model needs front end {fe.id}")
            result.embedding = None
            return
        if result.embedding is None and result.parts is not None:  # it skipped parts the cache holds
            join_parts(cache, key, result, fe)

    def to_keep(self, key: str, result: AnalysisResult) -> Kept:
        """A fused front end's result is kept part by part, each under its own id."""
        if result.parts is not None:
            return [("embeddings", embedding_row(key, p.front_end, p.embedding, p.tags)) for p in result.parts]
        if result.embedding is not None:
            return [("embeddings", embedding_row(key, result.front_end, result.embedding, result.tags))]
        return []

    def cached(self, cache: Cache, keys: Sequence[str], fe: FrontEnd | None) -> Cached:
        return cached_embeddings(cache, fe, keys) if fe is not None else ({}, {})


def _run_front_end(task: AnalysisTask, who: str, run: Callable[[], Any]) -> Any:
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


def embedding_row(key: str, front_end: str | None, embedding: np.ndarray, tags: np.ndarray | None) -> dict[str, Any]:
    """A row of the cache's ``embeddings`` table: a vector (and tags) under the id of what made it."""
    return {"path": key, "front_end": front_end, "vector": np.asarray(embedding, dtype=np.float32).tobytes(),
            "tags": None if tags is None else np.asarray(tags, dtype=np.float32).tobytes()}


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


def cached_embeddings(cache: Cache, fe: FrontEnd, keys: Sequence[str]) -> Cached:
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


# -- the registry --------------------------------------------------------------------
KINDS: dict[str, Kind] = {kind.name: kind for kind in (Features(), Slices(), Embedding())}


def get_kind(name: str) -> Kind:
    """The kind called ``name``; BackendError for one genretag does not know."""
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise BackendError(f"unknown input kind {name!r} (known: {', '.join(KINDS)})") from None


def kind_problem(name: Any) -> str | None:
    """Why ``name`` is not a known input kind (for a backend class's check), or None."""
    if isinstance(name, str) and name in KINDS:
        return None
    return f"input_kind must be one of {tuple(KINDS)}, got {name!r}"


def register_kind(kind: Kind) -> Kind:
    """Add an input kind in this process (a plugin's, or a test's); backends may then declare it by name."""
    if not kind.name:
        raise ValueError("an input kind needs a name")
    KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Forget a kind added with :func:`register_kind` (the built-in ones stay)."""
    if name not in _BUILT_IN:
        KINDS.pop(name, None)


_BUILT_IN = frozenset(KINDS)
