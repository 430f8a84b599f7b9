"""Hostile paths as inputs and outputs (issue 22): FIFOs, devices, inputs named as outputs, foreign cards.

Every file genretag reads (genre map, feature table, config, model, card) goes
through tagger.common.userfiles: a FIFO or device is refused by its stat, never
opened, so nothing blocks or fills memory.  An output that is not a regular
file, or is one of the command's inputs, is refused before any work.

Inputs are tried in real processes with a timeout and a memory limit, so a
regression fails the test instead of hanging it or exhausting the machine.
Devices are only ever inputs here (/dev/zero); the output tests use FIFOs
and symlinks to /dev/null inside tmp_path, so a regression replaces the
test's own link, never a device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tagger.cli import cli
from test_backend_output import Centroid, registry, table  # noqa: F401  (fixtures)

GENRETAG = str(Path(sys.executable).with_name("genretag"))
ZERO = "/dev/zero"
needs_devices = pytest.mark.skipif(not os.path.exists(ZERO) or not hasattr(os, "mkfifo"), reason="needs /dev/zero and FIFOs")
pytestmark = needs_devices


def _limit_memory() -> None:  # pragma: no cover - runs in the child
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a read of /dev/zero ends in MemoryError, not OOM


def genretag(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``genretag args`` in a real process: at most 60 s and 3 GB (a regression fails, never hangs)."""
    env = {**os.environ, "GENRETAG_HOME": str(tmp_path / "home")}
    env.pop("GENRETAG_CONFIG", None)
    return subprocess.run([GENRETAG, *args], capture_output=True, text=True, timeout=60, env=env,
                          preexec_fn=_limit_memory)  # fmt: skip


def one_error(proc: subprocess.CompletedProcess[str] | object) -> str:
    out = proc.stdout + proc.stderr if isinstance(proc, subprocess.CompletedProcess) else proc.output  # type: ignore[attr-defined]
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, out
    return errors[0]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


# -- inputs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_genre_map_that_is_not_a_regular_file_is_refused(tmp_path: Path, fifo: Path, kind: str) -> None:
    """`tag --genre-map FIFO` hung forever; `--genre-map /dev/zero` grew to 24 GB."""
    source = str(fifo) if kind == "fifo" else ZERO
    what = "a FIFO (named pipe)" if kind == "fifo" else "a device"
    proc = genretag(tmp_path, "tag", "--genre-map", source, "--db", str(tmp_path / "none.db"))
    assert proc.returncode == 2, proc.stderr
    assert one_error(proc) == f"Error: {source}: the genre map is {what}"


def test_genre_map_named_in_the_config_file_is_checked_too(tmp_path: Path, fifo: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[tag]\ngenre-map = "{fifo}"\n', encoding="utf-8")
    proc = genretag(tmp_path, "--config", str(cfg), "tag", "--db", str(tmp_path / "none.db"))
    assert proc.returncode == 2 and one_error(proc) == f"Error: {fifo}: the genre map is a FIFO (named pipe)"


@pytest.mark.parametrize("command", ["train", "report"])
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_feature_table_that_is_not_a_regular_file_is_refused(tmp_path: Path, fifo: Path, command: str,
                                                             kind: str) -> None:
    """`train --features FIFO` hung; `report --features /dev/zero` ended in exit 70, MemoryError."""
    source = str(fifo) if kind == "fifo" else ZERO
    what = "a FIFO (named pipe)" if kind == "fifo" else "a device"
    proc = genretag(tmp_path, command, "--backend", "svc", "--features", source, "--no-progress")
    assert proc.returncode == 1, proc.stderr
    assert one_error(proc) == f"Error: {source}: the feature table is {what}"


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_model_that_is_not_a_regular_file_is_refused(tmp_path: Path, fifo: Path, kind: str) -> None:
    source = str(fifo) if kind == "fifo" else ZERO
    what = "a FIFO (named pipe)" if kind == "fifo" else "a device"
    proc = genretag(tmp_path, "report", "--backend", "svc", "--model", source)
    assert proc.returncode == 1, proc.stderr
    assert one_error(proc) == f"Error: {source}: the model file is {what}"


def test_a_card_that_is_a_fifo_is_refused(tmp_path: Path, fifo: Path) -> None:
    from tagger.inference.models import card_path

    model = tmp_path / "m.joblib"
    model.write_bytes(b"x")
    os.rename(fifo, card_path(model))
    proc = genretag(tmp_path, "report", "--backend", "svc", "--model", str(model))
    assert proc.returncode == 1
    assert one_error(proc) == f"Error: {card_path(model)}: the model card is a FIFO (named pipe)"


@pytest.mark.parametrize("where", ["config", "genre-map"])
def test_nesting_too_deep_to_parse_names_the_file(tmp_path: Path, where: str) -> None:
    """A TOML array nested 100,000 deep (200 kB) made every command exit 70 with RecursionError."""
    deep = tmp_path / ("config.toml" if where == "config" else "map.json")
    if where == "config":
        deep.write_text("jobs = " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
        result = CliRunner().invoke(cli, ["--config", str(deep), "show"])
        assert result.exit_code == 1 and one_error(result) == f"Error: {deep}: not valid TOML: nested too deeply to read"
    else:
        deep.write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
        result = CliRunner().invoke(cli, ["tag", "--genre-map", str(deep), "--db", str(tmp_path / "none.db")])
        assert result.exit_code == 2 and one_error(result) == f"Error: {deep}: the genre map is nested too deeply to read"


# -- outputs: train --out -------------------------------------------------------------------------


def train(*args: str):
    return CliRunner().invoke(cli, ["train", "--backend", "outcentroid", "--no-progress", *args])


@pytest.fixture
def backend(registry):  # noqa: F811
    return registry(type("Out", (Centroid,), {"name": "outcentroid"}))


def test_train_out_never_replaces_a_fifo_or_a_link_to_a_device(tmp_path: Path, table: Path, fifo: Path,  # noqa: F811
                                                                backend: str) -> None:
    """As root, `train --out /dev/full` turned /dev/full into a 1.8 MB regular file."""
    r = train("--features", str(table), "--out", str(fifo))
    assert r.exit_code == 1 and one_error(r) == (f"Error: {fifo}: is a FIFO (named pipe), not a file genretag may "
                                                 "replace with the model")
    assert fifo.is_fifo()
    link = tmp_path / "device.npz"
    link.symlink_to(os.devnull)  # stands for /dev/full: a regression replaces this link, never the device
    r = train("--features", str(table), "--out", str(link))
    assert r.exit_code == 1 and "is a device, not a file genretag may replace" in one_error(r)
    assert link.is_symlink() and os.readlink(link) == os.devnull


def test_train_out_never_replaces_its_own_input(tmp_path: Path, table: Path, backend: str) -> None:  # noqa: F811
    before = table.read_bytes()
    table = tmp_path / "features.csv"  # the shared table stays whole even if this regresses
    table.write_bytes(before)
    r = train("--features", str(table), "--out", str(table))
    assert r.exit_code == 1 and one_error(r) == (f"Error: {table}: is one of this command's inputs ({table}); "
                                                 "write the model elsewhere")
    assert table.read_bytes() == before


def test_train_out_never_replaces_another_models_card(tmp_path: Path, table: Path, backend: str) -> None:  # noqa: F811
    card = tmp_path / "mine.card.json"
    card.write_text('{"file": "mine.keras", "note": "not yours"}', encoding="utf-8")
    r = train("--features", str(table), "--out", str(tmp_path / "mine.npz"))
    assert r.exit_code == 1 and one_error(r) == (f"Error: {card}: is the card of mine.keras; training to mine.npz "
                                                 "would replace it: give another --out")
    assert json.loads(card.read_text())["note"] == "not yours" and not (tmp_path / "mine.npz").exists()
    r = train("--features", str(table), "--out", str(tmp_path / "x.card.json"))
    assert r.exit_code == 1 and "is named like a model card" in one_error(r)


def test_train_out_replaces_its_own_earlier_model_and_card(tmp_path: Path, table: Path, backend: str) -> None:  # noqa: F811
    out = tmp_path / "model.npz"
    for _ in range(2):
        r = train("--features", str(table), "--out", str(out), "--json")
        assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "model.card.json").read_text())
    assert card["file"] == "model.npz" and out.is_file()


def test_a_failure_before_the_card_is_written_leaves_the_earlier_model_and_card(
        tmp_path: Path, table: Path, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Model and card are renamed into place together: a read error while hashing the new model for its card
    replaces neither (it left a new model beside the old card)."""
    import errno

    import tagger.inference.models

    out = tmp_path / "model.npz"
    assert train("--features", str(table), "--out", str(out), "--json").exit_code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}

    def unreadable(path: object) -> str:
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))

    monkeypatch.setattr(tagger.inference.models, "file_id", unreadable)
    r = train("--features", str(table), "--out", str(out), "--split", "kfold", "--k", "3")  # another model
    assert r.exit_code == 1 and one_error(r).endswith(os.strerror(errno.EIO))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before  # no temporary left either


def test_config_init_force_never_replaces_a_fifo(fifo: Path) -> None:
    r = CliRunner().invoke(cli, ["--config", str(fifo), "config", "--init", "--force"])
    assert r.exit_code == 1 and "is a FIFO (named pipe), not a file genretag may replace" in one_error(r)
    assert fifo.is_fifo()


# -- values: nan, inf, seeds ------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["scan", "--timeout", "inf"],  # exited 70 with OverflowError
    ["scan", "--timeout", "1e300"],
    ["scan", "--timeout", "nan"],
    ["scan", "--excerpt", "nan"],
    ["scan", "--min-confidence", "nan"],
    ["tag", "--min-confidence", "nan"],
    ["learn", "--precision", "nan"],
    ["train", "--backend", "svc", "--seed", "-1"],  # exited 70
    ["report", "--backend", "svc", "--seed", str(2**32)],
])  # fmt: skip
def test_non_finite_numbers_and_bad_seeds_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    paths = [str(tmp_path)] if args[0] in ("scan", "learn") else []
    r = CliRunner().invoke(cli, [*args, *paths, "--db", str(tmp_path / "none.db")] if args[0] != "train" and
                           args[0] != "report" else [*args, "--features", str(tmp_path / "none.csv")])
    assert r.exit_code == 2, r.output
    assert f"Invalid value for '{args[-2]}'" in one_error(r)


@pytest.mark.parametrize("line", ["min-confidence = nan", "excerpt = nan", "timeout = inf", "seed = -1",
                                  "precision = -nan"])
def test_non_finite_numbers_in_the_config_file_name_the_file(tmp_path: Path, line: str) -> None:
    """`min-confidence = nan` was listed as valid by `genretag config`, then `tag` failed without naming the file."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"# defaults\n{line}\n", encoding="utf-8")
    for command in (["config"], ["show", "--db", str(tmp_path / "none.db")]):
        r = CliRunner().invoke(cli, ["--config", str(cfg), *command])
        assert r.exit_code == 1, r.output
        assert one_error(r).startswith(f"Error: {cfg}: line 2: {line.split()[0]} = "), r.output


# -- outputs of export, learn and report ------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Path:
    from tagger.store.cache import Cache

    path = tmp_path / "genretag.db"
    Cache(path, "create").close()
    return path


def test_export_never_truncates_its_own_database(db: Path) -> None:
    """`export --db x.db -o x.db` truncated the database to a CSV header."""
    before = db.read_bytes()
    r = CliRunner().invoke(cli, ["export", "--db", str(db), "-o", str(db)])
    assert r.exit_code == 1 and one_error(r) == (f"Error: {db}: is one of this command's inputs ({db}); "
                                                 "write the export elsewhere")
    assert db.read_bytes() == before


def test_learn_refuses_a_chart_over_its_database_before_learning(db: Path) -> None:
    r = CliRunner().invoke(cli, ["learn", str(db.parent), "--db", str(db), "--plots", str(db)])
    assert r.exit_code == 1 and "is one of this command's inputs" in one_error(r)


def test_report_plots_never_replace_a_fifo(tmp_path: Path, table: Path, backend: str) -> None:  # noqa: F811
    assert train("--features", str(table), "--json").exit_code == 0
    plots = tmp_path / "plots"
    plots.mkdir()
    fifo = plots / f"{backend}-fault-filtered-confusion.png"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so a regression writes into it instead of hanging
    try:
        r = CliRunner().invoke(cli, ["report", "--backend", backend, "--features", str(table), "--plots", str(plots)])
    finally:
        os.close(reader)
    assert r.exit_code == 1 and "is a FIFO (named pipe), not a file genretag may replace with the chart" in one_error(r)
    assert fifo.is_fifo()


def test_training_analysis_cache_skips_a_fifo(tmp_path: Path, fifo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A FIFO in the training cache folder: analysed again, not read (a read would block training)."""
    import threading

    import training.dataset as dataset

    monkeypatch.setattr(dataset, "cache_dir", lambda: tmp_path)
    os.rename(fifo, tmp_path / "key.npy")
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(dataset._load_cached("key")), daemon=True)
    reader.start()
    reader.join(10)
    blocked = reader.is_alive()
    if blocked:  # a regression: give the blocked reader its end of file, so the test ends
        os.close(os.open(tmp_path / "key.npy", os.O_WRONLY))
        reader.join(10)
    assert not blocked and got == [None]


@pytest.mark.parametrize("command", [["train", "--backend", "svc", "--features", "CSV", "--out"],
                                     ["export", "-o"], ["learn", ".", "--plots"]])
@pytest.mark.parametrize("target", ["config", "database"])
def test_no_output_over_the_config_file_or_the_database(tmp_path: Path, table: Path, command: list[str],  # noqa: F811
                                                        target: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    cfg, db = home / "config.toml", home / "genretag.db"
    cfg.write_text("# nothing yet\n", encoding="utf-8")
    from tagger.store.cache import Cache

    Cache(db, "create").close()
    before = {p: p.read_bytes() for p in (cfg, db)}
    victim = cfg if target == "config" else db
    args = [str(table) if a == "CSV" else a for a in command]
    r = CliRunner().invoke(cli, [*args, str(victim)], env={"GENRETAG_HOME": str(home)})
    assert r.exit_code == 1 and f"is one of this command's inputs ({victim})" in one_error(r)
    assert {p: p.read_bytes() for p in (cfg, db)} == before
