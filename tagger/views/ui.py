"""Terminal output: a rich progress bar on a terminal, plain lines when piped, tables.

The views of every command live here: the scan summary, the tag and undo
runs' rows and summary line (from tagger/write/journal.py's plain results).

Imported only by commands that print, never at ``genretag --help``.  Text
from files (names, tags) reaches the terminal only through
:func:`tagger.common.jsontext.printable` (:func:`cell`, :func:`say`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from ..common.jsontext import JsonRows, dumps, printable, readable
from ..decide import albums
from ..write.tagging import ABSTAINED

if TYPE_CHECKING:
    from ..write.journal import AlbumTally, FileResult, Outcome

PIPE_WIDTH = 1000  # piped output is for grep and files: never fold a path
#: A streamed table's columns are sized from its first SAMPLE_ROWS rows, or the rows that came in
#: SAMPLE_SECONDS, whichever is first: rows print as they come, in bounded memory, whatever the library's size.
SAMPLE_ROWS = 200
SAMPLE_SECONDS = 0.3


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
                redirect_stdout=False,  # rows streamed to a piped stdout must stay there, not join the bar on stderr
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


def cell(value: Any) -> str:
    """A value as a table shows it: "" for None, control characters and escape sequences made visible."""
    return "" if value is None else printable(str(value))


def say(text: str, style: str | None = None) -> None:
    """One line to stderr (warnings, summaries) with any file-borne text in it made printable."""
    err().print(printable(text), style=style, markup=False, highlight=False)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
          justify: Sequence[str] | None = None) -> Table:
    """A plain rich table, for short listings; numbers right-aligned where ``justify`` says so."""
    t = Table(title=title and escape(printable(title)), title_justify="left", show_edge=False, pad_edge=False)
    for i, col in enumerate(columns):
        t.add_column(col, justify=(justify[i] if justify else "left"), overflow="fold")
    for row in rows:  # escaped: a file named "a [bold]b[/bold].mp3" must print as it is
        t.add_row(*(escape(cell(v)) for v in row))
    return t


class RowTable:
    """A table printed row by row as rows come, for listings as long as the library (show, tag, undo).

    The columns are sized from a sample of the first rows (SAMPLE_ROWS, or what
    came within SAMPLE_SECONDS); a later, longer cell widens only its own line,
    never folds or cuts. Plain text, no rich rendering per row (docs/speed.md,
    "Large libraries").
    """

    def __init__(self, headers: Sequence[str], justify: Sequence[str] | None = None, *,
                 sample: int | None = None, wait: float | None = None) -> None:
        self.headers = list(headers)
        self.justify = list(justify or ["left"] * len(headers))
        self.sample = SAMPLE_ROWS if sample is None else sample
        self.wait = SAMPLE_SECONDS if wait is None else wait
        self.count = 0
        self.started = time.monotonic()
        self._buffer: list[list[str]] = []
        self._widths: list[int] | None = None

    def add(self, row: Sequence[Any]) -> None:
        cells = [cell(v) for v in row]
        self.count += 1
        if self._widths is not None:
            sys.stdout.write(self._line(cells))
            return
        self._buffer.append(cells)
        if len(self._buffer) >= self.sample or time.monotonic() - self.started >= self.wait:
            self._start()

    def close(self) -> None:
        if self._widths is None and self._buffer:
            self._start()
        sys.stdout.flush()

    def _start(self) -> None:
        """Size the columns on the rows so far, print the header and them."""
        rows = [self.headers, *self._buffer]
        self._widths = [max(cell_len(r[i]) for r in rows) for i in range(len(self.headers))]
        out = [self._line(self.headers), self._line(["─" * w for w in self._widths])]
        out += [self._line(r) for r in self._buffer]
        self._buffer = []
        sys.stdout.write("".join(out))
        sys.stdout.flush()  # the first rows show now, not when a pipe's buffer fills

    def _line(self, cells: Sequence[str]) -> str:
        widths = self._widths or []
        parts = []
        for i, text in enumerate(cells):
            pad = " " * max(widths[i] - cell_len(text), 0) if i < len(widths) and i < len(cells) - 1 else ""
            parts.append(pad + text if self.justify[i] == "right" else text + pad)
        return "  ".join(parts).rstrip() + "\n"


class ResultStream:
    """A tag or undo run's results shown as they come, then its summary: a :class:`RowTable` (summary line
    on stderr), one JSON document (``{"files": [...], "counts": ...}``), JSON Lines (the summary last), or
    ("warnings") only the warnings, for a caller that prints the results itself.

    A result's own warning (``warn``: a refused link, a file changed since
    its scan) goes to stderr at once, as the run goes on.
    """

    def __init__(self, headers: Sequence[str], cells: Callable[[Any], Sequence[Any]], fmt: str = "table") -> None:
        self.cells = cells
        self.json = JsonRows(lines=fmt == "jsonl", head='{"files": [') if fmt in ("json", "jsonl") else None
        self.table = RowTable(headers) if fmt == "table" else None

    def add(self, result: FileResult) -> None:
        if result.warn:
            say(f"warning: {result.path}: {result.reason}", style="yellow")
        if self.json is not None:
            self.json.add(result.as_dict())
        elif self.table is not None:
            self.table.add(self.cells(result))

    def close(self, outcome: Outcome) -> None:
        for warning in run_warnings(outcome):
            say(f"warning: {warning}", style="yellow")
        if self.json is not None:
            self.json.close(outcome.summary())
        elif self.table is not None:
            self.table.close()
            say(run_summary_line(outcome))


def result_columns(kind: str, by: str = albums.TRACK) -> tuple[list[str], Callable[[FileResult], tuple[str, ...]]]:
    """The table of a ``kind`` ("tag" or "undo") run: its headers, and one result's row under them."""
    album = by != albums.TRACK

    def cells(r: FileResult) -> tuple[str, ...]:
        return (r.path, *([r.album or ""] if album else []), "; ".join(r.current), "; ".join(r.proposed),
                result_status(r))

    return ["file", *(["album"] if album else []), "current", "proposed" if kind == "tag" else "restored",
            "action"], cells


def result_status(r: FileResult) -> str:
    """A result's action column: the action, why, and (album mode) its note."""
    status = f"{r.action}: {r.reason}" if r.reason else r.action
    return f"{status} ({r.note})" if r.note else status


def run_warnings(outcome: Outcome) -> list[str]:
    """A tag or undo run's own warnings (each file's come with its result: FileResult.warn)."""
    done = "found (dry run: not removed)" if outcome.dry_run else "removed"
    return [f"{readable(t)}: stale temporary file of an interrupted genretag run, {done}" for t in outcome.temporaries]


def run_summary_line(outcome: Outcome) -> str:
    """The line after a tag or undo run's results: its counts and state."""
    if not outcome.files:
        if outcome.interrupted:
            done = "any other file was done" if outcome.cut_short else "any file was done"
            return f"interrupted{_cut_short_at(outcome)} before {done}; run it again to finish"
        return ("nothing to tag: no cached results here (run `genretag scan` first)" if outcome.kind == "tag"
                else "nothing to undo: genretag has not written genres here")  # fmt: skip
    line = f"{outcome.files} file(s): " + ", ".join(f"{n} {a}" for a, n in outcome.counts.items())
    if outcome.hard_linked:
        line += f"; {outcome.hard_linked} hard-linked"
        line += f" (--hard-links {outcome.hard_links})" if outcome.kind == "tag" else ""
    if outcome.counts.get(ABSTAINED):
        line += (f"; {outcome.counts[ABSTAINED]} skipped as abstained (the model was too uncertain; "
                 "`genretag show --status abstained`)")
    if outcome.by != albums.TRACK:
        line += "; " + album_tally_line(outcome.tally)
    if outcome.dry_run:
        line += " (dry run: no file was changed)"
    if outcome.interrupted:
        line += f"; interrupted{_cut_short_at(outcome)}, run it again to finish"
    return line


def _cut_short_at(outcome: Outcome) -> str:
    if not outcome.cut_short:
        return ""
    verb = "writing" if outcome.kind == "tag" else "restoring"
    return f" while {verb} {readable(outcome.cut_short)} (its journal entry is settled: it is either old or new)"


def album_tally_line(tally: AlbumTally) -> str:
    """"3 album(s), 1 abstained, 2 outlier(s); 4 file(s) in track mode (compilation 3, ...)", for summaries."""
    line = f"{tally.averaged} album(s)"
    line += f", {tally.abstained} abstained" if tally.abstained else ""
    line += f", {tally.outliers} outlier track(s)" if tally.outliers else ""
    if tally.track_mode:
        line += (f"; {sum(tally.track_mode.values())} file(s) in track mode ("
                 + ", ".join(f"{w}: {n}" for w, n in tally.track_mode.items()) + ")")
    return line


def print_json(data: Any) -> None:
    """JSON to stdout, unstyled, for machines: valid UTF-8 whatever the file names (tagger.common.jsontext)."""
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
        say(f"warning: {e['path']}: {e['error']}", style="yellow")
    if summary["interrupted"]:
        err().print("[yellow]Interrupted:[/] results so far are saved; run the same command to resume.")
