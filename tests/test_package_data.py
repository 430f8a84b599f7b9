"""Every data file a package reads at run time ships in the wheel: setup.cfg's package_data names it.

A data file missing there works in an editable install and fails after
`pip install .` (CI's clean clone found tagger/decide/broad_genres.toml so).
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


RESEARCH = ("svc_search", "convert_musicnn", "musicnn_patches", "compare_ears", "calibrate_broad",
            "convert_efficientat", "convert_jamendo")


def shipped_modules() -> set[str]:
    """Dotted names of every module the wheel installs, from setup.cfg's find include/exclude."""
    from setuptools import find_packages

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    find = cfg["options.packages.find"] if cfg.has_section("options.packages.find") else {}
    lines = lambda key: [v.strip() for v in find.get(key, "").splitlines() if v.strip()]  # noqa: E731
    packages = find_packages(REPO, include=lines("include") or ("*",), exclude=lines("exclude"))
    return {f"{pkg}.{p.stem}" for pkg in packages
            for p in (REPO / pkg.replace(".", "/")).glob("*.py")}


def test_research_scripts_are_not_installed() -> None:
    shipped = shipped_modules()
    assert "tagger.cli" in shipped and "training.train" in shipped  # the reading works
    leaked = sorted(m for m in shipped if m.rsplit(".", 1)[-1] in RESEARCH or m.startswith("scripts"))
    assert not leaked, f"research scripts in the wheel: {leaked} (they belong in scripts/)"
    assert all((REPO / "scripts" / f"{name}.py").is_file() for name in RESEARCH)
