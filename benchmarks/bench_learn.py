"""How long `genretag learn` takes from cached embeddings: 20,000 tagged files, 200 genres.

```bash
nice -n 10 python -m benchmarks.bench_learn --files 20000 --genres 200 --repeat 3
```

A synthetic cache is filled through the cache API (tests/learnlib.py):
``--genres`` minus 10 genres each played by 8 artists, whose embeddings
carry the genre's direction (learnable), and 10 genres put on 5% of the
files at random (not learnable); embeddings are mixed through a matrix
with a decaying spectrum so their dimensions correlate as a network's do.
Then, ``--repeat`` times, the real command runs on it in a fresh process
(``genretag learn ROOT --db DB --json``: collect from the cache, 5 grouped
folds, thresholds, the final fit, saving the model).  Reported: median
wall seconds, the child's CPU seconds, its peak resident memory (the largest
run's ``ru_maxrss``) and the load average, how many genres
are learnable (and how many of the random ones), and the pooled held-out
precision of the learnable genres, as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RANDOM_GENRES = 10
ARTISTS_PER_GENRE = 8


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--genres", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    import learnlib

    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, GENRETAG_HOME=str(Path(tmp) / "home"))  # models saved here, not the user's
        db, root = Path(tmp) / "bench.db", Path(tmp) / "music"
        signal = [f"Genre {g:03d}" for g in range(args.genres - RANDOM_GENRES)]
        per_artist = math.ceil(args.files / (len(signal) * ARTISTS_PER_GENRE))
        started = time.perf_counter()
        lib = learnlib.fill(db, root, signal=signal, random=[f"Random {r}" for r in range(RANDOM_GENRES)],
                            artists_per_genre=ARTISTS_PER_GENRE, files_per_artist=per_artist, random_share=0.05,
                            strength=6.0, mixing=True)  # fmt: skip
        filled = time.perf_counter() - started
        runs, cpu, loads = [], [], []
        for _ in range(args.repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            loads.append(os.getloadavg()[0])
            t0 = time.perf_counter()
            proc = subprocess.run([str(Path(sys.executable).with_name("genretag")), "learn", str(root), "--db", str(db), "--json"],
                                  env=env, capture_output=True, text=True, cwd=ROOT)  # fmt: skip
            runs.append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if not proc.stdout.strip():
                raise SystemExit(proc.stderr)
            result = json.loads(proc.stdout)
    report = {
        "files": len(lib.genres), "genres": args.genres, "measured": len(result["genres"]),
        "learnable": sum(g["learnable"] for g in result["genres"]), "saved": bool(result["model"]),
        "learnable_random": sum(g["learnable"] and g["genre"].startswith("Random") for g in result["genres"]),
        "heldout_of_learnable": result["heldout"],
        "fill_seconds": round(filled, 1), "learn_seconds": [round(r, 2) for r in runs],
        "peak_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),  # the largest learn run
        "median_seconds": round(statistics.median(runs), 2), "cpu_seconds": [round(c, 2) for c in cpu],
        "load_average_before_each": [round(x, 2) for x in loads], "load_average_after": os.getloadavg(),
        "cpus": os.cpu_count(),
        "command": "nice -n 10 python -m benchmarks.bench_learn " + " ".join(argv or sys.argv[1:]),
    }  # fmt: skip
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
