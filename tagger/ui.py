"""Terminal output: a rich progress bar on a terminal, plain lines when piped, tables.

Imported only by commands that print, never at ``genretag --help``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .jsontext import dumps

PIPE_WIDTH = 1000  # piped output is for grep and files: never fold a path


def out() -> Console:
    """A console on the current stdout; full width lines when it is not a terminal."""
    return Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)


def err() -> Console:
    """A console on the current stderr, for progress, warnings and counts."""
    return Console(stderr=True, width=None if sys.stderr.isatty() else PIPE_WIDTH)


class RichProgress:
    """Files/s and ETA on a terminal; one plain line every few seconds otherwise."""

    def __init__(self, label: str = "Scanning", *, enabled: bool | None = None, every: float = 5.0) -> None:
        self.label = label
        # None: a bar on a terminal, plain lines otherwise; True: a bar; False: silent.
        self.tty = sys.stderr.isatty() if enabled is None else enabled
        self.quiet = enabled is False
        self.every = every
        self.done = 0
        self.total: int | None = None
        self.started = time.monotonic()
        self.last_line = self.started
        self.status: dict[str, int] = {}
        self._bar: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> RichProgress:
        if self.tty:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                TextColumn("ETA"), TimeRemainingColumn(), console=err(), transient=True,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=None, rate="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self.done and not self.quiet:
            self._line(final=True)

    def set_total(self, total: int) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def advance(self, path: str, status: str) -> None:
        self.done += 1
        self.status[status] = self.status.get(status, 0) + 1
        now = time.monotonic()
        if self._bar is not None:
            rate = self.done / max(now - self.started, 1e-9)
            self._bar.update(self._task, advance=1, rate=f"{rate:,.1f} files/s")
        elif not self.quiet and now - self.last_line >= self.every:
            self._line()

    def _line(self, final: bool = False) -> None:
        now = time.monotonic()
        self.last_line = now
        rate = self.done / max(now - self.started, 1e-9)
        of = f"/{self.total}" if self.total else ""
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.status.items()))
        print(f"{self.label.lower()}: {self.done}{of} files, {rate:.1f} files/s ({parts})", file=sys.stderr, flush=True)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
          justify: Sequence[str] | None = None) -> Table:
    """A plain rich table; numbers right-aligned where ``justify`` says so."""
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for i, col in enumerate(columns):
        t.add_column(col, justify=(justify[i] if justify else "left"), overflow="fold")
    for row in rows:  # escaped: a file named "a [bold]b[/bold].mp3" must print as it is
        t.add_row(*("" if v is None else escape(str(v)) for v in row))
    return t


def print_json(data: Any) -> None:
    """JSON to stdout, unstyled, for machines: valid UTF-8 whatever the file names (tagger.jsontext)."""
    sys.stdout.write(dumps(data, indent=2, default=str) + "\n")


def print_scan_summary(summary: dict[str, Any]) -> None:
    """The table after a scan: counts, genres, the first errors."""
    counts = [
        ("seen", summary["seen"]), ("analysed", summary["analysed"]), ("from cache", summary["from_cache"]),
        ("re-predicted from cached inputs (no decoding)", summary["repredicted"]), ("failed", summary["failed"]),
        ("marked missing", summary["missing"]),
    ]  # fmt: skip
    if summary.get("abstained") or summary.get("abstain_threshold"):
        below = (f"best genre below {summary['abstain_threshold'] or 0:.2f}" if summary["abstain_threshold"] is not None
                 else "no genre reached its threshold")  # a multi-label model: one threshold per genre
        counts.append((f"abstained: {below} ({summary['threshold_source']}; `genretag show --status abstained`)",
                       summary["abstained"]))
    out().print(table(f"Scan with {summary['backend']} (model {summary['model_id']}, "
                            f"{summary['runner']}) in {summary['elapsed_seconds']:.1f} s",
                            ["", "files"], counts, justify=["left", "right"]))
    if summary["genres"]:
        total = sum(summary["genres"].values())
        rows = [(g, n, f"{100 * n / total:.1f}%") for g, n in summary["genres"].items()]
        out().print(table("Genres", ["genre", "files", "share"], rows, justify=["left", "right", "right"]))
    errors = summary["errors"]
    if errors:
        shown = errors[:20]
        out().print(table(f"Errors ({summary['failed_new']} new, {summary['failed_cached']} known: "
                                "`genretag show --status error` lists all)",
                                ["file", "reason"], [(e["path"], e["error"]) for e in shown]))
    for e in summary["walk_errors"][:20]:
        err().print(f"[yellow]warning:[/] {e['path']}: {e['error']}", highlight=False)
    if summary["interrupted"]:
        err().print("[yellow]Interrupted:[/] results so far are saved; run the same command to resume.")
