"""Analysis functions that misbehave on purpose, for runner tests (importable by workers)."""

from __future__ import annotations

import os
import signal
import time

from tagger.worker import AnalysisResult, AnalysisTask, analyse_file


def crash_or_hang(task: AnalysisTask) -> AnalysisResult:
    """Kill the worker on files named *crash*, hang on *hang*, else analyse normally."""
    name = os.path.basename(task.path)
    if "crash" in name:
        os.kill(os.getpid(), signal.SIGKILL)
    if "hang" in name:
        time.sleep(600)
    return analyse_file(task)
