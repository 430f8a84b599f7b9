"""Peak memory of a scan worker on very long files with ``--excerpt 0`` (the whole file).

    nice -n 10 python -m benchmarks.bench_memory --hours 1 3 --formats wav flac mp3

For each length and format a file is generated in a temporary folder (never
kept: a 3-hour WAV is 1.9 GB) by repeating a 5-minute synthetic track
(benchmarks/synth.py, 44.1 kHz stereo), written block by block so the
generator itself stays small.  Then ``genretag scan FILE --excerpt 0 --jobs 1
--timeout 0`` runs under benchmarks/procwatch.py, which records every
process's peak RSS (Linux VmHWM, the kernel's high-water mark).  Reported:
the worker's and the main process's peak RSS, wall and CPU time, and the
seconds the scan says it analysed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import procwatch
from .synth import track

SR = 44100
TRACK_SECONDS = 300.0
#: format -> (soundfile major format, subtype, extra SoundFile arguments)
FORMATS = {
    "wav": ("WAV", "PCM_16", {}),
    "flac": ("FLAC", "PCM_16", {}),
    "mp3": ("MP3", "MPEG_LAYER_III", {"bitrate_mode": "CONSTANT", "compression_level": 0.5}),
}


_PIECE: dict[int, np.ndarray] = {}
MP3_BITRATES = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)


def piece(seed: int = 7) -> np.ndarray:
    if seed not in _PIECE:
        _PIECE[seed] = track(seed, TRACK_SECONDS, SR)[0]
    return _PIECE[seed]


def write_long(path: Path, fmt: str, hours: float, seed: int = 7) -> Path:
    """``hours`` of audio made of one track repeated, written in blocks."""
    import soundfile as sf

    if fmt == "mp3":
        return _repeat_mp3(path, hours, seed)
    major, subtype, extra = FORMATS[fmt]
    piece_ = piece(seed)
    total = int(hours * 3600 * SR)
    with sf.SoundFile(str(path), "w", SR, 2, subtype, format=major, **extra) as f:
        written = 0
        while written < total:
            block = piece_[: total - written]
            for i in range(0, len(block), 1 << 15):  # one big write overflows libsndfile's stack
                f.write(block[i : i + (1 << 15)])
            written += len(block)
    return path


def _repeat_mp3(path: Path, hours: float, seed: int) -> Path:
    """Encode the 5-minute piece once and repeat its MPEG frames: encoding 3 hours would take minutes of CPU.

    The first frame of libsndfile's output is a Xing/Info frame that states
    the piece's length; it is dropped, so the decoder counts the real frames.
    """
    import soundfile as sf

    one = path.with_suffix(".piece.mp3")
    major, subtype, extra = FORMATS["mp3"]
    with sf.SoundFile(str(one), "w", SR, 2, subtype, format=major, **extra) as f:
        data = piece(seed)
        for i in range(0, len(data), 1 << 15):
            f.write(data[i : i + (1 << 15)])
    raw = one.read_bytes()
    one.unlink()
    start = 0
    if raw[:3] == b"ID3":  # ID3v2: 10-byte header, synchsafe size
        start = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(raw[6:10]))
    header = int.from_bytes(raw[start : start + 4], "big")
    assert header >> 21 == 0x7FF and (header >> 19) & 3 == 3 and (header >> 17) & 3 == 1, "not MPEG-1 layer III"
    length = 144000 * MP3_BITRATES[(header >> 12) & 15] // SR + ((header >> 9) & 1)
    if b"Xing" in raw[start : start + length] or b"Info" in raw[start : start + length]:
        start += length
    frames = raw[start:]
    copies = int(np.ceil(hours * 3600 / TRACK_SECONDS))
    with open(path, "wb") as f:
        for _ in range(copies):
            f.write(frames)
    return path


def measure(path: Path, work: Path) -> dict:
    """Scan ``path`` whole in one worker under procwatch; peak RSS per role, wall, CPU, analysed seconds."""
    env = dict(os.environ, GENRETAG_HOME=str(work / "home"))
    cmd = [sys.executable, "-c", "from tagger.cli import main; main()", "scan", str(path), "--excerpt", "0", "--jobs", "1", "--timeout", "0",
           "--db", str(work / f"{path.name}.db"), "--json", "--no-progress"]
    watched = procwatch.run(cmd, env=env)
    if watched.returncode != 0:
        raise SystemExit(f"scan failed ({watched.returncode}): {watched.stderr[-2000:]}")
    import sqlite3

    with sqlite3.connect(work / f"{path.name}.db") as conn:
        seconds, status = conn.execute("select excerpt_seconds, status from tracks").fetchone()
    worker = watched.peak("worker") or watched.peak("child")
    return {"file": path.name, "bytes": path.stat().st_size, "analysed_s": seconds, "status": status,
            "worker_peak_mb": round(worker / 2**20), "main_peak_mb": round(watched.peak("main") / 2**20),
            "wall_s": round(watched.wall, 1), "cpu_s": round(watched.cpu, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--formats", nargs="+", choices=sorted(FORMATS), default=["wav", "flac", "mp3"])
    parser.add_argument("--json", help="Also write the rows to this file.")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="genretag-bench-memory-") as tmp:
        work = Path(tmp)
        for hours in args.hours:
            for fmt in args.formats:
                path = write_long(work / f"long-{hours:g}h.{fmt}", fmt, hours)
                row = {"hours": hours, "format": fmt, **measure(path, work)}
                path.unlink()
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(f"\n{'file':<16}{'size MB':>9}{'analysed s':>12}{'worker MB':>11}{'main MB':>9}{'wall s':>8}{'CPU s':>8}")
    for r in rows:
        print(f"{r['file']:<16}{r['bytes'] / 2**20:>9.0f}{r['analysed_s']:>12.0f}{r['worker_peak_mb']:>11}"
              f"{r['main_peak_mb']:>9}{r['wall_s']:>8}{r['cpu_s']:>8}")


if __name__ == "__main__":
    main()
