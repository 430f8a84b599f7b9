"""SIGTERM and SIGHUP end a command as Ctrl-C does.

Scan, tag and undo already commit what they have on KeyboardInterrupt;
:func:`like_ctrl_c` makes ``kill`` and a closed terminal raise it too, so a scan
is never left ``running`` and the exit code is 128 plus the signal (143, 129).
Only the first signal interrupts (cleanup is not cut short), an ignored signal
stays ignored, and :func:`exit_if_hung_up` ends a command whose terminal is gone.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: The signals that stop a command as Ctrl-C does (Windows has no SIGHUP).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
_SIGHUP = getattr(signal, "SIGHUP", None)


class Stopped(KeyboardInterrupt):
    """A stop signal, raised where Ctrl-C's KeyboardInterrupt would be."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


_received: list[int] = []  # the stop signals received while the current command runs


def _raise(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if len(_received) == 1:
        raise Stopped(signum)


@contextmanager
def like_ctrl_c() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise :class:`Stopped` (a KeyboardInterrupt)."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig, handler in saved.items():
        if handler is not signal.SIG_IGN:
            signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def exit_code() -> int:
    """The exit code of an interrupted command: 128 + the stop signal's number, 130 for Ctrl-C."""
    return 128 + (_received[0] if _received else signal.SIGINT)


def exit_if_hung_up(exc: BaseException) -> None:
    """Exit 129 quietly if ``exc`` is the EIO of printing to the terminal whose hang-up (SIGHUP) stopped the command.

    Output goes to /dev/null from then on, so the interpreter's last flush
    cannot fail too (it would change the exit code to 120).
    """
    if _SIGHUP not in _received or not isinstance(exc, OSError) or exc.errno != errno.EIO:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, AttributeError):  # not a real file (a test runner's capture)
            pass
    os.close(devnull)
    sys.exit(exit_code())
