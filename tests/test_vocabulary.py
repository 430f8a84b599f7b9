"""Tests for tagger.decide.vocabulary (the shipped genre tree) and the naming it gives tagging.

Tagging real and generated files with the tree (--with-parents, merges that
recognise other spellings) is tested in tests/test_tagging.py, on its
scanned library of every format.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from plugins.musicnn import GENRE_TAGS
from plugins.musicnn_net import TAGS
from tagger.decide import vocabulary
from tagger.decide.vocabulary import canonical, fold, parents, same
from tagger.media import tags
from tagger.store.track import Track
from tagger.write.tagging import TagOptions, display_name, field_values, propose

REPO = Path(__file__).resolve().parents[1]
GTZAN = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def test_every_label_a_built_in_model_emits_is_in_the_tree() -> None:
    for label in (*GTZAN, *GENRE_TAGS):
        genre = canonical(label)
        assert genre is not None, label
        assert display_name(label) == genre.name
        assert genre.parent is None or genre.parent in vocabulary.tree().genres
    # The display names tagging wrote before the tree are kept: capitalised words, hiphop as Hip-Hop.
    assert [display_name(g) for g in GTZAN] == [g.capitalize() if g != "hiphop" else "Hip-Hop" for g in GTZAN]
    assert {display_name(t) for t in ("rnb", "Hip-Hop", "Progressive rock", "easy listening", "House")} == {
        "R&B", "Hip-Hop", "Progressive Rock", "Easy Listening", "House"}


def test_musicnn_tags_that_are_no_genre_stay_out_of_the_tree() -> None:
    not_genres = [t for t in TAGS if t not in GENRE_TAGS]
    assert "80s" in not_genres and "female vocalists" in not_genres
    assert [t for t in not_genres if canonical(t)] == []


def test_spellings_of_one_genre_are_one_genre() -> None:
    hip_hop = {canonical(s) for s in ("Hip Hop", "hip-hop", "Hip-Hop", "hiphop", "HIP HOP", "Hip–Hop", " hip hop ")}
    assert len(hip_hop) == 1 and hip_hop.pop().name == "Hip-Hop"
    assert same("R&B", "rnb") and same("Rhythm and Blues", "R & B") and same("r and b", "R&B")
    assert same("Alt Rock", "alternative rock") and same("Prog Rock", "Progressive Rock")
    assert not same("Hip-Hop", "Trip Hop") and not same("Rock", "Hard Rock") and not same("Indie", "Indie Rock")
    # Names the tree does not know compare by their fold.
    assert canonical("Drum'n'Bass") is None and same("Drum'n'Bass", "drumnbass") and same("Música", "musica")
    assert fold("Drum & Bass") == fold("drum and bass") == "drumandbass"
    assert not same("Shoegaze", "Dream Pop")
    assert not same("??", "!!") and same("??", "??")  # nothing left to fold: compared as written


def test_parents_are_broadest_first() -> None:
    assert [g.name for g in parents("alternative rock")] == ["Rock"]
    assert [g.name for g in parents("Gospel")] == ["R&B", "Soul"]
    assert [g.name for g in parents(canonical("Dubstep"))] == ["Electronic"]
    assert parents("Rock") == [] and parents("no such genre") == []


def test_the_shipped_tree_is_consistent_and_every_alias_earns_its_place() -> None:
    tree = vocabulary.tree()
    for genre in tree.genres.values():
        spellings = [fold(genre.key), fold(genre.name), *(fold(a) for a in genre.aliases)]
        # An alias that folds like the name or another alias matches anyway: it would only be noise.
        assert len(set(spellings[1:])) == len(spellings[1:]), genre
        assert fold(genre.key) == fold(genre.name), genre  # keys are the names, slugged
    text = (REPO / "tagger" / "decide" / "genres.toml").read_text(encoding="utf-8")
    assert vocabulary.parse_tree(text) == tree


@pytest.mark.parametrize("text, problem", [
    ('[a]\nname = "A"\n[b]\nname = "B"\naliases = ["a"]\n', "already names"),
    ('[a]\nname = "A"\nparent = "z"\n', "unknown parent"),
    ('[a]\nname = "A"\nparent = "b"\n[b]\nname = "B"\nparent = "a"\n', "its own ancestor"),
    ('[a]\nnom = "A"\n', "needs a name"),
    ('[a]\nname = "A"\ncolour = "red"\n', "unknown fields"),
])  # fmt: skip
def test_an_inconsistent_tree_is_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        vocabulary.parse_tree(text, "test.toml")


def test_the_tree_ships_as_package_data() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert "genres.toml" in cfg["options.package_data"]["tagger"]


# ---------------------------------------------------------------------------
# Naming and merging through the tree.


def _row(probs: dict[str, float]) -> Track:
    best = max(probs, key=probs.__getitem__)
    return Track(path="/x.mp3", genre=best, confidence=probs[best], probabilities=probs)


def test_with_parents_writes_the_parent_first_once() -> None:
    row = _row({"alternative rock": 0.6, "indie rock": 0.25, "rock": 0.1, "jazz": 0.05})
    assert propose(row, TagOptions(top=2))[0] == ["Alternative Rock", "Indie Rock"]
    assert propose(row, TagOptions(top=3, with_parents=True))[0] == ["Rock", "Alternative Rock", "Indie Rock"]
    assert propose(_row({"jazz": 0.9, "rock": 0.1}), TagOptions(with_parents=True))[0] == ["Jazz"]  # no parent
    # Parents are named, and dropped, by the user's map too; the map wins over the tree.
    mapped = TagOptions(top=2, with_parents=True, genre_map={"rock": "Rock Music", "indie rock": None})
    assert propose(row, mapped)[0] == ["Rock Music", "Alternative Rock"]
    assert propose(row, TagOptions(with_parents=True, genre_map={"rock": None}))[0] == ["Alternative Rock"]
    # A label mapped to a tree genre takes that genre's parents.
    assert propose(_row({"indie": 1.0}), TagOptions(with_parents=True, genre_map={"indie": "Indie Rock"}))[0] == [
        "Rock", "Indie Rock"]


def test_the_genre_map_matches_any_spelling_of_a_label() -> None:
    assert display_name("hiphop", {"hip hop": "Rap"}) == "Rap"
    assert display_name("Hip-Hop", {"hiphop": None}) is None
    assert display_name("rnb", {"r&b": "Soul"}) == "Soul"
    assert display_name("jazz", {"hip hop": "Rap"}) == "Jazz"


def test_keep_and_merge_recognise_other_spellings() -> None:
    keep, merge = TagOptions(), TagOptions(merge=True)
    assert field_values(["Hip Hop"], ["Hip-Hop"], keep) == (["Hip Hop"], "unchanged", "")
    assert field_values(["hip-hop"], ["Hip-Hop"], merge) == (["hip-hop"], "unchanged", "")
    assert field_values(["Rock; HipHop"], ["Hip-Hop", "Jazz"], merge) == (["Rock", "HipHop", "Jazz"], None, "")
    assert field_values(["Alt Rock"], ["Rock", "Alternative Rock"], merge) == (["Alt Rock", "Rock"], None, "")
    assert field_values(["Trip Hop"], ["Hip-Hop"], merge)[0] == ["Trip Hop", "Hip-Hop"]  # not the same genre
    # Overwrite still means exactly the tree's spelling.
    assert field_values(["Hip Hop"], ["Hip-Hop"], TagOptions(overwrite=True)) == (["Hip-Hop"], None, "")


def test_real_file_genres_are_recognised(library_samples: Path) -> None:
    """The genres real files carry (../shared/library-samples) are the tree's, in their own spelling."""
    found = {}
    for path in sorted(library_samples.rglob("*")):
        if path.is_file() and tags.supported(path):
            for value in tags.split_genres(tags.read_genres(path)):
                found[value] = canonical(value)
    assert {"Electronic", "Metal", "Pop", "Rock", "Blues", "Dubstep"} <= set(found)
    assert {v: g.name for v, g in found.items() if g} == {
        v: v for v in ("Electronic", "Metal", "Pop", "Rock", "Blues", "Dubstep")}
    assert found.get("[stage banter]", None) is None  # a spoken-word file's odd tag is no genre
    assert [g.name for g in parents("Dubstep")] == ["Electronic"]
