"""Where analysis runs: in this process, in local worker processes, or on Dask; the one place that decides.

Every runner takes an iterator of :class:`~tagger.inference.worker.AnalysisTask`
and lazily yields one :class:`~tagger.inference.worker.AnalysisResult` per task,
in completion order, so memory stays bounded. Worker processes start with
``PYTHONSAFEPATH`` (:func:`tagger.run.children.safe_children`) so they never
import code from the working folder. The local runner gives each worker one
file at a time over its own pipe, so a worker that crashes or times out is
replaced and only its file gets an error.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Protocol

from ..analysis.wire import AnalysisResult, AnalysisTask
from ..inference.worker import analyse_file
from .children import DEFAULT_TIMEOUT, safe_children


class Runner(Protocol):
    """Runs analysis tasks somewhere and streams their results back."""

    workers: int

    def prepare(self, roots: Sequence[str]) -> None:
        """Learn the scan's roots before it runs (a remote runner checks its workers can read them)."""
        ...

    def run(self, tasks: Iterable[AnalysisTask]) -> Iterator[AnalysisResult]:
        """Yield one result per task, as each finishes."""
        ...

    def describe(self) -> str:
        """A short human description for the scan header."""
        ...


class InlineRunner:
    """Analyse in this process, one file after another (``--jobs 0``: for debuggers)."""

    workers = 1

    def prepare(self, roots: Sequence[str]) -> None:
        pass  # this process walked the roots itself

    def run(self, tasks: Iterable[AnalysisTask]) -> Iterator[AnalysisResult]:
        for task in tasks:
            yield analyse_file(task)

    def describe(self) -> str:
        return "in-process"


AnalyseFn = Callable[[AnalysisTask], AnalysisResult]


def _worker_main(conn: Connection, func: AnalyseFn) -> None:
    """A worker's loop: receive a task, send its result, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        result = func(task)
        try:
            conn.send(result)
        except OSError:  # the parent is gone (killed): nobody wants the result, and a traceback helps no one
            return


@dataclass
class _Worker:
    process: mp.process.BaseProcess
    conn: Connection
    task: AnalysisTask | None = None
    started: float = 0.0


def _context() -> mp.context.BaseContext:
    """Fork server where there is one: workers fork from a warm, thread-free process."""
    if sys.platform != "win32" and "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["tagger.run._preload"])
        return ctx
    return mp.get_context("spawn")


class LocalRunner:
    """A pool of worker processes with per-file timeouts and crash recovery."""

    def __init__(self, workers: int | None = None, timeout: float | None = DEFAULT_TIMEOUT,
                 func: AnalyseFn = analyse_file) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.timeout = timeout if timeout and timeout > 0 else None
        self.func = func  # a module-level function: workers import it by name
        self._ctx = _context()

    def describe(self) -> str:
        return f"{self.workers} worker process{'es' if self.workers != 1 else ''}"

    def prepare(self, roots: Sequence[str]) -> None:
        pass  # local workers see what this process sees

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker_main, args=(child, self.func), daemon=True, name="genretag-worker")
        with safe_children():  # the first start also starts the fork server
            proc.start()
        child.close()
        return _Worker(proc, parent)

    def run(self, tasks: Iterable[AnalysisTask]) -> Iterator[AnalysisResult]:
        pending = iter(tasks)
        exhausted = False
        pool: list[_Worker] = []
        try:
            while True:
                while not exhausted:
                    idle = next((w for w in pool if w.task is None), None)
                    if idle is None and len(pool) >= self.workers:
                        break
                    task = next(pending, None)  # may walk and consult the cache for a while
                    if task is None:
                        exhausted = True
                        break
                    if idle is None:  # workers start only once there is work: a rescan spawns none
                        idle = self._spawn()
                        pool.append(idle)
                    idle.task, idle.started = task, time.monotonic()
                    try:
                        idle.conn.send(task)
                    except OSError:
                        pass  # a dead worker is noticed through its sentinel below
                busy = [w for w in pool if w.task is not None]
                if not busy:
                    return
                wait_for = None
                if self.timeout:
                    wait_for = max(0.0, min(w.started for w in busy) + self.timeout - time.monotonic())
                ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], wait_for))
                for i, w in enumerate(pool):
                    if w.task is None:
                        continue
                    result = None
                    if w.conn in ready or w.conn.poll():
                        try:
                            result = w.conn.recv()
                        except (EOFError, OSError):
                            result = None
                    if result is not None:
                        w.task = None
                        yield result
                        continue
                    if w.process.sentinel in ready or not w.process.is_alive():
                        code = w.process.exitcode
                        reason = f"worker process crashed ({_exit_reason(code)})"
                    elif self.timeout and time.monotonic() - w.started > self.timeout:
                        reason = f"timed out after {self.timeout:g} s"
                    else:
                        continue
                    failed = w.task
                    self._kill(w)
                    pool[i] = self._spawn()
                    yield AnalysisResult(failed.path, error=reason, elapsed=time.monotonic() - w.started)
        finally:
            for w in pool:
                self._stop(w)

    @staticmethod
    def _kill(w: _Worker) -> None:
        if w.process.is_alive():
            w.process.kill()
        w.process.join(timeout=5)
        w.conn.close()

    @staticmethod
    def _stop(w: _Worker) -> None:
        try:
            if w.task is None:
                w.conn.send(None)
                w.process.join(timeout=2)
        except OSError:
            pass
        if w.process.is_alive():
            w.process.kill()
            w.process.join(timeout=5)
        w.conn.close()


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def make_runner(jobs: int | None = None, *, timeout: float | None = DEFAULT_TIMEOUT,
                scheduler: str | None = None, cluster: str | None = None) -> Runner:
    """Pick where analysis runs: Dask when a scheduler or cluster is named, else locally."""
    if scheduler or cluster:
        from .dask_runner import DaskRunner

        return DaskRunner(scheduler=scheduler, cluster=cluster, workers=jobs, timeout=timeout)
    if jobs == 0:
        return InlineRunner()
    return LocalRunner(jobs, timeout)
