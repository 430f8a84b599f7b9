"""Long tracks at full speed (issue 12, point 6): an album collection of 5 to 10 minute tracks.

```bash
nice -n 10 python -m benchmarks.bench_long --tracks 12 --copies 8 --repeat 3
```

The library is benchmarks/library.py's ``long`` kind: per 10 tracks 4 Opus
(~128 kbps, 48 kHz), 3 Ogg Vorbis, 2 MP3 (192 kbps) and 1 FLAC, each 5 to
10 minutes of 44.1 kHz stereo music-like signal, each present ``--copies``
times as hard links.  Two measurements, each ``--repeat`` times:

- **decode**: in this process, ``tagger.audio.decode`` of every distinct
  track's 30 s excerpt (what a worker does before analysing), CPU time per
  file, and per format the median and its ratio to MP3's; beside it the
  whole file decoded from the start (``excerpt=None``), which is what an
  excerpt would cost if it were not reached by seeking.
- **scan**: ``genretag scan LIBRARY --backend svc --jobs 2`` on a fresh
  cache, as benchmarks/run.py measures it (end to end and steady files/s,
  CPU per file); the goal is at least 15 files/s steady on 2 cores.

The 1-minute load average is printed with each run: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from . import library, measure

ROOT = Path(__file__).resolve().parents[1]


def decode_times(root: Path, infos: list[library.TrackInfo], repeat: int) -> dict[str, dict[str, float]]:
    """Per format: median CPU ms of the 30 s excerpt and of the whole file, over tracks and repeats."""
    from tagger.audio import decode
    from tagger.worker import keep_heap

    keep_heap()  # as in a worker
    for info in infos[:2]:
        decode(root / info.path)  # imports and first-call costs out of the way
    excerpt: dict[str, list[float]] = {}
    whole: dict[str, list[float]] = {}
    for _ in range(repeat):
        for info in infos:
            for bucket, window in ((excerpt, 30.0), (whole, None)):
                started = time.process_time()
                decode(root / info.path, excerpt=window)
                bucket.setdefault(info.format, []).append(1000 * (time.process_time() - started))
    mp3 = statistics.median(excerpt["mp3"]) if "mp3" in excerpt else None
    out = {}
    for fmt in sorted(excerpt):
        ms = statistics.median(excerpt[fmt])
        out[fmt] = {"excerpt_ms": round(ms, 1), "whole_file_ms": round(statistics.median(whole[fmt]), 1),
                    "x_mp3": round(ms / mp3, 2) if mp3 else None, "files": len(excerpt[fmt]) // repeat}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=12)
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--skip", nargs="*", default=[], choices=["decode", "scan"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    root = args.out / "library-long"
    infos = library.build(root, args.tracks, kind="long")
    minutes = sum(i.seconds for i in infos) / 60
    mix = ", ".join(f"{f} {sum(i.format == f for i in infos)}" for f in sorted({i.format for i in infos}))
    print(f"{len(infos)} long tracks, {minutes:.0f} minutes: {mix}", flush=True)
    result: dict = {"tracks": len(infos), "copies": args.copies, "load_start": os.getloadavg()[0]}
    if "decode" not in args.skip:
        load = os.getloadavg()[0]
        result["decode"] = decode_times(root, infos, args.repeat)
        print(f"decode, CPU ms per file, median of {args.repeat} rounds (load {load:.2f} -> {os.getloadavg()[0]:.2f}):")
        for fmt, row in result["decode"].items():
            print(f"  {fmt:>5}: 30 s excerpt {row['excerpt_ms']:6.1f} ms ({row['x_mp3']:.2f} x MP3's), "
                  f"whole file from the start {row['whole_file_ms']:7.1f} ms  [{row['files']} files]")
    if "scan" not in args.skip:
        links = library.view(root, infos, f"long-{args.tracks}x{args.copies}", args.copies)
        lib = args.out / f"long-{args.tracks}x{args.copies}"
        runs = []
        for i in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                run = measure.genretag_scan("scan svc (long tracks)", lib, Path(tmp) / "db.sqlite", "svc",
                                            args.jobs, "analysed", len(links))  # fmt: skip
            runs.append(run)
            print(f"  scan {i + 1}: {run.rate:.1f} files/s end to end, {run.steady_rate or 0:.1f} steady, "
                  f"{1000 * (run.steady_cpu_per_file or 0):.0f} ms CPU per file steady "
                  f"(load {run.load_before:.2f} -> {run.load_after:.2f})", flush=True)
        steady_cpu = statistics.median(r.steady_cpu_per_file or 0 for r in runs)
        result["scan"] = {
            "files": len(links), "runs": [r.as_dict() for r in runs],
            "rate_median": round(statistics.median(r.rate for r in runs), 2),
            "steady_rate_median": round(statistics.median(r.steady_rate or 0 for r in runs), 2),
            "steady_cpu_per_file_median": round(steady_cpu, 4),
            "cpu_bound_rate": round(args.jobs / steady_cpu, 1) if steady_cpu else None,
        }
        s = result["scan"]
        print(f"scan svc, {len(links)} files, --jobs {args.jobs}, medians of {args.repeat}: {s['rate_median']} files/s"
              f" end to end, {s['steady_rate_median']} steady, {1000 * steady_cpu:.0f} ms CPU per file"
              f" ({s['cpu_bound_rate']} files/s when {args.jobs} cores are free)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
