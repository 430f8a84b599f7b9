"""One measurement each: the baseline, a first scan, a rescan, a large rescan, start-up.

Every measurement runs the real program in a fresh process under
:mod:`benchmarks.procwatch`, checks that it did what it was asked (every
file analysed, or every file found in the cache) and returns a
:class:`Run`.  End-to-end figures include interpreter start, imports, model
loading and worker start-up, as a user sees them; steady-state figures take
the time between the first and the last file to finish (stamped by
:mod:`benchmarks.scan_probe`), which is what a library of thousands of
tracks converges to.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import procwatch

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    """One timed run of one measurement."""

    name: str
    files: int
    wall: float
    cpu: float
    peak_worker_mb: float
    peak_main_mb: float
    workers: int
    steady_wall: float | None = None  # first to last file finished
    steady_cpu: float | None = None
    load_before: float = 0.0
    load_after: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.files / self.wall if self.wall else 0.0

    @property
    def steady_rate(self) -> float | None:
        if not self.steady_wall or self.files < 2:
            return None
        return (self.files - 1) / self.steady_wall

    @property
    def cpu_per_file(self) -> float:
        return self.cpu / self.files if self.files else 0.0

    @property
    def steady_cpu_per_file(self) -> float | None:
        if self.steady_cpu is None or self.files < 2:
            return None
        return self.steady_cpu / (self.files - 1)

    def as_dict(self) -> dict:
        return asdict(self) | {"rate": self.rate, "steady_rate": self.steady_rate,
                               "cpu_per_file": self.cpu_per_file, "steady_cpu_per_file": self.steady_cpu_per_file}


def _mb(value: int) -> float:
    return round(value / 2**20, 1)


def _env(code: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a measured command: genretag imported from ``code`` (default: this checkout)."""
    env = dict(os.environ, PYTHONPATH=str(code or ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra)
    return env


def _finish(name: str, files: int, watched: procwatch.Watched, events: list[float], load_before: float,
            worker_role: str = "worker", **extra: object) -> Run:
    by_role: dict[str, float] = {}
    for proc in watched.procs.values():
        by_role[proc.role] = by_role.get(proc.role, 0.0) + proc.cpu
    run = Run(name, files, watched.wall, watched.cpu, _mb(watched.peak(worker_role)), _mb(watched.peak("main")),
              watched.count(worker_role), load_before=load_before, load_after=os.getloadavg()[0],
              extra=dict(extra, cpu_by_role=by_role))
    if len(events) >= 2:
        run.steady_wall = events[-1] - events[0]
        run.steady_cpu = watched.cpu_at(events[-1]) - watched.cpu_at(events[0])
    return run


def genretag_scan(name: str, root: Path, db: Path, backend: str, jobs: int, expect: str, files: int,
                  code: Path | None = None) -> Run:
    """``genretag scan ROOT`` with a given cache; ``expect`` is "analysed" or "from_cache" for all files.

    ``code``: a checkout of another version of genretag to run instead (a baseline).
    """
    with tempfile.TemporaryDirectory() as tmp:
        events_file = Path(tmp) / "events.json"
        cmd = [PYTHON, "-m", "benchmarks.scan_probe", "scan", str(root), "--db", str(db), "--backend", backend,
               "--jobs", str(jobs), "--json", "--no-progress"]
        load = os.getloadavg()[0]
        # In the checkout's folder: ``python -m`` puts the working folder first on sys.path.
        watched = procwatch.run(cmd, env=_env(code, GENRETAG_BENCH_EVENTS=str(events_file)), cwd=str(code or ROOT))
        probe = json.loads(events_file.read_text()) if events_file.exists() else {}
        events = probe.get("events", [])
    try:
        summary = json.loads(watched.stdout)
    except ValueError:
        why = watched.stderr[-3000:]
        raise RuntimeError(f"{name}: genretag scan failed (exit {watched.returncode}):\n{why}") from None
    if summary.get(expect) != files or summary.get("failed"):
        raise RuntimeError(f"{name}: expected {files} files {expect}, got {json.dumps(summary)[:1500]}")
    return _finish(name, files, watched, events, load, genres=summary.get("genres"),
                   tensorflow_imported=probe.get("tensorflow_imported"))


def baseline(files: list[Path], jobs: int) -> Run:
    """The study pipeline (benchmarks/baseline.py) over ``files``."""
    cmd = [PYTHON, "-m", "benchmarks.baseline", "--jobs", str(jobs), *map(str, files)]
    load = os.getloadavg()[0]
    watched = procwatch.run(cmd, env=_env())
    if watched.returncode != 0:
        raise RuntimeError(f"baseline failed (exit {watched.returncode}):\n{watched.stderr[-3000:]}")
    out = json.loads(watched.stdout)
    return _finish("baseline (librosa, study code)", len(files), watched, out["events"], load, worker_role="child",
                   genres=out["genres"])


def startup(runs: int) -> Run:
    """Median wall time of ``genretag --help`` over ``runs`` runs, each a fresh process.

    Timed with time.monotonic around the process and getrusage(RUSAGE_CHILDREN)
    for its CPU; ``python -c pass`` is timed alongside as the interpreter's floor.
    Peak memory comes from one more run under a fresh parent, whose
    RUSAGE_CHILDREN high-water mark is then that of ``--help`` alone.
    """
    import resource

    exe = shutil.which("genretag", path=os.path.dirname(PYTHON)) or shutil.which("genretag")
    cmd = [exe, "--help"] if exe else [PYTHON, "-m", "tagger.cli", "--help"]
    load = os.getloadavg()[0]
    walls, cpus, bare = [], [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.monotonic()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.monotonic() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        t = time.monotonic()
        subprocess.run([PYTHON, "-c", "pass"], check=True)
        bare.append(time.monotonic() - t)
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    peak = int(subprocess.run([PYTHON, "-c", probe, *cmd], capture_output=True, text=True).stdout) * 1024
    return Run("genretag --help", 1, statistics.median(walls), statistics.median(cpus), 0.0, _mb(peak), 0,
               load_before=load, load_after=os.getloadavg()[0],
               extra={"runs": runs, "walls": walls, "python_no_imports_median": statistics.median(bare)})


def rescan_library(sources: list[Path], count: int, out: Path) -> list[Path]:
    """``count`` hard links to ``sources`` (cycled), 100 per folder like albums; reused when unchanged."""
    links = [out / f"album-{i // 100:04d}" / f"track-{i:05d}{sources[i % len(sources)].suffix}" for i in range(count)]
    stamp = out / ".complete"
    identity = json.dumps([count, [str(s) for s in sources]])
    if stamp.exists() and stamp.read_text() == identity and all(
        os.path.samefile(link, sources[i % len(sources)]) for i, link in enumerate(links)
    ):
        return links
    if out.exists():
        shutil.rmtree(out)
    for i, link in enumerate(links):
        link.parent.mkdir(parents=True, exist_ok=True)
        os.link(sources[i % len(sources)], link)
    stamp.write_text(identity)
    return links


def seed_cache(scanned_db: Path, sources: list[Path], links: list[Path], db: Path) -> None:
    """Give every link in ``db`` a copy of its source file's row from a real scan in ``scanned_db``.

    A hard link has its source's size and mtime, so the copied row is exactly
    what analysing the link would have stored; only the path differs.
    """
    from tagger.store.cache import Cache, path_key

    with Cache(scanned_db) as cache:
        rows = {r["path"]: r for r in cache.tracks()}
        keys = [path_key(str(s))[0] for s in sources]
        feats = cache.features_for(keys)
    missing = [k for k in keys if k not in rows]
    if missing:
        raise RuntimeError(f"seed: {len(missing)} source file(s) missing from {scanned_db}, e.g. {missing[0]}")
    out_rows, out_feats = [], []
    from tagger.analysis.features import FEATURE_NAMES

    for i, link in enumerate(links):
        src_key = keys[i % len(keys)]
        key, raw = path_key(str(link))
        out_rows.append(dict(rows[src_key], path=key, path_bytes=raw))
        if src_key in feats:
            out_feats.append({"path": key, **dict(zip(FEATURE_NAMES, feats[src_key]))})
    if db.exists():
        db.unlink()
    with Cache(db) as cache:
        for i in range(0, len(out_rows), 1000):
            cache.write_results(out_rows[i : i + 1000], out_feats[i : i + 1000])
