"""Analysis functions that misbehave on purpose, for runner tests (importable by workers)."""

from __future__ import annotations

import os
import signal
import time

from tagger.inference.worker import AnalysisResult, AnalysisTask, analyse_file


def crash_or_hang(task: AnalysisTask) -> AnalysisResult:
    """Kill the worker on files named *crash*, hang on *hang*, else analyse normally."""
    name = os.path.basename(task.path)
    if "crash" in name:
        os.kill(os.getpid(), signal.SIGKILL)
    if "hang" in name:
        time.sleep(600)
    return analyse_file(task)


def hang_on_dask_workers(on: bool = True) -> None:
    """Run on every Dask worker (``client.run``): its analysis hangs on files named *hang* (on=False undoes it).

    A regular file cannot make the real analysis block, and a FIFO is refused
    before it is opened; a hung network mount is what this stands for.
    """
    import tagger.run.dask_runner

    tagger.run.dask_runner.analyse_file = crash_or_hang if on else analyse_file
