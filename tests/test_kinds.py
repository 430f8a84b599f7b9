"""Input kinds are objects in one registry (tagger.inference.kinds): a fourth kind, defined in the tests alone, scans end to end.

The kind ("stats", tests/stats_kind.py) and a backend declaring it are
registered by the tests only; nothing in tagger/ names them.  A scan with it
analyses through the worker, predicts, stores genres, keeps the kind's
inputs in the cache and, for another model of the same kind, re-predicts
from them without decoding.  Installed as a plugin, it also reaches the
local pool's worker processes, which start without it.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from audiofiles import make_audio
from stats_kind import STATS_ID, Stats, StatsHead, stats
from tagger.analysis.wire import AnalysisTask
from tagger.cli import cli
from tagger.common.errors import BackendError
from tagger.inference import kinds
from tagger.inference.backends import check_backend_class, register, unregister
from tagger.inference.kinds import get_kind, register_kind, unregister_kind
from tagger.inference.models import load_model, make_card, save_model
from tagger.inference.worker import analyse_file
from tagger.media.audio import CHUNK_SECONDS, decode
from tagger.media.params import AnalysisParams
from test_embedding import embeddings, expected_genre, no_decoding, rows, run, run_cli
from test_embedding import library  # noqa: F401  (fixture: two tones, two noises)

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def registered() -> Any:
    register_kind(Stats())
    register(StatsHead)
    yield StatsHead
    unregister(StatsHead.name)
    unregister_kind("stats")


def train_head(tmp_path: Path, out: Path, temperature: float = 1.0) -> Path:
    """A head that tells tones ("tonal") from noise ("noisy"), trained on other generated clips."""
    X, y = [], []
    for seed in range(4):
        for kind, genre in (("tone", "tonal"), ("noise", "noisy")):
            path = tmp_path / f"train-{kind}{seed}.wav"
            make_audio(path, "wav", seconds=4.0, kind=kind, seed=100 + seed)
            X.append(stats(decode(path).samples))
            y.append(genre)
    head = StatsHead(temperature).fit(np.stack(X), y)
    return save_model(head, make_card(head), out=out)


def test_the_registry_is_the_list_of_kinds_backends_are_checked_against(registered: Any) -> None:
    assert set(kinds.KINDS) == {"features", "slices", "embedding", "stats"}
    assert check_backend_class("statshead", StatsHead) is None
    unregister_kind("stats")
    assert check_backend_class("statshead", StatsHead) == (
        "input_kind must be one of ('features', 'slices', 'embedding'), got 'stats'")
    with pytest.raises(BackendError, match="unknown input kind 'stats'"):
        get_kind("stats")
    unregister_kind("features")  # the built-in kinds stay
    assert "features" in kinds.KINDS


def test_a_kind_that_does_not_stream_sees_at_most_a_chunk() -> None:
    whole = AnalysisParams(excerpt=None)
    assert Stats().window(whole) == CHUNK_SECONDS and get_kind("features").window(whole) is None
    assert Stats().window(AnalysisParams(excerpt=10.0)) == 10.0


def test_the_worker_computes_a_registered_kind(registered: Any, library: Path) -> None:
    result = analyse_file(AnalysisTask(str(library / "noise1.flac"), AnalysisParams(kind="stats")))
    assert result.error is None and result.features is None and result.slices is None
    np.testing.assert_allclose(result.extra["stats"], stats(decode(library / "noise1.flac").samples), rtol=1e-5)


def test_a_fourth_kind_scans_end_to_end_and_its_cached_inputs_are_reused(
        registered: Any, library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "cache.db"
    first = run(library, db, load_model("statshead", train_head(tmp_path, tmp_path / "a.npz")))
    assert (first.analysed, first.failed) == (4, 0)
    before, vectors = rows(db), embeddings(db)
    for name, row in before.items():
        assert row["status"] == "ok" and row["genre"] == expected_genre(name), (name, row)
        made_by, vector = vectors[name]  # what the kind keeps: its input, under its own id
        assert made_by == STATS_ID
        np.testing.assert_allclose(vector, stats(decode(library / name).samples), rtol=1e-5)

    no_decoding(monkeypatch)
    other = load_model("statshead", train_head(tmp_path, tmp_path / "b.npz", temperature=3.0))
    again = run(library, db, other)
    assert (again.repredicted, again.analysed, again.failed) == (4, 0, 0)
    for name, row in rows(db).items():
        assert row["model_id"] == other.id and row["genre"] == expected_genre(name)
        assert row["confidence"] < before[name]["confidence"]  # a softer head: the new model's output


def test_scan_command_with_a_registered_kind(registered: Any, library: Path, tmp_path: Path) -> None:
    model = train_head(tmp_path, tmp_path / "a.npz")
    db = tmp_path / "c.db"
    result = CliRunner().invoke(cli, ["scan", "--backend", "statshead", "--model", str(model), "--db", str(db),
                                      "-j", "0", str(library)])
    assert result.exit_code == 0, result.output
    genres = {name: row["genre"] for name, row in rows(db).items()}
    assert genres == {name: expected_genre(name) for name in ("tone0.wav", "noise1.flac", "tone2.mp3", "noise3.ogg")}


def install_stats_plugin(site: Path) -> Path:
    """The stats kind and its backend as a plugin would ship them: an entry point whose module registers the kind."""
    (site / "genretag_stats-0.1.dist-info").mkdir(parents=True)
    (site / "genretag_stats-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: genretag-stats\n"
                                                                    "Version: 0.1\n")
    (site / "genretag_stats-0.1.dist-info" / "entry_points.txt").write_text(
        "[genretag.backends]\nstatshead = genretag_stats:StatsHead\n")
    (site / "genretag_stats.py").write_text(f"import sys\nsys.path.insert(0, {str(TESTS)!r})\n"
                                            "from stats_kind import Stats, StatsHead\n"
                                            "from tagger.inference.kinds import register_kind\n"
                                            "register_kind(Stats())\n")
    return site


def test_a_plugins_kind_reaches_worker_processes_that_start_without_it(registered: Any, library: Path,
                                                                       tmp_path: Path) -> None:
    model = train_head(tmp_path, tmp_path / "a.npz")
    site = install_stats_plugin(tmp_path / "site")
    db = tmp_path / "c.db"
    done = run_cli("scan", "--backend", "statshead", "--model", str(model), "--db", str(db), "-j", "2",
                   "--no-progress", str(library), site=site)
    assert done.returncode == 0, done.stderr
    assert {name: (row["status"], row["genre"]) for name, row in rows(db).items()} == {
        name: ("ok", expected_genre(name)) for name in ("tone0.wav", "noise1.flac", "tone2.mp3", "noise3.ogg")}
    assert {made_by for made_by, _ in embeddings(db).values()} == {STATS_ID}


# -- the structure: one place for kinds, wire values at the bottom -----------------------
REPO = Path(__file__).resolve().parent.parent


def _mentions_kind(node: ast.AST) -> bool:
    return any("kind" in (n.id if isinstance(n, ast.Name) else n.attr).lower()
               for n in ast.walk(node) if isinstance(n, (ast.Name, ast.Attribute)))


def _names_a_kind(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Constant) and n.value in kinds.KINDS for n in ast.walk(node))


def test_no_branch_on_a_kind_name_outside_the_kinds_module() -> None:
    found = []
    for package in ("tagger", "plugins", "training"):
        for path in sorted((REPO / package).rglob("*.py")):
            if path == REPO / "tagger" / "inference" / "kinds.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                operands = [node.left, *node.comparators] if isinstance(node, ast.Compare) else []
                if any(map(_mentions_kind, operands)) and any(map(_names_a_kind, operands)):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []
    assert _mentions_kind(ast.parse("cls.input_kind == 'slices'").body[0].value)  # the check itself works
    assert _names_a_kind(ast.parse("cls.input_kind == 'slices'").body[0].value)


def test_wire_values_sit_at_the_bottom_and_no_loop_even_through_type_only_imports(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import test_import_graph

    def every_import(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:  # those under TYPE_CHECKING too
        return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]

    monkeypatch.setattr(test_import_graph, "_runtime_imports", every_import)
    graph = test_import_graph.import_graph()
    assert graph["tagger.analysis.wire"] <= {"tagger.media.params", "tagger.common.errors", "tagger.media.tags"}  # tags: a type only
    assert "tagger.inference.models" not in graph["tagger.inference.inputs"] | graph["tagger.inference.kinds"]
    assert test_import_graph.cycles(graph) == []
