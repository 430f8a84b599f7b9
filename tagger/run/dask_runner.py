"""Analysis on a Dask cluster: an existing one (``--scheduler``) or a local one (``--cluster local``).

Workers run only :func:`~tagger.inference.worker.analyse_file`; this process
alone predicts and writes SQLite, so workers must see the library at the same
paths and each is checked on the scan's roots before the first file is sent.
``distributed`` is an optional extra, imported only here. Files are submitted
lazily; a file Dask gives up on comes back as its error, and a file's timeout
counts from when a worker really starts it. For users: docs/dask.md.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import signal
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..analysis.wire import AnalysisResult, AnalysisTask
from ..common.errors import GenretagError
from ..common.interrupts import STOP_SIGNALS
from ..defaults import CLUSTERS
from ..inference.kinds import get_kind
from ..inference.worker import analyse_file, warm_up
from .children import DEFAULT_TIMEOUT, SAFE_PATH, safe_children

INSTALL_HINT = "Dask support needs the extra: pip install 'genretag[dask]'"
#: Files in flight per worker thread: enough that no thread waits for this process.
IN_FLIGHT_PER_THREAD = 2
POLL_SECONDS = 0.05  # as_completed itself polls at 0.1 s
REFRESH_SECONDS = 2.0  # how often to notice workers joining or leaving
STARTED_TOPIC = "genretag-started"
MAX_PROBLEMS_SHOWN = 3


def check_roots(roots: Sequence[str], front_end: str | None = None) -> dict[str, Any]:
    """Run on each worker: its genretag version, and why it cannot read any of ``roots``.

    With ``front_end`` (a backend's name), the worker also loads that
    backend's front end, and says why it cannot (e.g. its weights file).
    """
    problems, front_end_error = {}, None
    if front_end is not None:
        from ..inference.inputs import check_front_end

        try:
            check_front_end(front_end)
        except GenretagError as exc:
            front_end_error = str(exc)
    for root in roots:
        try:
            if os.path.isdir(root):
                with os.scandir(root) as entries:  # listing needs read and execute permission
                    next(entries, None)
            else:  # not opened: this runs on the worker's event loop, and opening a FIFO blocks
                os.stat(root)
                if not os.access(root, os.R_OK):
                    problems[root] = os.strerror(errno.EACCES)
        except OSError as exc:
            problems[root] = exc.strerror or str(exc)
    return {"version": __version__, "problems": problems, "front_end_error": front_end_error}


def analyse_on_worker(task: AnalysisTask) -> AnalysisResult:
    """Run on a Dask worker: announce which worker starts this file, then analyse it."""
    from distributed import get_worker

    worker = get_worker()
    worker.log_event(STARTED_TOPIC, {"key": worker.get_current_task(), "worker": worker.address})
    return analyse_file(task)


def dask_setup(worker: Any) -> None:
    """Preload of the workers of a local cluster: start warm, and leave Ctrl-C and kill to this process.

    Warm, so a worker's first file does not spend its timeout on imports and JIT
    compilation. The workers share the terminal's process group, so they ignore
    its SIGINT, SIGTERM and SIGHUP; the parent cancels the work and closes them
    cleanly, so no result in flight is cut.
    """
    for sig in (signal.SIGINT, *STOP_SIGNALS):
        signal.signal(sig, signal.SIG_IGN)
    warm_up()


def local_cluster(workers: int) -> Any:
    """A ``distributed.LocalCluster`` of single-threaded worker processes, reachable only on 127.0.0.1.

    Even without a dashboard the scheduler serves HTTP (health, metrics),
    by default on port 8787: a random loopback port avoids clashing with
    another cluster on the same machine.
    """
    import dask
    import distributed

    # Nannies spawn (and restart) workers as `python -c ...`: keep the working folder off their sys.path.
    name, value = SAFE_PATH
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}, **{name: value})
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), safe_children():
        return distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False}, silence_logs=logging.ERROR,
            preload=[__name__],  # runs dask_setup in each worker
        )  # fmt: skip


@dataclass
class _Slot:
    task: AnalysisTask
    started: float | None = None  # set when the worker announces the start (this process's clock)
    worker: str | None = None


class DaskRunner:
    """Analyse on Dask workers; results stream back here as they do from a local pool.

    ``cluster="local"`` starts and later closes a ``distributed.LocalCluster`` of
    ``workers`` single-threaded processes; ``scheduler=ADDRESS`` connects to an
    existing cluster and closes only the client. A file past ``timeout`` is
    cancelled and gets an error; its worker is restarted if ``restart_stuck``
    (default: only on a cluster this runner started, never a shared one).
    """

    def __init__(self, scheduler: str | None = None, cluster: str | None = None, workers: int | None = None,
                 timeout: float | None = DEFAULT_TIMEOUT, retries: int = 1, connect_timeout: float = 30.0,
                 restart_stuck: bool | None = None) -> None:
        if bool(scheduler) == bool(cluster):
            raise GenretagError("Give either a Dask scheduler address or --cluster local (one of them)")
        if cluster not in (None, *CLUSTERS):
            raise GenretagError(f"Unknown Dask cluster {cluster!r}: only 'local' is built in")
        self.scheduler, self.cluster = scheduler, cluster
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.timeout = timeout if timeout and timeout > 0 else None
        self.retries = retries
        self.connect_timeout = connect_timeout
        self.restart_stuck = bool(cluster) if restart_stuck is None else restart_stuck
        self._roots: list[str] = []
        self._client: Any = None
        self._local: Any = None
        self._threads = self.workers
        self._idle_since: float | None = None  # when the cluster was last seen with no workers
        self._slots: dict[str, _Slot] = {}  # by future key, for the start announcements

    def describe(self) -> str:
        if self.cluster:
            return f"Dask local cluster of {self.workers} worker process{'es' if self.workers != 1 else ''}"
        return f"Dask scheduler {self.scheduler}"

    def prepare(self, roots: Sequence[str]) -> None:
        """Remember the roots every worker must read; they are checked when work starts."""
        self._roots = [os.path.abspath(os.fsdecode(r)) for r in roots]

    def run(self, tasks: Iterable[AnalysisTask]) -> Iterator[AnalysisResult]:
        pending = iter(tasks)
        first = next(pending, None)  # connect only when there is work: a rescan starts no cluster
        if first is None:
            return
        client = self._connect()
        from distributed import as_completed

        inflight: dict[Any, _Slot] = {}  # insertion order is submission order
        try:
            self._check_workers(self._roots or [os.path.dirname(first.path)],
                                first.params.backend if get_kind(first.params.kind).has_front_end else None)
            done = as_completed(loop=client.loop, with_results=True, raise_errors=False)  # fetches in the background
            queue = itertools.chain([first], pending)
            exhausted, refresh_at = False, time.monotonic() + REFRESH_SECONDS
            while True:
                while not exhausted and len(inflight) < self._threads * IN_FLIGHT_PER_THREAD:
                    task = next(queue, None)  # may walk and consult the cache for a while
                    if task is None:
                        exhausted = True
                        break
                    key = f"genretag-analyse-{uuid.uuid4().hex}"
                    self._slots[key] = slot = _Slot(task)  # before submitting: the start may be announced at once
                    future = client.submit(analyse_on_worker, task, key=key, pure=False, retries=self.retries)
                    inflight[future] = slot
                    done.add(future)
                if not inflight:
                    return
                now = time.monotonic()
                if now >= refresh_at:
                    self._refresh(now)
                    refresh_at = now + REFRESH_SECONDS
                for future, outcome in self._ready(done, inflight, refresh_at):
                    slot = inflight.pop(future, None)
                    if slot is not None:  # else: a timed-out file, already reported
                        self._slots.pop(future.key, None)
                        yield self._result(slot, outcome)
                yield from self._expire(inflight)
        finally:
            if inflight and self._client is not None:
                with contextlib.suppress(OSError):  # a lost scheduler has forgotten them anyway
                    self._client.cancel(list(inflight), force=True)
            self.close()

    def close(self) -> None:
        """Close the client, and the cluster only if this runner started it."""
        client, local, self._client, self._local = self._client, self._local, None, None
        self._slots.clear()
        # Closing after a lost connection makes distributed log its cancelled reconnection as an error.
        with _quiet("distributed", "distributed.client"):
            if client is not None:
                with contextlib.suppress(ValueError):  # closed before it subscribed
                    client.unsubscribe_topic(STARTED_TOPIC)
                client.close()
            if local is not None:
                local.close()

    # -- connecting ------------------------------------------------------
    def _connect(self) -> Any:
        try:
            import distributed
        except ImportError:
            raise GenretagError(INSTALL_HINT) from None
        try:
            if self.cluster:
                self._local = local_cluster(self.workers)
                self._client = distributed.Client(self._local, set_as_default=False)
            else:
                # Checked first: a Client given an address it cannot parse is left half-built, and its __del__
                # then hung 60 s and printed a TimeoutError traceback after our Error line.
                distributed.comm.resolve_address(self.scheduler)
                self._client = distributed.Client(self.scheduler, timeout=self.connect_timeout, set_as_default=False)
                self._client.wait_for_workers(1, timeout=self.connect_timeout)
        except (OSError, ValueError) as exc:
            self.close()
            raise GenretagError(f"Cannot connect to the Dask scheduler at {self.scheduler}: {exc}") from None
        except TimeoutError:
            self.close()
            raise GenretagError(f"The Dask scheduler at {self.scheduler} has no workers "
                                f"(waited {self.connect_timeout:g} s)") from None
        self._refresh(time.monotonic())
        if self.scheduler:
            self.workers = self._threads
        self._client.subscribe_topic(STARTED_TOPIC, self._started)
        return self._client

    def _started(self, event: tuple[float, dict[str, str]]) -> None:
        """Event handler (client thread): a worker has started one of our files."""
        slot = self._slots.get(event[1]["key"])
        if slot is not None:
            slot.started, slot.worker = time.monotonic(), event[1]["worker"]

    def _refresh(self, now: float) -> None:
        """Follow workers joining and leaving; fail rather than wait forever on a cluster with none."""
        try:
            threads = sum(self._client.nthreads().values())
        except OSError:
            raise self._lost() from None
        self._threads = max(1, threads)
        if threads:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = now
        elif now - self._idle_since > self.connect_timeout:
            raise GenretagError(f"The Dask cluster ({self.describe()}) has had no workers for "
                                f"{now - self._idle_since:.0f} s; scan again to resume")

    def _check_workers(self, roots: list[str], front_end: str | None = None) -> None:
        """Fail before any file is sent if a worker lacks genretag, cannot read a root or load the front end."""
        names = {a: w.get("name") for a, w in self._client.scheduler_info(n_workers=-1)["workers"].items()}
        replies = self._client.run(check_roots, roots, front_end, on_error="return")
        problems = []
        for address in sorted(replies):
            reply, who = replies[address], _worker_label(address, names.get(address))
            if isinstance(reply, BaseException):
                problems.append(f"{who} cannot run genretag ({type(reply).__name__}: {reply})")
            elif reply["version"] != __version__:
                problems.append(f"{who} has genretag {reply['version']}, this machine {__version__}")
            else:
                problems += [f"{who} cannot read {root}: {why}" for root, why in reply["problems"].items()]
                if reply.get("front_end_error"):
                    problems.append(f"{who} cannot load the front end of backend {front_end!r}: "
                                    f"{reply['front_end_error']}")
        if problems:
            more = len(problems) - MAX_PROBLEMS_SHOWN
            raise GenretagError(
                "; ".join(problems[:MAX_PROBLEMS_SHOWN]) + (f" (and {more} more)" if more > 0 else "")
                + f". Every Dask worker needs genretag {__version__} and the library at the same path "
                "as this machine (shared storage)"
                + (f", and backend {front_end!r} with its weights." if front_end else ".")
            )  # fmt: skip

    # -- results ---------------------------------------------------------
    def _ready(self, done: Any, inflight: dict[Any, _Slot], until: float) -> list[tuple[Any, Any]]:
        """Finished (future, outcome) pairs; empty once a file is overdue or it is time to refresh."""
        while not done.has_ready():
            deadline = until
            if self.timeout:  # files start while we wait: look again each time
                deadline = min([until] + [s.started + self.timeout for s in inflight.values() if s.started])
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
        return done.next_batch(block=False)

    def _result(self, slot: _Slot, outcome: Any) -> AnalysisResult:
        if isinstance(outcome, AnalysisResult):
            return outcome
        elapsed = time.monotonic() - (slot.started or time.monotonic())
        return AnalysisResult(slot.task.path, error=self._failure(outcome), elapsed=elapsed)

    def _failure(self, outcome: Any) -> str:
        """Why a future brought back no result, as the file's error text."""
        from distributed import KilledWorker

        exc = outcome[1] if isinstance(outcome, tuple) else outcome  # errors arrive as (type, value, traceback)
        if isinstance(exc, KilledWorker):
            worker = getattr(exc.last_worker, "address", exc.last_worker)
            return f"Dask worker {worker} died before finishing it (tried on {exc.allowed_failures + 1} worker(s))"
        if isinstance(exc, CancelledError):
            reason = getattr(exc, "reason", "unknown")
            if reason == "scheduler-connection-lost":
                raise self._lost()
            return f"cancelled on the Dask cluster ({reason})"
        if isinstance(exc, OSError):
            return f"lost contact with its Dask worker ({type(exc).__name__}: {exc})"
        return f"Dask task failed ({type(exc).__name__}: {exc})"

    def _lost(self) -> GenretagError:
        return GenretagError(f"Lost the connection to the Dask scheduler ({self.describe()}); scan again to resume")

    def _expire(self, inflight: dict[Any, _Slot]) -> Iterator[AnalysisResult]:
        """Cancel files past the timeout, and restart the workers stuck on them if allowed."""
        if not self.timeout:
            return
        now = time.monotonic()
        overdue = [f for f, s in inflight.items() if s.started is not None and now - s.started > self.timeout]
        if not overdue:
            return
        self._client.cancel(overdue, force=True)  # frees the file's slot, not the worker's thread
        slots = [inflight.pop(f) for f in overdue]
        for future in overdue:
            self._slots.pop(future.key, None)
        for slot in slots:
            yield AnalysisResult(slot.task.path, error=f"timed out after {self.timeout:g} s",
                                 elapsed=now - slot.started)
        stuck = sorted({s.worker for s in slots if s.worker})
        if stuck and self.restart_stuck:  # blocks until they are back: after the results, not before
            try:
                self._client.restart_workers(stuck, raise_for_error=False)
            except OSError:
                raise self._lost() from None


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Silence these loggers for a while (each by name: Dask's config gives children their own level)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _worker_label(address: str, name: Any) -> str:
    return f"Dask worker {address}" + (f" ({name})" if name is not None and str(name) != address else "")
