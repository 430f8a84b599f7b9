"""Every data file a package reads at run time ships in the wheel: setup.cfg's package_data names it.

A data file missing there works in an editable install and fails after
`pip install .` (CI's clean clone found tagger/broad_genres.toml so).
"""

from __future__ import annotations

import configparser
import fnmatch
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def globs() -> dict[str, list[str]]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return {pkg: [g.strip() for g in value.split(",") if g.strip()]
            for pkg, value in cfg["options.package_data"].items()}


@pytest.mark.parametrize("package", ["tagger", "plugins", "training"])
def test_every_data_file_of_a_package_is_package_data(package: str) -> None:
    patterns = globs().get(package, [])
    root = REPO / package
    data = [p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    missing = [f for f in data if not any(fnmatch.fnmatch(f, g) for g in patterns)]
    assert not missing, f"{package}: not in setup.cfg [options.package_data]: {missing}"
