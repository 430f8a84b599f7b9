"""Where a worker's CPU goes, per format: ``python -m benchmarks.profile --tracks 40``.

Runs what a scan's worker runs for each file (tagger.inference.worker.analyse_file,
after the same warm_up) under cProfile with a CPU-time clock, so other
processes on the machine do not inflate the figures, and prints per format
the CPU per file and the functions that take it.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections import defaultdict
from pathlib import Path

from . import library

OUT = Path(__file__).resolve().parent / "out"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=40, help="library size (built if missing) [40]")
    parser.add_argument("--rounds", type=int, default=3, help="passes over each format's files [3]")
    parser.add_argument("--top", type=int, default=12, help="functions listed per format [12]")
    parser.add_argument("--slices", action="store_true", help="analyse for the slice backends (cnn, resnet)")
    args = parser.parse_args(argv)

    from tagger.inference.worker import AnalysisTask, analyse_file, warm_up
    from tagger.media.params import AnalysisParams

    warm_up()
    infos = library.build(OUT / "library", args.tracks)
    by_format: dict[str, list[Path]] = defaultdict(list)
    for info in infos:
        by_format[info.format].append(OUT / "library" / info.path)
    totals = {}
    for fmt, paths in sorted(by_format.items()):
        params = AnalysisParams(kind="slices" if args.slices else "features")
        tasks = [AnalysisTask(str(p), params) for p in paths]
        analyse_file(tasks[0])  # first-call costs belong to warm-up, not to the format
        profile = cProfile.Profile(time.process_time)
        started = time.process_time()
        profile.enable()
        for _ in range(args.rounds):
            for task in tasks:
                result = analyse_file(task)
                if result.error:
                    raise SystemExit(f"{task.path}: {result.error}")
        profile.disable()
        files = args.rounds * len(tasks)
        per_file = (time.process_time() - started) / files
        totals[fmt] = (per_file, len(paths))
        print(f"\n== {fmt}: {per_file * 1000:.1f} ms CPU per file ({len(paths)} files x {args.rounds})")
        stats = pstats.Stats(profile)
        rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[: args.top]
        for (file, line, name), (_, _, tottime, cumtime, _) in rows:
            where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else "built-in"
            print(f"  {tottime / files * 1000:7.2f} ms  {name}  ({where})")
    weighted = sum(ms * n for ms, n in totals.values()) / sum(n for _, n in totals.values())
    print(f"\nlibrary mix: {weighted * 1000:.1f} ms CPU per file in a worker")


if __name__ == "__main__":
    main()
