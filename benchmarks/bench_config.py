"""What the config file and the genre tree cost every command and every tagged file.

```bash
python -m benchmarks.bench_config --repeat 200
```

Reported, in one process: milliseconds per ``tagger.common.config.load`` of the
``genretag config --init`` example with every setting uncommented, and with
no config file; milliseconds to parse the shipped genre tree; microseconds
per ``tagging.propose`` of a three-label row (top 2) without a genre map,
with a 100-entry map, and with the map and ``--with-parents``.  The load
average is printed alongside: on a shared machine the figures move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path


def _per_call(fn: object, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["GENRETAG_HOME"] = home
        from tagger.cli import cli
        from tagger.common import config
        from tagger.decide import vocabulary
        from tagger.write.tagging import TagOptions, propose

        setting = re.compile(r"^# ([a-z][a-z0-9-]* = .*|\[[a-z]+\])$")
        text = "\n".join(line[2:] if setting.match(line) else line for line in config.example(cli).splitlines())
        (Path(home) / "genre-map.txt").write_text("hiphop = Rap\n", encoding="utf-8")
        full = Path(home) / "full.toml"
        full.write_text(text, encoding="utf-8")
        assert config.load(cli, full).settings, "the uncommented example gives settings"
        out = {
            "load_full_example_ms": 1e3 * _per_call(lambda: config.load(cli, full), args.repeat),
            "load_no_file_ms": 1e3 * _per_call(lambda: config.load(cli), args.repeat),
        }
        start = time.perf_counter()
        vocabulary.tree.cache_clear()
        vocabulary.tree()
        out["parse_tree_ms"] = 1e3 * (time.perf_counter() - start)
        row = {"genre": "hiphop", "confidence": 0.5,
               "probabilities": json.dumps({"hiphop": 0.5, "alternative rock": 0.3, "rock": 0.2})}
        big_map = {f"label{i}": f"Name {i}" for i in range(100)}
        for name, opts in (("propose_us", TagOptions(top=2)),
                           ("propose_100_entry_map_us", TagOptions(top=2, genre_map=big_map)),
                           ("propose_map_with_parents_us", TagOptions(top=2, genre_map=big_map, with_parents=True))):
            out[name] = 1e6 * _per_call(lambda: propose(row, opts), args.repeat * 10)
        out["load_average"] = os.getloadavg()[0]
    print(json.dumps({k: round(v, 3) for k, v in out.items()}, indent=2))


if __name__ == "__main__":
    main()
