"""``genretag`` itself, recording when each file finishes: ``python -m benchmarks.scan_probe scan ...``.

The command line is genretag's own (tagger.cli.main, unchanged); the only
addition is that every call to the progress display's ``advance`` (made once
per file, analysed or cached) also appends ``time.monotonic()`` to a list,
written as JSON to $GENRETAG_BENCH_EVENTS when the process exits, with
whether TensorFlow was imported.  Those stamps give the steady-state rate,
free of start-up costs.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from pathlib import Path


def main() -> None:
    started = time.monotonic()
    events: list[float] = []
    target = os.environ.get("GENRETAG_BENCH_EVENTS")
    if target:
        from tagger.views import ui

        original = ui.RichProgress.advance

        def advance(self: ui.RichProgress, path: str, status: str) -> None:
            events.append(time.monotonic())
            original(self, path, status)

        ui.RichProgress.advance = advance  # type: ignore[method-assign]
        atexit.register(lambda: Path(target).write_text(json.dumps({
            "started": started, "events": events, "tensorflow_imported": "tensorflow" in sys.modules})))
    from tagger.cli import main as cli_main

    sys.argv = ["genretag", *sys.argv[1:]]
    cli_main()


if __name__ == "__main__":
    main()
