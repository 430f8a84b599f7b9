"""Tests for tagger.common.config: config.toml as defaults for every command's options, `genretag config`.

Each test gets its own GENRETAG_HOME (conftest), which is also where the
default config.toml is looked for, so no user's config leaks in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tagger.cli import cli
from tagger.common import config, paths, userfiles
from tagger.common.errors import FileError
from test_backends import TF_IMPORT, run_cli


def invoke(*args: str, env: dict[str, str] | None = None) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args), env=env)


def one_error(result: click.testing.Result) -> str:
    """The single `Error:` line a failed run printed (and nothing like a traceback)."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def settings(*args: str) -> list[dict]:
    result = invoke("config", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["settings"]


def setting(rows: list[dict], key: str, command: str) -> dict:
    (row,) = [r for r in rows if r["key"] == key and command in r["commands"]]
    return row


def genres_proposed(result: click.testing.Result) -> list[list[str]]:
    assert result.exit_code == 0, result.output
    return [f["proposed"] for f in json.loads(result.stdout)["files"]]


# ---------------------------------------------------------------------------
# Defaults from the file; command line and environment win.


def test_config_file_sets_defaults_and_the_command_line_wins(library: Path, genretag_home: Path,
                                                              tmp_path: Path) -> None:
    cfg = genretag_home / "config.toml"
    cfg.write_text('db = "dbs/cache.db"\njobs = 0\ntop = 2\n\n[scan]\nmin-confidence = 0\nexclude = ["*.ogg"]\n\n'
                   "[tag]\ntop = 3\ndry-run = true\n", encoding="utf-8")
    before = {p: p.read_bytes() for p in library.rglob("*.*")}

    scanned = invoke("scan", str(library), "--json")  # top = 2 applies to scan too: no "add --write" error
    assert scanned.exit_code == 0, scanned.output
    assert json.loads(scanned.stdout)["seen"] == 3  # the ogg file is excluded
    assert (genretag_home / "dbs" / "cache.db").is_file()  # relative to the config file's folder

    assert [len(g) for g in genres_proposed(invoke("tag", "--json"))] == [3, 3, 3]  # [tag] wins over the top
    assert [len(g) for g in genres_proposed(invoke("tag", "--json", "--top", "1"))] == [1, 1, 1]
    assert {p: p.read_bytes() for p in library.rglob("*.*")} == before  # dry-run = true from the file

    other = tmp_path / "other.toml"
    other.write_text(f'db = "{genretag_home / "dbs" / "cache.db"}"\n[tag]\ntop = 2\ndry-run = true\n', encoding="utf-8")
    assert [len(g) for g in genres_proposed(invoke("--config", str(other), "tag", "--json"))] == [2, 2, 2]
    by_env = invoke("tag", "--json", env={"GENRETAG_CONFIG": str(other)})
    assert [len(g) for g in genres_proposed(by_env)] == [2, 2, 2]


def test_config_command_says_where_each_value_comes_from(genretag_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = genretag_home / "config.toml"
    cfg.write_text("# my settings\njobs = 3\ntop = 2\n\n[tag]\ntop = 4\n", encoding="utf-8")
    monkeypatch.setenv("GENRETAG_DB", "/elsewhere/genretag.db")

    rows = settings()
    assert setting(rows, "jobs", "scan") == {"key": "jobs", "value": 3, "source": f"{cfg}:2",
                                             "commands": ["report", "scan", "train"]}
    assert (setting(rows, "top", "scan")["source"], setting(rows, "top", "tag")["source"]) == (f"{cfg}:3", f"{cfg}:6")
    assert setting(rows, "top", "tag")["value"] == 4
    assert setting(rows, "db", "show") == {"key": "db", "value": "/elsewhere/genretag.db",
                                           "source": "environment (GENRETAG_DB)",
                                           "commands": ["export", "learn", "scan", "show", "tag", "undo"]}
    assert setting(rows, "excerpt", "scan") == {"key": "excerpt", "value": 30.0, "source": "default", "commands": ["scan"]}

    one = settings("tag", "--top", "5", "--merge")  # what this command line would use
    assert {r["key"]: (r["value"], r["source"]) for r in one if r["source"] != "default"} == {
        "top": (5, "command line"), "merge": (True, "command line"),
        "db": ("/elsewhere/genretag.db", "environment (GENRETAG_DB)")}
    assert all(r["commands"] == ["tag"] for r in one)

    text = invoke("config")
    assert text.exit_code == 0 and f"{cfg}:6" in text.stdout and "config file: " + str(cfg) in text.stderr
    data = json.loads(invoke("config", "--json").stdout)["config_file"]
    assert data == {"path": str(cfg), "found": True, "named_by": "default location"}
    cfg.unlink()
    assert json.loads(invoke("config", "--json").stdout)["config_file"]["found"] is False
    assert invoke("config", "nosuchcommand").exit_code == 2


def test_paths_expand_home_and_are_relative_to_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    folder = tmp_path / "conf"
    (folder / "maps").mkdir(parents=True)
    (folder / "maps" / "genres.txt").write_text("hiphop = Rap\n", encoding="utf-8")
    cfg = folder / "genretag.toml"
    cfg.write_text('db = "~/music.db"\n[tag]\ngenre-map = "maps/genres.txt"\n[scan]\nmodel = "/abs/m.joblib"\n',
                   encoding="utf-8")
    rows = json.loads(invoke("--config", str(cfg), "config", "--json").stdout)["settings"]
    assert setting(rows, "db", "tag")["value"] == str(tmp_path / "me" / "music.db")
    assert setting(rows, "genre-map", "tag")["value"] == str(folder / "maps" / "genres.txt")
    assert setting(rows, "model", "scan")["value"] == "/abs/m.joblib"


def test_the_default_config_file_follows_the_platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GENRETAG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("APPDATA", str(tmp_path / "roaming"))
    for platform, expected in (("linux", tmp_path / "xdg"), ("darwin", tmp_path / "Library" / "Application Support"),
                               ("win32", tmp_path / "roaming")):
        monkeypatch.setattr(sys, "platform", platform)
        assert paths.default_config_path() == expected / "genretag" / "config.toml"
        assert paths.data_dir().parent != expected or platform == "darwin"  # settings and data apart
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert paths.default_config_path() == tmp_path / ".config" / "genretag" / "config.toml"
    monkeypatch.setenv("GENRETAG_HOME", str(tmp_path / "portable"))
    assert paths.default_config_path() == tmp_path / "portable" / "config.toml"
    env = json.loads(invoke("env", "--json").stdout)
    assert env["config_file"] == str(tmp_path / "portable" / "config.toml")


# ---------------------------------------------------------------------------
# Mistakes: one Error line with the file and line, and nothing runs.


@pytest.mark.parametrize("text, message", [
    ("# c\njobs = 2\njobz = 2\n", "line 3: unknown key 'jobz': no genretag command has --jobz (did you mean 'jobs'?)"),
    ('jobs = "two"\n', 'line 1: jobs = "two" (for `genretag report`): expected a whole number'),
    ("\n[tag]\ntop = 0\n", "line 3: top = 0 (for `genretag tag`): 0 is not in the range x>=1"),
    ("[tag]\nexcerpt = 10\n", "line 2: unknown key 'excerpt' in [tag]: `genretag tag` has no --excerpt"),
    ("[scna]\njobs = 1\n", "line 1: unknown section [scna]: no genretag command is called 'scna' (did you mean 'scan'?)"),
    ("top = 1\nmerge = yes\n", "not valid TOML: Invalid value (at line 2, column 9)"),
    ("[tag]\nmin-confidence = 1.5\n", "line 2: min-confidence = 1.5 (for `genretag tag`): 1.5 is not in the range"),
    ('separator = 1\n', "line 1: separator = 1 (for `genretag scan`): expected text (in quotes)"),
    ("dry-run = 1\n", "line 1: dry-run = 1 (for `genretag learn`): expected true or false"),
    ('exclude = ["a", 2]\n', "line 1: exclude = ['a', 2] (for `genretag scan`): expected text"),
    ("features = true\n", "line 1: features = true (for `genretag report`): expected text (in quotes); to set it for "
                          "export only, put it under [export]"),
    ('scan.jobs = "x"\n', 'line 1: jobs = "x" (for `genretag scan`): expected a whole number'),
    ('[tag]\ngenre-map = "nope.txt"\n', "line 2: genre-map = \"nope.txt\" (for `genretag tag`): File"),
])  # fmt: skip
def test_a_mistake_is_one_error_naming_file_and_line(genretag_home: Path, text: str, message: str) -> None:
    cfg = genretag_home / "config.toml"
    cfg.write_text(text, encoding="utf-8")
    assert one_error(invoke("show")).startswith(f"Error: {cfg}: {message}")
    assert one_error(invoke("config")).startswith(f"Error: {cfg}: {message}")  # config shows it as well


def test_nothing_runs_with_a_half_read_config(library: Path, genretag_home: Path) -> None:
    (genretag_home / "config.toml").write_text('db = "here.db"\njobs = 0\nwrite = "yes"\n', encoding="utf-8")
    assert "line 3: write" in one_error(invoke("scan", str(library)))
    assert list(genretag_home.iterdir()) == [genretag_home / "config.toml"]  # no database anywhere
    helped = invoke("scan", "--help")  # help still shows, with the built-in defaults, and says the file is broken
    assert helped.exit_code == 0 and "scan [OPTIONS] PATHS" in helped.stdout
    assert "Warning: config file not applied to this help:" in helped.stderr and "line 3: write" in helped.stderr
    assert one_error(invoke("scan", str(library), "--", "--help")).startswith("Error: ")  # a path named --help
    assert invoke("--help").exit_code == 0  # the group's own help still shows (and names --config)


def test_hostile_config_files(genretag_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = genretag_home / "config.toml"
    cfg.mkdir()
    assert one_error(invoke("show")) == f"Error: {cfg}: the config file is a directory"
    cfg.rmdir()

    cfg.write_bytes(b"# r\xe9glages\njobs = 2\n")  # Latin-1, not UTF-8
    assert one_error(invoke("show")) == f"Error: {cfg}: line 1: not UTF-8 text (byte 0xe9); save it as UTF-8"

    cfg.write_bytes(b"# padding\n" * 200_000)  # 2 MB: refused before TOML parsing
    assert "larger than 1 MiB" in one_error(invoke("show"))
    with open(cfg, "wb") as f:  # 8 GB, sparse: never read into memory
        f.truncate(8 << 30)
    assert "larger than 1 MiB" in one_error(invoke("show"))
    cfg.unlink()

    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # opening it would block: it is refused from its stat
    assert one_error(invoke("--config", str(fifo), "show")) == f"Error: {fifo}: the config file is a FIFO (named pipe)"

    assert one_error(invoke("--config", str(tmp_path / "none.toml"), "show")) == (
        f"Error: {tmp_path / 'none.toml'}: config file not found")

    cfg.write_text("jobs = 2\n", encoding="utf-8")

    real_open = os.open

    def refuse(path: object, *args: object, **kwargs: object) -> int:
        if str(path) == str(cfg):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(userfiles.os, "open", refuse)  # also what root, who reads anything, sees
    assert one_error(invoke("show")) == f"Error: {cfg}: cannot read the config file: Permission denied"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_config_file(genretag_home: Path) -> None:
    cfg = genretag_home / "config.toml"
    cfg.write_text("jobs = 2\n", encoding="utf-8")
    cfg.chmod(0)
    try:
        assert one_error(invoke("show")) == f"Error: {cfg}: cannot read the config file: Permission denied"
    finally:
        cfg.chmod(0o600)


# ---------------------------------------------------------------------------
# `genretag config --init`.


def test_init_writes_a_commented_example_and_never_overwrites_silently(genretag_home: Path, tmp_path: Path) -> None:
    cfg = genretag_home / "config.toml"
    result = invoke("config", "--init")
    assert result.exit_code == 0 and str(cfg) in result.stderr
    text = cfg.read_text(encoding="utf-8")
    assert all(line.startswith("#") for line in text.splitlines() if line.strip())  # changes nothing
    assert config.load(cli).settings == []

    cfg.write_text("jobs = 2\n", encoding="utf-8")
    assert "already there; --force replaces it" in one_error(invoke("config", "--init"))
    assert cfg.read_text(encoding="utf-8") == "jobs = 2\n"
    cfg.write_text("this is = = broken\n", encoding="utf-8")
    assert invoke("config", "--init", "--force").exit_code == 0  # works beside a broken file
    assert cfg.read_text(encoding="utf-8") == text
    assert invoke("config", "--force").exit_code == 2

    # Uncommented, every example setting is valid (the genre map it names must exist).
    (genretag_home / "genre-map.txt").write_text("hiphop = Rap\n", encoding="utf-8")
    setting_line = re.compile(r"^# ([a-z][a-z0-9-]* = .*|\[[a-z]+\])$")
    cfg.write_text("\n".join(line[2:] if setting_line.match(line) else line for line in text.splitlines()),
                   encoding="utf-8")
    keys = {s.key for s in config.load(cli).settings}
    assert {"db", "jobs", "backend", "excerpt", "exclude", "include", "write-above", "top", "merge", "genre-map",
            "field", "id3v23", "separator", "with-parents"} <= keys

    named = tmp_path / "sub" / "g.toml"  # --config names where --init writes
    assert invoke("--config", str(named), "config", "--init").exit_code == 0 and named.read_text() == text
    assert json.loads(invoke("config", "--init", "--json", env={"GENRETAG_CONFIG": str(tmp_path / "e.toml")}).stdout) == {
        "written": str(tmp_path / "e.toml")}


# ---------------------------------------------------------------------------
# Options other helpers add, the library function, imports.


def test_options_added_later_are_configurable_with_no_config_code(tmp_path: Path) -> None:
    @click.group()
    def group() -> None: ...

    @group.command()
    @click.option("--by", type=click.Choice(["track", "album", "folder"]), default="track")
    @click.option("--keep-outliers", is_flag=True)
    @click.option("--top", type=int, default=1)
    def tag(by: str, keep_outliers: bool, top: int) -> None: ...

    @group.command()
    @click.option("--by", type=click.Choice(["track", "album"]), default="track")
    def show(by: str) -> None: ...

    cfg = tmp_path / "c.toml"
    cfg.write_text('by = "album"\n[tag]\nkeep-outliers = true\nby = "folder"\n', encoding="utf-8")
    assert config.load(group, cfg).default_map() == {"tag": {"by": "folder", "keep_outliers": True},
                                                     "show": {"by": "album"}}
    cfg.write_text('by = "folder"\n', encoding="utf-8")  # show has no folder mode
    with pytest.raises(FileError, match="line 1: by = \"folder\" .for `genretag show`.: 'folder' is not one of"):
        config.load(group, cfg)


def test_config_imports_no_tensorflow(genretag_home: Path) -> None:
    (genretag_home / "config.toml").write_text("jobs = 2\n", encoding="utf-8")
    for args in (["config"], ["config", "--json", "scan"]):
        proc = run_cli(*args, env={"PYTHONPROFILEIMPORTTIME": "1"})
        assert proc.returncode == 0, proc.stderr
        assert "import time:" in proc.stderr and not TF_IMPORT.search(proc.stderr)


def test_config_on_real_files(library_samples: Path, genretag_home: Path, tmp_path: Path) -> None:
    """Real files from ../shared/library-samples: the file's include, jobs and tag settings apply."""
    music = tmp_path / "Music"
    shutil.copytree(library_samples, music)
    before = {p: p.read_bytes() for p in music.rglob("*") if p.is_file()}
    (genretag_home / "config.toml").write_text(
        'jobs = 0\n[scan]\ninclude = ["issue-266.flac", "*.ogg", "Dethklok*"]\nmin-confidence = 0\n[tag]\nmerge = true\nwith-parents = true\n'
        "dry-run = true\ntop = 2\n", encoding="utf-8")
    scanned = invoke("scan", str(music), "--json")
    assert scanned.exit_code == 0, scanned.output
    assert (json.loads(scanned.stdout)["seen"], json.loads(scanned.stdout)["analysed"]) == (3, 3)  # of 13 files
    tagged = json.loads(invoke("tag", "--json").stdout)
    assert tagged["dry_run"] and len(tagged["files"]) == 3
    for f in tagged["files"]:  # merge: what the file had comes first and stays
        assert f["proposed"][: len(f["current"])] == f["current"] and len(f["proposed"]) >= len(f["current"])
    assert {p: p.read_bytes() for p in music.rglob("*") if p.is_file()} == before
