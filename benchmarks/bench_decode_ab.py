"""Decoding the 30 s excerpt, this code against another checkout, alternating in one process.

```bash
git archive REV | (mkdir -p /tmp/base && tar -x -C /tmp/base)
python -m benchmarks.bench_decode_ab --baseline-code /tmp/base --per-format 3 --repeat 7
```

The other checkout's ``tagger`` is imported under another package name, so
both versions run in the same process, file by file, and see the same
neighbours; a machine shared with other work moves both alike.  The files
are bench_long's long tracks (benchmarks/library.py, ``long`` kind).
Prints per format the median CPU ms of ``tagger.media.audio.decode`` and the
ratio new / old.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

from . import library

ROOT = Path(__file__).resolve().parents[1]


def load_as(code: Path, name: str) -> ModuleType:
    """``tagger.media.audio`` of the checkout at ``code``, imported as ``name.audio``."""
    spec = importlib.util.spec_from_file_location(name, code / "tagger" / "__init__.py",
                                                  submodule_search_locations=[str(code / "tagger")])
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return importlib.import_module(name + (".media.audio" if (code / "tagger" / "media").is_dir() else ".audio"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline-code", type=Path, required=True)
    ap.add_argument("--tracks", type=int, default=12)
    ap.add_argument("--per-format", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = ap.parse_args(argv)
    root = args.out / "library-long"
    infos = library.build(root, args.tracks, kind="long")
    old = load_as(args.baseline_code.resolve(), "tagger_baseline")
    from tagger.media import audio as new

    chosen = [i for f in sorted({i.format for i in infos}) for i in [x for x in infos if x.format == f][: args.per_format]]
    for info in chosen[:2]:
        new.decode(root / info.path), old.decode(root / info.path)  # imports and first calls out of the way
    times: dict[tuple[str, str], list[float]] = {}
    load = os.getloadavg()[0]
    for _ in range(args.repeat):
        for info in chosen:
            for tag, module in (("old", old), ("new", new)):
                started = time.process_time()
                module.decode(root / info.path)
                times.setdefault((info.format, tag), []).append(1000 * (time.process_time() - started))
    print(f"decode of the 30 s excerpt, CPU ms, medians of {args.repeat} rounds (load {load:.2f} -> "
          f"{os.getloadavg()[0]:.2f}):")
    for fmt in sorted({i.format for i in chosen}):
        o, n = statistics.median(times[(fmt, "old")]), statistics.median(times[(fmt, "new")])
        print(f"  {fmt:>5}: baseline {o:6.1f} ms, this {n:6.1f} ms, ratio {n / o:.2f} "
              f"[{len(times[(fmt, 'new')])} excerpts each]")


if __name__ == "__main__":
    main()
