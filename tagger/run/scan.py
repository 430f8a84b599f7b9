"""Scanning: walk -> skip what the cache already knows -> analyse -> predict -> cache.

:func:`scan` is a plain library function (the CLI, notebooks and benchmarks
call it alike).  It streams: paths come from the walker one at a time, are
checked against the cache in chunks, go to a runner that analyses them
wherever it runs, and come back to this process, which alone predicts in
batches and writes SQLite.  Results are committed every batch, so an
interrupted scan keeps everything committed and the next run resumes.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..analysis.wire import AnalysisResult, AnalysisTask
from ..common.errors import GenretagError
from ..common.progress import NullProgress, Progress
from ..decide import broad as broadmod
from ..decide import decision
from ..defaults import DEFAULT_ABSTAIN_BELOW, DEFAULT_BROAD, DEFAULT_EXCERPT
from ..inference import inputs
from ..inference.kinds import get_kind
from ..inference.models import Model, open_model
from ..inference.predict import predict_tracks, summarise
from ..media.params import AnalysisParams
from ..media.walk import WalkOptions, walk
from ..store import cache as cachemod
from ..store.cache import Cache, path_key
from ..store.track import Track, TrackStamp, meta_fields
from .runners import InlineRunner, Runner

PLAN_CHUNK = 256
MAX_ERRORS_KEPT = 200


@dataclass(kw_only=True)
class ScanOptions:
    """How a scan decides what to analyse and how often it commits."""

    excerpt: float | None = DEFAULT_EXCERPT  # 0 or None: the whole file (AnalysisParams normalises)
    force: bool = False
    retry_failed: bool = False
    walk: WalkOptions = field(default_factory=WalkOptions)
    batch_size: int = 32
    flush_seconds: float = 1.0
    count_total: bool = True
    #: Abstain below this best probability; None: the model card's rule; 0: never (tagger/decide/decision.py).
    abstain_below: float | None = DEFAULT_ABSTAIN_BELOW
    #: Name genres beyond the head's from the networks' own outputs when the head abstains (tagger/decide/broad.py).
    broad: bool = DEFAULT_BROAD


@dataclass
class ScanSummary:
    """What a scan did, for the summary table and ``--json``."""

    seen: int = 0
    analysed: int = 0
    cached: int = 0
    repredicted: int = 0
    failed: int = 0
    failed_cached: int = 0
    missing: int = 0
    abstained: int = 0
    redecided: int = 0
    threshold: float | None = None
    threshold_source: str = ""
    genres: Counter = field(default_factory=Counter)
    errors: list[tuple[str, str]] = field(default_factory=list)
    walk_errors: list[tuple[str, str]] = field(default_factory=list)
    elapsed: float = 0.0
    interrupted: bool = False
    scan_id: int | None = None
    backend: str = ""
    model_id: str = ""
    runner: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen, "analysed": self.analysed, "from_cache": self.cached,
            "repredicted": self.repredicted, "failed": self.failed + self.failed_cached,
            "failed_new": self.failed, "failed_cached": self.failed_cached, "missing": self.missing,
            "abstained": self.abstained, "redecided": self.redecided,
            "abstain_threshold": self.threshold, "threshold_source": self.threshold_source,
            "genres": dict(self.genres.most_common()), "errors": [{"path": p, "error": e} for p, e in self.errors],
            "walk_errors": [{"path": p, "error": e} for p, e in self.walk_errors],
            "elapsed_seconds": round(self.elapsed, 3), "interrupted": self.interrupted,
            "scan_id": self.scan_id, "backend": self.backend, "model_id": self.model_id, "runner": self.runner,
        }  # fmt: skip

    def note_error(self, path: str, error: str) -> None:
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append((path, error))


@dataclass
class _Pending:
    key: str
    raw: bytes | None
    result: AnalysisResult | None  # None: re-prediction from cached inputs
    inputs: np.ndarray | None
    tags: np.ndarray | None = None
    row: dict[str, Any] | None = None  # what is stored: Track.row(...)
    broad: bool | None = None  # re-deciding: whether the row's own scan consulted the broad source; None: this scan's


class _Scan:
    """One scan's state; :func:`scan` is its public face."""

    def __init__(self, paths: Sequence[str], cache: Cache, model: Model, runner: Runner,
                 options: ScanOptions, progress: Progress) -> None:
        self.paths = list(dict.fromkeys(os.path.abspath(os.fsdecode(p)) for p in paths))  # the scans row's roots, once
        self.cache, self.model, self.runner = cache, model, runner
        self.opts, self.progress = options, progress
        self.summary = ScanSummary(backend=model.name, model_id=model.id, runner=runner.describe())
        self.analysis: AnalysisParams = inputs.analysis_params(model.input_kind, model.name, options.excerpt,
                                                               model.front_end)
        self.params = inputs.cache_key(self.analysis)  # recorded with every result: the same value the workers get
        self.pending: list[_Pending] = []
        self.changed: set[str] = set()  # keys of known files analysed again because they changed
        self.first_pending = 0.0
        self.rule = decision.rule_for(model.card, options.abstain_below)
        self.rule_json = self.rule.to_json()  # stored with every result: tag decides by it, never by the card
        self.summary.threshold, self.summary.threshold_source = self.rule.stored_threshold, self.rule.source
        self.broad = broadmod.shipped() if options.broad else None
        self.broad_id = self.broad.id if self.broad else broadmod.OFF

    # -- planning --------------------------------------------------------
    def _walk_error(self, path: str, reason: str) -> None:
        self.summary.walk_errors.append((path, reason))

    def tasks(self) -> Iterator[AnalysisTask]:
        """Walk, consult the cache in chunks, and yield only files that need analysis.

        A file to analyse will need a prediction, so the model starts loading
        once the runner holds the first task: its pool (or cluster) is then
        already starting, and loading overlaps the first analyses.  A model
        that cannot load (its framework not installed) stops the scan before
        the runner gets that task; files served from the cache needed none.
        """
        for task in self._planned():
            self.model.require()
            yield task
            self.model.start_loading()

    def _planned(self) -> Iterator[AnalysisTask]:
        chunk: list[str] = []
        for path in walk(self.paths, self.opts.walk, self._walk_error):
            chunk.append(path)
            if len(chunk) >= PLAN_CHUNK:
                yield from self._plan(chunk)
                chunk = []
        if chunk:
            yield from self._plan(chunk)

    def _plan(self, chunk: list[str]) -> Iterator[AnalysisTask]:
        keys = {p: path_key(p) for p in chunk}
        rows = self.cache.lookup([k for k, _ in keys.values()])
        reappeared, repredict, redecide = [], [], []
        for path in chunk:
            key, raw = keys[path]
            self.summary.seen += 1
            row = rows.get(key)
            action = self._decide(path, row)
            if action == "analyse":
                yield self._task(path)
                continue
            if row and row.missing:
                reappeared.append(key)
            if action == "cached":
                self.summary.cached += 1
                self._count(row.genre)
                self.progress.advance(path, "cached")
            elif action == "redecide":
                redecide.append(key)
                self.progress.advance(path, "cached")
            elif action == "failed":
                self.summary.failed_cached += 1
                self.progress.advance(path, "failed")
            else:  # re-predict from cached inputs, if this model can use any
                repredict.append((path, key, raw))
        self.cache.touch_present(reappeared)
        if redecide:
            yield from self._redecide(redecide)
        if repredict:
            self.model.start_loading()
            kept, partial = inputs.cached_inputs(self.cache, self.model, [k for _, k, _ in repredict])
            for path, key, raw in repredict:
                if key in kept:
                    self._add(_Pending(key, raw, None, *kept[key]))
                    self.progress.advance(path, "repredicted")
                else:
                    yield self._task(path, partial.get(key, frozenset()))

    def _task(self, path: str, skip: frozenset[str] = frozenset()) -> AnalysisTask:
        return AnalysisTask(path, self.analysis, skip)

    def _decide(self, path: str, row: TrackStamp | None) -> str:
        if row is None or self.opts.force:
            return "analyse"
        try:
            st = os.stat(path)
        except OSError:
            return "analyse"  # the worker reports why it cannot be read
        unchanged = row.size == st.st_size and row.mtime == st.st_mtime and row.params == self.params
        if not unchanged:
            self.changed.add(row.path)  # its cached features and embeddings are of the old file
            return "analyse"
        if row.status == "error":
            if self.opts.retry_failed:
                return "analyse"
            # Another model's predict_proba failed on it: the file itself may be fine.
            return "repredict" if row.failed_model not in (None, self.model.ident) else "failed"
        if row.backend == self.model.name and row.model_id == self.model.id:
            same = row.rule == self.rule_json and row.broad_id == self.broad_id
            return "cached" if same else "redecide"
        return "repredict"

    def _redecide(self, keys: list[str]) -> Iterator[AnalysisTask]:
        """Apply this scan's rule to cached results decided by another (or by none stored), from their probabilities."""
        rows, stamp = [], cachemod.now()
        for track in self.cache.fetch(keys).values():
            probs = track.probabilities or {}
            if list(probs) != self.model.genres:  # nothing to decide from: analyse again
                yield self._task(track.fs_path)
                continue
            decided = self._decided(list(probs.values()), track.tags)
            rows.append(Track.row(path=track.path, status="ok", updated_at=stamp, **decided))
            self.summary.cached += 1
            self.summary.redecided += 1
            self._count(decided["genre"])
        self.cache.write_results(rows)

    def _decided(self, probs: Sequence[float] | np.ndarray, tags: dict[str, float] | None,
                 broad: bool | None = None) -> dict[str, Any]:
        """The rule's decision, then the broad source's where it abstains (tagger/decide/decision.py), as Track fields.

        ``broad`` overrides this scan's choice of consulting the broad source (None: keep it).
        """
        source, source_id = self.broad, self.broad_id
        if broad is not None and broad != (source is not None):
            source = broadmod.shipped() if broad else None
            source_id = source.id if source else broadmod.OFF
        d = decision.decide_track(self.rule, dict(zip(self.model.genres, map(float, probs))), tags, self.model.name,
                                  source)
        return {"genre": d.genre, "abstained": d.abstained, "genre_source": d.source, "genre_score": d.score,
                "broad": d.broad or None, "broad_id": source_id, "rule": self.rule_json,
                "abstain_threshold": self.rule.stored_threshold}

    def _count(self, genre: str | None) -> None:
        if genre is None:  # status ok without a genre: abstained
            self.summary.abstained += 1
        else:
            self.summary.genres[genre] += 1

    # -- results ---------------------------------------------------------
    def _add(self, item: _Pending) -> None:
        if not self.pending:
            self.first_pending = time.monotonic()
        self.pending.append(item)
        if len(self.pending) >= self.opts.batch_size:
            self.flush()

    def take(self, result: AnalysisResult) -> None:
        key, raw = path_key(result.path)
        if result.error:
            self.summary.failed += 1
            self.summary.note_error(result.path, result.error)
            self.progress.advance(result.path, "failed")
            self._add(_Pending(key, raw, result, None))
            return
        kind = get_kind(self.model.input_kind)
        kind.accept(self.cache, key, result, self.model.front_end)
        if result.error:  # refused by its kind
            self.take(result)
            return
        self.progress.advance(result.path, "analysed")
        self._add(_Pending(key, raw, result, kind.model_input(result), result.tags))

    def flush(self) -> None:
        """Predict everything pending in one batch and commit it in one transaction.

        The batch stays pending, and the summary unchanged, until it is
        committed: Ctrl-C or a stop signal arriving meanwhile leaves it to
        the flush that the interrupted scan makes on its way out.
        """
        if not self.pending:
            return
        batch = self.pending
        to_predict = [p for p in batch if p.inputs is not None]
        outputs = predict_tracks(self.model, [p.inputs for p in to_predict])
        stamp = cachemod.now()
        rows: list[dict[str, Any]] = []
        kept: dict[str, list[dict[str, Any]]] = {"features": [], "embeddings": []}
        tally: list[tuple[str, Any]] = []  # what the summary counts, once committed
        model_kind = get_kind(self.model.input_kind)
        for item in to_predict:  # analysed inputs are kept even if prediction fails: a retry needs no decoding
            for table, row in model_kind.to_keep(item.key, item.result) if item.result is not None else ():
                kept[table].append(row)
        for item, out in zip(to_predict, outputs):
            if isinstance(out, str):
                item.row = self._error_row(item, out, stamp, failed_model=self.model.ident)
                tally.append(("failed", (item.result.path if item.result else item.key, out)))
                continue
            info = summarise(self.model.genres, out)
            info["tags"] = inputs.tag_probabilities(self.model, item.tags)
            info |= self._decided(out, info["tags"], item.broad)
            tally.append(("repredicted" if item.result is None else "analysed", info["genre"]))
            item.row = self._ok_row(item, info, stamp)
        for item in batch:
            if item.row is None:  # analysis errors
                item.row = self._error_row(item, item.result.error, stamp)
            rows.append(item.row)
        stale = [item.key for item in batch if item.result is not None and item.key in self.changed]
        self.cache.write_results(rows, kept["features"], kept["embeddings"], stale)
        self.pending = []
        self.changed.difference_update(stale)
        for kind, detail in tally:
            if kind == "failed":
                self.summary.failed += 1
                self.summary.note_error(*detail)
            else:
                setattr(self.summary, kind, getattr(self.summary, kind) + 1)
                self._count(detail)

    def _base(self, item: _Pending, stamp: str) -> dict[str, Any]:
        """The Track fields every written row has: where the file is, and what analysing it found."""
        base: dict[str, Any] = {"path": item.key, "path_bytes": item.raw, "missing": False, "updated_at": stamp,
                                "missing_since": None, "first_seen": stamp}  # kept as it was for known files
        r = item.result
        if r is not None and r.size is not None:
            base.update(size=r.size, mtime=r.mtime, params=self.params)
            if r.duration is not None:
                base.update(duration=r.duration, excerpt_offset=r.offset, excerpt_seconds=r.seconds)
            base.update(meta_fields(r.meta))
        return base

    def _ok_row(self, item: _Pending, info: dict[str, Any], stamp: str) -> dict[str, Any]:
        return Track.row(
            **self._base(item, stamp),
            status="ok", error=None, backend=self.model.name, model_id=self.model.id,
            genre=info["genre"], confidence=info["confidence"], top3=info["top3"],
            probabilities=info["probabilities"], analysed_at=stamp,
            abstained=info["abstained"], abstain_threshold=info["abstain_threshold"], rule=info["rule"],
            tags=info["tags"], failed_model=None, genre_source=info["genre_source"],
            genre_score=info["genre_score"], broad=info["broad"], broad_id=info["broad_id"],
        )  # fmt: skip

    def _error_row(self, item: _Pending, error: str, stamp: str, failed_model: str | None = None) -> dict[str, Any]:
        # Genre columns are left as they were: an earlier result is never dropped.
        base = self._base(item, stamp)
        if "size" not in base:  # unreadable: record what stat can still tell
            base["params"] = self.params
            with contextlib.suppress(OSError):
                st = os.stat(item.result.path if item.result else item.key)
                base.update(size=st.st_size, mtime=st.st_mtime)
        return Track.row(**base, status="error", error=error, failed_model=failed_model)

    # -- re-deciding without a walk ------------------------------------------
    def refresh(self) -> int:
        """Bring this backend's results under the paths to this model from what is cached; how many it could not.

        Rows another model decided are predicted again from their cached
        inputs (no decoding) and decided by this model's rule, consulting the
        broad source only if their own scan did (``--no-broad`` stays off); rows of this
        model without a stored rule (older databases) keep their decision and
        get the rule it was made by.  Rows with no usable cached input (a
        slices backend caches none) are left as they are, and counted.
        """
        left, chunk = 0, []
        for track in self.cache.records(self.paths, status="ok"):
            if track.backend == self.model.name and (track.model_id != self.model.id or track.rule is None):
                chunk.append(track)
            if len(chunk) >= PLAN_CHUNK:
                left += self._refresh(chunk)
                chunk = []
        left += self._refresh(chunk) if chunk else 0
        self.flush()
        return left

    def _refresh(self, tracks: list[Track]) -> int:
        # This model's rows from before rules were stored keep their decision; their rule is derived once.
        card = self.model.card
        derived = [Track.row(path=t.path, status="ok", rule=decision.legacy_rule(t.abstain_threshold, card).to_json())
                   for t in tracks if t.model_id == self.model.id]
        if derived:
            self.cache.write_results(derived)
        other = {t.path: t for t in tracks if t.model_id != self.model.id}
        kept, _ = inputs.cached_inputs(self.cache, self.model, list(other)) if other else ({}, {})
        for key, track in other.items():
            if key in kept:  # a row from before broad_id was stored had the source on
                self._add(_Pending(key, track.path_bytes, None, *kept[key], broad=track.broad_id != broadmod.OFF))
        return len(other) - len(kept)

    # -- the run ---------------------------------------------------------
    def run(self) -> ScanSummary:
        started = time.monotonic()
        self.summary.scan_id = self.cache.start_scan(self.paths, self.model.name, self.model.id)
        counter = self._start_counter() if self.opts.count_total else None
        status = "completed"
        try:
            self.runner.prepare(self.paths)
            for result in self.runner.run(self.tasks()):
                self.take(result)
                if self.pending and time.monotonic() - self.first_pending >= self.opts.flush_seconds:
                    self.flush()
            self.flush()
            self.summary.missing = self.cache.mark_missing(self.paths)
        except KeyboardInterrupt:
            status = "interrupted"
            self.summary.interrupted = True
            self.flush()
        except Exception:  # e.g. a lost Dask scheduler: keep what was analysed, and do not say completed
            status = "failed"
            with contextlib.suppress(Exception):  # the original error is the one to report
                self.flush()
            raise
        finally:
            self.summary.elapsed = time.monotonic() - started
            # The row first: a stop signal during the waits below (a model load takes seconds) must not leave it
            # running.
            counts = self.summary.as_dict() | {"errors": len(self.summary.errors)}
            self.cache.finish_scan(self.summary.scan_id, status, counts)
            if counter is not None:
                counter.join(timeout=0.1)
            self.model.wait()  # a load nothing ended up needing must not outlive the scan
        return self.summary

    def _start_counter(self) -> threading.Thread:
        """Count the files in the background so the progress bar gets a total and an ETA."""

        def count() -> None:
            n = sum(1 for _ in walk(self.paths, self.opts.walk))
            self.progress.set_total(n)

        thread = threading.Thread(target=count, name="genretag-count", daemon=True)
        thread.start()
        return thread


@dataclass
class Redecided:
    """What :func:`redecide` did: files decided again by the current models, and those it left alone."""

    repredicted: int = 0  # another model had decided them: predicted again from cached inputs
    left: int = 0  # another model had decided them and nothing cached lets the current one predict
    backends: list[str] = field(default_factory=list)  # whose current model changed the decisions
    failed: int = 0  # the current model's predict_proba failed on them (kept as error rows, as a scan does)

    def line(self) -> str:
        """One line for the user ("" when there is nothing to say)."""
        names = ", ".join(self.backends)
        parts = [f"{self.repredicted} file(s) decided by an earlier {names} model re-decided by its current one"
                 ] if self.repredicted else []
        if self.failed:
            parts.append(f"{self.failed} file(s) failed to predict (`genretag show --status error`)")
        if self.left:
            parts.append(f"{self.left} file(s) decided by another model left as they were: nothing cached to "
                         "predict from (run `genretag scan` on them)")
        return "; ".join(parts)


def redecide(cache: Cache, paths: Sequence[str] = (), models: dict[str, Model] | None = None) -> Redecided:
    """Re-decide the results under ``paths`` that a backend's current model did not make, without decoding.

    ``models`` maps a backend to its model (given: only those backends; else
    each backend's current one, opened on demand).  Uses a scan's own
    prediction and decision code (:meth:`_Scan.refresh`); a backend whose
    model cannot be opened or loaded leaves its rows alone.
    """
    done, models = Redecided(), dict(models or {})
    only = bool(models)
    stale: dict[str, int] = {}  # backend -> files another model decided
    for backend, model_id, has_rule, n in cache.deciders(paths):
        if only and backend not in models:
            continue
        model = models.get(backend)
        if model is None:
            try:
                model = models[backend] = open_model(backend)
            except GenretagError:
                continue  # a backend no longer installed: its results stay as they were
        if model_id != model.id or not has_rule:
            stale[backend] = stale.get(backend, 0) + (n if model_id != model.id else 0)
    for backend, n in sorted(stale.items()):
        run = _Scan(paths, cache, models[backend], InlineRunner(), ScanOptions(count_total=False), NullProgress())
        try:
            done.left += run.refresh()
        except GenretagError:  # the current model cannot load (its framework missing, a damaged file)
            done.left += n - run.summary.repredicted
        done.repredicted += run.summary.repredicted
        done.failed += run.summary.failed
        if run.summary.repredicted:
            done.backends.append(backend)
    return done


def scan(paths: Sequence[str], cache: Cache, model: Model, runner: Runner,
         options: ScanOptions | None = None, progress: Progress | None = None) -> ScanSummary:
    """Analyse and classify every audio file under ``paths``, caching results.

    Returns the summary; ``summary.interrupted`` is set when Ctrl-C stopped it
    (everything analysed until then is committed).
    """
    return _Scan(paths, cache, model, runner, options or ScanOptions(), progress or NullProgress()).run()

