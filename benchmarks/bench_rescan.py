"""An unchanged rescan of a large library, this code against a baseline checkout: ``python -m benchmarks.bench_rescan``.

Builds (or reuses) the synthetic library of benchmarks/run.py, scans it once
per backend for real, then makes ``--files`` hard links to its files (100 per
folder) and a cache in which every link has its source's row
(benchmarks/measure.py: ``rescan_library``, ``seed_cache``).  Each repeat
then runs ``genretag scan LINKS`` on a fresh copy of that cache with this
checkout and, right after, with ``--baseline-code DIR`` (another checkout,
e.g. ``git archive main | tar -x -C DIR``), so both see the same load.
Prints per backend the median wall time, files/s, CPU and whether
TensorFlow was imported, the ratio to the baseline, and the load average.

Example:
    git -C . archive main | (mkdir -p /tmp/base && tar -x -C /tmp/base)
    python -m benchmarks.bench_rescan --files 10000 --repeat 5 --backends svc cnn --baseline-code /tmp/base
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from . import library, measure

OUT = Path(__file__).resolve().parent / "out"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--tracks", type=int, default=40, help="tracks in the synthetic library [40]")
    parser.add_argument("--files", type=int, default=10_000, help="hard links in the rescanned library [10000]")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each code per backend [5]")
    parser.add_argument("--jobs", type=int, default=2, help="--jobs of every scan [2]")
    parser.add_argument("--backends", nargs="*", default=["svc"], help="backends to rescan with [svc]")
    parser.add_argument("--baseline-code", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--json", dest="json_path", help="write every run and the medians here")
    parser.add_argument("--out", default=str(OUT), help="where the library lives [benchmarks/out]")
    args = parser.parse_args(argv)

    out = Path(args.out).resolve()
    codes = {"this": None} | ({"baseline": args.baseline_code.resolve()} if args.baseline_code else {})
    infos = library.build(out / "library", args.tracks, jobs=args.jobs, log=lambda m: print(m, file=sys.stderr))
    sources = library.view(out / "library", infos, f"library-{args.tracks}x1", copies=1)
    links = measure.rescan_library(sources, args.files, out / f"rescan-{args.files}")
    report: dict = {"machine": {"cpus": os.cpu_count(), "load_at_start": os.getloadavg()}, "args": vars(args) | {
        "baseline_code": str(args.baseline_code)}, "runs": [], "summary": {}}
    with tempfile.TemporaryDirectory(prefix="genretag-rescan-") as tmp:
        for backend in args.backends:
            first = Path(tmp) / f"{backend}-first.db"
            measure.genretag_scan(f"scan {backend}", out / f"library-{args.tracks}x1", first, backend, args.jobs,
                                  "analysed", len(sources))
            seeded = Path(tmp) / f"{backend}-seeded.db"
            measure.seed_cache(first, sources, links, seeded)
            runs: dict[str, list[measure.Run]] = {name: [] for name in codes}
            for rep in range(args.repeat):
                for name, code in codes.items():
                    db = Path(tmp) / "rescan.db"
                    shutil.copyfile(seeded, db)
                    run = measure.genretag_scan(f"rescan {backend} {args.files} ({name})", out / f"rescan-{args.files}",
                                                db, backend, args.jobs, "from_cache", len(links), code=code)
                    runs[name].append(run)
                    report["runs"].append(run.as_dict())
                    print(f"  {run.name} #{rep + 1}: {run.wall:.2f} s, {run.rate:,.0f} files/s, CPU {run.cpu:.2f} s, "
                          f"TensorFlow {run.extra.get('tensorflow_imported')}, load {run.load_before:.1f}",
                          file=sys.stderr, flush=True)
            report["summary"][backend] = summary = {name: _medians(rs) for name, rs in runs.items()}
            line = f"{backend}: " + "; ".join(
                f"{name} {s['wall']:.2f} s = {s['rate']:,.0f} files/s (CPU {s['cpu']:.2f} s, TensorFlow "
                f"{s['tensorflow_imported']}, load {s['load']:.1f})" for name, s in summary.items())
            if "baseline" in summary:
                line += f"; {summary['baseline']['wall'] / summary['this']['wall']:.2f}x the baseline's rate"
            print(line)
    report["machine"]["load_at_end"] = os.getloadavg()
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=1))


def _medians(runs: list[measure.Run]) -> dict:
    return {"wall": statistics.median(r.wall for r in runs), "rate": statistics.median(r.rate for r in runs),
            "cpu": statistics.median(r.cpu for r in runs), "load": statistics.median(r.load_before for r in runs),
            "tensorflow_imported": any(r.extra.get("tensorflow_imported") for r in runs), "runs": len(runs)}


if __name__ == "__main__":
    main()
