"""Long tracks at full speed (issue 12, point 6): an album collection of 5 to 10 minute tracks.

```bash
nice -n 10 python -m benchmarks.bench_long --tracks 12 --copies 8 --repeat 3
# the default backend against musicnn's (issue 19's budget), scans alternating in one run:
nice -n 10 python -m benchmarks.bench_long --tracks 12 --copies 2 --repeat 3 --skip decode --backends musicnn fusion
# against another version, scans alternating:
git archive REV | (mkdir -p /tmp/base && tar -x -C /tmp/base)
python -m benchmarks.bench_long --tracks 12 --copies 8 --repeat 3 --skip decode --baseline-code /tmp/base
```

The library is benchmarks/library.py's ``long`` kind: per 10 tracks 4 Opus
(~128 kbps, 48 kHz), 3 Ogg Vorbis, 2 MP3 (192 kbps) and 1 FLAC, each 5 to
10 minutes of 44.1 kHz stereo music-like signal, each present ``--copies``
times as hard links.  Two measurements, each ``--repeat`` times:

- **decode**: in this process, ``tagger.media.audio.decode`` of every distinct
  track's 30 s excerpt (what a worker does before analysing), CPU time per
  file, and per format the median and its ratio to MP3's; the analysis of
  that excerpt (``tagger.analysis.features.analyse``, the 57 features svc uses), as
  a worker runs it after ``warm_up``; beside it the
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
    """Per format: median CPU ms of the 30 s excerpt, of its svc analysis and of the whole file's decoding."""
    from tagger.analysis.features import analyse
    from tagger.inference.worker import warm_up
    from tagger.media.audio import decode

    warm_up()  # as in a worker: kernels ready, one BLAS thread, heap kept
    for info in infos[:2]:
        analyse(decode(root / info.path).samples, 22050, slices=False)  # first-call costs out of the way
    excerpt: dict[str, list[float]] = {}
    analysis: dict[str, list[float]] = {}
    whole: dict[str, list[float]] = {}
    for _ in range(repeat):
        for info in infos:
            for bucket, window in ((excerpt, 30.0), (whole, None)):
                started = time.process_time()
                clip = decode(root / info.path, excerpt=window)
                bucket.setdefault(info.format, []).append(1000 * (time.process_time() - started))
                if window:
                    started = time.process_time()
                    analyse(clip.samples, clip.sr, slices=False)  # the 57 features, what svc needs
                    analysis.setdefault(info.format, []).append(1000 * (time.process_time() - started))
    mp3 = statistics.median(excerpt["mp3"]) if "mp3" in excerpt else None
    out = {}
    for fmt in sorted(excerpt):
        ms = statistics.median(excerpt[fmt])
        out[fmt] = {"excerpt_ms": round(ms, 1), "analysis_ms": round(statistics.median(analysis[fmt]), 1),
                    "whole_file_ms": round(statistics.median(whole[fmt]), 1),
                    "x_mp3": round(ms / mp3, 2) if mp3 else None, "files": len(excerpt[fmt]) // repeat}
    return out


def codec_times(root: Path, infos: list[library.TrackInfo], repeat: int) -> dict[str, float]:
    """Per format: median CPU ms of the codec alone on a 30 s excerpt, the floor under ``decode``.

    What genretag's first-choice decoder spends inside its C code and
    nothing else: libsndfile's seek and read at the native rate for MP3 and
    FLAC; for Ogg, FFmpeg decoding packets demuxed beforehand (Opus mixed
    down by the decoder, as genretag asks).  No Python per frame, no
    joining, no downmix, no resampling.
    """
    import av
    import soundfile as sf

    from tagger.media.audio import AUDIO_EXTENSIONS, _opus_to_mono, excerpt_window

    times: dict[str, list[float]] = {}
    for _ in range(repeat):
        for info in infos:
            path = root / info.path
            if AUDIO_EXTENSIONS[path.suffix] == "soundfile":
                started = time.process_time()
                with sf.SoundFile(str(path)) as f:
                    start, length = excerpt_window(f.frames / f.samplerate, 30.0)
                    f.seek(int(start * f.samplerate))
                    f.read(int(length * f.samplerate), dtype="float32")
                times.setdefault(info.format, []).append(1000 * (time.process_time() - started))
                continue
            with av.open(str(path)) as container:
                stream = container.streams.audio[0]
                _opus_to_mono(stream)
                start, length = excerpt_window(float(stream.duration * stream.time_base), 30.0)
                container.seek(int(start / stream.time_base), stream=stream)
                packets, seconds = [], 0.0
                for packet in container.demux(stream):
                    packets.append(packet)
                    seconds += float((packet.duration or 0) * stream.time_base)
                    if seconds >= length:
                        break
                started = time.process_time()
                for packet in packets:
                    packet.decode()
                times.setdefault(info.format, []).append(1000 * (time.process_time() - started))
    return {fmt: round(statistics.median(ms), 1) for fmt, ms in sorted(times.items())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=12)
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--skip", nargs="*", default=[], choices=["decode", "scan"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--backends", nargs="+", default=["svc"],
                    help="backends whose scans alternate; each is compared with the first (files/s, CPU, memory)")
    ap.add_argument("--baseline-code", type=Path,
                    help="another checkout (git archive REV | tar -x -C DIR): its scans alternate with this one's")
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
                  f"its analysis {row['analysis_ms']:5.1f} ms, "
                  f"whole file from the start {row['whole_file_ms']:7.1f} ms  [{row['files']} files]")
        result["codec_ms"] = codec_times(root, infos, args.repeat)
        mp3 = result["decode"].get("mp3", {}).get("excerpt_ms")
        print("  the codec alone (C code only: no frames in Python, no downmix, no resampling), 30 s: " + ", ".join(
            f"{fmt} {ms:.1f} ms" + (f" ({ms / mp3:.2f} x MP3's whole decode)" if mp3 and fmt == "opus" else "")
            for fmt, ms in result["codec_ms"].items()))
        rows = result["decode"].values()
        n = sum(r["files"] for r in rows)
        result["worker_ms_per_file"] = round(sum(r["files"] * (r["excerpt_ms"] + r["analysis_ms"]) for r in rows) / n, 1)
        print(f"  per file of this mix: {result['worker_ms_per_file']} ms of decoding and analysis "
              f"(by the medians: {2000 / result['worker_ms_per_file']:.1f} files/s on 2 free cores, before the rest)")
    if "scan" not in args.skip:
        links = library.view(root, infos, f"long-{args.tracks}x{args.copies}", args.copies)
        lib = args.out / f"long-{args.tracks}x{args.copies}"
        runs, baseline_runs = [], []
        by_backend: dict[str, list[measure.Run]] = {b: [] for b in args.backends}
        codes = [(None, runs)] + ([(args.baseline_code.resolve(), baseline_runs)] if args.baseline_code else [])
        for i in range(args.repeat):
            for backend in args.backends:
                for code, into in codes:  # alternating, so all see the same neighbours
                    with tempfile.TemporaryDirectory() as tmp:
                        run = measure.genretag_scan(f"scan {backend} (long tracks)", lib, Path(tmp) / "db.sqlite",
                                                    backend, args.jobs, "analysed", len(links), code=code)
                    if backend == args.backends[0]:
                        into.append(run)
                    if code is None:
                        by_backend[backend].append(run)
                    print(f"  scan {backend} {i + 1}{' (baseline)' if code else ''}: {run.rate:.1f} files/s end to "
                          f"end, {run.steady_rate or 0:.1f} steady, {1000 * (run.steady_cpu_per_file or 0):.0f} ms "
                          f"CPU per file steady, main process {run.peak_main_mb:.0f} MB "
                          f"(load {run.load_before:.2f} -> {run.load_after:.2f})", flush=True)
        if len(args.backends) > 1:
            first = by_backend[args.backends[0]]
            result["backends"] = {}
            for backend, brs in by_backend.items():
                row = {"rate_median": round(statistics.median(r.rate for r in brs), 2),
                       "steady_cpu_per_file_median": round(statistics.median(r.steady_cpu_per_file or 0 for r in brs), 4),
                       "peak_main_mb_max": round(max(r.peak_main_mb for r in brs), 1),
                       "rate_ratio": round(statistics.median(r.rate for r in brs)
                                           / statistics.median(r.rate for r in first), 2)}
                result["backends"][backend] = row
                print(f"{backend}: {row['rate_median']} files/s end to end ({row['rate_ratio']} x "
                      f"{args.backends[0]}'s), {1000 * row['steady_cpu_per_file_median']:.0f} ms CPU per file, "
                      f"main process at most {row['peak_main_mb_max']:.0f} MB (medians of {args.repeat})")
        if baseline_runs:
            base_cpu = statistics.median(r.steady_cpu_per_file or 0 for r in baseline_runs)
            this_cpu = statistics.median(r.steady_cpu_per_file or 0 for r in runs)
            result["baseline"] = {"code": str(args.baseline_code), "runs": [r.as_dict() for r in baseline_runs],
                                  "steady_cpu_per_file_median": round(base_cpu, 4)}
            print(f"steady CPU per file, medians of {args.repeat}: this {1000 * this_cpu:.0f} ms, baseline "
                  f"{1000 * base_cpu:.0f} ms (ratio {this_cpu / base_cpu:.2f})")
        steady_cpu = statistics.median(r.steady_cpu_per_file or 0 for r in runs)
        result["scan"] = {
            "files": len(links), "runs": [r.as_dict() for r in runs],
            "rate_median": round(statistics.median(r.rate for r in runs), 2),
            "steady_rate_median": round(statistics.median(r.steady_rate or 0 for r in runs), 2),
            "steady_cpu_per_file_median": round(steady_cpu, 4),
            "cpu_bound_rate": round(args.jobs / steady_cpu, 1) if steady_cpu else None,
        }
        s = result["scan"]
        print(f"scan {args.backends[0]}, {len(links)} files, --jobs {args.jobs}, medians of {args.repeat}: {s['rate_median']} files/s"
              f" end to end, {s['steady_rate_median']} steady, {1000 * steady_cpu:.0f} ms CPU per file"
              f" ({s['cpu_bound_rate']} files/s when {args.jobs} cores are free)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
