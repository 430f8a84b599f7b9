"""What writing a hard-linked file in place costs against the rename-based write (issue 25, point 4).

```bash
nice -n 10 python -m benchmarks.bench_hard_links --files 100 --seconds 30 --repeat 3
```

One FLAC of ``--seconds`` of noise is made (tests/audiofiles.py) and copied
``--files`` times into a temporary folder per mode; each copy gets a second
name (``os.link``), as a seeding folder would hold it.  Then each copy's
genre is written once through :class:`tagger.media.tags.TagFile` with
``links=split`` (a new file renamed over the name: the plain write) and
``links=in-place`` (the verified copy's bytes copied into the inode: two
fsyncs, one more parse and one more copy).  Reported: the median over
``--repeat`` rounds of milliseconds per file, per mode.  The journal (the
database) is left out: it is the same for both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_round(src: str, folder: str, links: str, files: int) -> float:
    """Milliseconds per file to write the genre of ``files`` hard-linked copies of ``src``."""
    from tagger.media import tags

    os.mkdir(folder)
    paths = []
    for i in range(files):
        path = os.path.join(folder, f"{i}.flac")
        shutil.copyfile(src, path)
        os.link(path, path + ".seed")
        paths.append(path)
    start = time.perf_counter()
    for path in paths:
        tags.TagFile(path).write(["Jazz"], links=links)
    took = (time.perf_counter() - start) / files * 1000
    shutil.rmtree(folder)
    return took


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    from audiofiles import make_audio
    from tagger.media import tags

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = str(make_audio(os.path.join(tmp, "src.flac"), "flac", seconds=args.seconds, kind="noise", seed=1))
        print(f"{args.files} files of {os.path.getsize(src) / 1e6:.1f} MB, each with a second name")
        for links in (tags.SPLIT, tags.IN_PLACE):
            runs = [one_round(src, os.path.join(tmp, f"{links}-{r}"), links, args.files) for r in range(args.repeat)]
            out[links] = statistics.median(runs)
            print(f"{links:>8}: {out[links]:.1f} ms per file (median of {args.repeat})")
    return out


if __name__ == "__main__":
    main()
