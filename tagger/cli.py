"""The ``genretag`` command line: thin click commands over library functions.

Only click and the plain-Python tagger.store.track are imported at start-up;
each command imports what it needs when it runs, so ``genretag --help`` and the commands that need no Keras
model never import TensorFlow (tests check this).  Expected failures are
GenretagError, printed as one ``Error:`` line.  So is any other exception
(``_Group.main``): an OSError as its file and reason, anything else as an
unexpected error, a bug.  GENRETAG_DEBUG=1 prints the traceback behind
any of them, and behind Ctrl-C.

Exit codes: 0 everything analysed (or already cached); 1 some files
failed, or an error (GenretagError, OSError); 2 usage error; 70 an
unexpected error, a bug (EX_SOFTWARE of sysexits.h); 130 interrupted
(a scan's progress is saved), 143 and 129 the same after SIGTERM and
SIGHUP (tagger/common/interrupts.py).  Output cut short by a closed pipe
(``genretag show | head``) ends quietly with 1, as click does.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from .common import interrupts
from .defaults import (ALBUM_MODES, ALL_BACKENDS, CLUSTERS, DEFAULT_ABSTAIN_BELOW, DEFAULT_AUGMENT, DEFAULT_BACKEND,
                       DEFAULT_BROAD, DEFAULT_BY, DEFAULT_EXCERPT, DEFAULT_EXPORT_FORMAT, DEFAULT_FOLD,
                       DEFAULT_HARD_LINKS, DEFAULT_JOBS, DEFAULT_PROTOCOL, DEFAULT_REFIT, DEFAULT_SEED,
                       DEFAULT_SEPARATOR, DEFAULT_TIMEOUT, DEFAULT_TOP, DEFAULT_WRITE_ABOVE,
                       DEFAULT_WRITE_ABOVE_FROM_TAGS, EXPORT_FORMATS, FOLD_PROTOCOLS, HARD_LINKS, LEARN_PRECISION,
                       MAX_SEED, MAX_TIMEOUT, MIN_FOLDS, PROTOCOLS, REPORT_MODES, STATUSES, STDOUT)

EXIT_FAILED = 1
EXIT_BUG = 70  # EX_SOFTWARE (sysexits.h): an exception genretag did not expect
EXIT_INTERRUPTED = 130
DEBUG_ENV = "GENRETAG_DEBUG"


class Finite(click.FloatRange):
    """A FloatRange that refuses nan and inf too: click's own lets ``nan`` through any range and ``inf`` above
    an open end, and the config file goes through the same type, so both places refuse them."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


#: Seeds of the split, model and augmentation.
SEED = click.IntRange(0, MAX_SEED)


def _handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn GenretagError into one clean ``Error:`` line (exit 1); GENRETAG_DEBUG=1 prints its traceback first."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .common.errors import GenretagError

        try:
            return fn(*args, **kwargs)
        except GenretagError as exc:
            _show_traceback(exc)
            raise click.ClickException(str(exc)) from None

    return wrapper


def db_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--db", "db_path", type=click.Path(dir_okay=False), envvar="GENRETAG_DB",
        help="SQLite cache to use [default: genretag.db in the user data directory].",
    )(fn)  # fmt: skip


def _open_cache(db_path: str | None, mode: str) -> Any:
    """The database for a command: "create" (scan), "write" (tag, undo: must exist) or "read" (show, export)."""
    from .common.paths import default_db_path
    from .store.cache import Cache

    return Cache(db_path or default_db_path(), mode)


def _check_output(path: str, what: str, db_path: str | None, stream: bool = False) -> None:
    """Refuse an output over the database or the config file, or a FIFO or device.

    The check is tagger.common.userfiles.check_output.
    """
    from .common.config import config_path
    from .common.paths import default_db_path
    from .common.userfiles import check_output

    config_file = click.get_current_context().find_root().params.get("config_file")
    check_output(path, what, inputs=[db_path or default_db_path(), config_path(config_file)], stream=stream)


def backend_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--model", "model_path", type=click.Path(dir_okay=False),
                      help="Model file to use instead of the backend's current one.")(fn)
    return click.option("--backend", default=DEFAULT_BACKEND, show_default=True, envvar="GENRETAG_BACKEND",
                        help="Classifier backend (see `genretag backends`); svc is the fastest.")(fn)


FOLLOW_LINKS_HELP = ("Also write files reached through symlinks that lead outside PATHS "
                     "(without PATHS: outside the scanned folders) [default: refuse them].")
TAG_OPTIONS = [
    click.option("--dry-run", is_flag=True, help="Only show a table of current and proposed genres."),
    click.option("--overwrite", is_flag=True, help="Replace genres already in the files [default: keep them]."),
    click.option("--merge", is_flag=True, help="Add the new genres after the ones already in the files."),
    click.option("--top", type=click.IntRange(min=1), default=DEFAULT_TOP, metavar="N",
                 help="Write up to N genres, most likely first [default: 1; a model from `genretag learn`: "
                      "every genre reaching its own threshold]."),
    click.option("--write-above", type=Finite(0, 1), default=None, metavar="P",
                 help=f"Write a genre only if its probability is at least P [default: {DEFAULT_WRITE_ABOVE:g}; "
                      f"{DEFAULT_WRITE_ABOVE_FROM_TAGS:g} with --from-tags]."),
    click.option("--min-confidence", type=Finite(0, 1), default=None, metavar="P",
                 help="Deprecated: tag --write-above P; scan --abstain-below P (with --write: both)."),
    click.option("--from-tags", is_flag=True, help="Deprecated (the broad source, on by default, names such "
                 "genres with calibrated thresholds): write the backend's genre-like tags with one fixed cut."),
    click.option("--broad/--no-broad", default=DEFAULT_BROAD, show_default=True, help="Where the head abstains, give "
                 "the genres the networks' own outputs name past their calibrated thresholds (docs/broad.md)."),
    click.option("--field", metavar="NAME", help="Write this custom field (e.g. GENRETAG) instead of the genre."),
    click.option("--id3v23", is_flag=True, help="Write ID3v2.3 for old players [default: ID3v2.4]."),
    click.option("--separator", default=DEFAULT_SEPARATOR, show_default=True,
                 help="Joins genres in ID3v2.3 (no multi-value)."),
    click.option("--genre-map", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
                 help="Rename or drop labels: JSON, or lines like 'hiphop = Hip-Hop' and 'disco ='."),
    click.option("--follow-links", is_flag=True, help=FOLLOW_LINKS_HELP),
    click.option("--with-parents", is_flag=True, help="Also write each genre's broader genres from genretag's "
                 "genre tree, first ('Rock; Alternative Rock')."),
    click.option("--by", type=click.Choice(ALBUM_MODES), default=DEFAULT_BY, show_default=True,
                 help="album: one genre per album (album and album-artist tags, else folder), from its tracks' "
                      "weighted mean; folder: per folder whatever the tags. Compilations and loose files keep "
                      "their own."),
    click.option("--keep-outliers", is_flag=True, help="With --by album/folder: a track that disagrees strongly "
                 "with its album gets its own genre."),
    click.option("--hard-links", type=click.Choice(HARD_LINKS), default=DEFAULT_HARD_LINKS,
                 show_default=True, help="A file with several names (hard links): in-place keeps every name "
                 "sharing the new tags; split gives this name its own copy (undo joins it again); skip leaves it."),
]  # fmt: skip


def tag_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options of `tag` and `scan --write`, handed to the command as one ``tagging`` TagOptions."""
    names = ("dry_run", "overwrite", "merge", "top", "write_above", "from_tags", "field", "id3v23", "separator",
             "genre_map", "follow_links", "with_parents", "by", "keep_outliers", "hard_links", "broad")
    # scan takes --broad without --write too: it is also part of its decision.
    own = {n for n in names if n in inspect.signature(fn).parameters}

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from click.core import ParameterSource

        from .common.errors import GenretagError
        from .write.tagging import TagOptions, load_genre_map

        ctx = click.get_current_context()
        # Only the command line and the environment count as asking: a config file's [tag]-style defaults
        # (flat keys apply to scan too) must not stop a scan without --write.
        asked = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
        given = [n for n in names if ctx.get_parameter_source(n) in asked and n not in own]
        if kwargs.get("write") is False and given:
            raise click.UsageError(f"--{given[0].replace('_', '-')} is about writing tags: add --write")
        values = {n: kwargs.pop(n) for n in names}
        kwargs.update({n: values[n] for n in own})
        old = kwargs.pop("min_confidence")
        if old is not None:  # the deprecated spelling, with its old meaning in each command
            _deprecated_min_confidence(ctx)
            if "abstain_below" in kwargs and kwargs["abstain_below"] is None:
                kwargs["abstain_below"] = old
            if values["write_above"] is None and ("abstain_below" not in kwargs or kwargs.get("write")):
                values["write_above"] = old
        try:
            values["genre_map"] = load_genre_map(values["genre_map"]) if values["genre_map"] else {}
            kwargs["tagging"] = TagOptions(**values)
        except (GenretagError, ValueError) as exc:
            raise click.UsageError(str(exc)) from None
        return fn(*args, **kwargs)

    for option in reversed(TAG_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def _redecide(cache: Any, paths: Sequence[str]) -> None:
    """Decisions another model made are re-decided by the current one first; one line says what happened."""
    from .run.scan import redecide

    line = redecide(cache, paths).line()
    if line:
        click.echo(f"note: {line}", err=True)


def _deprecated_min_confidence(ctx: click.Context) -> None:
    """One line on stderr: --min-confidence (or the config key) had two meanings; each has its own name now."""
    from click.core import ParameterSource

    where = "config key min-confidence" if ctx.get_parameter_source("min_confidence") == ParameterSource.DEFAULT_MAP \
        else "--min-confidence"
    click.echo(f"Warning: {where} is deprecated: scan's abstain threshold is --abstain-below (config key "
               "abstain-below), tag's write threshold --write-above (write-above)", err=True)


def _with_progress(label: str, enabled: bool | None, run: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    from .views import ui

    with ui.RichProgress(label, enabled=enabled) as bar:
        return run(*args, progress=bar, **kwargs)


JSON_LINES_HELP = "Print one JSON object per line as they come (JSON Lines), for very large listings."


def _fmt(as_json: bool, json_lines: bool) -> str:
    """How a listing is printed: "table", "json" (one document, streamed) or "jsonl"."""
    return "jsonl" if json_lines else "json" if as_json else "table"


def _run_streamed(kind: str, by: str, fmt: str, progress: bool | None, run: Callable[..., Any], *args: Any,
                  **kwargs: Any) -> Any:
    """A tag or undo run whose results print as they come (tagger.views.ui.ResultStream), then its summary."""
    from .views import ui

    view = ui.ResultStream(*ui.result_columns(kind, by), fmt)
    # The rows on the terminal are the progress; a bar would redraw over them.
    if progress is None and sys.stdout.isatty():
        progress = False
    outcome = _with_progress("Tagging" if kind == "tag" else "Restoring", progress, run, *args, sink=view.add,
                             **kwargs)
    view.close(outcome)
    return outcome


def _exit_for(outcome: Any) -> None:
    if outcome.interrupted:
        sys.exit(interrupts.exit_code())
    if outcome.failed:
        sys.exit(EXIT_FAILED)


class _Group(click.Group):
    """The command group: no traceback reaches the user, and it keeps its arguments for the config check's --help."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["genretag.args"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        # Ctrl-C here, not in main: click's main turns it into "Aborted!" before main's handler could see it.
        # SIGTERM and SIGHUP raise it too while a command runs.
        with interrupts.like_ctrl_c():
            try:
                return super().invoke(ctx)
            except KeyboardInterrupt as exc:  # click would say "Aborted!" and exit 1; a scan says more itself
                _show_traceback(exc)
                click.echo("\nInterrupted.", err=True)  # the newline ends the terminal's ^C
                raise click.exceptions.Exit(interrupts.exit_code()) from None

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Click's main, where an exception click would leave to Python's traceback becomes one ``Error:`` line.

        The console script and CliRunner both come here.  Click's own
        exceptions (usage errors, Abort, Exit), a closed pipe and SystemExit
        are click's, as before.
        """
        try:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        except (Exception, SystemExit) as exc:
            # A backend's own sys.exit() is a plugin's bug like any exception; genretag's is not.
            if not standalone_mode or (isinstance(exc, SystemExit) and _raising_backend(exc) is None):
                raise  # a caller that asked for exceptions gets them
            interrupts.exit_if_hung_up(exc)
            _show_traceback(exc)
            message, code = _describe_unexpected(exc)
            click.echo(f"Error: {message}", err=True)
            sys.exit(code)


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _show_traceback(exc: BaseException) -> None:
    if _debug():
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)


def _describe_unexpected(exc: BaseException) -> tuple[str, int]:
    """The ``Error:`` text and exit code for an exception no command handled.

    An OSError that carries an errno (disk full, permission denied on the
    database's folder, ...) is the file and the reason, exit 1; anything
    else is a bug, exit 70, blamed on the backend whose code raised it if
    one did (a third party's plugin), else on genretag.
    """
    if isinstance(exc, OSError) and exc.strerror:
        files = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        return (f"{files}: {exc.strerror}" if files else exc.strerror), EXIT_FAILED
    where, whose = "", "genretag"
    backend = _raising_backend(exc)
    if backend is not None:
        name, distribution = backend
        ours = distribution == "genretag"  # a built-in backend
        where = f" in backend {name!r}" + (f" (package {distribution})" if distribution and not ours else "")
        whose = "genretag" if ours else "that backend"
    text = f": it called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else f": {exc}" if str(exc) else ""
    hint = "traceback above" if _debug() else f"run with {DEBUG_ENV}=1 for the traceback"
    return f"unexpected {type(exc).__name__}{where}{text} (a bug in {whose}; {hint})", EXIT_BUG


def _raising_backend(exc: BaseException) -> tuple[str, str | None] | None:
    """The backend (name, distribution) whose module is innermost on the traceback, if any is on it."""
    import traceback

    backends = sys.modules.get("tagger.inference.backends")
    if backends is None:  # never imported: no backend ran
        return None
    try:
        owners = backends.backend_modules()
    except Exception:  # broken package metadata must not hide the error being reported
        return None
    for frame, _ in reversed(list(traceback.walk_tb(exc.__traceback__))):
        module = frame.f_globals.get("__name__", "")
        for owner, backend in owners.items():
            if module == owner or module.startswith(owner + "."):
                return backend
    return None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="genretag")
@click.option("--config", "config_file", metavar="FILE", envvar="GENRETAG_CONFIG",
              help="Config file of option defaults [default: config.toml in the user config directory; "
                   "see `genretag config`].")
@click.pass_context
@_handle_errors
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Tag a music library with genres by listening to it.

    Options you always type can live in a config file (`genretag config --init`).

    \b
    Example:
        genretag scan ~/Music
        genretag show --genre jazz
    """
    if ctx.invoked_subcommand != "config":  # `config` reads it itself: --init must work beside a broken file
        from .common.config import load
        from .common.errors import GenretagError

        try:
            ctx.default_map = load(cli, config_file).default_map()
        except GenretagError as exc:
            if not _asks_for_help(ctx):
                raise
            # `genretag scan --help` beside a broken config file: help shows the built-in defaults, and
            # says why; running the command still stops on the file's error.
            click.echo(f"Warning: config file not applied to this help: {exc}", err=True)


def _asks_for_help(ctx: click.Context) -> bool:
    """Whether the subcommand's arguments ask for its --help (click parses them only after this callback)."""
    args = ctx.meta.get("genretag.args", [])
    args = args[: args.index("--")] if "--" in args else args
    return any(arg in ("--help", "-h") for arg in args)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@backend_options
@db_option
@click.option("-j", "--jobs", type=click.IntRange(min=0), default=DEFAULT_JOBS,
              help="Worker processes [default: all cores]; 0 analyses in this process.")
@click.option("--excerpt", type=Finite(min=0), default=DEFAULT_EXCERPT, show_default=True,
              help="Seconds analysed from the middle of each file; 0 for the whole file.")
@click.option("--force", is_flag=True, help="Re-analyse every file, cached or not.")
@click.option("--retry-failed", is_flag=True, help="Try again files that failed before and have not changed.")
@click.option("--include", multiple=True, metavar="GLOB", help="Only files matching (name or relative path); repeatable.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files and folders matching; repeatable.")
@click.option("--hidden", is_flag=True, help="Also scan hidden files and folders.")
@click.option("--timeout", type=Finite(0, MAX_TIMEOUT), default=DEFAULT_TIMEOUT, show_default=True,
              help="Seconds one file may take before its worker is stopped (at most a week); 0 for none.")
@click.option("--scheduler", metavar="ADDRESS", help="Run analysis on an existing Dask cluster (tcp://host:8786).")
@click.option("--cluster", type=click.Choice(CLUSTERS), help="Start a local Dask cluster for the analysis.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--progress/--no-progress", default=None, help="Force the progress bar on or off.")
@click.option("--write", is_flag=True, help="Then write the genres into the scanned files' tags (as `genretag tag`).")
@click.option("--abstain-below", type=Finite(0, 1), default=DEFAULT_ABSTAIN_BELOW, metavar="P",
              help="Give no genre (abstain) when the best is below P [default: the model's rule]; 0 never abstains.")
@tag_options
@_handle_errors
def scan(paths: tuple[str, ...], backend: str, model_path: str | None, db_path: str | None, jobs: int | None,
         excerpt: float, force: bool, retry_failed: bool, include: tuple[str, ...], exclude: tuple[str, ...],
         hidden: bool, timeout: float, scheduler: str | None, cluster: str | None, as_json: bool,
         progress: bool | None, write: bool, abstain_below: float | None, broad: bool, tagging: Any) -> None:
    """Analyse the audio files under PATHS and cache a genre for each.

    A rescan only analyses new or changed files.  Ctrl-C stops cleanly;
    the next run resumes.

    With --write, the genres are then written into the tags of the files
    this scan covered, with the options of `genretag tag`.

    A track whose best probability is below the model's threshold (chosen
    on its valid part, see `genretag report`) gets no genre, with a reason;
    --abstain-below P sets another threshold, 0 never abstains.

    \b
    Example:
        genretag scan ~/Music --jobs 4 --exclude 'Podcasts/*'
        genretag scan ~/Music --write --dry-run
    """
    from .media.walk import WalkOptions
    from .run.job import ScanJob, run_job
    from .run.scan import ScanOptions
    from .views import ui

    options = ScanOptions(excerpt=excerpt, force=force, retry_failed=retry_failed, abstain_below=abstain_below,
                          broad=broad,
                          walk=WalkOptions(include=include, exclude=exclude, hidden=hidden),
                          count_total=progress is not False)  # --no-progress: no total to count
    job = ScanJob(paths=paths, backend=backend, model_path=model_path, db_path=db_path, jobs=jobs, timeout=timeout,
                  scheduler=scheduler, cluster=cluster, options=options, tagging=tagging if write else None)
    outcome = run_job(job, lambda label: ui.RichProgress(label, enabled=progress))
    if as_json:
        ui.print_json(outcome.as_dict())
    else:
        ui.print_scan_summary(outcome.summary.as_dict())
    if outcome.tagging is not None:  # with --json, the results are in the document above: only the warnings
        view = ui.ResultStream(*ui.result_columns("tag", tagging.by), "warnings" if as_json else "table")
        for result in outcome.tagged:
            view.add(result)
        view.close(outcome.tagging)
    _exit_for(outcome)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print the per-file results as JSON.")
@click.option("--json-lines", is_flag=True, help=JSON_LINES_HELP)
@click.option("--progress/--no-progress", default=None, help="Force the progress bar on or off.")
@tag_options
@_handle_errors
def tag(paths: tuple[str, ...], db_path: str | None, as_json: bool, json_lines: bool, progress: bool | None,
        tagging: Any) -> None:
    """Write the cached genres into the tags of the files under PATHS (or all scanned files).

    A genre already in a file is kept unless --overwrite or --merge.  The
    old values are saved first: `genretag undo` puts them back.  A file
    changed since it was scanned is skipped, and so is a track the scan
    abstained on (too uncertain).  Genres the broad source gave where the
    head abstained are written too (--no-broad: not).  Results another
    model decided (before `learn`, `models use` or `train` changed the
    current one) are first re-decided by the current model from what the
    scan cached, without decoding.

    \b
    Example:
        genretag tag ~/Music --dry-run
        genretag tag ~/Music --top 2 --write-above 0.3 --merge
        genretag tag ~/Music --no-broad --dry-run
    """
    from .write.journal import apply
    from .write.tagging import FROM_TAGS_DEPRECATED

    if tagging.from_tags:
        click.echo(f"Warning: {FROM_TAGS_DEPRECATED}", err=True)
    with _open_cache(db_path, "write") as cache:
        _redecide(cache, paths)
        outcome = _run_streamed("tag", tagging.by, _fmt(as_json, json_lines), progress, apply, cache, tagging, paths)
    _exit_for(outcome)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--all", "everything", is_flag=True, help="Undo every genre genretag wrote.")
@db_option
@click.option("--dry-run", is_flag=True, help="Only show what would be restored.")
@click.option("--force", is_flag=True, help="Restore files changed since genretag wrote them too.")
@click.option("--follow-links", is_flag=True, help=FOLLOW_LINKS_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the per-file results as JSON.")
@click.option("--json-lines", is_flag=True, help=JSON_LINES_HELP)
@click.option("--progress/--no-progress", default=None, help="Force the progress bar on or off.")
@_handle_errors
def undo(paths: tuple[str, ...], everything: bool, db_path: str | None, dry_run: bool, force: bool,
         follow_links: bool, as_json: bool, json_lines: bool, progress: bool | None) -> None:
    """Put back the genres the files under PATHS had before genretag wrote them.

    Restores exactly, including "no genre tag".  A file changed since
    genretag wrote it is skipped unless --force.

    \b
    Example:
        genretag undo ~/Music/Jazz
        genretag undo --all --dry-run
    """
    from .write.journal import undo as run_undo

    if not paths and not everything:
        raise click.UsageError("name the files or folders to undo, or use --all")
    if paths and everything:
        raise click.UsageError("give PATHS or --all, not both")
    with _open_cache(db_path, "write") as cache:
        outcome = _run_streamed("undo", "track", _fmt(as_json, json_lines), progress, run_undo, cache, paths,
                                dry_run=dry_run, force=force, follow_links=follow_links)
    _exit_for(outcome)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@db_option
@click.option("--status", type=click.Choice(STATUSES), help="Only files with this status (abstained: ok but "
              "too uncertain for a genre).")
@click.option("--genre", help="Only files predicted as this genre.")
@click.option("--by", type=click.Choice(ALBUM_MODES), default=DEFAULT_BY, show_default=True,
              help="album/folder: one row per album, grouped as `tag --by` groups (--genre, --status: the album's).")
@click.option("--json", "as_json", is_flag=True, help="Print rows as JSON.")
@click.option("--json-lines", is_flag=True, help=JSON_LINES_HELP)
@_handle_errors
def show(paths: tuple[str, ...], db_path: str | None, status: str | None, genre: str | None, by: str,
         as_json: bool, json_lines: bool) -> None:
    """Show cached results, for PATHS (files or folders) or everything.

    Rows print as they are read, whatever the library's size.

    \b
    Example:
        genretag show ~/Music/Jazz --status error
        genretag show ~/Music --by album
    """
    from .common.jsontext import JsonRows
    from .views import ui

    if by != "track":
        return _show_albums(paths, db_path, status, genre, by, _fmt(as_json, json_lines))
    count = 0
    with _open_cache(db_path, "read") as cache:
        tracks = cache.records(paths, status=status, genre=genre)
        if as_json or json_lines:
            rows = JsonRows(lines=json_lines)
            for track in tracks:
                rows.add(track.public())
            rows.close()
            return
        head = list(itertools.islice(tracks, ui.SAMPLE_ROWS))  # the rows the columns are sized on decide them too
        with_tags = any(t.tags for t in head)  # a tagging backend (musicnn) scanned them
        tracks = itertools.chain(head, tracks)
        table = ui.RowTable(["file", "genre", "conf.", "top 3", *(["top tags"] if with_tags else []), "status"],
                            ["left", "left", "right", "left", *(["left"] if with_tags else []), "left"])
        for t in tracks:
            table.add((t.path, _fmt_genre(t), _fmt_conf(t.confidence), _fmt_top(t.top3),
                       *([_fmt_tags(t.tags)] if with_tags else []), _fmt_status(t)))  # fmt: skip
        table.close()
        count = table.count
    ui.say(f"{count} file(s)")


def _show_albums(paths: tuple[str, ...], db_path: str | None, status: str | None, genre: str | None, by: str,
                 fmt: str) -> None:
    """``show --by album``: one row per album (or group kept in track mode), as ``tag --by`` decides them."""
    from .common.jsontext import JsonRows
    from .decide.albums import matches
    from .views import ui
    from .write.tagging import album_plan

    tracks = 0
    with _open_cache(db_path, "read") as cache:
        albums = (a for a in album_plan(cache, paths, by) if matches(a, status, genre))
        if fmt != "table":
            rows = JsonRows(lines=fmt == "jsonl")
            for album in albums:
                rows.add(album.as_dict())
            rows.close()
            return
        table = ui.RowTable(["album", "tracks", "genre", "conf.", "top 3", "status"],
                            ["left", "right", "left", "right", "left", "left"])
        for album in albums:
            a = album.as_dict()
            table.add((a["album"], a["tracks"], a["genre"], _fmt_conf(a["confidence"] if a["genre"] else None),
                       _fmt_top(a["top3"]), _fmt_album_status(a)))
            tracks += a["tracks"]
        table.close()
    ui.say(f"{table.count} album(s) and group(s), {tracks} file(s)")


def _fmt_album_status(album: dict[str, Any]) -> str:
    if album["not_averaged"]:
        return f"{album['not_averaged']}: track mode"
    if album["abstained"]:
        return f"abstained: {album['abstained']}"
    used = f"{album['used']} of {album['tracks']} tracks" if album["used"] < album["tracks"] else "ok"
    outliers = ", ".join(os.path.basename(p) for p in album["outliers"])
    return used + (f"; outliers: {outliers}" if outliers else "")


def _fmt_status(track: Any) -> str:
    if track.missing:
        return "missing"
    if track.error:
        return f"error: {track.error}"
    return f"abstained: {track.abstained}" if track.abstained else track.status or ""


def _fmt_genre(track: Any) -> str | None:
    """The genre and, when the broad source gave it, its calibrated score: "Electronic (broad 0.99)"."""
    from .decide.broad import BROAD

    if track.genre_source == BROAD and track.genre_score is not None:
        return f"{track.genre} (broad {track.genre_score:.2f})"
    return track.genre


def _fmt_conf(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _fmt_top(top: list | None) -> str:
    return ", ".join(f"{g} {p:.2f}" for g, p in top or [])


def _fmt_tags(tags: dict[str, float] | None, n: int = 3) -> str:
    """The ``n`` most likely tags (stored most likely first)."""
    return ", ".join(f"{t} {p:.2f}" for t, p in list((tags or {}).items())[:n])


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@db_option
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default=DEFAULT_EXPORT_FORMAT,
              show_default=True)
@click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default=STDOUT,
              help="File to write [default: stdout].")
@click.option("--status", type=click.Choice(STATUSES), help="Only files with this status.")
@click.option("--features", "with_features", is_flag=True, help="Add the 57 GTZAN feature columns.")
@_handle_errors
def export(paths: tuple[str, ...], db_path: str | None, fmt: str, output: Any, status: str | None,
           with_features: bool) -> None:
    """Export cached results as CSV or JSON.

    \b
    Example:
        genretag export --format csv -o genres.csv
    """
    from .views.records import export_rows

    if output.name != STDOUT:  # opened lazily, at the first row: `-o` naming the database would have truncated it
        _check_output(output.name, "export", db_path, stream=True)
    with _open_cache(db_path, "read") as cache:
        export_rows(cache, cache.records(paths, status=status), output, fmt, with_features=with_features)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON (paste it into bug reports).")
@_handle_errors
def backends(as_json: bool) -> None:
    """List installed backends, their packages, models and accuracy.

    \b
    Example:
        genretag backends --json
    """
    from .inference.models import backend_rows
    from .views import ui

    rows = backend_rows()
    if as_json:
        ui.print_json(rows)
        return
    ui.out().print(ui.table(
        None, ["backend", "package", "input", "model", "accuracy", "status"],
        [(r["name"], f"{r['distribution'] or '-'} {r['version'] or ''}".strip(), r["input_kind"] or "-",
          r["model"] or "none", r["accuracy"] or "-", r["status"] if r["status"] == "ok" else
          f"{r['status']}: {r['error']}") for r in rows],
    ))  # fmt: skip


@cli.command()
@click.argument("words", nargs=-1, metavar="[BACKEND] | use ID")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@_handle_errors
def models(words: tuple[str, ...], as_json: bool) -> None:
    """List the models training kept (all backends, or BACKEND's), or make one current again.

    Every `genretag train` keeps its model and card; the listing reads only
    the cards.  `use ID` takes a model's id, or enough of its start to be
    unique (or its file name), and makes it its backend's current model (a
    shipped model's id goes back to the shipped model).

    \b
    Example:
        genretag models svc
        genretag models use 3f2a9c
    """
    from .inference.models import list_models, use_model
    from .views import ui

    if words[:1] == ("use",):
        if len(words) != 2:
            raise click.UsageError("usage: genretag models use ID")
        row = use_model(words[1])
        if as_json:
            ui.print_json(row)
        else:
            ui.err().print(f"{row['backend']}: model {row['id']} ({row['file']}) is now current",
                           markup=False, highlight=False)
        return
    if len(words) > 1:
        raise click.UsageError("give one BACKEND, or: use ID")
    listing = list_models(words[0] if words else None)
    if as_json:
        ui.print_json({"models": listing.rows, "problems": listing.problems})
    else:
        ui.out().print(ui.table(
            None, ["backend", "id", "date", "data", "protocol", "accuracy", "current"],
            [(r["backend"], r["id"], r["date"], r["data"] or ("shipped" if r["shipped"] else "-"), r["protocol"] or "-",
              _fmt_accuracy(r), "*" if r["current"] else "") for r in listing.rows],
        ))  # fmt: skip
    for problem in listing.problems:
        ui.err().print(f"warning: {problem}", style="yellow", markup=False, highlight=False)


def _fmt_accuracy(row: dict[str, Any]) -> str:
    if row["accuracy"] is None:  # a personal model from `genretag learn` shows its held-out precision instead
        from .inference.models import HELDOUT

        held = row.get("heldout_precision")
        return "-" if held is None else HELDOUT.format(held, row["heldout_tags"])
    clips = f" ({row['n_test']} test clips)" if row["n_test"] else ""
    return f"{row['accuracy']:.3f}{clips}"


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("command_args", nargs=-1, type=click.UNPROCESSED, metavar="[COMMAND [OPTIONS]]")
@click.option("--init", is_flag=True, help="Write a commented example config file (to --config's or "
              "GENRETAG_CONFIG's file, else the default one).")
@click.option("--force", is_flag=True, help="With --init: replace an existing config file.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
@_handle_errors
def config(ctx: click.Context, command_args: tuple[str, ...], init: bool, force: bool, as_json: bool) -> None:
    """Show the settings in effect and where each comes from, or write an example config file.

    A source is the default, the config file (with its line), the
    environment or the command line.  With COMMAND and its options, shows
    what that command line would use.  Keys are the long option names; see
    docs/config.md.

    \b
    Example:
        genretag config
        genretag config tag --top 3
        genretag config --init
    """
    from click.core import ParameterSource

    from .common.config import config_path, effective, load, write_example
    from .views import ui

    config_file = ctx.parent.params["config_file"] if ctx.parent else None
    if init:
        if command_args:
            raise click.UsageError("--init takes no COMMAND")
        path = write_example(cli, config_path(config_file), force=force)
        if as_json:
            ui.print_json({"written": str(path)})
        else:
            ui.err().print(f"wrote an example config file to {path}", markup=False, highlight=False)
        return
    if force:
        raise click.UsageError("--force goes with --init")
    settings = load(cli, config_file)
    given = ctx.parent.get_parameter_source("config_file") if ctx.parent else None
    named = {ParameterSource.COMMANDLINE: "--config", ParameterSource.ENVIRONMENT: "GENRETAG_CONFIG"}.get(given)
    header = {"path": str(settings.path), "found": settings.found, "named_by": named or "default location"}
    rows = effective(ctx.parent or ctx, settings, command_args[0] if command_args else None, command_args[1:])
    if as_json:
        ui.print_json({"config_file": header, "settings": rows})
        return
    state = "" if settings.found else " (not found: built-in defaults)"
    ui.err().print(f"config file: {settings.path}{state} [{header['named_by']}]", markup=False, highlight=False)
    ui.out().print(ui.table(None, ["setting", "value", "source", "commands"],
                            [(r["key"], _fmt_value(r["value"]), r["source"], ", ".join(r["commands"])) for r in rows]))


def _fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@db_option
@click.option("--precision", type=Finite(0, 1, min_open=True), default=LEARN_PRECISION, show_default=True,
              metavar="P", help="Target precision: a genre is learnable when its threshold reaches it at a 90% "
              "lower bound in cross-validation, and held out (on artists that did not choose it) within 0.05.")
@click.option("--dry-run", is_flag=True, help="Measure and report only; save no model.")
@click.option("--plots", type=click.Path(dir_okay=False), metavar="FILE", help="Write a per-genre chart (PNG).")
@click.option("--json", "as_json", is_flag=True, help="Print the measurement as JSON.")
@_handle_errors
def learn(paths: tuple[str, ...], db_path: str | None, precision: float, dry_run: bool, plots: str | None,
          as_json: bool) -> None:
    """Learn your own genres from the files you tagged, and tag the rest with them.

    Reads the genre tags of the scanned files under PATHS (genres genretag
    wrote do not count), measures each genre in cross-validation that keeps
    artists apart, prints which ones it can recognise, and saves those as
    the musicnn backend's current model, which then re-decides the scanned
    files under PATHS from their cached embeddings.  Needs musicnn
    embeddings: scan with `--backend musicnn` first.

    \b
    Example:
        genretag scan ~/Music --backend musicnn
        genretag learn ~/Music --precision 0.9
        genretag tag ~/Music --dry-run
    """
    # One OpenBLAS thread, set before NumPy loads: its threads spinning beside other busy processes made
    # learning 2.4x slower (63 s against 27 s, 20,000 files, load average 6 on 2 cores; threadpoolctl's
    # limit after loading did not help).  benchmarks/bench_learn.py measures the command.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from .run.learn import LearnOptions, plot
    from .run.learn import learn as run_learn
    from .views import ui

    if plots:  # before minutes of cross-validation: never the database, a FIFO or a device
        _check_output(plots, "chart", db_path)
    cache = _open_cache(db_path, "read" if dry_run else "write")  # saving a model re-decides the files
    try:
        def step(what: str) -> None:
            if not as_json:
                ui.say(f"cross-validation: {what}")

        result = run_learn(cache, paths, LearnOptions(precision=precision, save=not dry_run), step)
    finally:
        cache.close()
    if plots and result.genres:
        ui.err().print(f"chart: {plot(result, plots)}", markup=False, highlight=False)
    if as_json:
        ui.print_json(result.as_dict())
    else:
        _print_learn(result)
    if result.error:
        raise click.ClickException(result.error)


def _print_learn(result: Any) -> None:
    import shlex

    from .run.learn import CONFIDENCE, MIN_ARTISTS, MIN_FILES, MIN_SUPPORT, TOLERANCE, bound_text
    from .views import ui

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    def on(v: float | None, files: int) -> str:
        return "-" if v is None else f"{v:.2f} ({files})"

    rows = [(r["genre"], r["files"], r["artists"], pct(r["threshold"]), on(r["precision"], r["kept"]),
             "-" if r["precision_low"] is None else bound_text(r["precision_low"]),
             pct(r["recall"]), on(r["heldout_precision"], r["heldout_kept"]), pct(r["heldout_recall"]),
             "learnable" if r["learnable"] else f"not learnable: {r['reason']}")
            for r in result.genres]  # fmt: skip
    ui.out().print(ui.table(
        f"{result.examples} tagged files, {result.artists} artists; artist-grouped {result.folds}-fold "
        f"cross-validation, target precision {result.precision:.2f}",
        ["genre", "files", "artists", "threshold", "precision (files)", f"{CONFIDENCE:.0%} low", "recall",
         "held-out precision (files)", "held-out recall", ""], rows,
        justify=["left"] + ["right"] * 8 + ["left"]))  # fmt: skip
    say = ui.say
    say(f"threshold: the lowest whose out-of-fold precision's {CONFIDENCE:.0%} lower bound (low) reaches the "
        f"target keeping at least {MIN_SUPPORT} files (precision and recall there flatter); held-out: each fold "
        "judged at a threshold chosen so on the other folds only; learnable: held-out precision at least "
        f"{result.precision - TOLERANCE:.2f} (target - {TOLERANCE:.2f}) on at least {MIN_SUPPORT} files; "
        "(files): the files a precision rests on")
    if result.too_few:
        few = ", ".join(f"{g['genre']} ({g['files']} files, {g['artists']} artists)" for g in result.too_few)
        say(f"left out, too few to measure (fewer than {MIN_FILES} files or {MIN_ARTISTS} artists): {few}")
    if result.own_writes:
        say(f"{result.own_writes} genre values genretag wrote were not used as labels")
    for path, why in result.unreadable[:20]:
        say(f"warning: {path}: tags unreadable, left out: {why}", style="yellow")
    if result.need_embeddings:
        say(f"{len(result.need_embeddings)} tagged files have no musicnn embedding yet and were left out; "
            f"to include them: {result.scan_command}", style="yellow")
    if result.model:
        prev = result.model["previous"]
        back = (f"; to switch back: genretag models use {prev['id']}" if prev else "")
        say(f"musicnn: personal model {result.model['id']} ({result.model['file']}) is now current "
            f"({len(result.learnable)} genres){back}")
        if result.redecided:
            say(result.redecided)
        roots = " ".join(shlex.quote(r) for r in result.roots)
        if result.elsewhere:
            others = ", ".join(f"{backend} {n}" for backend, n in sorted(result.elsewhere.items()))
            say(f"{sum(result.elsewhere.values())} file(s) here were decided by another backend ({others}), and "
                f"this model is musicnn's: `{result.scan_command}` decides them by it from their cached "
                "embeddings (no decoding); scan with --backend musicnn from then on (or set backend = \"musicnn\" "
                "under [scan] in the config file), as a scan with another backend decides by that one")
            say(f"next: `{result.scan_command}`, then `genretag tag {roots} --dry-run` shows the genres it gives")
        else:
            say(f"next: `genretag tag {roots} --dry-run` shows the genres it gives")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def env(as_json: bool) -> None:
    """Print versions and paths, for bug reports."""
    import platform

    from . import __version__
    from .common.config import config_path
    from .common.paths import data_dir, default_db_path
    from .inference.models import library_versions
    from .views import ui

    parent = click.get_current_context().parent
    info = {"genretag": __version__, "platform": platform.platform(), "data_dir": str(data_dir()),
            "config_file": str(config_path(parent.params.get("config_file") if parent else None)),
            "database": str(default_db_path()), "cpu_count": os.cpu_count(), **library_versions()}
    if as_json:
        ui.print_json(info)
    else:
        for k, v in info.items():
            click.echo(f"{k}: {v}")


def data_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--data/--features/--split/--fold/--k/--jobs, shared by train and report."""
    for option in reversed([
        click.option("--data", type=click.Path(exists=True, file_okay=False), multiple=True,
                     help="GTZAN audio folder; repeat to pool several (a track found twice is taken from the first)."),
        click.option("--features", type=click.Path(exists=True, dir_okay=False),
                     help="GTZAN feature table (features_30_sec.csv); features backends only."),
        click.option("--split", type=click.Choice(PROTOCOLS), default=DEFAULT_PROTOCOL, show_default=True,
                     help="Split protocol; artist-kfold keeps every artist in one fold; slice-random is the "
                     "studies' leaky one."),
        click.option("--fold", type=click.IntRange(min=0), help=f"{', '.join(FOLD_PROTOCOLS)}: the fold used as test "
                     f"part [default: {DEFAULT_FOLD}]."),
        click.option("--k", type=click.IntRange(min=MIN_FOLDS), help="Number of folds [default: " + ", ".join(
                     f"{k} for {name}" for name, k in FOLD_PROTOCOLS.items()) + "]."),
        click.option("-j", "--jobs", type=click.IntRange(min=0), default=DEFAULT_JOBS,
                     help="Worker processes for audio analysis [default: all cores]; 0 in this process."),
    ]):  # fmt: skip
        fn = option(fn)
    return fn


@cli.command()
@click.option("--backend", required=True, help="Backend to train (see `genretag backends`).")
@data_options
@click.option("--epochs", type=click.IntRange(min=1), help="Maximum epochs [default: the backend's].")
@click.option("--seed", type=SEED, default=DEFAULT_SEED, show_default=True,
              help="Seed of the split, the model and augmentation.")
@click.option("--augment", type=click.IntRange(min=0), default=DEFAULT_AUGMENT, show_default=True, metavar="N",
              help="Add N augmented copies (noise, gain, pitch and time shift) of each training clip.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the model here instead of the data dir "
              "(it is then not made the current model).")
@click.option("--refit/--no-refit", default=DEFAULT_REFIT, show_default=True,
              help="After measuring the recipe on the protocol's test part, fit the saved model on every clip "
                   "(train, valid and test) with the choices made on valid.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--progress/--no-progress", default=None, help="Force the progress bar on or off.")
@_handle_errors
def train(backend: str, data: tuple[str, ...], features: str | None, split: str, fold: int | None, k: int | None,
          jobs: int | None, epochs: int | None, seed: int, augment: int, out: str | None, refit: bool, as_json: bool,
          progress: bool | None) -> None:
    """Train a backend on GTZAN and make it that backend's current model.

    Tracks are split first, so outside slice-random no track is on both
    sides; the test part is scored once and recorded in the model card.

    \b
    Example:
        genretag train --backend svc --features features_30_sec.csv
        genretag train --backend resnet --data ~/datasets/gtzan --augment 1
    """
    from training.train import TrainOptions, print_epoch, print_result
    from training.train import train as run_train

    from .views import ui

    if out:  # the feature table, the data folders and the card beside it: training.train checks those
        _check_output(out, "model", None)
    opts = TrainOptions(backend=backend, data=data or None, features=features, split=split,
                        fold=DEFAULT_FOLD if fold is None else fold, k=k, epochs=epochs, seed=seed, augment=augment,
                        out=out, jobs=jobs, refit=refit)
    result = _with_progress("Analysing", progress, run_train, opts, on_epoch=None if as_json else print_epoch)
    if as_json:
        ui.print_json(result)
    else:
        print_result(result)


@cli.command()
@click.option("--backend", default=ALL_BACKENDS, show_default=True, help="Backend to report on, or all.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, exists=True),
              help="Model file to measure instead of the backend's current one.")
@data_options
@click.option("--seed", type=SEED, help="Split seed [default: the model card's, else 0].")
@click.option("--all-folds", is_flag=True, help="kfold, artist-kfold: train a fresh model per fold and report "
              "mean ± std (every clip tested once).")
@click.option("--by", type=click.Choice(REPORT_MODES), default=DEFAULT_BY, show_default=True,
              help="album: with --all-folds, also compare album mode (clips grouped by artist, probabilities "
                   "averaged) with track mode.")
@click.option("--plots", type=click.Path(file_okay=False), metavar="DIR",
              help="Write confusion matrices and training curves as PNG here.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--progress/--no-progress", default=None, help="Force the progress bar on or off.")
@_handle_errors
def report(backend: str, model_path: str | None, data: tuple[str, ...], features: str | None, split: str,
           fold: int | None, k: int | None, jobs: int | None, seed: int | None, all_folds: bool, by: str,
           plots: str | None, as_json: bool, progress: bool | None) -> None:
    """Measure models on a split's test part: accuracy, macro-F1, per genre, confusion.

    Without --data or --features, shows the figures recorded in each
    model's card.  Leaky protocols and contaminated figures are labelled.

    \b
    Example:
        genretag report --features features_30_sec.csv --backend svc
        genretag report --data ~/datasets/gtzan --split stratified --plots plots/
        genretag report --backend svc --data GTZAN --split artist-kfold --all-folds --by album
    """
    from click.core import ParameterSource

    from training.evaluate import ReportOptions, print_report
    from training.evaluate import report as run_report

    from .views import ui

    if not all_folds and click.get_current_context().get_parameter_source("by") == ParameterSource.DEFAULT_MAP:
        by = DEFAULT_BY  # a config file's `by = "album"` is for tag and show; report compares only with --all-folds
    opts = ReportOptions(backend=backend, model=model_path, data=data or None, features=features, split=split,
                         seed=seed, fold=fold, k=k, all_folds=all_folds, plots=plots, jobs=jobs, by=by)
    result = _with_progress("Analysing", progress, run_report, opts)
    if as_json:
        ui.print_json(result)
    else:
        print_report(result)
    if any(row.get("error") for row in result["rows"]):  # a misbehaving backend: reported, and said by the exit code
        sys.exit(EXIT_FAILED)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="genretag")
