"""Tracks per second of a scan on a Dask LocalCluster, against local worker processes.

    python -m benchmarks.bench_dask --tracks 16 [--repeats 3] [--workers 1,2] [--json]

Each measurement is one :func:`tagger.run.scan.scan` into a fresh cache, in a
fresh Python process, as each ``genretag scan`` is: local processes pay for
the fork server and its warm-up, Dask for its scheduler and worker processes,
whose first file includes importing and JIT-compiling the analysis.  So three
figures: end to end (what a user waits for), time to the first result
(start-up), and the steady rate after it (per-file overhead).  Runs are
interleaved, so a change in machine load hits every configuration alike;
medians are reported with the load average, as other work may share the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import library

DEFAULT_LIBRARY = Path(__file__).parent / "out" / "library"
KINDS = ("local", "dask")


class _Clock:
    """Scan progress that records when each result arrived."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.times: list[float] = []

    def set_total(self, total: int) -> None:
        pass

    def advance(self, path: str, status: str) -> None:
        self.times.append(time.perf_counter() - self.start)


def measure(kind: str, workers: int, root: str, excerpt: float) -> dict[str, Any]:
    """One scan of ``root`` with a fresh cache; run in a child process by :func:`main`."""
    from tagger.inference.models import load_model
    from tagger.run.runners import LocalRunner
    from tagger.run.scan import ScanOptions, scan
    from tagger.store.cache import Cache

    model = load_model("svc")
    if kind == "dask":
        from tagger.run.dask_runner import DaskRunner

        runner: Any = DaskRunner(cluster="local", workers=workers)
    else:
        runner = LocalRunner(workers)
    with tempfile.TemporaryDirectory() as tmp, Cache(Path(tmp) / "bench.db") as cache:
        clock = _Clock()
        summary = scan([root], cache, model, runner, ScanOptions(excerpt=excerpt, count_total=False), clock)
        wall = time.perf_counter() - clock.start
    n, t = len(clock.times), clock.times
    if summary.failed or n < 2:
        raise SystemExit(f"benchmark scan analysed {summary.analysed} and failed {summary.failed}: {summary.errors}")
    return {"kind": kind, "workers": workers, "tracks": n, "wall_s": wall, "tracks_per_s": n / wall,
            "first_result_s": t[0], "steady_tracks_per_s": (n - 1) / (t[-1] - t[0])}  # fmt: skip


def _run_child(kind: str, workers: int, root: Path, excerpt: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_dask", "--one", f"{kind}:{workers}", "--root", str(root),
           "--excerpt", str(excerpt)]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=Path(__file__).parents[1])
    return json.loads(out.stdout.splitlines()[-1])


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians per (kind, workers), with Dask's rate as a fraction of local processes' at the same count."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["kind"], r["workers"]), []).append(r)
    rows = []
    for (kind, workers), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], KINDS.index(kv[0][0]))):
        row: dict[str, Any] = {"kind": kind, "workers": workers, "repeats": len(rs)}
        for key in ("tracks_per_s", "first_result_s", "steady_tracks_per_s", "wall_s"):
            row[key] = round(statistics.median(r[key] for r in rs), 3)
        rows.append(row)
    local = {r["workers"]: r for r in rows if r["kind"] == "local"}
    for row in rows:
        base = local.get(row["workers"])
        if row["kind"] == "dask" and base:
            row["vs_local"] = round(row["tracks_per_s"] / base["tracks_per_s"], 2)
            row["steady_vs_local"] = round(row["steady_tracks_per_s"] / base["steady_tracks_per_s"], 2)
    return rows


def _print_table(rows: list[dict[str, Any]], info: dict[str, Any]) -> None:
    print(f"{info['tracks']} tracks, excerpt {info['excerpt']:g} s, {info['cpu_count']} CPUs, "
          f"load {info['load_before']} -> {info['load_after']}")
    print(f"{'runner':<8}{'workers':>8}{'tracks/s':>10}{'first result s':>16}{'steady tracks/s':>17}{'vs local':>10}")
    for r in rows:
        ratio = f"{r['vs_local']:.2f}x" if "vs_local" in r else ""
        print(f"{r['kind']:<8}{r['workers']:>8}{r['tracks_per_s']:>10.2f}{r['first_result_s']:>16.2f}"
              f"{r['steady_tracks_per_s']:>17.2f}{ratio:>10}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--excerpt", type=float, default=30.0)
    parser.add_argument("--library", type=Path, default=DEFAULT_LIBRARY, help="where the synthetic tracks are cached")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # kind:workers, in a child process
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        kind, workers = args.one.split(":")
        print(json.dumps(measure(kind, int(workers), args.root, args.excerpt)))
        return
    infos = library.build(args.library, args.tracks, log=lambda m: print(m, file=sys.stderr))
    root = library.view(args.library, infos, f"view-{args.tracks}")
    counts = [int(w) for w in args.workers.split(",")]
    load_before = os.getloadavg()
    runs = []
    for rep in range(args.repeats):
        for workers in counts:
            for kind in KINDS:
                runs.append(_run_child(kind, workers, root, args.excerpt))
                print(f"repeat {rep + 1}: {kind} x{workers}: {runs[-1]['tracks_per_s']:.2f} tracks/s", file=sys.stderr)
    info = {"tracks": args.tracks, "excerpt": args.excerpt, "cpu_count": os.cpu_count(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    rows = summarise(runs)
    if args.json:
        print(json.dumps({**info, "results": rows, "runs": runs}, indent=1))
    else:
        _print_table(rows, info)


if __name__ == "__main__":
    main()
