"""Measure genretag's speed against the study baseline: ``python -m benchmarks.run``.

Builds (or reuses) a synthetic library under benchmarks/out/, then runs, in
one go and ``--repeat`` times each: the baseline study pipeline, a first
``genretag scan`` with every built-in backend that has a model, a rescan of
the unchanged library, a rescan of a ``--rescan-files`` library of hard
links with a pre-seeded cache, and ``genretag --help``.  Prints medians
(files/s end to end and steady state, ratio to the baseline, CPU seconds per
file, peak memory per worker) and with ``--json`` writes every run.

Example:
    python -m benchmarks.run --tracks 40 --copies 5 --repeat 3 --json benchmarks/out/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from . import library, measure

OUT = Path(__file__).resolve().parent / "out"
MEASUREMENTS = ("baseline", "scan", "rescan", "rescan-large", "startup")


def available_backends(wanted: list[str] | None) -> tuple[list[str], dict[str, str]]:
    """Built-in backends with a usable model, and why the others are skipped (from `genretag backends`)."""
    out = subprocess.run([measure.PYTHON, "-m", "benchmarks.scan_probe", "backends", "--json"],
                         capture_output=True, text=True, env=measure._env(), check=True)
    usable, skipped = [], {}
    for row in json.loads(out.stdout):
        name = row["name"]
        if wanted and name not in wanted:
            continue
        if row.get("status") != "ok":
            skipped[name] = f"backend not loadable: {row.get('error')}"
        elif not row.get("model"):
            skipped[name] = row.get("model_error") or "no model"
        else:
            usable.append(name)
    return usable, skipped


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(runs: list[measure.Run]) -> list[dict]:
    """Median of each measurement over its repeats, with the ratio to the baseline."""
    by_name: dict[str, list[measure.Run]] = {}
    for run in runs:
        by_name.setdefault(run.name, []).append(run)
    rows = []
    for name, group in by_name.items():
        rows.append({
            "measurement": name, "files": group[0].files, "repeats": len(group),
            "files_per_s": _median([r.rate for r in group]),
            "steady_files_per_s": _median([r.steady_rate for r in group]),
            "wall_s": _median([r.wall for r in group]),
            "cpu_s_per_file": _median([r.cpu_per_file for r in group]),
            "steady_cpu_s_per_file": _median([r.steady_cpu_per_file for r in group]),
            "peak_worker_mb": _median([r.peak_worker_mb or None for r in group]),
            "peak_main_mb": _median([r.peak_main_mb for r in group]),
            "main_cpu_s_per_file": _median([r.extra.get("cpu_by_role", {}).get("main", 0.0) / r.files
                                            for r in group]),
            "load_1min": _median([r.load_before for r in group]),
        })  # fmt: skip
    base = next((r for r in rows if r["measurement"].startswith("baseline")), None)
    for row in rows:
        # What the run's CPU per file allows when every core is free for it: cores / (CPU s per file).
        cpu, steady = row["steady_cpu_s_per_file"], row["steady_files_per_s"]
        long_enough = steady and (row["files"] - 1) / steady >= 1.0  # 20 samples of the process tree or more
        row["cpu_bound_files_per_s"] = (os.cpu_count() or 1) / cpu if cpu and long_enough else None
        for key in ("files_per_s", "steady_files_per_s"):
            ratio = None
            if base and base[key] and row[key] and row["measurement"].startswith("scan "):
                ratio = row[key] / base[key]
            row[key.replace("files_per_s", "x_baseline")] = ratio
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict]) -> None:
    head = ("measurement", "files", "wall s", "files/s", "steady/s", "x base", "x base st.", "CPU s/file",
            "steady CPU", "CPU-bound/s", "worker MB", "main MB", "load")
    lines = [head]
    for r in rows:
        single = r["files"] == 1
        lines.append((r["measurement"], str(r["files"]), _fmt(r["wall_s"], ".3f"),
                      "-" if single else _fmt(r["files_per_s"], ".2f"), _fmt(r["steady_files_per_s"], ".1f"),
                      _fmt(r["x_baseline"], ".1f"), _fmt(r["steady_x_baseline"], ".1f"),
                      _fmt(r["cpu_s_per_file"], ".4f"), _fmt(r["steady_cpu_s_per_file"], ".4f"),
                      _fmt(r["cpu_bound_files_per_s"], ".1f"), _fmt(r["peak_worker_mb"], ".0f"),
                      _fmt(r["peak_main_mb"], ".0f"), _fmt(r["load_1min"], ".1f")))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for n, line in enumerate(lines):
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def machine() -> dict:
    """What the figures depend on."""
    commit = subprocess.run(["git", "-C", str(measure.ROOT), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "commit": commit, "load_at_start": os.getloadavg()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--tracks", type=int, default=40, help="tracks in the synthetic library [40]")
    parser.add_argument("--copies", type=int, default=1,
                        help="scan each track this many times, as hard links under other paths [1]")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; medians are printed [3]")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for scans and the baseline [2]")
    parser.add_argument("--backends", nargs="*", help="backends to scan with [every built-in one with a model]")
    parser.add_argument("--baseline-tracks", type=int, default=10,
                        help="tracks the baseline analyses (it is slow; its rate is per file) [10]")
    parser.add_argument("--rescan-files", type=int, default=10_000, help="files in the large rescan [10000]")
    parser.add_argument("--startup-runs", type=int, default=20, help="runs of genretag --help [20]")
    parser.add_argument("--skip", nargs="*", default=[], choices=MEASUREMENTS, help="measurements to leave out")
    parser.add_argument("--json", dest="json_path", help="write every run and the medians here")
    parser.add_argument("--out", default=str(OUT), help="where the library and caches live [benchmarks/out]")
    args = parser.parse_args(argv)

    out = Path(args.out).resolve()
    host = machine()  # before the runs: its load average is the neighbours', not ours
    infos = library.build(out / "library", args.tracks, jobs=args.jobs,
                          log=lambda m: print(m, file=sys.stderr, flush=True))
    root = out / f"library-{args.tracks}x{args.copies}"
    sources = library.view(out / "library", infos, root.name, copies=args.copies)
    backends, skipped = available_backends(args.backends)
    for name, why in skipped.items():
        print(f"skipping backend {name}: {why}", file=sys.stderr)
    runs: list[measure.Run] = []
    large_rescan_backend = "svc" if "svc" in backends else (backends[0] if backends else None)

    def record(run: measure.Run) -> None:
        runs.append(run)
        print(f"  {run.name}: {run.files} files in {run.wall:.2f} s ({run.rate:.2f}/s, "
              f"steady {_fmt(run.steady_rate, '.2f')}/s), CPU {run.cpu_per_file:.3f} s/file, "
              f"load {run.load_before:.1f}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="genretag-bench-") as tmp:
        tmpdir = Path(tmp)
        for rep in range(args.repeat):
            print(f"repeat {rep + 1}/{args.repeat}", file=sys.stderr, flush=True)
            if "baseline" not in args.skip:
                record(measure.baseline(sources[: args.baseline_tracks], args.jobs))
            for backend in backends:
                db = tmpdir / f"{backend}-{rep}.db"
                if "scan" not in args.skip or "rescan" not in args.skip or "rescan-large" not in args.skip:
                    run = measure.genretag_scan(f"scan {backend}", root, db, backend, args.jobs, "analysed",
                                                len(sources))
                    if "scan" not in args.skip:
                        record(run)
                if "rescan" not in args.skip:
                    record(measure.genretag_scan(f"rescan {backend} (unchanged)", root, db, backend, args.jobs,
                                                 "from_cache", len(sources)))
                if "rescan-large" not in args.skip and backend == large_rescan_backend:
                    big = out / f"rescan-{args.rescan_files}"
                    links = measure.rescan_library(sources, args.rescan_files, big)
                    seeded = tmpdir / f"seeded-{rep}.db"
                    measure.seed_cache(db, sources, links, seeded)
                    record(measure.genretag_scan(f"rescan {backend} {args.rescan_files} links (seeded cache)", big,
                                                 seeded, backend, args.jobs, "from_cache", len(links)))
            if "startup" not in args.skip:
                record(measure.startup(args.startup_runs))
    rows = summarise(runs)
    print()
    print_table(rows)
    for name, why in skipped.items():
        print(f"skipped backend {name}: {why}")
    if args.json_path:
        report = {"machine": host | {"load_at_end": os.getloadavg()}, "args": vars(args),
                  "skipped_backends": skipped, "summary": rows, "runs": [r.as_dict() for r in runs]}
        Path(args.json_path).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
