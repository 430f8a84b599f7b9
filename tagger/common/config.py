"""The config file: defaults for any command's options, read from ``config.toml``.

Keys are long option names, at the top (every command) or in a table named
after a command (``[tag]``, which wins). The options come from the commands
themselves, so a new option is configurable with no change here. The file
becomes click's ``default_map``: command line, then environment, then this
file, then the built-in default. It is read and checked whole before any
command runs; any mistake is one FileError naming the file and line.
For users: docs/config.md.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from ..defaults import DEFAULT_BACKEND
from . import userfiles
from .errors import FileError
from .paths import default_config_path

#: A config file is a few lines; anything larger is a mistake (or a hostile file), not read into memory.
MAX_BYTES = 1 << 20
#: Commands whose options are not configurable: `config` itself.
NOT_CONFIGURABLE = frozenset({"config"})


@dataclass(frozen=True)
class Setting:
    """One value the file gives one command's option."""

    command: str
    key: str  # the long option name, as written in the file
    param: str  # click's parameter name (what default_map is keyed by)
    value: Any
    line: int  # 0 when the key's line could not be found
    section: bool  # from the command's own table (wins over a top-level key)


@dataclass
class Config:
    """The config file genretag read (or would read) and the settings it gives."""

    path: Path
    found: bool = False
    settings: list[Setting] = field(default_factory=list)

    def effective(self) -> dict[tuple[str, str], Setting]:
        """The setting in force per (command, parameter): a command's table wins over a top-level key."""
        out: dict[tuple[str, str], Setting] = {}
        for s in sorted(self.settings, key=lambda s: s.section):
            out[s.command, s.param] = s
        return out

    def default_map(self) -> dict[str, dict[str, Any]]:
        """click's ``default_map`` for the group: {command: {parameter name: value}}."""
        out: dict[str, dict[str, Any]] = {}
        for (command, param), s in self.effective().items():
            out.setdefault(command, {})[param] = s.value
        return out

    def where(self, s: Setting) -> str:
        return f"{self.path}:{s.line}" if s.line else str(self.path)


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """The file named by --config / GENRETAG_CONFIG, else the default one."""
    return Path(explicit).expanduser() if explicit else default_config_path()


def load(group: click.Group, explicit: str | os.PathLike[str] | None = None) -> Config:
    """Read and check the config file for ``group``'s commands; FileError on any problem.

    A missing default file is no config; a missing file the user named is an error.
    """
    path = config_path(explicit)
    text = read_text(path, required=bool(explicit))
    if text is None:
        return Config(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FileError(path, f"not valid TOML: {exc}") from None
    except RecursionError:  # arrays nested thousands deep fit in far less than MAX_BYTES
        raise FileError(path, "not valid TOML: nested too deeply to read") from None
    return Config(path, True, list(_settings(group, doc, text, path)))


def read_text(path: Path, required: bool) -> str | None:
    """The file's text, checked to be a small regular UTF-8 file; None when absent and not required."""
    if not required:
        try:
            os.stat(path)
        except FileNotFoundError:  # no default config file (or a dangling link to one): built-in defaults
            return None
        except OSError:
            pass  # read_text names the reason
    return userfiles.read_text(path, "config file", MAX_BYTES)


# ---------------------------------------------------------------------------
# From TOML to settings.


def options_by_key(group: click.Group) -> dict[str, dict[str, click.Option]]:
    """Per configurable command, its options by long name ("write-above"; ``--progress/--no-progress``: "progress")."""
    out: dict[str, dict[str, click.Option]] = {}
    for name, command in sorted(group.commands.items()):
        if name in NOT_CONFIGURABLE:
            continue
        out[name] = {opt[2:]: p for p in command.params if isinstance(p, click.Option)
                     for opt in p.opts if opt.startswith("--")}  # fmt: skip
    return out


def _settings(group: click.Group, doc: Mapping[str, Any], text: str, path: Path) -> Iterable[Setting]:
    commands = options_by_key(group)
    keys = sorted({k for opts in commands.values() for k in opts})
    for key, value in doc.items():
        if key in commands and isinstance(value, dict):
            for sub, v in value.items():
                line = _line_of(text, key, sub)
                option = commands[key].get(sub)
                if option is None:
                    raise _error(path, line, f"unknown key {sub!r} in [{key}]: `genretag {key}` has no --{sub}"
                                 + _suggest(sub, commands[key]))
                yield Setting(key, sub, option.name, _checked(path, line, key, sub, option, v), line, True)
            continue
        line = _line_of(text, None, key)
        users = {c: opts[key] for c, opts in commands.items() if key in opts}
        if not users:
            unknown = (f"unknown section [{key}]: no genretag command is called {key!r}" if isinstance(value, dict)
                       else f"unknown key {key!r}: no genretag command has --{key}")
            raise _error(path, line, unknown + _suggest(key, [*keys, *commands]))
        fits = [c for c, option in users.items() if _fits(option, value, path)]
        for command, option in users.items():
            if command not in fits and fits:  # e.g. export's --features flag against train's --features FILE
                hint = f"; to set it for {', '.join(fits)} only, put it under [{fits[0]}]"
                raise _error(path, line, _bad(command, key, value, _why(option, value, path)) + hint)
            yield Setting(command, key, option.name, _checked(path, line, command, key, option, value), line, False)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _error(path: Path, line: int, message: str) -> FileError:
    return FileError(path, f"line {line}: {message}" if line else message)


def _checked(path: Path, line: int, command: str, key: str, option: click.Option, value: Any) -> Any:
    """The value converted for ``option``, or a FileError naming the file, line and command."""
    try:
        return _value(option, value, path.parent)
    except click.BadParameter as exc:
        raise _error(path, line, _bad(command, key, value, exc.message)) from None


def _bad(command: str, key: str, value: Any, why: str) -> str:
    return f"{key} = {_toml(value)} (for `genretag {command}`): {why}"


def _fits(option: click.Option, value: Any, path: Path) -> bool:
    return not _why(option, value, path)


def _why(option: click.Option, value: Any, path: Path) -> str:
    try:
        _value(option, value, path.parent)
    except click.BadParameter as exc:
        return exc.message
    return ""


def _value(option: click.Option, value: Any, base: Path) -> Any:
    """The TOML value checked and converted as the command line's value would be; BadParameter if wrong."""
    ctx = click.Context(click.Command("config"), info_name="config")
    if option.multiple:
        items = value if isinstance(value, list) else [value]
        return [_one(option, v, base, ctx) for v in items]
    if option.nargs != 1:
        raise click.BadParameter("takes several values: it cannot be set in the config file")
    return _one(option, value, base, ctx)


def _one(option: click.Option, value: Any, base: Path, ctx: click.Context) -> Any:
    kind = option.type
    if isinstance(kind, click.types.BoolParamType) or getattr(option, "is_bool_flag", False):
        expected: tuple[type, ...] = (bool,)
        name = "true or false"
    elif isinstance(kind, click.types.IntParamType):
        expected, name = (int,), "a whole number"
    elif isinstance(kind, click.types.FloatParamType):
        expected, name = (int, float), "a number"
    else:
        expected, name = (str,), "text (in quotes)"
    if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
        raise click.BadParameter(f"expected {name}")
    if isinstance(kind, (click.Path, click.File)) and value != "-":
        value = str(base / Path(value).expanduser())  # absolute stays absolute
    if isinstance(kind, click.File):
        return value  # converting would open it
    return kind.convert(value, option, ctx)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if not isinstance(value, str) else f'"{value}"'


_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")


def _line_of(text: str, table: str | None, key: str) -> int:
    """The line that sets ``key`` (in ``[table]``, or at the top): tomllib gives no positions, so search the text.

    Tries ``key =`` under the table's header, then a dotted ``table.key =``,
    then the table's own header or key; 0 when none is found.
    """
    quoted = rf"""(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')"""
    plain = re.compile(rf"^\s*{quoted}\s*=")
    current: str | None = None
    for n, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            current = header.group(1).strip().strip("\"'")
            if table is None and current == key:
                return n
        elif current == table and plain.match(line):
            return n
    if table is not None:
        dotted = re.compile(rf"^\s*{re.escape(table)}\s*\.\s*{quoted}\s*=")
        for n, line in enumerate(text.splitlines(), 1):
            if dotted.match(line):
                return n
        return _line_of(text, None, table)
    return 0


# ---------------------------------------------------------------------------
# What is in effect, and where it comes from (`genretag config`).


def effective(group_ctx: click.Context, config: Config, command: str | None = None,
              args: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Every configurable option's value and source, per command (or for ``command`` run with ``args``).

    Rows are {"key", "value", "source", "commands"}, one per distinct value
    and source, so a key set once at the top shows once for all its commands.
    """
    group = group_ctx.command
    assert isinstance(group, click.Group)
    commands = options_by_key(group)
    if command is not None and command not in commands:
        raise click.UsageError(f"no such command: {command!r} (one of {', '.join(commands)})")
    origin = config.effective()
    defaults = config.default_map()
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for name in [command] if command else commands:
        parent = click.Context(group, info_name=group_ctx.info_name, default_map=defaults)
        sub = group.commands[name].make_context(name, list(args) if command else [], parent=parent,
                                                resilient_parsing=True)
        for key, option in sorted(commands[name].items()):
            value, source = sub.params.get(option.name), sub.get_parameter_source(option.name)
            if source is None:  # click 8.1 leaves defaults out of resilient parsing
                value, source = option.get_default(sub), ParameterSource.DEFAULT
            where = _source(source, option, config, origin.get((name, option.name)))
            shown = list(value) if isinstance(value, tuple) else value
            if not isinstance(shown, (str, int, float, list, type(None))):  # an opened click.File default
                shown = getattr(shown, "name", str(shown))
            row = rows.setdefault((key, repr(shown), where), {"key": key, "value": shown, "source": where,
                                                               "commands": []})
            row["commands"].append(name)
    return sorted(rows.values(), key=lambda r: (r["key"], r["commands"]))


def _source(source: ParameterSource | None, option: click.Option, config: Config, setting: Setting | None) -> str:
    if source == ParameterSource.COMMANDLINE:
        return "command line"
    if source == ParameterSource.ENVIRONMENT:
        names = [option.envvar] if isinstance(option.envvar, str) else list(option.envvar or [])
        return f"environment ({', '.join(n for n in names if n in os.environ) or 'variable'})"
    if source == ParameterSource.DEFAULT_MAP and setting is not None:
        return config.where(setting)
    return "default"


# ---------------------------------------------------------------------------
# `genretag config --init`.

#: (key, example value, what it does, section or None); a line is written only if some command has the option.
EXAMPLE: tuple[tuple[str, str, str, str | None], ...] = (
    ("db", '"~/Music/.genretag.db"', "the database (relative paths start at this file's folder)", None),
    ("jobs", "2", "worker processes for scan, train and report; 0 analyses in one process", None),
    ("backend", f'"{DEFAULT_BACKEND}"', "classifier backend (`genretag backends`); svc is the fastest", "scan"),
    ("excerpt", "30", "seconds analysed from the middle of each file; 0 for the whole file", "scan"),
    ("exclude", '["Podcasts/*", "*.m4b"]', "files and folders never scanned", "scan"),
    ("include", '["*.flac", "*.mp3", "*.m4a"]', "only files matching these", "scan"),
    ("abstain-below", "0.5", "give no genre when the best is less likely than this", "scan"),
    ("write-above", "0.3", "write a genre only if at least this likely", "tag"),
    ("top", "2", "write up to this many genres, most likely first", "tag"),
    ("merge", "true", "add to the genres already in files instead of keeping them", "tag"),
    ("with-parents", "true", 'also write broader genres ("Rock; Alternative Rock")', "tag"),
    ("genre-map", '"genre-map.txt"', "rename or drop labels (lines like 'hiphop = Rap')", "tag"),
    ("field", '"GENRETAG"', "write this custom field instead of the genre", "tag"),
    ("id3v23", "true", "write ID3v2.3 for old players", "tag"),
    ("separator", '"; "', "joins genres in ID3v2.3", "tag"),
    ("by", '"album"', "album mode: one genre per album", "tag"),
)


def example(group: click.Group) -> str:
    """A commented config file: every setting commented out, so writing it changes nothing."""
    commands = options_by_key(group)
    lines = [
        "# genretag config file (written by `genretag config --init`).",
        "# Every setting is commented out: remove the '# ' in front of one to use it.",
        "#",
        "# Keys are the long names of command-line options (`genretag scan --help`). A key at the",
        "# top applies to every command that has that option; a key under a [command] header applies",
        "# to that command only and wins over the top. Command-line flags win over this file, and",
        "# so do GENRETAG_BACKEND and GENRETAG_DB. Paths may start with ~ and are relative to this",
        "# file's folder. `genretag config` shows the settings in effect and where each comes from.",
    ]
    for section in (None, "scan", "tag"):
        wanted = [e for e in EXAMPLE if e[3] == section
                  and any(e[0] in commands[c] for c in ([section] if section else commands))]  # fmt: skip
        if section and wanted:
            lines += ["", f"# [{section}]"]
        for key, value, what, _ in wanted:
            lines += ["", f"# {what[:1].upper()}{what[1:]}.", f"# {key} = {value}"]
    return "\n".join(lines) + "\n"


def write_example(group: click.Group, path: Path, force: bool = False) -> Path:
    """Write :func:`example` to ``path``; an existing file is replaced only with ``force`` (atomically)."""
    if not force and (path.exists() or path.is_symlink()):
        raise FileError(path, "a config file is already there; --force replaces it")
    userfiles.check_output(path, "example config file")  # --force replaces a file, never a FIFO or device
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(example(group))
            if not force and (path.exists() or path.is_symlink()):  # appeared meanwhile
                raise FileError(path, "a config file is already there; --force replaces it")
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise FileError(path, f"cannot write the config file: {exc.strerror or exc}") from None
    return path
