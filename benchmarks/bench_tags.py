"""How long `genretag tag` and `undo` take on a file with huge tags, and how often they parse it.

```bash
python -m benchmarks.bench_tags --picture-mb 40 --frames 2000 --repeat 3
```

Two MP3s of the same 4 s of audio are made under ``benchmarks/out/tags/``:
``huge.mp3`` with a ``--picture-mb`` cover and ``--frames`` TXXX frames
saved by mutagen (which, like Picard and beets, puts the largest frame
last), and ``plain.mp3`` with a small tag.  Both are scanned once; then,
``--repeat`` times, each file gets its own ``genretag tag FILE`` and
``genretag undo FILE`` through the real command line in this process, with
every mutagen file load counted (``mutagen.FileType.__init__``).  Reported:
median seconds per command and file, and parses per command and file.

Issue 11 measured the huge case before genretag parsed each file once:
386 s for one `tag` of a 40 MB cover with 2,000 frames, about 5 parses.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "tags"


def make_files(folder: Path, picture_mb: float, frames: int) -> dict[str, Path]:
    """huge.mp3 (big cover, many frames) and plain.mp3 (a small tag), the same audio."""
    sys.path.insert(0, str(ROOT / "tests"))
    from audiofiles import mp3_with_big_tags

    folder.mkdir(parents=True, exist_ok=True)
    return {name: mp3_with_big_tags(folder / f"{name}.mp3", mb, n, seed=7)
            for name, mb, n in (("huge", picture_mb, frames), ("plain", 0.01, 5))}


class ParseCounter:
    """Counts mutagen file loads by file name while active."""

    def __init__(self) -> None:
        import mutagen

        self.seen: Counter[str] = Counter()
        self._cls, self._real = mutagen.FileType, mutagen.FileType.__init__
        counter, real = self.seen, self._real

        def counting(obj: Any, *args: Any, **kwargs: Any) -> None:
            thing = kwargs.get("filename") or (args[0] if args else kwargs.get("filething"))
            counter[os.path.basename(getattr(thing, "name", thing))] += 1
            real(obj, *args, **kwargs)

        self._cls.__init__ = counting

    def close(self) -> None:
        self._cls.__init__ = self._real


def genretag(*args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from tagger.cli import cli

    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout + result.stderr


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--picture-mb", type=float, default=40.0)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the results here")
    opts = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-tags-"))
    os.environ["GENRETAG_HOME"] = str(work / "home")
    started = time.perf_counter()
    files = make_files(OUT, opts.picture_mb, opts.frames)
    made = time.perf_counter() - started
    music = work / "Music"
    music.mkdir()
    for path in files.values():
        shutil.copy2(path, music / path.name)
    db = str(work / "db.sqlite")
    code, text = genretag("scan", str(music), "--db", db, "--jobs", "0", "--no-progress")
    assert code == 0, text

    seconds: dict[str, list[float]] = {}
    parses: dict[str, int] = {}
    counter = ParseCounter()
    try:
        for _ in range(opts.repeat):
            for name in files:
                target = str(music / f"{name}.mp3")
                for command in (["tag", target, "--overwrite"], ["undo", target]):
                    counter.seen.clear()
                    t = time.perf_counter()
                    code, text = genretag(*command, "--db", db, "--no-progress")
                    elapsed = time.perf_counter() - t
                    assert code == 0 and ("1 written" in text or "1 restored" in text), text
                    key = f"{command[0]} {name}"
                    seconds.setdefault(key, []).append(elapsed)
                    parses[key] = counter.seen[f"{name}.mp3"]
    finally:
        counter.close()
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "picture_mb": opts.picture_mb, "frames": opts.frames, "repeat": opts.repeat,
        "file_mb": {name: round(p.stat().st_size / 2**20, 1) for name, p in files.items()},
        "seconds_to_make_files": round(made, 1),
        "median_seconds": {k: round(statistics.median(v), 3) for k, v in seconds.items()},
        "parses": parses, "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }  # fmt: skip
    print(f"huge.mp3: {result['file_mb']['huge']} MB ({opts.picture_mb:g} MB cover, {opts.frames} frames); "
          f"plain.mp3: {result['file_mb']['plain']} MB; median of {opts.repeat}; load {result['load_average']:.1f}")
    print(f"{'command':<12} {'s/file':>9} {'parses':>7}")
    for key in seconds:
        print(f"{key:<12} {result['median_seconds'][key]:>9.3f} {parses[key]:>7}")
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
