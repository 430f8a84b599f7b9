"""One genre decision (tagger/decide/decision.py): rules from cards, stored with each result, and the options that set them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import learnlib
from conftest import copy_scanned, make_library, scan_for_module
from tagger.cli import cli
from tagger.decide import broad, decision
from tagger.decide.decision import NEVER, PER_GENRE, SINGLE, Rule
from tagger.inference import inputs
from tagger.inference.models import card_path
from tagger.store.cache import READ, Cache
from tagger.write.tagging import TagOptions, propose, unusable

DEPRECATED = "--min-confidence is deprecated"


def run(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def scanned_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("decision")
    root, db = base / "Music", base / "g.db"
    make_library(root)
    scan_for_module(root, db, tmp_path_factory.mktemp("home"))
    return root, db


@pytest.fixture
def scanned(scanned_once: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    return copy_scanned(*scanned_once, tmp_path)


def rows(db: Path) -> list[dict]:
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute("select * from tracks order by path")]


# ---------------------------------------------------------------------------
# The rule and its one function.


def test_a_card_or_an_override_becomes_one_rule() -> None:
    single = {"abstain": {"threshold": 0.4}}
    assert decision.rule_for(single) == Rule(SINGLE, 0.4, source=decision.CARD_SOURCE)
    assert decision.rule_for({}) == Rule(NEVER)
    assert decision.rule_for(single, 0.0) == Rule(NEVER, source=decision.OVERRIDE_SOURCE)
    assert decision.rule_for(single, 0.7) == Rule(SINGLE, 0.7, source=decision.OVERRIDE_SOURCE)
    multi = decision.rule_for({"multilabel": {"thresholds": {"b": 0.5, "a": 0.2}}})
    assert multi.kind == PER_GENRE and multi.multi and multi.thresholds == (("b", 0.5), ("a", 0.2))
    for rule in (multi, Rule(NEVER), decision.rule_for(single)):
        assert Rule.from_json(rule.to_json()) == rule
    assert Rule.from_json(None) is None and Rule.from_json("{broken") is None and Rule.from_json('{"kind": 3}') is None


def test_decide_gives_genres_or_an_abstention_with_its_reason() -> None:
    probs = {"rock": 0.3, "jazz": 0.5, "pop": 0.2}
    rule = Rule(SINGLE, 0.6, source="the card")
    assert decision.decide(rule, probs) == decision.Verdict([], "uncertain: best jazz 0.500 below 0.6 (the card)")
    assert decision.decide(Rule(SINGLE, 0.5), probs).genres == [("jazz", 0.5), ("rock", 0.3), ("pop", 0.2)]
    assert decision.decide(Rule(NEVER), probs).genres[0] == ("jazz", 0.5)
    assert decision.decide(Rule(NEVER), {}).reason == "no probabilities stored"
    # An album of tracks whose scans used different rules is decided by the strictest.
    assert decision.strictest([Rule(NEVER), Rule(SINGLE, 0.2), Rule(SINGLE, 0.6)]) == Rule(SINGLE, 0.6)
    # A row from before rules were stored: its threshold column says which rule it was decided by.
    assert decision.legacy_rule(0.45) == Rule(SINGLE, 0.45, source="the threshold the scan used")
    assert decision.legacy_rule(None) == Rule(NEVER)


# ---------------------------------------------------------------------------
# Scan stores its rule; tag uses the stored one.


def test_scan_stores_the_rule_it_decided_by(scanned: tuple[Path, Path]) -> None:
    root, db = scanned
    code, out, err = run("scan", str(root), "--db", str(db), "-j", "0", "--json", "--abstain-below", "1")
    assert code == 0, err
    assert DEPRECATED not in err
    summary = json.loads(out)
    assert summary["analysed"] == 0 and summary["redecided"] == 4 and summary["abstained"] == 4
    stored = [Rule.from_json(r["rule"]) for r in rows(db)]
    assert stored == [Rule(SINGLE, 1.0, source="--abstain-below")] * 4
    assert all("(--abstain-below)" in r["abstained"] for r in rows(db))


def test_tag_write_above_is_tags_own_knob(scanned: tuple[Path, Path]) -> None:
    root, db = scanned
    code, out, err = run("tag", str(root), "--db", str(db), "--dry-run", "--json", "--write-above", "1")
    assert code == 0, err
    assert {f["action"] for f in json.loads(out)["files"]} == {"below threshold"} and DEPRECATED not in err
    code, out, err = run("tag", str(root), "--db", str(db), "--dry-run", "--json", "--write-above", "0")
    assert {f["action"] for f in json.loads(out)["files"]} == {"would write"}, out


def test_scan_write_gives_each_knob_to_its_own_use(scanned: tuple[Path, Path]) -> None:
    root, db = scanned
    code, out, err = run("scan", str(root), "--db", str(db), "-j", "0", "--json", "--abstain-below", "0",
                         "--write", "--dry-run", "--write-above", "1")
    assert code == 0, err
    data = json.loads(out)
    assert data["abstained"] == 0  # --write-above is not an abstain threshold
    assert {f["action"] for f in data["tagging"]["files"]} == {"below threshold"}


def test_deprecated_min_confidence_keeps_each_commands_meaning_with_a_note(scanned: tuple[Path, Path]) -> None:
    root, db = scanned
    code, out, err = run("tag", str(root), "--db", str(db), "--dry-run", "--json", "--min-confidence", "1")
    assert code == 0, err
    assert {f["action"] for f in json.loads(out)["files"]} == {"below threshold"}  # tag: write only above
    notes = [line for line in err.splitlines() if DEPRECATED in line]
    assert len(notes) == 1 and "--write-above" in notes[0] and "Traceback" not in err
    code, out, err = run("scan", str(root), "--db", str(db), "-j", "0", "--json", "--min-confidence", "1")
    assert code == 0, err
    assert json.loads(out)["abstained"] == 4 and DEPRECATED in err  # scan: abstain below


def test_deprecated_config_key_is_accepted_with_a_note(scanned: tuple[Path, Path], tmp_path: Path) -> None:
    root, db = scanned
    cfg = tmp_path / "config.toml"
    cfg.write_text("[tag]\nmin-confidence = 1\n", encoding="utf-8")
    code, out, err = run("--config", str(cfg), "tag", str(root), "--db", str(db), "--dry-run", "--json")
    assert code == 0, err
    assert {f["action"] for f in json.loads(out)["files"]} == {"below threshold"}
    assert "config key min-confidence is deprecated" in err
    cfg.write_text("[tag]\nwrite-above = 1\n", encoding="utf-8")
    code, out, err = run("--config", str(cfg), "tag", str(root), "--db", str(db), "--dry-run", "--json")
    assert {f["action"] for f in json.loads(out)["files"]} == {"below threshold"} and "deprecated" not in err


def test_beets_min_confidence_key_means_both_new_keys() -> None:
    from beetsplug.genretag import OPTIONS, check_settings

    values = {key: default for key, (default, _) in OPTIONS.items()}
    old = check_settings({**values, "min_confidence": 0.4}, lambda key: "config.yaml")
    assert (old.abstain_below, old.write_above) == (0.4, 0.4)
    assert old.tag_options().write_above == 0.4
    new = check_settings({**values, "min_confidence": 0.4, "write_above": 0.1}, lambda key: "config.yaml")
    assert (new.abstain_below, new.write_above) == (0.4, 0.1)


# ---------------------------------------------------------------------------
# A new current model: nothing goes on using the old one's decisions.


def test_learn_redecides_and_tag_keeps_the_stored_rule_when_the_card_changes(tmp_path: Path) -> None:
    db, root = tmp_path / "g.db", tmp_path / "music"
    learnlib.fill(db, root, signal=["Alpha", "Gamma"], strength=6.0)
    code, out, err = run("learn", str(root), "--db", str(db), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert "re-decided by its current one" in result["redecided"]
    with Cache(db, READ) as cache:
        records = list(cache.records([str(root)]))
    assert all(r.model_id != "synthetic" for r in records)  # no row keeps the earlier model's decision
    assert {Rule.from_json(r.rule).kind for r in records} == {PER_GENRE}
    before = [propose(r, TagOptions()) for r in records]
    assert sum(bool(names) for names, _, _ in before) > len(records) // 2  # the new model's genres, no scan
    # The card changes afterwards: tag decides by the rule the results were decided by, not by the card.
    card = card_path(Path(result["model"]["file"]))
    doc = json.loads(card.read_text())
    doc["multilabel"]["thresholds"] = {g: 1.0 for g in doc["multilabel"]["thresholds"]}
    card.write_text(json.dumps(doc))
    assert [propose(r, TagOptions()) for r in records] == before


def test_learn_says_which_files_another_backend_decided_and_how_its_model_decides_them(tmp_path: Path) -> None:
    """After the default (fusion) scan, learn's musicnn model decides nothing until a musicnn scan: learn says so."""
    db, root = tmp_path / "g.db", tmp_path / "music"
    learnlib.fill(db, root, signal=["Alpha", "Gamma"], strength=6.0)
    with sqlite3.connect(db) as con:  # the files were decided by fusion; their musicnn embeddings are cached
        fused = con.execute("update tracks set backend = 'fusion', model_id = 'shipped'").rowcount
    con.close()
    code, out, err = run("learn", str(root), "--db", str(db), "--json")
    assert code == 0, err
    assert json.loads(out)["decided_by_other_backends"] == {"fusion": fused}
    assert {(r["backend"], r["model_id"]) for r in rows(db)} == {("fusion", "shipped")}  # left to a musicnn scan
    code, out, err = run("learn", str(root), "--db", str(db))
    assert code == 0, err
    said = " ".join((out + err).split())
    assert f"{fused} file(s) here were decided by another backend (fusion {fused})" in said
    assert f"next: `genretag scan {root} --backend musicnn`, then `genretag tag {root} --dry-run`" in said


def test_tag_redecides_rows_of_another_model_or_says_how_many_it_left(tmp_path: Path) -> None:
    db, root = tmp_path / "g.db", tmp_path / "music"
    learnlib.fill(db, root, signal=["Alpha", "Gamma"], artists_per_genre=1, files_per_artist=2)  # musicnn rows
    with sqlite3.connect(db) as con:  # and one svc row whose model is gone, with no features cached
        con.execute("update tracks set backend = 'svc', model_id = 'gone' where path = (select min(path) from tracks)")
    con.close()
    code, out, err = run("tag", str(root), "--db", str(db), "--dry-run", "--json")
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1, err
    assert "3 file(s) decided by an earlier musicnn model re-decided" in notes[0]
    assert "1 file(s) decided by another model left as they were" in notes[0]
    models = {r["backend"]: r["model_id"] for r in rows(db)}
    assert models["svc"] == "gone" and models["musicnn"] != "synthetic"


def test_a_redecision_keeps_the_broad_choice_of_the_scan_it_replaces(tmp_path: Path) -> None:
    db, root = tmp_path / "g.db", tmp_path / "music"
    learnlib.fill(db, root, signal=["Alpha", "Gamma"], strength=6.0)
    names = list(inputs.front_end("musicnn").tag_names)
    tags = np.full(len(names), 0.01, dtype=np.float32)
    tags[names.index("electronic")] = 0.95  # the networks hear electronic music: the broad source would say so
    with sqlite3.connect(db) as con:
        con.execute("update embeddings set tags = ?", (tags.tobytes(),))
    con.close()
    code, out, err = run("learn", str(root), "--db", str(db), "--json")
    assert code == 0, err
    card = card_path(Path(json.loads(out)["model"]["file"]))  # the head now abstains on every file
    doc = json.loads(card.read_text())
    doc["multilabel"]["thresholds"] = {g: 1.0 for g in doc["multilabel"]["thresholds"]}
    card.write_text(json.dumps(doc))

    def redecided_by_tag(broad_id: str | None) -> list:
        with sqlite3.connect(db) as con:  # as an earlier model's scan left them, with the broad source on or off
            con.execute("update tracks set model_id = 'older', broad_id = ?", (broad_id,))
        con.close()
        _, _, err = run("tag", str(root), "--db", str(db), "--dry-run", "--json")  # no audio: each file an error
        assert "re-decided by its current one" in err, err
        with Cache(db, READ) as cache:
            return list(cache.records([str(root)]))

    def written(records: list, opts: TagOptions) -> set:
        """What tag would write to each record (None: nothing, and why is another matter)."""
        return {None if unusable(r, opts) else tuple(propose(r, opts)[0]) for r in records}

    records = redecided_by_tag(None)  # a row from before broad_id was stored: the source was on
    assert {(r.genre, r.genre_source, r.broad_id) for r in records} == {("Electronic", "broad", broad.shipped().id)}
    assert written(records, TagOptions()) == {("Electronic",)}
    assert written(records, TagOptions(broad=False)) == {None}  # tag --no-broad still leaves it out
    records = redecided_by_tag(broad.OFF)  # scanned with --no-broad: re-decided without the broad source
    assert {(r.genre, r.genre_source, r.broad_id) for r in records} == {(None, None, broad.OFF)}
    assert all(r.abstained.startswith("uncertain") for r in records)
    assert written(records, TagOptions()) == {None}


def test_rows_from_before_rules_keep_their_decision_and_get_its_rule_once(scanned: tuple[Path, Path]) -> None:
    root, db = scanned
    code, out, err = run("tag", str(root), "--db", str(db), "--dry-run", "--json")
    before = json.loads(out)["files"]
    with sqlite3.connect(db) as con:  # as an older genretag left them: its decision, no rule
        con.execute("update tracks set rule = null")
    con.close()
    code, out, err = run("tag", str(root), "--db", str(db), "--dry-run", "--json")
    assert code == 0, err
    assert json.loads(out)["files"] == before and "note:" not in err
    assert {Rule.from_json(r["rule"]) for r in rows(db)} == {Rule(NEVER)}  # scanned never abstaining
