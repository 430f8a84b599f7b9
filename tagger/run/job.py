"""``genretag scan [--write]`` as one library call: check the model, pick the runner, scan, then tag.

The command line only parses options into a :class:`ScanJob`, calls
:func:`run_job` and turns the :class:`JobOutcome` into an exit code;
notebooks and other front ends call the same function.  The model is
checked before anything else (a corrupt one fails before any work) and
loads only once a file needs a prediction (tagger.inference.models).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ContextManager

from ..common.paths import default_db_path
from ..common.progress import NullProgress, Progress
from ..defaults import DEFAULT_BACKEND, DEFAULT_JOBS, DEFAULT_TIMEOUT
from ..inference.models import open_model
from ..store.cache import Cache, path_key
from ..write.journal import FileResult, Outcome, apply
from ..write.tagging import TagOptions
from .runners import make_runner
from .scan import ScanOptions, ScanSummary, scan

#: A progress display for one named stage of the job ("Scanning", "Tagging").
Stage = Callable[[str], ContextManager[Progress]]


@dataclass(kw_only=True)
class ScanJob:
    """Everything ``genretag scan`` was asked to do."""

    paths: Sequence[str]
    backend: str = DEFAULT_BACKEND
    model_path: str | None = None
    db_path: str | None = None  # None: the user's default database
    jobs: int | None = DEFAULT_JOBS
    timeout: float | None = DEFAULT_TIMEOUT
    scheduler: str | None = None
    cluster: str | None = None
    options: ScanOptions = field(default_factory=ScanOptions)
    #: Then write the genres of the files the scan covered with these options (``--write``); None: do not.
    tagging: TagOptions | None = None


@dataclass
class JobOutcome:
    """What the scan did, and the tagging after it when there was one."""

    summary: ScanSummary
    tagging: Outcome | None = None
    #: The tagging's results, kept for the scan's report (``scan --write`` prints them after its summary).
    tagged: list[FileResult] = field(default_factory=list)

    @property
    def interrupted(self) -> bool:
        """The scan was stopped (Ctrl-C); what it analysed is committed, and no tagging ran."""
        return self.summary.interrupted

    @property
    def failed(self) -> bool:
        """Some file failed: to analyse (now or in an earlier scan) or to tag."""
        return bool(self.summary.failed or self.summary.failed_cached or (self.tagging and self.tagging.failed))

    def as_dict(self) -> dict[str, Any]:
        if self.tagging is None:
            return self.summary.as_dict()
        files = [r.as_dict() for r in self.tagged]
        return self.summary.as_dict() | {"tagging": {"files": files, **self.tagging.summary()}}


def _no_display(label: str) -> ContextManager[Progress]:
    return contextlib.nullcontext(NullProgress())


def run_job(job: ScanJob, stage: Stage | None = None) -> JobOutcome:
    """Scan ``job.paths`` into the cache, then (``job.tagging``) tag the files the scan covered.

    Tagging is skipped when the scan was interrupted; its results are
    committed and the next run resumes.  Only with ``job.tagging`` does the
    job remember which files the scan covered.
    """
    stage = stage or _no_display
    model = open_model(job.backend, job.model_path)
    runner = make_runner(job.jobs, timeout=job.timeout, scheduler=job.scheduler, cluster=job.cluster)
    with Cache(job.db_path or default_db_path(), "create") as cache:
        with stage("Scanning") as bar:
            covered = CoveredFiles(bar) if job.tagging is not None else None
            summary = scan(job.paths, cache, model, runner, job.options, covered or bar)
        outcome = JobOutcome(summary)
        if covered is not None and job.tagging is not None and not summary.interrupted:  # results are committed
            with stage("Tagging") as bar:
                outcome.tagging = apply(cache, job.tagging, job.paths, only=covered.keys, progress=bar,
                                        sink=outcome.tagged.append)
    return outcome


class CoveredFiles:
    """Wraps a scan's progress to remember the files the scan saw, for ``scan --write``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.keys: set[str] = set()

    def set_total(self, total: int) -> None:
        self.inner.set_total(total)

    def advance(self, path: str, status: str) -> None:
        self.keys.add(path_key(path)[0])
        self.inner.advance(path, status)
