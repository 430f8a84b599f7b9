"""Starting worker interpreters: what the local pool (tagger/run/runners.py) and Dask (tagger/run/dask_runner.py) share.

Kept apart from both so neither runner imports the other.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from ..defaults import DEFAULT_TIMEOUT

#: Python's -P: no working folder (nor script folder) first on a child interpreter's sys.path.
SAFE_PATH = ("PYTHONSAFEPATH", "1")


@contextmanager
def safe_children() -> Iterator[None]:
    """While starting worker interpreters: keep the working folder off their ``sys.path``.

    multiprocessing starts its fork server and spawned workers as ``python -c``,
    which puts the working folder first on ``sys.path``; the variable is set only
    while a process starts. SIGHUP is blocked meanwhile and inherited blocked, so
    a closed terminal leaves ending the workers to this process
    (tagger/common/interrupts.py) and multiprocessing's resource tracker is not
    killed; a hang-up arriving meanwhile is delivered once unblocked.
    """
    name, value = SAFE_PATH
    saved = os.environ.get(name)
    os.environ[name] = value
    hangup = {signal.SIGHUP} if hasattr(signal, "SIGHUP") else set()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, hangup) if hasattr(signal, "pthread_sigmask") else None
    try:
        yield
    finally:
        if blocked is not None and signal.SIGHUP not in blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, hangup)
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved
