"""The reading and tagging commands on a large library: wall time, time to first output, peak memory.

```bash
nice -n 10 python -m benchmarks.bench_large --files 20000 100000
```

For each size, a library is built cheaply and honestly:

* **Files**: three real 3 s clips (FLAC, MP3, Ogg Vorbis, made by
  tests/audiofiles.py) hard-linked into an artist/album tree,
  ``Music/Artist 00042/Album 2/07 Track.mp3``: 20 files per artist (two
  albums of ten), so 5,000 artists at 100,000 files.  Every name is a real
  directory entry whose tags ``tag --dry-run`` opens and reads.
* **Cache**: filled directly through the library API (``Cache.write_results``)
  instead of scanning 100,000 files, with the rows a scan would leave: each
  file's stat, a GTZAN-style genre with its probabilities, its artist and
  album tags, and a genre of its own (one of 190 genres, one per artist, plus
  10 put on 5% of files at random) with a musicnn embedding carrying that
  genre's direction, so ``learn`` has 200 genres to measure.

Then each command runs in a fresh process with stdout piped to a reader
that stamps the first byte: ``show``, ``show --json``, ``tag --dry-run``,
``tag --dry-run --by album`` and ``learn --dry-run``.  Reported per command:
wall seconds, seconds to the first byte on stdout, the process's peak
resident memory (``ru_maxrss`` from ``wait4``: these commands start no
child) and the bytes printed, as JSON and as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PER_ARTIST, PER_ALBUM = 20, 10
SIGNAL_GENRES, RANDOM_GENRES, RANDOM_SHARE = 190, 10, 0.05
GTZAN = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
COMMANDS = {
    "show": ["show"],
    "show --json": ["show", "--json"],
    "tag --dry-run": ["tag", "{root}", "--dry-run", "--no-progress"],
    "tag --dry-run --by album": ["tag", "{root}", "--dry-run", "--by", "album", "--no-progress"],
    "learn --dry-run": ["learn", "{root}", "--dry-run"],
}


def build(folder: Path, files: int, seed: int = 0) -> tuple[Path, Path]:
    """The hard-linked tree and its cache under ``folder``; returns (music root, database)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from audiofiles import make_audio
    from tagger.inference import inputs
    from tagger.store.cache import Cache, now
    from tagger.store.track import Track

    rng = np.random.default_rng(seed)
    root, db = folder / "Music", folder / "genretag.db"
    clips = [make_audio(folder / f"clip{ext}", fmt, seconds=3.0, kind="noise", seed=i)
             for i, (fmt, ext) in enumerate((("flac", ".flac"), ("mp3", ".mp3"), ("ogg", ".ogg")))]
    stats = [c.stat() for c in clips]
    front_end = inputs.front_end("musicnn").id
    directions = rng.normal(size=(SIGNAL_GENRES, 200))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    stamp = now()
    rows, embeddings = [], []
    cache = Cache(db)
    try:
        cache.start_scan([str(root)], "svc", "bench-large")
        for i in range(files):
            a, t = divmod(i, PER_ARTIST)
            album, track = divmod(t, PER_ALBUM)
            artist, genre = f"Artist {a:05d}", a % SIGNAL_GENRES
            c = i % len(clips)
            path = root / artist / f"Album {album + 1}" / f"{track + 1:02d} Track{clips[c].suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(clips[c], path)
            probs = rng.dirichlet(np.full(len(GTZAN), 0.3))
            probs[genre % len(GTZAN)] += 1.0
            probs /= probs.sum()
            order = np.argsort(-probs)
            own = [f"Genre {genre:03d}"] + [f"Random {r}" for r in range(RANDOM_GENRES) if rng.random() < RANDOM_SHARE]
            rows.append(Track.row(
                path=str(path), size=stats[c].st_size, mtime=stats[c].st_mtime, duration=3.0, excerpt_offset=0.0,
                excerpt_seconds=3.0, status="ok", params="{}", backend="svc", model_id="bench-large",
                genre=GTZAN[order[0]], confidence=float(probs[order[0]]),
                top3=[(GTZAN[j], float(probs[j])) for j in order[:3]],
                probabilities={g: float(p) for g, p in zip(GTZAN, probs)}, missing=False, first_seen=stamp,
                analysed_at=stamp, updated_at=stamp, artist=artist, album=f"Album {album + 1}", album_artist=None,
                compilation=None, file_genres=own))  # fmt: skip
            vector = directions[genre] * 6.0 + rng.normal(size=200)
            embeddings.append({"path": str(path), "front_end": front_end, "vector": vector.astype(np.float32).tobytes(),
                               "tags": None})
            if len(rows) == 5000:
                cache.write_results(rows, embeddings=embeddings)
                rows, embeddings = [], []
        cache.write_results(rows, embeddings=embeddings)
    finally:
        cache.close()
    return root, db


def run(args: list[str], env: dict[str, str]) -> dict:
    """One command in a fresh process: wall, first stdout byte, peak RSS, bytes out, exit code."""
    started = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    first: list[float] = []
    sizes = [0, 0]

    def drain(stream, k: int) -> None:
        while chunk := stream.read1(1 << 16):
            if k == 0 and not first:
                first.append(time.monotonic() - started)
            sizes[k] += len(chunk)

    readers = [threading.Thread(target=drain, args=(s, k)) for k, s in enumerate((proc.stdout, proc.stderr))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    for r in readers:
        r.join()
    return {"wall_s": round(wall, 2), "first_output_s": round(first[0], 3) if first else None,
            "peak_mb": round(usage.ru_maxrss / 1024), "stdout_bytes": sizes[0],
            "exit": os.waitstatus_to_exitcode(status)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, nargs="+", default=[20000, 100000])
    ap.add_argument("--commands", nargs="+", choices=list(COMMANDS), default=list(COMMANDS))
    ap.add_argument("--dir", help="Build the libraries here [default: a temporary folder, removed after].")
    ap.add_argument("--json", dest="json_path", help="Also write the report here.")
    args = ap.parse_args(argv)
    genretag = str(Path(sys.executable).with_name("genretag"))
    report: dict = {"command": "python -m benchmarks.bench_large " + " ".join(argv or sys.argv[1:]),
                    "cpus": os.cpu_count(), "sizes": {}}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in args.files:
            folder = Path(tmp) / f"lib{n}"
            folder.mkdir()
            t0 = time.monotonic()
            root, db = build(folder, n)
            env = dict(os.environ, GENRETAG_HOME=str(folder / "home"), GENRETAG_DB=str(db))
            results = {"build_s": round(time.monotonic() - t0, 1), "load_before": os.getloadavg()[0]}
            for name in args.commands:
                cmd = [genretag, *(a.format(root=root) for a in COMMANDS[name])]
                results[name] = run(cmd, env)
                print(f"{n} files, {name}: {results[name]}", file=sys.stderr, flush=True)
            results["load_after"] = os.getloadavg()[0]
            report["sizes"][n] = results
    print(json.dumps(report, indent=2))
    print(markdown(report))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def markdown(report: dict) -> str:
    """Per command and size: wall / first output / peak memory."""
    sizes = list(report["sizes"])
    names = [k for k in COMMANDS if all(k in report["sizes"][n] for n in sizes)]
    head = "| command | " + " | ".join(f"{int(n):,} files: wall, first output, peak" for n in sizes) + " |"
    lines = [head, "|---|" + "---:|" * len(sizes)]
    for name in names:
        cells = [report["sizes"][n][name] for n in sizes]
        lines.append(f"| `{name}` | " + " | ".join(
            f"{c['wall_s']:.1f} s, {c['first_output_s'] if c['first_output_s'] is not None else '-'} s, "
            f"{c['peak_mb']} MB" + (f" (exit {c['exit']})" if c["exit"] else "") for c in cells) + " |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
