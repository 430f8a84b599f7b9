"""Large libraries (issue 25): rows print as they are read, nothing holds every file, albums group lazily;
and text from files reaches the terminal escaped (issue 22, item 10).

The caches here are filled through the cache API (rows as a scan leaves
them) over small real FLAC files, so no audio is analysed.  "Streams" is
tested structurally: a wrapped query records what the command had printed
before each record was handed out, and the first row must be out before
the last record is read.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audiofiles import add_test_tags, make_audio
from tagger.cli import cli
from tagger.decide import albums
from tagger.store.cache import READ, Cache, JournalStore
from tagger.store.track import Track
from tagger.views import ui
from tagger.write import journal, tagging
from tagger.write.tagging import TagOptions

ESC_NAME = "evil\x1b]0;owned\x07\x1b[2J.flac"  # retitles the window, clears the screen
ESC_GENRE = "Rock\x1b[31m\x00"


def fill(tmp_path: Path, n: int, name: Callable[[int], str] = lambda i: f"{i:03d}.flac",
         genres: list[str] | None = None) -> tuple[Path, Path, list[Path]]:
    """``n`` real FLAC files under Music/ and their cached rows (status ok, genre rock); returns db, root, files."""
    root = tmp_path / "Music"
    root.mkdir()
    first = make_audio(tmp_path / "clip.flac", "flac", seconds=0.3)
    if genres:
        add_test_tags(first, genres=genres, cover=None)
    files = []
    for i in range(n):
        files.append(root / name(i))
        shutil.copyfile(first, files[-1])
    db = tmp_path / "g.db"
    rows = []
    for path in files:
        st = path.stat()
        rows.append(Track.row(path=str(path), size=st.st_size, mtime=st.st_mtime, status="ok", genre="rock",
                              confidence=0.9, probabilities={"rock": 0.9, "jazz": 0.1}, backend="svc",
                              model_id="test", missing=False, file_genres=genres or [], artist="A"))
    with Cache(db) as cache:
        cache.write_results(rows)
        cache.start_scan([str(root)], "svc", "test")
    return db, root, files


def watch(monkeypatch: pytest.MonkeyPatch, method: str, capsys: pytest.CaptureFixture[str],
          wanted: Callable[[dict[str, Any]], bool] = lambda kw: True, owner: type = Cache) -> list[str]:
    """Wrap ``owner.<method>``: the list gets, before each record is handed out, what was printed since the last."""
    printed: list[str] = []
    original = getattr(owner, method)

    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for item in original(self, *args, **kwargs):
            if wanted(kwargs):
                printed.append(capsys.readouterr().out)
            yield item

    monkeypatch.setattr(owner, method, wrapped)
    return printed


def main(*args: str) -> None:
    """The command line in this process, so capsys sees its output as it is written."""
    try:
        cli.main(list(args), standalone_mode=False)
    except SystemExit as exc:
        assert exc.code in (0, None)


@pytest.mark.parametrize("fmt", [[], ["--json"], ["--json-lines"]])
def test_show_prints_the_first_row_before_the_last_record_is_read(tmp_path: Path, capsys, monkeypatch,
                                                                 fmt: list[str]) -> None:
    db, _, files = fill(tmp_path, 6)
    monkeypatch.setattr(ui, "SAMPLE_ROWS", 2, raising=False)
    printed = watch(monkeypatch, "records", capsys)
    main("show", "--db", str(db), *fmt)
    out = "".join(printed) + capsys.readouterr().out
    assert len(printed) == 6 and files[0].name in "".join(printed[:-1])  # out while records were still coming
    if fmt == ["--json"]:
        assert [r["path"] for r in json.loads(out)] == [str(f) for f in files]
    elif fmt:
        assert [json.loads(line)["path"] for line in out.splitlines()] == [str(f) for f in files]
    else:
        assert all(f.name in out for f in files) and out.splitlines()[0].split() == ["file", "genre", "conf.",
                                                                                     "top", "3", "status"]


@pytest.mark.parametrize("fmt", [[], ["--json"], ["--json-lines"]])
def test_tag_dry_run_prints_each_file_as_it_goes(tmp_path: Path, capsys, monkeypatch, fmt: list[str]) -> None:
    db, root, files = fill(tmp_path, 6)
    monkeypatch.setattr(ui, "SAMPLE_ROWS", 2, raising=False)
    printed = watch(monkeypatch, "records", capsys)
    main("tag", str(root), "--db", str(db), "--dry-run", "--no-progress", *fmt)
    out = "".join(printed) + capsys.readouterr().out
    assert files[0].name in "".join(printed[:-1])
    if fmt == ["--json"]:
        data = json.loads(out)  # one document, streamed: files first, the summary after them
        assert list(data)[:2] == ["files", "counts"] and data["counts"] == {"would write": 6}
        assert [f["path"] for f in data["files"]] == [str(f) for f in files]
    elif fmt:
        *rows, last = [json.loads(line) for line in out.splitlines()]
        assert len(rows) == 6 and last["summary"]["counts"] == {"would write": 6}
    else:
        assert sum("would write" in line for line in out.splitlines()) == 6


def test_undo_prints_each_file_as_it_goes(tmp_path: Path, capsys, monkeypatch) -> None:
    db, root, files = fill(tmp_path, 4)
    main("tag", str(root), "--db", str(db), "--no-progress", "--json")
    assert {f["action"] for f in json.loads(capsys.readouterr().out)["files"]} == {"written"}
    monkeypatch.setattr(ui, "SAMPLE_ROWS", 1, raising=False)  # undo groups writes by file: its row is known one record later
    printed = watch(monkeypatch, "open_writes", capsys, lambda kw: not kw, JournalStore)  # undo's own listing, not settle's
    main("undo", str(root), "--db", str(db), "--dry-run", "--no-progress")
    assert len(printed) == 4 and files[0].name in "".join(printed[:-1])


def test_a_run_keeps_counts_not_a_list_of_every_file(tmp_path: Path) -> None:
    db, root, files = fill(tmp_path, 12)
    got: list[journal.FileResult] = []
    with Cache(db, "write") as cache:
        outcome = journal.apply(cache, TagOptions(dry_run=True), [str(root)], sink=got.append)
        undone = journal.undo(cache, [str(root)], sink=got.append)
    assert [r.path for r in got] == [str(f) for f in files] and outcome.counts == {"would write": 12}
    assert outcome.files == 12 and undone.files == 0
    for held in (outcome, undone):  # nothing in the outcome grows with the files
        assert not [k for k, v in vars(held).items() if isinstance(v, (list, dict, set)) and len(v) >= 12], vars(held)


# ---------------------------------------------------------------------------
# Album mode, lazily.


def album_rows(n_albums: int = 30, per: int = 4, seed: int = 0) -> list[Track]:
    """Albums in their own folders, some sharing a name across artists, untagged folders and loose files."""
    rng = random.Random(seed)
    rows = []
    for a in range(n_albums):
        name = f"Hits {a % 7}"  # one name, several artists: one block
        artist = f"Artist {a}"
        for t in range(per):
            tagged = a % 5 != 0
            rows.append(Track(path=f"/m/{artist}/{name}/{t:02d}.flac", status="ok", missing=False,
                              probabilities={"rock": rng.random(), "jazz": rng.random()}, excerpt_seconds=30.0,
                              artist=artist if a % 9 else f"Guest {t}", album=name if tagged else None,
                              album_artist=artist if a % 3 == 0 else None, compilation=a % 11 == 0 or None,
                              file_genres=[]))
    rows += [Track(path=f"/m/loose{i}.flac", status="ok", missing=False, probabilities={"rock": 1.0},
                   file_genres=[]) for i in range(3)]
    return rows


def rank(track: Track) -> list[tuple[str, float]]:
    return sorted((track.probabilities or {}).items(), key=lambda kv: -kv[1])


class CountingCache:
    """Gives album mode its records (already in album order) and counts how many it has taken."""

    def __init__(self, rows: list[Track]) -> None:
        self.rows, self.pulled = rows, 0

    def _stream(self) -> Iterator[Track]:
        for row in self.rows:
            self.pulled += 1
            yield row

    def records(self, paths: Any = (), **kwargs: Any) -> Iterator[Track]:
        return self._stream()

    def records_grouped(self, paths: Any, block: Any, keys: Callable[[Iterator[Track]], Iterator[str]]) -> Any:
        return zip(keys(iter(self.rows)), self._stream())  # the keys' pass is the cache's: only the second counts

    def scan_roots(self) -> list[str]:
        return ["/m"]


def summary(plan: list[albums.Album]) -> list[tuple[Any, ...]]:
    return sorted((a.key, a.name, [r.path for r in a.rows], a.not_averaged, a.ranking, a.abstained,
                   sorted(a.outliers)) for a in plan)


def test_album_plan_takes_one_album_of_records_at_a_time() -> None:
    rows = album_rows()
    by_block = sorted(rows, key=lambda r: (albums.block(r, albums.ALBUM), r.path.rsplit("/", 1)[0], r.path))
    keys = list(albums.album_keys(by_block, albums.ALBUM))
    ordered = [r for _, _, r in sorted(zip(keys, range(len(keys)), by_block), key=lambda kir: kir[:2])]
    cache = CountingCache(ordered)
    plan = iter(tagging.album_plan(cache, [], albums.ALBUM))  # type: ignore[arg-type]
    first = next(plan)
    assert cache.pulled <= sorted(keys).count(sorted(keys)[0]) + 1  # one album's records and one look-ahead
    assert cache.pulled < len(rows) // 10  # not the library
    hits = [a for a in albums.plan(rows, albums.ALBUM, rank, roots=["/m"]) if a.name.endswith("Hits 1")]
    assert len(hits) > 1  # albums sharing a name are separate albums, each taken on its own
    got = [first, *plan]
    assert cache.pulled == len(rows)
    shuffled = random.Random(1).sample(rows, len(rows))  # the list API, any order: the same albums, decided alike
    assert summary(got) == summary(albums.plan(shuffled, albums.ALBUM, rank, roots=["/m"]))


@pytest.mark.parametrize("by", [albums.ALBUM, albums.FOLDER])
def test_the_cache_orders_records_for_grouping(tmp_path: Path, by: str, monkeypatch) -> None:
    from tagger.store import cache as cache_module

    monkeypatch.setattr(cache_module, "READ_PAGE", 7)  # many pages and key batches, a short last one
    rows = album_rows(seed=3)
    db = tmp_path / "g.db"
    with Cache(db) as cache:
        cache.write_results([{**r.to_row(), "path": r.path} for r in random.Random(2).sample(rows, len(rows))])
    with Cache(db, READ) as cache:  # a read-only database: the order is kept in a temporary table
        pairs = cache.records_grouped([], lambda t: albums.block(t, by), lambda ts: albums.album_keys(ts, by))
        streamed = list(albums.plan_sorted(pairs, by, rank, roots=["/m"]))
        listed = albums.plan(list(cache.records()), by, rank, roots=["/m"])
    assert summary(streamed) == summary(listed) and len(listed) > 10


# ---------------------------------------------------------------------------
# Terminal escapes in names and tags (issue 22, item 10).


def test_printable_escapes_what_a_terminal_would_act_on() -> None:
    from tagger.common.jsontext import printable

    assert printable("a\x1b[2Jb\x00c\x9bd\u202ee\nf\udce9") == "a\\x1b[2Jb\\x00c\\x9bd\\u202ee\\x0af\\xe9"
    assert printable("Électro – Café") == "Électro – Café"


def test_show_and_tag_never_print_raw_escapes(tmp_path: Path, capsys) -> None:
    db, root, files = fill(tmp_path, 2, name=lambda i: f"{i}{ESC_NAME}", genres=[ESC_GENRE])
    with Cache(db) as cache:
        cache.write_results([Track.row(path=str(files[1]), status="error", error=f"cannot decode {ESC_NAME}")])
    for args in (["show"], ["show", "--by", "album"], ["tag", str(root), "--dry-run", "--overwrite", "--no-progress"]):
        main(*args, "--db", str(db))
        shown = capsys.readouterr()
        text = shown.out + shown.err
        assert "\x1b" not in text and "\x00" not in text and "\x07" not in text, args
        assert "\\x1b]0;owned\\x07" in shown.out, args
    main("tag", str(root), "--dry-run", "--overwrite", "--db", str(db), "--no-progress")
    assert "Rock\\x1b[31m\\x00" in capsys.readouterr().out  # the file's current genre, visible
    main("show", "--db", str(db), "--json")  # JSON stays exact
    assert [r["path"] for r in json.loads(capsys.readouterr().out)] == [str(f) for f in files]


def test_learn_never_prints_raw_escapes(tmp_path: Path, capsys) -> None:
    learnlib = pytest.importorskip("learnlib")
    if not (Path(__file__).resolve().parents[1] / "plugins" / "models" / "musicnn_msd.npz").is_file():
        pytest.skip("musicnn weights not installed")
    db, root = tmp_path / "g.db", tmp_path / "music"
    learnlib.fill(db, root, signal=["Alpha\x1b[2J", "Beta\x00", "Delta", "Epsilon"], random=["Gamma\x1b]0;x\x07"],
                  random_share=0.02, artists_per_genre=4, files_per_artist=6, strength=6.0)
    main("learn", str(root), "--db", str(db), "--dry-run")
    shown = capsys.readouterr()
    text = shown.out + shown.err
    assert "\x1b" not in text and "\x00" not in text and "\x07" not in text
    assert "Delta" in shown.out  # learn ran; genres no tag may hold are left out (tagger.inference.outputs.acceptable_label)


# ---------------------------------------------------------------------------
# learn's head at scale (plugins/ovr_logistic.py).


def test_ovr_logistic_fits_each_label_as_scikit_learn_does() -> None:
    from sklearn.linear_model import LogisticRegression

    from plugins import ovr_logistic

    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 6)) @ rng.normal(size=(6, 6))  # correlated inputs
    hot = X @ rng.normal(size=(6, 3)) + rng.normal(size=(1500, 3)) > 0.5
    y = [[g for g, on in zip("abc", row) if on] for row in hot]
    ours = ovr_logistic.OvRLogistic(C=0.5, tol=1e-8, max_iter=1000)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ovr_logistic, "BLOCK", 400, raising=False)  # several blocks, the last one short
        ours.fit(X, y)
    for j, label in enumerate(ours.classes_):
        theirs = LogisticRegression(C=0.5, tol=1e-10, max_iter=5000).fit(X, [label in s for s in y])
        np.testing.assert_allclose(ours.coef_[j], theirs.coef_[0], atol=5e-3)
        np.testing.assert_allclose(ours.intercept_[j], theirs.intercept_[0], atol=5e-3)


def test_ovr_logistic_holds_no_samples_by_labels_matrix() -> None:
    """Structural: fitting 20,000 samples x 200 labels allocates less than one (samples x labels) float32 matrix."""
    import tracemalloc

    from plugins import ovr_logistic

    rng = np.random.default_rng(1)
    n, labels = 20_000, 200
    X = rng.normal(size=(n, 16)).astype(np.float32)
    y = [[f"g{k}"] for k in rng.integers(0, labels, n)]
    tracemalloc.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ovr_logistic, "BLOCK", 1024, raising=False)  # products and temporaries are a block's, whatever n
            ovr_logistic.OvRLogistic(C=0.1, max_iter=3).fit(X, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < n * labels * 4, f"{peak / 1e6:.1f} MB"  # before: the targets alone were n x labels float64
