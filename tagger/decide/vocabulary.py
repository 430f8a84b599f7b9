"""genretag's canonical genre vocabulary: one name per genre, whatever the spelling.

The tree (tagger/decide/genres.toml; provenance in docs/tagging.md) maps every
label a built-in model emits to a display name and a parent, so "Hip-Hop" is
written for ``hiphop`` and ``Hip-Hop`` alike, ``--with-parents`` can add "Rock",
and a file's "Hip Hop" gets no second spelling. Unknown names compare by
:func:`fold` (case, accents, spaces and punctuation ignored).
"""

from __future__ import annotations

import functools
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

TREE_FILE = "genres.toml"


@dataclass(frozen=True)
class Genre:
    """A genre of the tree: its stable key, the name genretag writes, and its parent's key."""

    key: str
    name: str
    parent: str | None = None
    aliases: tuple[str, ...] = ()


def fold(name: str) -> str:
    """A spelling-insensitive form of a genre name: "Hip Hop", "hip-hop" and "HIPHOP" all give "hiphop".

    Accents are dropped, case folded, "&" read as "and", and everything
    but letters and digits removed.
    """
    decomposed = unicodedata.normalize("NFKD", name.replace("&", " and "))
    return "".join(c for c in decomposed.casefold() if c.isalnum() and not unicodedata.combining(c))


@dataclass(frozen=True)
class Tree:
    """The genres by key, and every folded name and alias pointing at its genre."""

    genres: Mapping[str, Genre]
    index: Mapping[str, Genre]


def parse_tree(text: str, origin: str = TREE_FILE) -> Tree:
    """Read a genre tree in genres.toml's format; ValueError naming ``origin`` when it is inconsistent."""
    data = tomllib.loads(text)
    genres: dict[str, Genre] = {}
    index: dict[str, Genre] = {}
    for key, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(f"{origin}: [{key}] needs a name")
        unknown = set(entry) - {"name", "parent", "aliases"}
        if unknown:
            raise ValueError(f"{origin}: [{key}] has unknown fields {sorted(unknown)}")
        genre = Genre(key, entry["name"], entry.get("parent"), tuple(entry.get("aliases", ())))
        genres[key] = genre
        for spelling in (key, genre.name, *genre.aliases):
            other = index.setdefault(fold(spelling), genre)
            if other.key != key:
                raise ValueError(f"{origin}: {spelling!r} of [{key}] already names [{other.key}]")
    for genre in genres.values():
        seen = {genre.key}
        parent = genre.parent
        while parent is not None:
            if parent not in genres:
                raise ValueError(f"{origin}: [{genre.key}] has unknown parent {parent!r}")
            if parent in seen:
                raise ValueError(f"{origin}: [{genre.key}] is its own ancestor")
            seen.add(parent)
            parent = genres[parent].parent
    return Tree(genres, index)


@functools.cache
def tree() -> Tree:
    """The shipped tree, read once per process."""
    text = resources.files(__package__).joinpath(TREE_FILE).read_text(encoding="utf-8")
    return parse_tree(text)


def canonical(name: str) -> Genre | None:
    """The tree's genre for a name in any spelling the tree knows (name, key or alias), else None."""
    return tree().index.get(fold(name))


def same(a: str, b: str) -> bool:
    """True when two names are one genre: the same tree genre, or the same folded spelling."""
    return identity(a) == identity(b)


@functools.lru_cache(maxsize=8192)  # tagging asks about the same few names for every file
def identity(name: str) -> str:
    """What :func:`same` compares: the tree key of a known genre, else the folded name.

    A name with no letters or digits (say "??") folds to nothing; it is then
    compared case-folded, so it does not equal every other such name.
    """
    genre = canonical(name)
    if genre is not None:
        return f"genre:{genre.key}"
    return fold(name) or f"raw:{name.strip().casefold()}"


def parents(genre: Genre | str) -> list[Genre]:
    """The ancestors of a genre (a Genre or any spelling of one), broadest first; [] at the top or unknown."""
    found = canonical(genre) if isinstance(genre, str) else genre
    out: list[Genre] = []
    genres = tree().genres
    while found is not None and found.parent is not None:
        found = genres[found.parent]
        out.insert(0, found)
    return out
