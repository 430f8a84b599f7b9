"""The folders show the architecture (issue 23 points 8 and 9).

tagger's sub-packages are layers: each imports only itself and those below it, at run time, lazily
or under TYPE_CHECKING alike (a type-only import upward is still a loop in the design).  README's
"Development" section states the order and says what every module owns; these tests keep both
true.  The graph is read with ``ast``, nothing is imported.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from test_import_graph import ROOT, _modules, import_graph

#: tagger's sub-packages, bottom layer first: the one declaration of the order.
LAYERS = ("common", "media", "analysis", "store", "inference", "decide", "write", "run", "views")
#: Modules directly in tagger/: the package itself and the defaults sit below every layer, the CLI above.
BELOW, ABOVE = {"tagger", "tagger.defaults"}, {"tagger.cli"}
#: Packages whose every module README's Development section must list.
LISTED = ("tagger", "plugins", "training", "beetsplug")


def every_import(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def layer(module: str) -> int:
    """Position of a tagger module in the order: -1 below every layer, len(LAYERS) above."""
    if module in BELOW:
        return -1
    if module in ABOVE:
        return len(LAYERS)
    return LAYERS.index(module.split(".")[1])


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import that goes up a layer, or out of tagger into plugins/training below the CLI."""
    found = []
    for module, deps in sorted(graph.items()):
        if not module.startswith("tagger"):
            continue
        for dep in sorted(deps):
            if not dep.startswith("tagger"):
                if module not in ABOVE:
                    found.append(f"{module} imports {dep}")
            elif layer(dep) > layer(module) or dep in ABOVE:
                found.append(f"{module} imports {dep}, a layer above it")
    return found


def development_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Development\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    assert match, "README.md has no '## Development' section"
    return match.group(1)


def test_every_tagger_module_sits_in_a_layer() -> None:
    modules = [m for m in _modules(ROOT, ("tagger",)) if m not in BELOW | ABOVE]
    assert modules, "no modules found"
    stray = [m for m in modules if m.count(".") < 1 or m.split(".")[1] not in LAYERS]
    assert stray == [], f"modules outside the layers {LAYERS}: {stray}"
    assert {m.split(".")[1] for m in modules} == set(LAYERS), "a declared layer has no modules"


def test_each_layer_imports_only_the_layers_below_it() -> None:
    graph = import_graph(imports=every_import)
    assert "tagger.store.cache" in graph["tagger.run.scan"]  # the graph is really read
    assert violations(graph) == []


def test_an_upward_import_is_found_even_under_type_checking(tmp_path: Path) -> None:
    for pkg in ("tagger", "tagger/common", "tagger/store"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "tagger/common/errors.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..store.cache import Cache\n")
    (tmp_path / "tagger/store/cache.py").write_text("def f():\n    from tagger.cli import main\n"
                                                    "from ..common import errors\nfrom .. import defaults\n")
    (tmp_path / "tagger/defaults.py").write_text("")
    (tmp_path / "tagger/cli.py").write_text("import plugins.svc\n")
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins/__init__.py").write_text("")
    (tmp_path / "plugins/svc.py").write_text("")
    graph = import_graph(tmp_path, ("tagger", "plugins"), imports=every_import)
    assert violations(graph) == ["tagger.common.errors imports tagger.store.cache, a layer above it",
                                 "tagger.store.cache imports tagger.cli, a layer above it"]


def test_readme_states_the_layer_order() -> None:
    orders = re.findall(r"^\s*(\w+(?: < \w+)+)\s*$", development_section(), re.M)
    assert orders == [" < ".join(LAYERS)]


def test_readme_development_lists_every_module() -> None:
    """One table row per package folder, naming each of its modules in backticks."""
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([\w/]+/)` \|(.*)\|\s*$",
                                                          development_section(), re.M)}
    missing = []
    for module, path in _modules(ROOT, LISTED).items():
        if path.name == "__init__.py":
            continue
        folder = path.parent.relative_to(ROOT).as_posix() + "/"
        if f"`{path.stem}`" not in rows.get(folder, ""):
            missing.append(f"{module} (row `{folder}`)")
    assert missing == [], f"README's Development section does not list: {missing}"
