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

    multiprocessing starts the fork server and spawned workers as
    ``python -c ...``, which puts the working folder first on ``sys.path``
    before anything is imported (and Python 3.11's fork server never
    replaces it with the parent's path).  The variable is set only while a
    process starts, so commands genretag runs later are not affected.

    SIGHUP is blocked meanwhile, and the processes started inherit it so:
    a closed terminal hangs up the whole process group, and this process
    ends its workers itself (tagger/common/interrupts.py).  multiprocessing's
    resource tracker ignores SIGINT and SIGTERM but not SIGHUP: killed, its
    replacement printed KeyError tracebacks for every semaphore it never saw.
    A hang-up arriving meanwhile reaches this process once it is unblocked.
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
