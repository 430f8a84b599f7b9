"""Defaults live once (issue 23 point 4): tagger/defaults.py holds every default and choice list the command line
shows, the library's options objects default to the same values, and options objects take keywords only."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from typing import Any

import click
import pytest

from tagger import defaults
from tagger.cli import cli
from tagger.defaults import CLI, Shown

HEAVY = ("numpy", "scipy", "librosa", "sklearn", "tensorflow", "keras", "torch", "mutagen", "click", "sqlite3")


def _commands() -> dict[str, click.Command]:
    return {"": cli, **cli.commands}


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and p.name not in ("help", "version")]


def _default(option: click.Option) -> Any:
    """The option's default as a value: None when it has none (click 8.3 marks that with a sentinel)."""
    default = option.get_default(click.Context(cli), call=False)
    return None if default is getattr(click.core, "UNSET", None) else default


def _shown(option: click.Option) -> Shown:
    choices = getattr(option.type, "choices", None)
    return Shown(_default(option), tuple(choices) if choices is not None else None)


def _needs_entry(option: click.Option) -> bool:
    """Whether ``--help`` shows a default or choices for the option: then tagger/defaults.py must say them.

    A plain off switch (``--overwrite``) needs none: its help's "[default: keep them]" says what off means.
    """
    shown = _shown(option)
    if option.is_flag and not option.secondary_opts and shown.default is False:
        return False
    return shown.choices is not None or shown.default not in (None, ()) or "[default:" in (option.help or "")


def test_the_module_imports_nothing_heavy() -> None:
    """Any front door reads it at start-up: it must not pull NumPy, TensorFlow, click or another genretag module."""
    code = "import json, sys, tagger.defaults; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ)).stdout  # keeps PYTHONPATH
    loaded = json.loads(out)
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]
    assert [m for m in loaded if m.split(".")[0] == "tagger"] == ["tagger", "tagger.defaults"]


def test_every_command_has_an_entry() -> None:
    commands = set(_commands())
    assert commands - set(CLI) == set(), (
        f"add the new command(s) {sorted(commands - set(CLI))} to tagger/defaults.py CLI (an empty dict if none of "
        "its options has a default or choices)")
    assert set(CLI) - commands == set(), f"tagger/defaults.py CLI names commands the CLI lacks: {set(CLI) - commands}"


@pytest.mark.parametrize("name", sorted(CLI))
def test_every_option_default_and_choice_comes_from_defaults(name: str) -> None:
    command = _commands()[name]
    table = CLI[name]
    options = {o.name: o for o in _options(command)}
    for option in options.values():
        shown = _shown(option)
        if option.name not in table:
            assert not _needs_entry(option), (
                f"`{name or 'genretag'} {option.opts[0]}` shows a default or choices: define them as constants in "
                f"tagger/defaults.py, use those in the option, and add {option.name!r}: {shown!r} to CLI[{name!r}]")
            continue
        assert shown == table[option.name], (
            f"`{name or 'genretag'} {option.opts[0]}` shows {shown}, tagger/defaults.py CLI says "
            f"{table[option.name]}: take the option's default and choices from tagger/defaults.py")
    stale = set(table) - set(options)
    assert not stale, f"tagger/defaults.py CLI[{name!r}] names options the command lacks: {sorted(stale)}"


def test_a_new_option_without_an_entry_is_caught() -> None:
    """The check above fails on an option with a default that tagger/defaults.py does not list."""
    stray = click.Option(["--stray"], default=3)
    assert _needs_entry(stray)
    assert _needs_entry(click.Option(["--pick"], type=click.Choice(["a", "b"])))
    assert _needs_entry(click.Option(["--on/--off"], default=True))
    assert not _needs_entry(click.Option(["--quiet"], is_flag=True, help="Say less [default: say all]."))
    assert _needs_entry(click.Option(["--cores"], help="Workers [default: all cores]."))
    assert not _needs_entry(click.Option(["--name"]))


# ---------------------------------------------------------------------------
# The library's options objects default to the same values as the command line.


def _options_classes() -> dict[str, tuple[type, dict[str, str]]]:
    """command -> (its options class, option name -> field name where they differ)."""
    from tagger.run.job import ScanJob
    from tagger.run.learn import LearnOptions
    from tagger.run.scan import ScanOptions
    from tagger.write.tagging import TagOptions
    from training.evaluate import ReportOptions
    from training.train import TrainOptions

    return {"scan": (ScanJob, {}), "scan-options": (ScanOptions, {}), "tag": (TagOptions, {}),
            "train": (TrainOptions, {}), "report": (ReportOptions, {"model_path": "model"}),
            "learn": (LearnOptions, {})}  # fmt: skip


#: (command, option): why the library's default differs from what click holds.
DIFFERENT = {("train", "fold"): "click holds None for '[default: 0]' and the command passes DEFAULT_FOLD",
             ("train", "backend"): "required on the command line and in TrainOptions"}


@pytest.mark.parametrize("name", ["scan", "scan-options", "tag", "train", "report", "learn"])
def test_options_classes_default_as_the_command_line(name: str) -> None:
    cls, renamed = _options_classes()[name]
    command = _commands()[name.split("-")[0]]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    compared = 0
    for option in _options(command):
        field = fields.get(renamed.get(option.name, option.name))
        if field is None or (command.name, option.name) in DIFFERENT:
            continue
        expected = _default(option)
        if expected in (None, ()):  # no value on the command line: the command converts it or the library decides
            continue
        value = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        assert value == expected, (f"{cls.__name__}.{field.name} defaults to {value!r}, `{command.name} "
                                   f"{option.opts[-1]}` to {expected!r}: both should use tagger/defaults.py")
        compared += 1
    assert compared  # the comparison really ran over options that name fields


def test_library_constants_are_the_defaults() -> None:
    from tagger.decide import albums
    from tagger.media import params, tags
    from tagger.run import children, learn
    from tagger.store import track
    from tagger.write import tagging
    from training import splits

    assert (params.DEFAULT_EXCERPT, children.DEFAULT_TIMEOUT) == (defaults.DEFAULT_EXCERPT, defaults.DEFAULT_TIMEOUT)
    assert albums.MODES is defaults.ALBUM_MODES and track.STATUSES is defaults.STATUSES
    assert splits.PROTOCOLS is defaults.PROTOCOLS and splits.FOLD_PROTOCOLS is defaults.FOLD_PROTOCOLS
    assert (learn.DEFAULT_PRECISION, learn.FOLDS) == (defaults.LEARN_PRECISION, defaults.LEARN_FOLDS)
    assert tagging.HARD_LINKS is defaults.HARD_LINKS and (tags.IN_PLACE, tags.SPLIT) == (defaults.IN_PLACE,
                                                                                         defaults.SPLIT)
    assert defaults.DEFAULT_PROTOCOL in defaults.PROTOCOLS and set(defaults.FOLD_PROTOCOLS) <= set(defaults.PROTOCOLS)
    assert defaults.DEFAULT_BY in defaults.ALBUM_MODES and set(defaults.REPORT_MODES) <= set(defaults.ALBUM_MODES)
    assert defaults.DEFAULT_HARD_LINKS in defaults.HARD_LINKS and defaults.DEFAULT_EXPORT_FORMAT in \
        defaults.EXPORT_FORMATS


def test_beets_plugin_config_defaults_are_genretags() -> None:
    pytest.importorskip("beets", reason="the beets extra is not installed")
    from beetsplug.genretag import BY, OPTIONS

    got = {key: OPTIONS[key][0] for key in ("backend", "jobs", "excerpt", "abstain_below", "by", "broad",
                                            "separator")}  # fmt: skip
    assert got == {"backend": defaults.DEFAULT_BACKEND, "jobs": defaults.DEFAULT_JOBS,
                   "excerpt": defaults.DEFAULT_EXCERPT, "abstain_below": defaults.DEFAULT_ABSTAIN_BELOW,
                   "by": defaults.DEFAULT_BY, "broad": defaults.DEFAULT_BROAD, "separator": defaults.DEFAULT_SEPARATOR}
    assert set(BY) <= set(defaults.ALBUM_MODES)


# ---------------------------------------------------------------------------
# Options objects take keywords only: ten positional arguments in the wrong order cannot be mistaken.


def test_options_objects_are_keyword_only() -> None:
    from tagger.media.walk import WalkOptions

    classes = [cls for cls, _ in _options_classes().values()] + [WalkOptions]
    for cls in classes:
        positional = [f.name for f in dataclasses.fields(cls) if not f.kw_only]
        assert positional == [], f"{cls.__name__} takes {positional} by position: declare it kw_only=True"
    from tagger.run.job import ScanJob
    from training.train import TrainOptions

    with pytest.raises(TypeError):
        ScanJob(["x"], "svc")  # type: ignore[misc]
    with pytest.raises(TypeError):
        TrainOptions("svc")  # type: ignore[misc]
    assert ScanJob(paths=["x"]).backend == defaults.DEFAULT_BACKEND
