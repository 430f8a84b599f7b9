"""The beets plugin (beetsplug/genretag.py) run through beets' own command line against a real library.

Issue 21.  Each test gets a beets library in a temporary folder: real
files of four formats made by tests/audiofiles.py, imported with
``beet import`` (as-is, in place), analysed once per module with the
shipped default model (fusion) into a genretag database the config names.
beets runs in a subprocess (``python -m beets``), so the plugin is found
the way beets finds it: in the ``beetsplug`` namespace, by its name in
``plugins:``.  What is checked is beets' database (through beets' Library),
the files' tags and audio, and what the command prints.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from audiofiles import add_test_tags, decode, make_audio
from tagger.media.tags import read_genres

beets = pytest.importorskip("beets", reason="beets is not installed (pip install 'genretag[beets]')")
import beetsplug.genretag as plugin  # noqa: E402  (with beets present, a plugin that fails to import fails here)

#: name -> (folder, format, signal, seed); a1 is one album of three tracks, a2 one of one.
FILES = {
    "t0.flac": ("a1", "flac", "tone", 0),
    "t1.mp3": ("a1", "mp3", "noise", 1),
    "t2.ogg": ("a1", "ogg", "tone", 2),
    "s0.m4a": ("a2", "m4a-aac", "noise", 3),
}
CONFIG = """\
directory: {root}/lib
library: {root}/library.db
plugins: genretag
import:
  write: yes
  copy: no
  autotag: no
  quiet: yes
genretag:
  db: {root}/genretag.db
  jobs: {jobs}
  abstain_below: {min_confidence}
{extra}"""


def write_config(root: Path, extra: str = "", jobs: int = 0, min_confidence: str = "0") -> None:
    """config.yaml: the library, as-is imports in place, and a genretag: section (``extra`` adds to it).

    ``jobs`` 0 analyses in beets' process; ``min_confidence`` (the abstain_below key) 0 never abstains (the
    test audio is tones and noise).
    """
    text = CONFIG.format(root=root, jobs=jobs, min_confidence=min_confidence, extra=textwrap.indent(extra, "  "))
    (root / "config.yaml").write_text(text)


def beet(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m beets <args>`` with its config folder at ``root`` (BEETSDIR)."""
    env = {**os.environ, "BEETSDIR": str(root)}
    env.pop("GENRETAG_BACKEND", None)  # the plugin's own default (genretag's: fusion) must be what runs
    done = subprocess.run([sys.executable, "-m", "beets", *args], env=env, capture_output=True, text=True,
                          timeout=600)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def library_items(root: Path) -> dict[str, dict]:
    """Every item in beets' database by title (the original file name): genres and genretag's flexible attributes."""
    from beets.library import Library

    lib = Library(str(root / "library.db"))
    try:
        return {
            item.title: {
                "genres": list(item.genres) if "genres" in item._fields else [item.genre] if item.genre else [],
                **{k: item.get(k) for k in ("genretag_confidence", "genretag_model", "genretag_abstained",
                                              "genretag_previous")},
            }
            for item in lib.items()
        }
    finally:
        lib._close()


def make_files(folder: Path, names: dict[str, tuple[str, str, str, int]]) -> list[Path]:
    out = []
    for name, (sub, fmt, kind, seed) in names.items():
        (folder / sub).mkdir(parents=True, exist_ok=True)
        path = make_audio(folder / sub / name, fmt, seconds=4.0, kind=kind, seed=seed)
        add_test_tags(path, artist="Art", title=name, album=f"Album {sub}", album_artist="Art",
                      genres=["Jazz"] if name == "t0.flac" else None)
        out.append(path)
    return out


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A library imported into beets and analysed once: (its folder, a pristine copy to restore it from).

    The analysis (fusion, in this process) also covers ``incoming/``, files
    not yet in beets, for the import hook.
    """
    from tagger.cli import cli

    root = tmp_path_factory.mktemp("beets") / "lib"
    root.mkdir()
    make_files(root / "music", FILES)
    make_files(root / "incoming", {"n0.flac": ("a3", "flac", "tone", 4)})
    write_config(root)
    result = CliRunner().invoke(cli, ["scan", str(root / "music"), str(root / "incoming"), "--backend", "fusion",
                                      "--db", str(root / "genretag.db"), "--jobs", "0", "--min-confidence", "0"])
    assert result.exit_code == 0, result.output
    beet(root, "import", str(root / "music"))
    pristine = root.parent / "pristine"
    shutil.copytree(root, pristine)  # copy2: mtimes kept, so the cache still knows the files
    return root, pristine


@pytest.fixture
def lib(template: tuple[Path, Path]) -> Path:
    """The template library as it was after import, at the same paths (so genretag's cache applies)."""
    root, pristine = template
    shutil.rmtree(root)
    shutil.copytree(pristine, root)
    return root


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def music(root: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted((root / "music").rglob("*.*"))}


# ---------------------------------------------------------------------------
# Points 1, 2, 6: `beet genretag` sets beets' genres, beets writes them, flexible attributes answer queries.


@pytest.mark.slow
def test_sets_genres_in_beets_and_files_through_beets(lib: Path) -> None:
    files = music(lib)
    audio = {name: decode(path)[0] for name, path in files.items()}
    done = beet(lib, "genretag")
    assert "0 analysed, 4 from genretag's cache" in done.stdout, done.stdout  # same cache as `genretag scan`
    items = library_items(lib)
    assert items["t0.flac"]["genres"] == ["Jazz"], "existing: keep (the default) keeps a genre already there"
    assert "kept existing" in done.stdout
    for name in ("t1.mp3", "t2.ogg", "s0.m4a"):
        item = items[name]
        assert len(item["genres"]) == 1 and item["genres"][0], item
        assert read_genres(files[name]) == item["genres"], f"{name}: beets' database and the file disagree"
        assert item["genretag_model"].startswith("fusion "), item
        assert 0.0 < float(item["genretag_confidence"]) <= 1.0
        assert item["genretag_abstained"] is None  # min_confidence 0: nothing abstains
    assert float(items["t0.flac"]["genretag_confidence"]) > 0  # analysed and stored even when kept
    for name, path in files.items():
        assert np.array_equal(decode(path)[0], audio[name]), f"{name}: audio changed"
    # The flexible attributes answer beets' queries (a numeric range on the confidence).
    confidences = sorted(float(i["genretag_confidence"]) for i in items.values())
    listed = beet(lib, "ls", "-f", "$path", f"genretag_confidence:{confidences[1]}..").stdout.split()
    assert len(listed) == 3, listed
    assert beet(lib, "ls", "genretag_confidence:1.01..").stdout.strip() == ""
    # beets wrote the files: genretag's cache followed, so the next run analyses nothing again.
    again = beet(lib, "genretag", "-p")
    assert "0 analysed, 4 from genretag's cache" in again.stdout, again.stdout


@pytest.mark.slow
def test_pretend_lists_and_changes_nothing(lib: Path) -> None:
    before = {name: digest(path) for name, path in music(lib).items()}
    db_before = digest(lib / "library.db")
    done = beet(lib, "genretag", "--pretend")
    lines = {line.split(":")[0]: line for line in done.stdout.splitlines() if line.startswith("Art - ")}
    assert len(lines) == 4, done.stdout
    for title in ("t1.mp3", "t2.ogg", "s0.m4a"):  # item, old genre, proposed genre, confidence
        line = lines[f"Art - Album {'a2' if title == 's0.m4a' else 'a1'} - {title}"]
        assert " (none) -> " in line and line.endswith("[pretend]") and "(0." in line, line
    assert "Jazz (kept existing" in lines["Art - Album a1 - t0.flac"]
    assert "3 would set" in done.stdout
    assert {name: digest(path) for name, path in music(lib).items()} == before
    assert digest(lib / "library.db") == db_before
    assert all(i["genretag_confidence"] is None and i["genres"] in ([], ["Jazz"]) for i in library_items(lib).values())


@pytest.mark.slow
def test_write_above_and_the_deprecated_min_confidence(lib: Path) -> None:
    """write_above is the setting's own knob; the old min_confidence key still works (both knobs), with a note."""
    write_config(lib, "write_above: 1\n")
    done = beet(lib, "genretag", "--pretend")
    assert "below threshold" in done.stdout and "would set" not in done.stdout, done.stdout
    assert "deprecated" not in done.stderr
    write_config(lib, "min_confidence: 1\n", min_confidence="null")
    done = beet(lib, "genretag", "--pretend")
    assert "genretag.min_confidence is deprecated" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "abstained" in done.stdout and "would set" not in done.stdout, done.stdout  # abstain below 1


@pytest.mark.slow
def test_nowrite_changes_the_database_only_and_overwrite_merge(lib: Path) -> None:
    before = {name: digest(path) for name, path in music(lib).items()}
    beet(lib, "genretag", "--nowrite", "--existing", "merge")
    items = library_items(lib)
    assert {name: digest(path) for name, path in music(lib).items()} == before, "-W wrote files"
    assert items["t0.flac"]["genres"][0] == "Jazz" and len(items["t0.flac"]["genres"]) == 2, items["t0.flac"]
    assert read_genres(music(lib)["t0.flac"]) == ["Jazz"]
    # beet write: beets itself brings the files in line with its database.
    beet(lib, "write")
    assert read_genres(music(lib)["t0.flac"]) == items["t0.flac"]["genres"]
    # The write option in the config says no too (beets' import.write says yes).
    write_config(lib, "write: no\nexisting: overwrite\n")
    written = {name: digest(path) for name, path in music(lib).items()}
    beet(lib, "genretag")
    assert len(library_items(lib)["t0.flac"]["genres"]) == 1
    assert {name: digest(path) for name, path in music(lib).items()} == written


def album_genres(root: Path) -> dict[str, list[str]]:
    """Each beets album's own genres, by album name."""
    from beets.library import Library

    lib = Library(str(root / "library.db"))
    try:
        return {a.album: list(a.genres) if "genres" in a._fields else [a.genre] if a.genre else []
                for a in lib.albums()}
    finally:
        lib._close()


@pytest.mark.slow
def test_album_mode_uses_beets_albums(lib: Path) -> None:
    before = album_genres(lib)
    done = beet(lib, "genretag", "--by", "album", "--existing", "overwrite")
    items = library_items(lib)
    album = {items[n]["genres"][0] for n in ("t0.flac", "t1.mp3", "t2.ogg")}
    assert len(album) == 1, f"one genre for beets' album a1, got {album}"
    assert album_genres(lib)["Album a1"] == [album.pop()], "the album's own field follows its tracks"
    assert "genretag: 2 albums: 2 set" in done.stdout, done.stdout
    beet(lib, "genretag", "--undo")
    assert album_genres(lib) == before


@pytest.mark.slow
def test_same_genres_as_genretag_tag(lib: Path) -> None:
    """count, existing and the canonical names decide as `genretag tag` does on the same database."""
    import json

    from tagger.cli import cli

    result = CliRunner().invoke(cli, ["tag", str(lib / "music"), "--db", str(lib / "genretag.db"), "--dry-run",
                                      "--json", "--overwrite", "--with-parents", "--top", "2", "--min-confidence", "0"])
    assert result.exit_code == 0, result.output
    expected = {Path(f["path"]).name: f["proposed"] for f in json.loads(result.stdout)["files"]}
    # (the head's ten genres are the tree's top level: with_parents adds nothing to them, and the options
    # reach tagging.propose the same way.)
    assert len(expected) == 4 and all(len(v) == 2 for v in expected.values()), expected
    write_config(lib, "with_parents: yes\ncount: 2\nexisting: overwrite\n")
    beet(lib, "genretag")
    assert {name: item["genres"] for name, item in library_items(lib).items()} == expected


@pytest.mark.slow
def test_source_empty_leaves_items_with_genres_alone(lib: Path) -> None:
    write_config(lib, "source: empty\nexisting: overwrite\n")
    done = beet(lib, "genretag", "-p")
    assert "t0.flac" not in done.stdout and "3 would set" in done.stdout, done.stdout


@pytest.mark.slow
def test_abstained_items_are_queryable_and_keep_their_genres(lib: Path) -> None:
    """With the model's own threshold and no broad source, tones and noise are too uncertain: the reason stored."""
    write_config(lib, "backend: musicnn\nbroad: no\n", min_confidence="null")  # fusion is sure of these tones
    done = beet(lib, "genretag")
    items = library_items(lib)
    abstained = {name for name, item in items.items() if item["genretag_abstained"]}
    assert abstained, done.stdout
    for name in abstained:
        assert items[name]["genres"] == (["Jazz"] if name == "t0.flac" else []), name
        assert "the model's threshold" in items[name]["genretag_abstained"]
    listed = beet(lib, "ls", "-f", "$title", "genretag_abstained::.").stdout.split()
    assert set(listed) == abstained
    assert done.stdout.count("(abstained: ") == len(abstained)


# ---------------------------------------------------------------------------
# Point 5: undo in beets' terms.


@pytest.mark.slow
def test_undo_puts_back_the_previous_genres(lib: Path) -> None:
    files = music(lib)
    before = {name: read_genres(path) for name, path in files.items()}
    beet(lib, "genretag")  # t1, t2 and s0 get one genre each; t0 keeps Jazz
    write_config(lib, "count: 2\n")
    beet(lib, "genretag", "--existing", "overwrite")  # a second set: undo goes back past both
    set_to = library_items(lib)
    assert len(set_to["t1.mp3"]["genres"]) == 2 and set_to["t1.mp3"]["genretag_previous"] == "[]"
    assert set_to["t0.flac"]["genretag_previous"] == '["Jazz"]'
    # The user changes one item afterwards: undo must not take that back.
    beet(lib, "modify", "-y", "title:t2.ogg", "genres=Blues")
    shown = beet(lib, "genretag", "--undo", "-p")
    assert "would restore" in shown.stdout and library_items(lib)["t1.mp3"]["genres"] == set_to["t1.mp3"]["genres"]
    done = beet(lib, "genretag", "--undo")
    items = library_items(lib)
    assert items["t0.flac"]["genres"] == ["Jazz"] and read_genres(files["t0.flac"]) == ["Jazz"]
    for name in ("t1.mp3", "s0.m4a"):
        assert items[name]["genres"] == [] and read_genres(files[name]) == before[name] == [], name
        assert items[name]["genretag_previous"] is None
    assert items["t2.ogg"]["genres"] == ["Blues"], "a genre the user set after genretag was undone"
    assert "changed since genretag set them" in done.stdout


# ---------------------------------------------------------------------------
# Point 4: the import hook.


@pytest.mark.slow
def test_import_hook_sets_genres_from_the_cache(lib: Path) -> None:
    write_config(lib, "auto: yes\nby: album\n", jobs=1)  # a worker process, as `genretag scan` uses
    extra = make_files(lib / "incoming", {"n1.mp3": ("a3", "mp3", "noise", 5)})[0]  # new: not in the cache
    done = beet(lib, "-v", "import", str(lib / "incoming"))
    log = done.stdout + done.stderr
    assert "1 analysed, 1 from genretag's cache" in log, log  # n0.flac was scanned before: not analysed again
    items = library_items(lib)
    got = {items[n]["genres"][0] for n in ("n0.flac", "n1.mp3")}
    assert len(got) == 1, f"album mode on an album import: one genre, got {got}"
    assert album_genres(lib)["Album a3"] == list(got)
    assert read_genres(extra) == items["n1.mp3"]["genres"]  # import.write: yes, written through beets
    assert items["n1.mp3"]["genretag_model"].startswith("fusion ")


@pytest.mark.slow
def test_import_hook_carries_the_analysis_to_copied_files(lib: Path) -> None:
    """beets copies the files into its directory: genretag's result for the source comes along."""
    source = lib / "incoming" / "a3" / "n0.flac"
    before = digest(source)
    write_config(lib, "auto: yes\n")
    (lib / "config.yaml").write_text((lib / "config.yaml").read_text().replace("copy: no", "copy: yes"))
    done = beet(lib, "-v", "import", str(lib / "incoming"))
    log = done.stdout + done.stderr
    assert "0 analysed, 1 from genretag's cache" in log, log
    copied = [p for p in (lib / "lib").rglob("*.flac")]
    assert len(copied) == 1, copied
    assert library_items(lib)["n0.flac"]["genres"] == read_genres(copied[0]) != []
    assert digest(source) == before, "the imported original was written"
    again = beet(lib, "genretag", "-p", "title:n0.flac")  # the copy, written by beets, is known too
    assert "0 analysed, 1 from genretag's cache" in again.stdout, again.stdout


# ---------------------------------------------------------------------------
# Point 3: the config section is checked.


@pytest.mark.parametrize(("extra", "expected"), [
    ("thresold: 0.5\n", "unknown key 'thresold'"),
    ("jobs: two\n", "genretag.jobs is 'two': expected a whole number"),
    ("existing: replace\n", "genretag.existing is 'replace': expected one of keep, merge, overwrite"),
    ("min_confidence: 2\n", "genretag.min_confidence is 2: expected a number from 0 to 1"),
])
def test_config_errors_are_one_line(tmp_path: Path, extra: str, expected: str) -> None:
    write_config(tmp_path, extra + "auto: yes\n")  # auto: the import checks the section before it starts
    for args in (["genretag"], ["import", str(tmp_path)]):
        done = beet(tmp_path, *args, check=False)
        assert done.returncode == 1, done.stdout + done.stderr
        errors = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and expected in errors[0] and str(tmp_path / "config.yaml") in errors[0], errors
        assert "Traceback" not in done.stderr


# ---------------------------------------------------------------------------
# Point 7: beets missing or too old.


def test_genretag_works_without_beets(tmp_path: Path) -> None:
    """A Python where ``import beets`` fails: genretag scans and tags as before."""
    song = make_audio(tmp_path / "song.flac", "flac", seconds=3.0)
    code = textwrap.dedent(f"""
        import sys
        sys.modules["beets"] = None  # import beets raises ImportError
        from tagger.cli import cli
        cli(["scan", {str(song)!r}, "--backend", "svc", "--jobs", "0", "--db", {str(tmp_path / "g.db")!r},
             "--min-confidence", "0", "--write"])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert read_genres(song), "the scan wrote no genre"
    assert "beets" not in done.stderr


def test_too_old_beets_gives_one_line(tmp_path: Path) -> None:
    """Only beets' version is read before the check; a stand-in package carries an old one.

    (Run by hand against a real beets 1.6.1: the same line, then beets' "unknown command 'genretag'".)
    """
    fake = tmp_path / "old" / "beets"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('__version__ = "1.6.1"\n')
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "old")}
    code = "import beetsplug.genretag as m; print(hasattr(m, 'GenretagPlugin'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        "genretag: the beets plugin needs beets 2.0 or newer, and this is beets 1.6.1; "
        "upgrade with: pip install -U 'genretag[beets]'"
    ]


def test_version_check() -> None:
    assert plugin.too_old(beets.__version__) is None
    assert plugin.too_old("2.0.0") is None and plugin.too_old("2.14.1") is None
    assert "needs beets 2.0" in plugin.too_old("1.6.1") and "1.6.1" in plugin.too_old("1.6.1")


def test_genre_string_before_beets_2_7() -> None:
    """beets before 2.7 has one ``genre`` string: genres are joined and split with the separator."""

    class OldItem:
        _fields = {"genre": None}
        genre = "Rock; Alternative Rock"

    item = OldItem()
    assert plugin.read_genres(item, "; ") == ["Rock", "Alternative Rock"]
    plugin.set_genres(item, ["Jazz", "Bebop"], "; ")
    assert item.genre == "Jazz; Bebop"
    item.genre = ""
    assert plugin.read_genres(item, "; ") == []


@pytest.mark.slow
def test_a_vanished_file_is_reported_and_the_rest_go_on(lib: Path) -> None:
    music(lib)["t2.ogg"].unlink()
    (lib / "music" / "a2" / "s0.m4a").write_bytes(b"not audio at all")
    done = beet(lib, "genretag")
    lines = {line.split(":")[0]: line for line in done.stdout.splitlines() if line.startswith("Art - ")}
    assert "skipped" in lines["Art - Album a1 - t2.ogg"], done.stdout
    assert "analysis failed" in lines["Art - Album a2 - s0.m4a"], done.stdout
    items = library_items(lib)
    assert items["t1.mp3"]["genres"] and read_genres(music(lib)["t1.mp3"]) == items["t1.mp3"]["genres"]
    assert items["s0.m4a"]["genres"] == [] and items["s0.m4a"]["genretag_confidence"] is None
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_foreign_file_as_genretags_database_is_one_line(tmp_path: Path) -> None:
    """`db` names a file that is not genretag's: the command stops with one line, an import goes on."""
    write_config(tmp_path, "auto: yes\n")
    foreign = tmp_path / "notes.txt"
    foreign.write_text("my notes\n")
    (tmp_path / "config.yaml").write_text((tmp_path / "config.yaml").read_text().replace(
        f"db: {tmp_path}/genretag.db", f"db: {foreign}"))
    make_files(tmp_path / "music", {"t0.flac": FILES["t0.flac"]})
    done = beet(tmp_path, "import", str(tmp_path / "music"))  # the import itself goes on
    assert "not an SQLite database" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert list(library_items(tmp_path)) == ["t0.flac"]
    for args in (["genretag"], ["genretag", "--undo"]):
        done = beet(tmp_path, *args, check=False)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert [line for line in done.stderr.splitlines() if line.strip()] == [
            f"error: genretag: {foreign}: not an SQLite database; genretag leaves it alone (check --db)"]
    assert foreign.read_text() == "my notes\n"


def test_batches_keep_albums_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "BATCH", 3)
    targets = [(1, 7, "a"), (2, None, "b"), (3, 7, "c"), (4, 8, "d"), (5, 8, "e"), (6, None, "f"), (7, 9, "g")]
    batches = [[t[0] for t in b] for b in plugin._batches(targets)]
    assert sorted(sum(batches, [])) == list(range(1, 8))
    assert all(len(b) <= 3 for b in batches)
    for album in ({1, 3}, {4, 5}):  # each album in one batch
        assert any(album <= set(b) for b in batches), batches


def test_beetsplug_stays_a_namespace_shared_with_beets() -> None:
    """An __init__.py in our beetsplug/ would hide beets' own plugins (lastgenre, fromfilename...)."""
    import importlib

    import beetsplug

    assert not (Path(plugin.__file__).parent / "__init__.py").exists()
    assert getattr(beetsplug, "__file__", None) is None  # a namespace package
    assert importlib.import_module("beetsplug.fromfilename").__file__.startswith(str(Path(beets.__file__).parents[1]))
