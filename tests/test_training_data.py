"""training.data (GTZAN loader, feature table) and training.splits (protocols)."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile

from training.data import (
    AUDIO_EXTENSIONS,
    FEATURE_NAMES,
    GENRES,
    Clip,
    UnreadableClipWarning,
    check_readable,
    find_clips,
    load_feature_table,
    track_id,
)
from training.splits import PARTS, PROTOCOLS, Split, artist_group, get_split, shipped_list

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "gtzan"
needs_audio = pytest.mark.skipif(
    not (SHARED / "audio").is_dir(), reason=f"shared GTZAN audio not found at {SHARED / 'audio'}"
)
needs_table = pytest.mark.skipif(
    not (SHARED / "features" / "features_30_sec.csv").is_file(),
    reason=f"shared GTZAN feature table not found under {SHARED}",
)

# Every GTZAN track id: 100 per genre.
ALL_IDS = [f"{g}.{n:05d}" for g in GENRES for n in range(100)]
ALL_LABELS = [t.split(".")[0] for t in ALL_IDS]


def write_clip(path: Path, seconds: float = 0.05, sr: int = 8000) -> Path:
    """A short sine in the format named by the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    soundfile.write(path, 0.3 * np.sin(2 * np.pi * 440 * t), sr)
    return path


def ids_of(clips: list[Clip]) -> list[str]:
    return [c.track_id for c in clips]


# --- track ids ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("blues.00029.wav", "blues.00029"),
        ("blues/blues.00029.wav", "blues.00029"),
        ("genres/rock/rock.00001.au", "rock.00001"),
        ("jazz.00054.MP3", "jazz.00054"),
        ("blues.00029", "blues.00029"),  # already an id: Path.stem would give "blues"
        (Path("x") / "pop.00003.flac", "pop.00003"),
    ],
)
def test_track_id(name, expected):
    assert track_id(name) == expected


def test_constants():
    assert GENRES == tuple(sorted(GENRES)) and len(GENRES) == 10
    assert len(FEATURE_NAMES) == 57 == len(set(FEATURE_NAMES))
    assert FEATURE_NAMES[:2] == ("chroma_stft_mean", "chroma_stft_var")
    assert FEATURE_NAMES[16] == "tempo" and FEATURE_NAMES[-1] == "mfcc20_var"


# --- layouts -----------------------------------------------------------------


def test_kaggle_layout(tmp_path):
    base = tmp_path / "Data" / "genres_original"
    write_clip(base / "blues" / "blues.00000.wav")
    write_clip(base / "jazz" / "jazz.00001.wav")
    (base / "jazz" / "jazz.00054.wav").write_bytes(b"")  # as damaged in the Kaggle copy
    (tmp_path / "Data" / "images_original" / "blues").mkdir(parents=True)
    (tmp_path / "Data" / "images_original" / "blues" / "blues00000.png").write_bytes(b"png")
    for root in (tmp_path, tmp_path / "Data"):
        clips = find_clips(root)
        assert ids_of(clips) == ["blues.00000", "jazz.00001", "jazz.00054"]
        assert [c.genre for c in clips] == ["blues", "jazz", "jazz"]
        assert clips[0].path == base / "blues" / "blues.00000.wav"


def test_original_layout_au(tmp_path):
    write_clip(tmp_path / "genres" / "rock" / "rock.00001.au")
    write_clip(tmp_path / "genres" / "classical" / "classical.00002.au")
    (tmp_path / "genres" / "bextract_single.mf").write_text("not a genre")
    clips = find_clips(tmp_path)
    assert ids_of(clips) == ["classical.00002", "rock.00001"]
    ok, skipped = check_readable(clips)
    assert ok == clips and skipped == []


def test_plain_layout_every_extension(tmp_path):
    for i, ext in enumerate(AUDIO_EXTENSIONS):
        write_clip(tmp_path / "pop" / f"pop.{i:05d}{ext}")
    write_clip(tmp_path / "metal" / "METAL.00007.WAV")  # case of the suffix does not matter
    (tmp_path / "pop" / "._pop.00000.wav").write_bytes(b"\0" * 10)  # macOS resource fork
    (tmp_path / "pop" / "notes.txt").write_text("not audio")
    (tmp_path / "pop" / "sub").mkdir()
    (tmp_path / "not_a_genre").mkdir()
    write_clip(tmp_path / "not_a_genre" / "x.00000.wav")
    clips = find_clips(tmp_path)
    assert ids_of(clips) == ["METAL.00007"] + [f"pop.{i:05d}" for i in range(len(AUDIO_EXTENSIONS))]
    assert {c.path.suffix.lower() for c in clips} == set(AUDIO_EXTENSIONS)
    ok, skipped = check_readable(clips)
    assert ok == clips and skipped == []


def test_one_track_in_two_formats_keeps_lossless(tmp_path):
    write_clip(tmp_path / "blues" / "blues.00099.mp3")
    write_clip(tmp_path / "blues" / "blues.00099.wav")
    [clip] = find_clips(tmp_path)
    assert clip.path.name == "blues.00099.wav"


def test_clip_is_frozen(tmp_path):
    clip = Clip("blues.00000", "blues", tmp_path / "blues.00000.wav")
    with pytest.raises(AttributeError):
        clip.genre = "jazz"  # type: ignore[misc]


def test_missing_root_and_no_genres(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        find_clips(tmp_path / "nowhere")
    (tmp_path / "music").mkdir()
    with pytest.raises(FileNotFoundError, match="no GTZAN genre folders"):
        find_clips(tmp_path)


# --- unreadable clips --------------------------------------------------------


def test_unreadable_clips_are_skipped_with_a_warning(tmp_path):
    good = write_clip(tmp_path / "jazz" / "jazz.00053.wav")
    (tmp_path / "jazz" / "jazz.00054.wav").write_bytes(b"")
    (tmp_path / "jazz" / "jazz.00055.wav").write_bytes(b"RIFF this is not audio at all" * 8)
    write_clip(tmp_path / "jazz" / "jazz.00056.wav", seconds=0)  # valid header, no frames
    clips = find_clips(tmp_path)
    assert len(clips) == 4
    with pytest.warns(UnreadableClipWarning) as record:
        ok, skipped = check_readable(clips)
    assert [c.path for c in ok] == [good]
    assert [c.track_id for c, _ in skipped] == ["jazz.00054", "jazz.00055", "jazz.00056"]
    assert all(reason for _, reason in skipped)
    assert skipped[2][1] == "no audio frames"
    messages = [str(w.message) for w in record]
    assert len(messages) == 3
    for (clip, reason), message in zip(skipped, messages):
        assert str(clip.path) in message and reason in message


# --- shared GTZAN audio --------------------------------------------------------


@needs_audio
def test_shared_audio():
    clips = find_clips(SHARED / "audio")
    assert len(clips) == 121  # 119, then hiphop.00028 and rock.00016 (../shared/gtzan/README.md)
    assert {c.genre for c in clips} == set(GENRES)
    assert all(c.track_id.startswith(c.genre + ".") for c in clips)
    assert next(c for c in clips if c.track_id == "blues.00099").path.suffix == ".mp3"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreadableClipWarning)
        ok, skipped = check_readable(clips)  # jazz.00054 here is a good copy
    assert len(ok) == 121 and skipped == []
    split = get_split("fault-filtered", ids_of(clips), [c.genre for c in clips])
    assert split.counts() == {
        "train": {"found": 50, "listed": 443},
        "valid": {"found": 54, "listed": 197},
        "test": {"found": 9, "listed": 290},
    }


# --- feature table -----------------------------------------------------------


def test_load_feature_table_made_up(tmp_path):
    csv_path = tmp_path / "features.csv"
    header = ["filename", "length", *FEATURE_NAMES, "label"]
    rows = [
        ["blues.00000.wav", "661794", *[str(i) for i in range(57)], "blues"],
        ["rock.00099.wav", "661500", *[str(-i / 2) for i in range(57)], "rock"],
    ]
    csv_path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    ids, X, y, names = load_feature_table(csv_path)
    assert ids == ["blues.00000", "rock.00099"]
    assert y == ["blues", "rock"]
    assert names == list(FEATURE_NAMES)
    assert X.dtype == np.float64 and X.shape == (2, 57)
    assert X[0, 56] == 56.0 and X[1, 1] == -0.5


def test_load_feature_table_keeps_csv_column_order(tmp_path):
    csv_path = tmp_path / "f.csv"
    csv_path.write_text("label,tempo,filename,rms_mean\npop,120.5,pop.00001.wav,0.25\n")
    ids, X, y, names = load_feature_table(csv_path)
    assert (ids, y, names) == (["pop.00001"], ["pop"], ["tempo", "rms_mean"])
    assert X.tolist() == [[120.5, 0.25]]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("filename,tempo\nx.wav,1\n", "no label"),
        ("filename,tempo,label\nx.wav,fast,pop\n", ":2:"),
        ("filename,tempo,label\nx.wav,1\n", "2 fields"),
    ],
)
def test_load_feature_table_errors(tmp_path, text, match):
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_feature_table(csv_path)


@needs_table
def test_load_shared_feature_table():
    ids, X, y, names = load_feature_table(SHARED / "features" / "features_30_sec.csv")
    assert X.shape == (1000, 57) and X.dtype == np.float64
    assert tuple(names) == FEATURE_NAMES
    assert sorted(set(y)) == list(GENRES)
    assert sorted(ids) == sorted(ALL_IDS)
    assert np.isfinite(X).all()


# --- shipped lists -----------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "sizes"),
    [("fault-filtered", (443, 197, 290)), ("stratified", (500, 250, 250))],
)
def test_shipped_lists(protocol, sizes):
    lists = [shipped_list(protocol, part) for part in PARTS]
    assert tuple(map(len, lists)) == sizes
    assert all(t in set(ALL_IDS) for ids in lists for t in ids)
    split = get_split(protocol, ALL_IDS, ALL_LABELS)
    assert [split.train, split.valid, split.test] == lists
    assert split.counts() == {
        p: {"found": n, "listed": n} for p, n in zip(PARTS, sizes)
    }
    assert len(split.unused) == 1000 - sum(sizes)


@needs_audio
@pytest.mark.parametrize("name", ["filtered", "stratified"])
def test_shipped_lists_equal_shared(name):
    protocol = "fault-filtered" if name == "filtered" else name
    for part in PARTS:
        lines = (SHARED / "splits" / f"{part}_{name}.txt").read_text().split()
        assert shipped_list(protocol, part) == [track_id(line) for line in lines]


# --- protocols ---------------------------------------------------------------


def test_matching_by_name_whatever_the_extension(tmp_path):
    # blues.00029/30 are fault-filtered train, blues.00000 valid, blues.00012 test.
    write_clip(tmp_path / "genres" / "blues" / "blues.00029.au")
    write_clip(tmp_path / "genres" / "blues" / "blues.00030.flac")
    write_clip(tmp_path / "genres" / "blues" / "blues.00000.mp3")
    write_clip(tmp_path / "genres" / "blues" / "blues.00012.ogg")
    write_clip(tmp_path / "genres" / "blues" / "blues.99999.wav")  # not in any list
    clips = find_clips(tmp_path)
    split = get_split("fault-filtered", ids_of(clips), [c.genre for c in clips])
    assert split.train == ["blues.00029", "blues.00030"]
    assert split.valid == ["blues.00000"]
    assert split.test == ["blues.00012"]
    assert split.unused == ["blues.99999"]
    assert split.counts() == {
        "train": {"found": 2, "listed": 443},
        "valid": {"found": 1, "listed": 197},
        "test": {"found": 1, "listed": 290},
    }


def _assert_disjoint(split: Split, ids: list[str]):
    parts = [set(split.train), set(split.valid), set(split.test)]
    assert sum(map(len, parts)) == len(split.train) + len(split.valid) + len(split.test)
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) <= set(ids)
    assert set().union(*parts) | set(split.unused) == set(ids)


@pytest.mark.parametrize("protocol", [p for p in PROTOCOLS if p != "slice-random"])
def test_no_track_in_two_parts(protocol):
    subset = ALL_IDS[::3]  # partial collections too
    for ids in (ALL_IDS, subset):
        split = get_split(protocol, ids, [t.split(".")[0] for t in ids])
        assert split.name == protocol
        assert not split.leaky and not split.slice_level
        _assert_disjoint(split, ids)


def test_protocol_flags():
    flags = {
        p: (s.leaky, s.slice_level, s.artist_disjoint)
        for p in PROTOCOLS
        for s in [get_split(p, ALL_IDS, ALL_LABELS)]
    }
    assert flags == {
        "fault-filtered": (False, False, True),
        "stratified": (False, False, False),
        "kfold": (False, False, False),
        "artist-kfold": (False, False, True),
        "slice-random": (True, True, False),
    }
    assert PROTOCOLS[0] == "fault-filtered"


@pytest.mark.parametrize("k", [3, 5, 10])
def test_kfold_folds_partition_all_ids(k):
    splits = [get_split("kfold", ALL_IDS, ALL_LABELS, k=k, fold=f, seed=3) for f in range(k)]
    tests = [s.test for s in splits]
    assert sorted(t for fold in tests for t in fold) == sorted(ALL_IDS)
    for f, split in enumerate(splits):
        _assert_disjoint(split, ALL_IDS)
        assert split.unused == []
        assert split.valid == tests[(f + 1) % k]  # valid is the next fold, from the training folds
        assert len(split.train) + len(split.valid) + len(split.test) == 1000
        sizes = sorted(map(len, tests))
        assert sizes[-1] - sizes[0] <= 1
    if k == 10:  # stratified: every genre has exactly 10 clips in every fold
        for fold in tests:
            assert sorted({t.split(".")[0] for t in fold}) == list(GENRES)
            assert all(sum(t.startswith(g + ".") for t in fold) == 10 for g in GENRES)


def test_slice_random_parts():
    split = get_split("slice-random", ALL_IDS, ALL_LABELS, seed=1)
    _assert_disjoint(split, ALL_IDS)
    assert split.counts() == {
        "train": {"found": 500, "listed": 500},
        "valid": {"found": 250, "listed": 250},
        "test": {"found": 250, "listed": 250},
    }
    for part in (split.train, split.valid, split.test):  # stratified
        genres = [t.split(".")[0] for t in part]
        assert len({genres.count(g) for g in GENRES}) == 1


def test_slice_indices():
    slices = [t for t in ALL_IDS for _ in range(10)]  # ten 3 s slices per clip
    honest = get_split("stratified", ALL_IDS, ALL_LABELS)
    train, valid, test = honest.slice_indices(slices)
    assert (len(train), len(valid), len(test)) == (5000, 2500, 2500)
    assert {slices[i] for i in train} == set(honest.train)
    assert {slices[i] for i in test} == set(honest.test)

    leaky = get_split("slice-random", ALL_IDS, ALL_LABELS, seed=0)
    train, valid, test = leaky.slice_indices(slices)
    assert (len(train), len(valid), len(test)) == (5000, 2500, 2500)
    assert sorted(np.concatenate([train, valid, test]).tolist()) == list(range(10000))
    shared = {slices[i] for i in train} & {slices[i] for i in test}
    assert len(shared) > 100  # the leak: one recording's slices on both sides
    again = leaky.slice_indices(slices)
    assert all(np.array_equal(a, b) for a, b in zip((train, valid, test), again))


@pytest.mark.parametrize("protocol", ["kfold", "slice-random"])
def test_generated_splits_are_deterministic(protocol):
    a = get_split(protocol, ALL_IDS, ALL_LABELS, seed=7, fold=2)
    b = get_split(protocol, ALL_IDS, ALL_LABELS, seed=7, fold=2)
    order = list(range(1000))
    random.Random(0).shuffle(order)
    c = get_split(protocol, [ALL_IDS[i] for i in order], [ALL_LABELS[i] for i in order], seed=7, fold=2)
    d = get_split(protocol, ALL_IDS, ALL_LABELS, seed=8, fold=2)
    assert a == b
    assert (a.train, a.valid, a.test) == (c.train, c.valid, c.test)
    assert a.test != d.test


def test_get_split_errors():
    with pytest.raises(ValueError, match="unknown split protocol"):
        get_split("random", ALL_IDS, ALL_LABELS)
    with pytest.raises(ValueError, match="labels"):
        get_split("kfold", ALL_IDS, ALL_LABELS[:-1])
    with pytest.raises(ValueError, match="duplicate"):
        get_split("kfold", ALL_IDS + ALL_IDS[:1], ALL_LABELS + ALL_LABELS[:1])
    with pytest.raises(ValueError, match="fold"):
        get_split("kfold", ALL_IDS, ALL_LABELS, k=5, fold=5)
    with pytest.raises(ValueError, match="k="):
        get_split("kfold", ALL_IDS, ALL_LABELS, k=2)
    with pytest.raises(ValueError, match="no shipped lists"):
        shipped_list("kfold", "train")


# --- svc recipe search (the pieces a model file depends on) -----------------


def research(name: str):
    """A research script of scripts/ (not installed), imported from the checkout."""
    import importlib.util
    import sys

    if f"scripts.{name}" in sys.modules:
        return sys.modules[f"scripts.{name}"]
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"scripts.{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_svc_recipe_pipeline_is_stock_and_finite():
    import pickle

    svc_search = research("svc_search")

    recipe = next(r for r in svc_search.RECIPES if r.name == "logvar-top5")
    rng = np.random.default_rng(0)
    X = np.abs(rng.normal(1.0, 0.3, size=(60, 57)))
    y = np.array([GENRES[i % 10] for i in range(60)])
    X[0, [i for i, n in enumerate(FEATURE_NAMES) if n.endswith("_var")]] = 0.0  # a silent track
    params = [(1.0, 0.01), (10.0, 0.01), (1.0, 0.001), (10.0, 0.001), (100.0, 0.001)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # SVC(probability=True), sklearn >= 1.9
        model = svc_search.build(recipe, list(FEATURE_NAMES), params).fit(X, y)
        proba = model.predict_proba(X[:3])
    assert np.isfinite(model[:-1].transform(X)).all()
    assert proba.shape == (3, 10) and np.allclose(proba.sum(1), 1)
    assert list(model.classes_) == list(GENRES)
    assert b"training" not in pickle.dumps(model)  # loads without this package


def test_dev_folds_keep_artists_together():
    dev_folds = research("svc_search").dev_folds

    labels = [g for g in GENRES for _ in range(20)]
    groups = [f"{g}-artist{i // 4}" for g in GENRES for i in range(20)]  # 5 artists per genre
    folds = dev_folds(labels, groups, n_folds=5, repeats=2, seed=0)
    assert len(folds) == 10
    for train, valid, test in folds:
        assert sorted(np.concatenate([train, valid, test]).tolist()) == list(range(200))
        for a, b in ((train, valid), (train, test), (valid, test)):
            assert not {groups[i] for i in a} & {groups[i] for i in b}
        assert sorted({labels[i] for i in test}) == list(GENRES)


def test_read_artists(tmp_path):
    read_artists = research("svc_search").read_artists

    index = tmp_path / "index.txt"
    index.write_text(
        "## header ::: not a clip\n"
        "blues.00000.wav ::: John Lee Hooker ::: One Bourbon\n"
        "blues.00004.wav ::: John Lee Hooker ::: \n"
        "jazz.00054.wav :::  ::: \n"
    )
    assert read_artists(index) == {"blues.00000": "john lee hooker", "blues.00004": "john lee hooker"}


@pytest.mark.parametrize("subset", [slice(None), slice(None, None, 7)])
def test_artist_kfold_never_puts_an_artist_in_two_parts(subset):
    ids = ALL_IDS[subset]
    labels = [t.split(".")[0] for t in ids]
    k = 5
    splits = [get_split("artist-kfold", ids, labels, k=k, fold=f, seed=1) for f in range(k)]
    tests = [s.test for s in splits]
    assert sorted(t for fold in tests for t in fold) == sorted(ids)  # every clip tested exactly once
    for f, split in enumerate(splits):
        _assert_disjoint(split, ids)
        assert split.valid == tests[(f + 1) % k]
        groups = [{artist_group(t, t.split(".")[0]) for t in part} for part in split.parts().values()]
        assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    sizes = [len(t) for t in tests]
    assert max(sizes) - min(sizes) <= 0.25 * len(ids) / k + 12  # one artist can hold a dozen clips


def test_artist_kfold_groups_known_artists_and_the_unknown():
    assert artist_group("blues.00000", "blues") == artist_group("blues.00001", "blues") == "john lee hooker"
    assert artist_group("blues.00082", "blues") == "buckwheat zydeco"
    blank = [t for t in ALL_IDS if artist_group(t, t.split(".")[0]).startswith("unknown artist:")]
    assert blank and all(artist_group(t, "metal") == "unknown artist:metal" for t in blank)
    assert artist_group("mysong", "rock") == "unindexed:mysong"
    # Bob Marley's clips travel together, whatever the seed and the order of the ids.
    ids = [t for t in ALL_IDS if t.startswith(("reggae.", "rock."))]
    labels = [t.split(".")[0] for t in ids]
    for seed in (0, 1):
        a = get_split("artist-kfold", ids, labels, k=4, fold=2, seed=seed)
        b = get_split("artist-kfold", ids[::-1], labels[::-1], k=4, fold=2, seed=seed)
        assert a == b
        marley = [t for t in ids if artist_group(t, "reggae") == "bob marley"]
        assert len(marley) > 10
        assert sum(t in a.test for t in marley) in (0, len(marley))


def test_artist_kfold_errors():
    with pytest.raises(ValueError, match="artist-kfold needs 3 <= k <= 2 artists"):
        get_split("artist-kfold", ["blues.00000", "blues.00001", "rock.00000"], ["blues", "blues", "rock"], k=3)
