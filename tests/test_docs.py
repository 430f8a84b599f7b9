"""README stays true to the CLI: every command and built-in backend is documented, set-up is two commands."""

from __future__ import annotations

import re
from pathlib import Path

from tagger.backends import discover
from tagger.cli import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_command_is_in_the_readme() -> None:
    for name in cli.commands:
        assert f"`genretag {name}" in README, f"command {name!r} is not documented in README.md"


def test_every_builtin_backend_is_in_the_readme() -> None:
    builtin = {n for n, info in discover().items() if info.distribution == "genretag"}
    assert builtin >= {"svc", "cnn", "resnet"}
    for name in builtin:
        assert f"| `{name}` |" in README, f"backend {name!r} is not in README's backend table"


def test_setup_is_two_commands_and_ci_runs_the_second() -> None:
    block = re.search(r"## Set-up.*?```bash\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert block == ["pip install . && genretag scan ~/Music", "pip install '.[test]' && pytest"]
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text(encoding="utf-8")
    assert block[1] in ci.splitlines()
