"""No traceback reaches the user: what no command expected is still one ``Error:`` line.

tagger/cli.py's ``_Group`` turns an exception that escapes a command into
one line and an exit code: an OSError is its file and reason (exit 1),
anything else a bug (exit 70, naming the backend whose code raised it);
GENRETAG_DEBUG=1 adds the traceback.  Ctrl-C is exit 130, a closed pipe a
quiet exit 1, and click's own errors stay click's.  A library function is
replaced by one that raises, in-process (CliRunner) and through the
console entry point ``tagger.cli:main`` in a real process.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import tagger.inference.models
from tagger.cli import EXIT_BUG, EXIT_INTERRUPTED, cli
from tagger.inference.backends import Backend, register, unregister

GENRETAG = str(Path(sys.executable).with_name("genretag"))
HINT = "(a bug in genretag; run with GENRETAG_DEBUG=1 for the traceback)"


def raiser(exc: BaseException):
    def fail(*args, **kwargs):
        raise exc

    return fail


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


def error_line(out: str) -> str:
    """The one ``Error:`` line of the output; nothing like a traceback beside it."""
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, out
    return errors[0]


@pytest.mark.parametrize("command, function, exc", [
    ("models", "list_models", RuntimeError("boom")),
    ("backends", "backend_rows", NameError("name 'rows' is not defined")),
    ("env", "library_versions", ValueError("bad version")),  # env has no GenretagError handling of its own
])  # fmt: skip
def test_an_unexpected_exception_is_one_error_line_and_exit_70(command: str, function: str, exc: Exception,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tagger.inference.models, function, raiser(exc))
    code, out = run(command)
    assert code == EXIT_BUG == 70, out
    assert error_line(out) == f"Error: unexpected {type(exc).__name__}: {exc} {HINT}"


def test_genretag_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tagger.inference.models, "list_models", raiser(RuntimeError("boom")))
    code, out = run("models", env={"GENRETAG_DEBUG": "1"})
    assert code == EXIT_BUG and "Traceback (most recent call last)" in out and "RuntimeError: boom" in out, out
    assert out.splitlines()[-1] == "Error: unexpected RuntimeError: boom (a bug in genretag; traceback above)"
    code, out = run("models", env={"GENRETAG_DEBUG": "0"})
    assert code == EXIT_BUG and error_line(out).endswith(HINT)


def test_genretag_debug_shows_an_expected_errors_traceback_too() -> None:
    code, out = run("models", "use", "abc", env={"GENRETAG_DEBUG": "1"})
    assert code == 1 and "Traceback" in out and out.splitlines()[-1].startswith("Error: no model with id 'abc'"), out
    code, out = run("models", "use", "abc")
    assert code == 1 and error_line(out).startswith("Error: no model with id 'abc'")


def test_ctrl_c_in_a_command_exits_130_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tagger.inference.models, "list_models", raiser(KeyboardInterrupt()))
    code, out = run("models")
    assert code == EXIT_INTERRUPTED == 130, out
    assert out.strip() == "Interrupted." and "Traceback" not in out and "Aborted" not in out


@pytest.mark.parametrize("exc, message", [
    (PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/music/genretag.db"),
     f"Error: /music/genretag.db: {os.strerror(errno.EACCES)}"),
    (OSError(errno.EROFS, os.strerror(errno.EROFS), "/ro/models/svc/x.joblib"),
     f"Error: /ro/models/svc/x.joblib: {os.strerror(errno.EROFS)}"),
    (OSError(errno.EXDEV, os.strerror(errno.EXDEV), "/a/model.tmp", None, "/b/model.joblib"),  # as os.rename
     f"Error: /a/model.tmp -> /b/model.joblib: {os.strerror(errno.EXDEV)}"),
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), f"Error: {os.strerror(errno.ENOSPC)}"),
])  # fmt: skip
def test_an_os_error_names_the_file_and_the_reason(exc: OSError, message: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tagger.inference.models, "list_models", raiser(exc))
    code, out = run("models")
    assert code == 1 and error_line(out) == message, out


def test_a_broken_pipe_inside_a_command_exits_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tagger.inference.models, "list_models", raiser(BrokenPipeError(errno.EPIPE, "Broken pipe")))
    code, out = run("models")
    assert code == 1 and out == "", out


def test_callers_asking_for_exceptions_still_get_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tagger.inference.models, "list_models", raiser(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["models"], standalone_mode=False)


class Crashy(Backend):
    """A third party's backend with a bug where no guard stands: finding its shipped model."""

    name = "crashy"
    input_kind = "features"

    def fit(self, X, y, **kwargs):
        return self

    def predict_proba(self, X):
        return X

    def save(self, path):
        pass

    @classmethod
    def load(cls, path):
        return cls()

    @classmethod
    def default_model(cls):
        return {}["model"]


@pytest.fixture
def crashy() -> Iterator[None]:
    register(Crashy)
    yield
    unregister(Crashy.name)


def test_a_plugins_bug_is_one_line_that_blames_the_plugin(crashy: None) -> None:
    code, out = run("models")
    assert code == EXIT_BUG, out
    assert error_line(out) == ("Error: unexpected KeyError in backend 'crashy': 'model' (a bug in that backend; "
                               "run with GENRETAG_DEBUG=1 for the traceback)")


class Quitter(Crashy):
    """A backend that ends the process where no guard stands: genretag exited 4 with no message (issue 22)."""

    name = "quitter"

    @classmethod
    def default_model(cls):
        sys.exit(4)


@pytest.mark.parametrize("debug", ["0", "1"])
def test_a_plugins_sys_exit_is_one_line_that_blames_the_plugin(debug: str) -> None:
    register(Quitter)
    try:
        code, out = run("models", env={"GENRETAG_DEBUG": debug})
    finally:
        unregister(Quitter.name)
    assert code == EXIT_BUG, out
    (line,) = [x for x in out.splitlines() if x.startswith("Error:")]
    assert line.startswith("Error: unexpected SystemExit in backend 'quitter': it called sys.exit(4) (a bug in "
                           "that backend;"), out
    assert ("Traceback" in out) == (debug == "1"), out


def test_a_builtin_backends_bug_is_genretags(monkeypatch: pytest.MonkeyPatch) -> None:
    import plugins.svc

    monkeypatch.setattr(plugins.svc, "MODELS", None)  # default_model() now raises inside plugins/svc.py
    code, out = run("models", "svc")
    assert code == EXIT_BUG, out
    assert error_line(out).startswith("Error: unexpected TypeError in backend 'svc': unsupported operand")
    assert error_line(out).endswith(HINT)


# ---------------------------------------------------------------------------
# The console entry point, in a real process.

PATCHED_MAIN = """
import sys
import tagger.inference.models

def fail(*args, **kwargs):
    raise {exc}

tagger.inference.models.list_models = fail
from tagger.cli import main
sys.argv[0] = "genretag"
main()
"""


def patched_main(exc: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``genretag args`` through ``tagger.cli:main``, with ``list_models`` raising ``exc``."""
    return subprocess.run([sys.executable, "-c", PATCHED_MAIN.format(exc=exc), *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})  # fmt: skip


@pytest.mark.parametrize("exc, code, line", [
    ("RuntimeError('boom')", EXIT_BUG, f"Error: unexpected RuntimeError: boom {HINT}"),
    ("PermissionError(13, 'Permission denied', '/music/genretag.db')", 1,
     "Error: /music/genretag.db: Permission denied"),
])  # fmt: skip
def test_the_entry_point_prints_one_line(exc: str, code: int, line: str) -> None:
    proc = patched_main(exc, "models")
    assert proc.returncode == code and proc.stdout == "", proc.stderr
    assert proc.stderr.splitlines() == [line]


def test_the_entry_point_with_genretag_debug_prints_the_traceback() -> None:
    proc = patched_main("RuntimeError('boom')", "models", GENRETAG_DEBUG="1")
    assert proc.returncode == EXIT_BUG, proc.stderr
    assert proc.stderr.startswith("Traceback (most recent call last)") and "RuntimeError: boom" in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("Error: unexpected RuntimeError: boom")


def test_the_entry_point_on_ctrl_c_exits_130_quietly() -> None:
    proc = patched_main("KeyboardInterrupt", "models")
    assert proc.returncode == EXIT_INTERRUPTED and proc.stderr.strip() == "Interrupted.", proc.stderr


def test_a_full_disk_is_one_error_line(tmp_path: Path) -> None:
    """Not patched: the CSV's last write fails as click closes the file (on main this was a traceback)."""
    from tagger.store.cache import Cache

    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    db = tmp_path / "cache.db"
    Cache(db, "create").close()
    proc = subprocess.run([GENRETAG, "export", "--db", str(db), "-o", "/dev/full"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert error_line(proc.stdout + proc.stderr) == f"Error: {os.strerror(errno.ENOSPC)}"


@pytest.mark.parametrize("args", [["env"], ["config"], ["config", "--json"]])
def test_a_reader_that_leaves_early_ends_the_output_quietly(args: list[str]) -> None:
    """``genretag config | head -1``: the pipe is closed before genretag writes (click.echo, rich and JSON)."""
    proc = subprocess.Popen([GENRETAG, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # type: ignore[union-attr]
    err = proc.stderr.read()  # type: ignore[union-attr]
    assert proc.wait(timeout=120) == 1, err
    assert "Error" not in err and "Traceback" not in err and "Exception ignored" not in err, err
