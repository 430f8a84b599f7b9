"""The broad source: genres beyond GTZAN's ten, named from the pretrained networks' own outputs.

The networks the head listens through know far more tags than its ten genres,
and their outputs are cached with every track (``Track.tags``).
tagger/decide/broad_genres.toml maps them to genres of the canonical tree with
calibrated thresholds (docs/broad.md). :func:`consult`, called by
tagger.decide.decision.decide_track, keeps the head's genre (with broad
children that clear their thresholds as refinements) or, where the head
abstains, gives the broad genres that clear theirs, best first.
"""

from __future__ import annotations

import functools
import hashlib
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..common import userfiles
from ..common.errors import FileError
from . import vocabulary

DATA_FILE = "broad_genres.toml"
HEAD, BROAD = "head", "broad"
KINDS = ("gtzan-folds", "false-alarm")
#: What ``Track.broad_id`` holds when the broad source was off for a decision.
OFF = "off"


@dataclass(frozen=True)
class Calibration:
    """One genre's calibrated score and threshold for tags from one set of backends."""

    kind: str
    threshold: float | None
    platt: tuple[float, float] = (0.0, 1.0)  # gtzan-folds: sigmoid(a + b * logit(raw))
    knots: tuple[float, ...] = ()  # false-alarm: raw values ...
    levels: tuple[float, ...] = ()  # ... and the share of GTZAN clips below each
    how: str = ""

    def score(self, raw: float) -> float:
        """The calibrated score of a raw score (mean over backends of their largest mapped output)."""
        if self.kind == "gtzan-folds":
            r = min(max(raw, 1e-6), 1 - 1e-6)
            z = self.platt[0] + self.platt[1] * math.log(r / (1 - r))
            return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))
        return interp(raw, self.knots, self.levels)


@dataclass(frozen=True)
class Broad:
    """The data file, read and checked: mappings per genre, calibrations per backend set."""

    path: str
    genres: Mapping[str, Mapping[str, tuple[str, ...]]]  # tree key -> backend -> outputs
    near: Mapping[str, tuple[str, ...]]  # tree key -> GTZAN genres that are no false alarm
    calibration: Mapping[str, Mapping[str, Calibration]]  # "a+b" -> tree key -> calibration
    id: str = ""  # content hash: a changed file makes a rescan decide again
    measured: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # backends -> held-out figures

    @property
    def backends(self) -> frozenset[str]:
        return frozenset(b for per in self.genres.values() for b in per)

    def raw(self, tags: Mapping[str, float], backend: str) -> tuple[str, dict[str, float]]:
        """(the backend set of these tags, e.g. "efficientat+musicnn"; raw score per mapped genre)."""
        by_backend = split_tags(tags, backend, self.backends)
        parts = "+".join(sorted(by_backend))
        out = {}
        for key, per in self.genres.items():
            maxima = [max((values[t] for t in names if t in values), default=None)
                      for b, names in per.items() if (values := by_backend.get(b)) is not None]
            maxima = [m for m in maxima if m is not None]
            if maxima:
                out[key] = sum(maxima) / len(maxima)
        return parts, out

    def scores(self, tags: Mapping[str, float] | None, backend: str) -> tuple[str, list[Candidate]]:
        """Every calibrated genre's candidate for a track's tags, clearing ones first (best score first)."""
        if not tags:
            return "", []
        parts, raw = self.raw(tags, backend)
        cals = self.calibration.get(parts, {})
        found = [Candidate(key, cal.score(value), cal.threshold) for key, value in raw.items()
                 if (cal := cals.get(key)) is not None]
        found.sort(key=lambda c: (not c.clears, -c.score))
        return parts, found


@dataclass(frozen=True)
class Candidate:
    key: str
    score: float
    threshold: float | None

    @property
    def name(self) -> str:
        return vocabulary.tree().genres[self.key].name

    @property
    def clears(self) -> bool:
        return self.threshold is not None and round(self.score, 4) >= self.threshold


@dataclass
class Decision:
    """A track's (or album's) genre, where it came from, and the broad genres that back it."""

    genre: str | None
    abstained: str | None
    source: str | None  # HEAD, BROAD, or None when it abstains
    score: float | None = None  # the calibrated score of a broad genre (the head's: its probability)
    broad: list[tuple[str, float]] = field(default_factory=list)  # broad genres given (or refining the head's)


def interp(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """Piecewise-linear y at x through (xs, ys), ascending; ys[0] below xs[0], ys[-1] above xs[-1] (no NumPy: show stays light)."""
    if x <= xs[0]:
        return ys[0] if x == xs[0] else 0.0
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x <= x1:
            return y1 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return 1.0


def split_tags(tags: Mapping[str, float], backend: str, known: frozenset[str]) -> dict[str, dict[str, float]]:
    """Tags by the backend that gave them: ``"musicnn:rock"`` is musicnn's; an unprefixed tag is ``backend``'s.

    Missing values (a fused part that gave none is NaN) are left out.
    """
    out: dict[str, dict[str, float]] = {}
    for name, p in tags.items():
        prefix, sep, rest = name.partition(":")
        owner, tag = (prefix, rest) if sep and prefix in known else (backend, name)
        if isinstance(p, (int, float)) and math.isfinite(p):
            out.setdefault(owner, {})[tag] = float(p)
    return {b: v for b, v in out.items() if b in known}


def consult(head_genre: str | None, head_reason: str | None, tags: Mapping[str, float] | None, backend: str,
           broad: Broad | None) -> Decision:
    """The broad step after the head's verdict (see the module docstring); ``broad`` None: the source is off."""
    if broad is None:
        return Decision(head_genre, head_reason, HEAD if head_genre else None)
    parts, found = broad.scores(tags, backend)
    clearing = [c for c in found if c.clears]
    if head_genre is not None:
        head = vocabulary.canonical(head_genre)
        children = [c for c in clearing if head is not None and head in vocabulary.parents(c.key)]
        return Decision(head_genre, None, HEAD, broad=[(c.name, round(c.score, 4)) for c in children])
    if not parts:  # no network tags (a features backend): nothing to say beyond the head's reason
        return Decision(None, head_reason, None)
    if clearing:
        best = clearing[0]
        return Decision(best.name, None, BROAD, round(best.score, 4), [(c.name, round(c.score, 4)) for c in clearing])
    return Decision(None, f"{head_reason or 'uncertain'}; {_why_not(parts, found, broad)}", None)


def _why_not(parts: str, found: Sequence[Candidate], broad: Broad) -> str:
    if parts not in broad.calibration:
        return f"broad: no calibration for tags of {parts} ({broad.path})"
    usable = [c for c in found if c.threshold is not None]
    if not usable:
        return "broad: no calibrated genre"
    best = max(usable, key=lambda c: c.score - c.threshold)
    return f"broad: best {best.name} {best.score:.3f} below {best.threshold:.4g}"


def measured_for(backend: str) -> dict[str, Any] | None:
    """The broad source's held-out figures on GTZAN's genres for the tags ``backend`` stores (for ``report``)."""
    from ..common.errors import GenretagError
    from ..inference.backends import get_backend

    data = shipped()
    try:
        cls = get_backend(backend)
    except GenretagError:
        return None
    parts = tuple(getattr(cls, "PARTS", ())) or ((backend,) if backend in data.backends else ())
    found = data.measured.get("+".join(sorted(parts)))
    if not found or not found.get("clips"):
        return None
    given, right, clips = int(found["given"]), int(found["right"]), int(found["clips"])
    return {"backends": "+".join(sorted(parts)), "clips": clips, "given": given, "coverage": given / clips,
            "precision": right / given if given else None, "genres": list(found.get("genres", []))}


# -- the data file -------------------------------------------------------------------------
@functools.cache
def shipped() -> Broad:
    """The shipped data file, read once per process."""
    ref = resources.files(__package__).joinpath(DATA_FILE)
    return parse(ref.read_text(encoding="utf-8"), str(ref))


def load(path: str | Path | None = None) -> Broad:
    """The data file at ``path`` (default: the shipped one); FileError naming it when unreadable or invalid."""
    if path is None:
        return shipped()
    try:  # a regular file of bounded size, as every input (tagger.common.userfiles)
        text = userfiles.read_text(path, "broad genres file")
    except FileError as exc:
        raise FileError(path, f"cannot read the broad genres file: {exc.reason}") from None
    return parse(text, str(path))


def parse(text: str, origin: str) -> Broad:
    """Read and check a broad genres file; FileError naming ``origin`` and the table at fault."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FileError(origin, f"not valid TOML: {exc}") from None
    unknown = set(data) - {"genres", "calibration", "measured"}
    if unknown or not isinstance(data.get("genres"), dict):
        raise FileError(origin, f"needs a [genres.<key>] table per genre (unknown tables: {sorted(unknown)})")
    tree = vocabulary.tree().genres
    genres, near = {}, {}
    for key, entry in data["genres"].items():
        where = f"[genres.{key}]"
        if key not in tree:
            raise FileError(origin, f"{where}: {key!r} is not a genre of the tree (tagger/decide/genres.toml)")
        if not isinstance(entry, dict):
            raise FileError(origin, f"{where}: must be a table")
        per = {}
        for name, value in entry.items():
            if not _strings(value):
                raise FileError(origin, f"{where}: {name} must be a list of strings")
            if name != "near":
                per[name] = tuple(value)
        if not per:
            raise FileError(origin, f"{where}: maps no network output")
        genres[key], near[key] = per, tuple(entry.get("near", ()))
    calibration: dict[str, dict[str, Calibration]] = {}
    for parts, table in data.get("calibration", {}).items():
        if not isinstance(table, dict):
            raise FileError(origin, f"[calibration.{parts!r}] must be a table")
        calibration[parts] = {key: _calibration(origin, f"[calibration.{parts!r}.{key}]", key, entry, genres)
                              for key, entry in table.items()}
    measured = data.get("measured", {})
    if not isinstance(measured, dict) or not all(isinstance(m, dict) for m in measured.values()):
        raise FileError(origin, "[measured.<backends>] must be tables")
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return Broad(origin, genres, near, calibration, f"broad-{digest}", measured)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _calibration(origin: str, where: str, key: str, entry: Any, genres: Mapping[str, Any]) -> Calibration:
    if key not in genres:
        raise FileError(origin, f"{where}: {key!r} is not in [genres]")
    if not isinstance(entry, dict) or entry.get("kind") not in KINDS:
        raise FileError(origin, f"{where}: kind must be one of {', '.join(KINDS)}")
    threshold = entry.get("threshold")
    if threshold is not None and not (_number(threshold) and 0 <= threshold <= 1):
        raise FileError(origin, f"{where}: threshold must be a number from 0 to 1, not {threshold!r}")
    if entry["kind"] == "gtzan-folds":
        platt = entry.get("platt")
        if not (isinstance(platt, list) and len(platt) == 2 and all(map(_number, platt))):
            raise FileError(origin, f"{where}: platt must be two numbers [a, b]")
        return Calibration("gtzan-folds", threshold, (float(platt[0]), float(platt[1])), how=str(entry.get("how", "")))
    knots, levels = entry.get("knots"), entry.get("levels")
    ok = (isinstance(knots, list) and isinstance(levels, list) and len(knots) == len(levels) >= 2
          and all(map(_number, knots + levels)) and knots == sorted(knots) and levels == sorted(levels))
    if not ok:
        raise FileError(origin, f"{where}: knots and levels must be two ascending lists of numbers of one length")
    return Calibration("false-alarm", threshold, knots=tuple(map(float, knots)), levels=tuple(map(float, levels)),
                       how=str(entry.get("how", "")))
