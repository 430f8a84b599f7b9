"""Signals to a running `genretag scan`, with real processes: it ends as Ctrl-C does, or its workers go quietly.

Issue 22 (5): SIGTERM and SIGHUP killed the scan on the spot, leaving its
``scans`` row ``running`` forever, and workers printed BrokenPipeError
tracebacks.  Each signal goes to a few scans, to the process alone and to
its whole group (as a closed terminal or ``kill -- -PGID`` does), to catch races.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audiofiles import make_audio

GENRETAG = str(Path(sys.executable).with_name("genretag"))
FILES = 40  # analysis takes ~30 ms a file on two workers: enough to still be running after the first commit


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lib")
    for i in range(FILES):
        make_audio(root / f"t{i:02}.wav", "wav", seconds=12.0, kind="noise", seed=i)
    return root


def _start_scan(library: Path, db: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([GENRETAG, "scan", str(library), "--db", str(db), "--jobs", "2", "--no-progress",
                             "--json", "--min-confidence", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _when_committed(proc: subprocess.Popen[str], db: Path) -> int:
    """How many results the scan has committed, once it has some (the test is void if it finished first)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        committed = _count(db, "select count(*) from tracks")
        if committed:
            assert proc.poll() is None, "the scan finished before it could be signalled"
            return committed
        time.sleep(0.05)
    raise AssertionError(f"the scan never committed a result: {proc.communicate()[1]}")


def _count(db: Path, sql: str) -> int:
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute(sql).fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_ends_a_scan_as_ctrl_c_does(library: Path, tmp_path: Path, sig: signal.Signals) -> None:
    """Four scans at once (their start-up is most of the time), two signalled alone, two with their workers."""
    targets = [os.kill, os.killpg] * 2
    dbs = [tmp_path / f"run{i}.db" for i in range(len(targets))]
    procs = [_start_scan(library, db) for db in dbs]
    committed = []
    for proc, db, send in zip(procs, dbs, targets):
        committed.append(_when_committed(proc, db))
        send(proc.pid, sig)
    for proc, db, before in zip(procs, dbs, committed):
        _assert_ended_as_ctrl_c(proc, db, sig, before)


def _assert_ended_as_ctrl_c(proc: subprocess.Popen[str], db: Path, sig: signal.Signals, committed: int) -> None:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err, err
    assert '"interrupted": true' in out
    with sqlite3.connect(db) as con:
        status, finished = con.execute("select status, finished_at from scans").fetchone()
        kept = con.execute("select count(*) from tracks where status = 'ok'").fetchone()[0]
        errors = con.execute("select path, error from tracks where status = 'error'").fetchall()
    assert (status, finished is not None) == ("interrupted", True)
    assert kept >= committed and not errors  # a worker the signal ended is not blamed on its file


@pytest.mark.slow
def test_a_hang_up_under_nohup_is_still_ignored(library: Path, tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    proc = subprocess.Popen([GENRETAG, "scan", str(library), "--db", str(db), "--jobs", "2", "--no-progress",
                             "--json", "--min-confidence", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    _when_committed(proc, db)
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert '"interrupted": false' in out and f'"analysed": {FILES}' in out


@pytest.mark.slow
def test_a_hang_up_ends_a_dask_scan_without_tracebacks(library: Path, tmp_path: Path) -> None:
    """SIGHUP to the group killed multiprocessing's resource tracker, whose replacement printed KeyErrors."""
    pytest.importorskip("distributed")
    db = tmp_path / "c.db"
    proc = _start_scan(library, db, "--cluster", "local")
    committed = _when_committed(proc, db)
    os.killpg(proc.pid, signal.SIGHUP)
    _assert_ended_as_ctrl_c(proc, db, signal.SIGHUP, committed)


@pytest.mark.slow
def test_a_closed_terminal_ends_a_scan_with_129(library: Path, tmp_path: Path) -> None:
    """A real hang-up: the scan's terminal closes, SIGHUP comes, and the summary has nowhere to go."""
    db = tmp_path / "c.db"
    pid, terminal = pty.fork()
    if pid == 0:  # pragma: no cover - the child becomes genretag at once
        os.execv(GENRETAG, [GENRETAG, "scan", str(library), "--db", str(db), "--jobs", "2"])
    deadline = time.monotonic() + 120
    while not _count(db, "select count(*) from tracks") and time.monotonic() < deadline:
        if select.select([terminal], [], [], 0.05)[0]:
            try:
                os.read(terminal, 1 << 16)  # keep the progress bar flowing
            except OSError:
                break
    os.close(terminal)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 128 + signal.SIGHUP
    with sqlite3.connect(db) as con:
        assert con.execute("select status from scans").fetchone()[0] == "interrupted"


@pytest.mark.slow
def test_workers_of_a_killed_scan_end_without_a_traceback(library: Path, tmp_path: Path) -> None:
    """SIGKILL to the scan alone: its workers finish their file and find no one to send it to."""
    db = tmp_path / "c.db"
    proc = _start_scan(library, db)
    _when_committed(proc, db)
    proc.kill()
    _, err = proc.communicate(timeout=60)  # until the orphaned workers, which share stderr, have exited too
    assert proc.returncode == -signal.SIGKILL
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
