"""Run a command and watch its whole process tree: wall time, CPU time, peak memory per process.

How it measures: the command runs as a child; every ``interval`` seconds
psutil lists the child and all its descendants (the fork server and the
workers it forks are grandchildren, which ``RUSAGE_CHILDREN`` never sees
because nobody waits for them) and records each one's CPU time and its
peak resident set size (Linux ``VmHWM`` from /proc/<pid>/status, the
kernel's own high-water mark, so a peak between two samples is not missed;
elsewhere the largest sampled RSS).  A process's CPU time is its last
sample, so one that exits between samples loses at most ``interval`` of
CPU.  ``wait4`` is not used for the command itself: its figures include
every child it reaped (a Pool's workers), which are counted already.
Each process is
labelled by its place in the tree: ``main``, ``forkserver`` (a child of
main running the multiprocessing fork server), ``worker`` (its children),
``child`` (another direct child, such as a forked Pool worker) or
``helper`` (the resource tracker and anything deeper).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

import psutil


@dataclass
class ProcStat:
    """What was seen of one process."""

    pid: int
    role: str
    cpu: float = 0.0  # user + system seconds at the last sample
    peak_rss: int = 0  # bytes


@dataclass
class Watched:
    """The outcome of one watched run."""

    returncode: int
    wall: float
    started: float  # time.monotonic() when the command was started
    stdout: str
    stderr: str
    procs: dict[int, ProcStat] = field(default_factory=dict)
    cpu_series: list[tuple[float, float]] = field(default_factory=list)  # (monotonic, total CPU so far)

    @property
    def cpu(self) -> float:
        """CPU seconds of the whole tree."""
        return sum(p.cpu for p in self.procs.values())

    def peak(self, role: str) -> int:
        """Largest peak RSS among processes with ``role`` (0 if none ran)."""
        return max((p.peak_rss for p in self.procs.values() if p.role == role), default=0)

    def count(self, role: str) -> int:
        return sum(1 for p in self.procs.values() if p.role == role)

    def cpu_at(self, when: float) -> float:
        """Total tree CPU at monotonic time ``when``, interpolated between samples."""
        series = self.cpu_series
        if not series:
            return 0.0
        if when <= series[0][0]:
            return series[0][1]
        for (t0, c0), (t1, c1) in zip(series, series[1:]):
            if t0 <= when <= t1:
                return c0 + (c1 - c0) * (when - t0) / max(t1 - t0, 1e-9)
        return series[-1][1]


def _peak_rss(proc: psutil.Process) -> int:
    try:
        with open(f"/proc/{proc.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return proc.memory_info().rss


def _role(proc: psutil.Process, main_pid: int, forkservers: set[int]) -> str:
    try:
        parent = proc.ppid()
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return "helper"
    if parent == main_pid and "forkserver" in cmdline:
        forkservers.add(proc.pid)
        return "forkserver"
    if parent in forkservers:
        return "worker"
    if parent == main_pid and "resource_tracker" not in cmdline:
        return "child"  # e.g. a fork-context multiprocessing.Pool worker
    return "helper"


def run(cmd: list[str], *, env: dict[str, str] | None = None, interval: float = 0.05,
        timeout: float | None = None, cwd: str | None = None) -> Watched:
    """Run ``cmd`` (in ``cwd``) to completion while sampling its process tree."""
    started = time.monotonic()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, cwd=cwd)
    main = psutil.Process(child.pid)
    procs: dict[int, ProcStat] = {child.pid: ProcStat(child.pid, "main")}
    handles: dict[int, psutil.Process] = {child.pid: main}
    forkservers: set[int] = set()
    series: list[tuple[float, float]] = []
    out_chunks: list[str] = []
    err_chunks: list[str] = []
    import threading

    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)
               for s, b in ((child.stdout, out_chunks), (child.stderr, err_chunks))]
    for r in readers:
        r.start()
    rusage = None
    while True:
        try:
            pid, status, rusage = os.wait4(child.pid, os.WNOHANG)
        except ChildProcessError:
            break
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            break
        try:
            for proc in main.children(recursive=True):
                if proc.pid not in procs:
                    handles[proc.pid] = proc
                    procs[proc.pid] = ProcStat(proc.pid, _role(proc, child.pid, forkservers))
        except psutil.Error:
            pass
        now = time.monotonic()
        for pid_, proc in list(handles.items()):
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    procs[pid_].cpu = times.user + times.system
                    procs[pid_].peak_rss = max(procs[pid_].peak_rss, _peak_rss(proc))
            except psutil.Error:
                handles.pop(pid_)
        series.append((now, sum(p.cpu for p in procs.values())))
        if timeout and now - started > timeout:
            child.kill()
        time.sleep(interval)
    wall = time.monotonic() - started
    if rusage is not None and procs[child.pid].cpu == 0.0:  # too short to sample: only then use wait4,
        procs[child.pid].cpu = rusage.ru_utime + rusage.ru_stime  # which adds every child main reaped
        procs[child.pid].peak_rss = rusage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    series.append((time.monotonic(), sum(p.cpu for p in procs.values())))
    for r in readers:
        r.join(timeout=5)
    return Watched(child.returncode if child.returncode is not None else -1, wall, started,
                   "".join(out_chunks), "".join(err_chunks), procs, series)
