"""GTZAN on disk: find the clips, skip the unreadable ones, load the feature table.

Three layouts are recognised under a root folder, tried in this order:

- Kaggle: ``genres_original/<genre>/<genre>.000NN.wav`` (also under ``Data/``);
- original: ``genres/<genre>/<genre>.000NN.au``;
- plain: the root itself holds the ``<genre>/`` folders.

A clip's track id is its file name without the audio extension
(``blues.00029``), so split lists and the feature table, which name clips
``blues.00029.wav``, match a clip whatever format it is stored in.
"""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np

from tagger.analysis.features import FEATURE_NAMES as _FEATURE_NAMES
from tagger.common import userfiles

#: The ten GTZAN genres, sorted; the column order of every model's probabilities.
GENRES: tuple[str, ...] = (
    "blues", "classical", "country", "disco", "hiphop",
    "jazz", "metal", "pop", "reggae", "rock",
)  # fmt: skip

#: The 57 features of features_30_sec.csv, in the table's column order (one definition, in tagger).
FEATURE_NAMES = _FEATURE_NAMES

#: File extensions taken for audio, in order of preference when one track
#: exists in several formats (lossless first).
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".au", ".ogg", ".mp3")

# Sub-folders holding the genre folders, per layout; "" is the root itself.
_LAYOUTS: tuple[str, ...] = ("genres_original", "Data/genres_original", "genres", "")
# Columns of the feature table that are not features.
_NON_FEATURES = ("filename", "length", "label")


class UnreadableClipWarning(UserWarning):
    """A clip was skipped because its audio cannot be read."""


@dataclass(frozen=True)
class Clip:
    """One GTZAN clip on disk; ``genre`` comes from its folder."""

    track_id: str
    genre: str
    path: Path
    rate: int = field(default=0, compare=False)  # the file's sample rate, once check_readable has read it


def track_id(name: str | Path) -> str:
    """The track id in a file name or split-list line: ``blues/blues.00029.wav`` -> ``blues.00029``.

    Only a known audio extension is removed, so an id passes through unchanged
    (``Path("blues.00029").stem`` would give ``blues``).
    """
    base = PurePosixPath(str(name).replace("\\", "/")).name
    stem, dot, ext = base.rpartition(".")
    if dot and "." + ext.lower() in AUDIO_EXTENSIONS:
        return stem
    return base


def genre_root(root: str | Path) -> Path:
    """The folder that holds the ``<genre>/`` folders of the GTZAN copy under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"GTZAN folder not found: {root}")
    for sub in _LAYOUTS:
        candidate = root / sub if sub else root
        if any((candidate / genre).is_dir() for genre in GENRES):
            return candidate
    raise FileNotFoundError(
        f"no GTZAN genre folders under {root}: expected genres_original/<genre>/, "
        f"genres/<genre>/ or <genre>/ folders named {', '.join(GENRES)}"
    )


def find_clips(root: str | Path) -> list[Clip]:
    """Every audio clip of the GTZAN copy under ``root``, sorted by genre and track id.

    Hidden files (such as macOS ``._blues.00000.wav``) are ignored. When one
    track exists in several formats, the first in ``AUDIO_EXTENSIONS`` is kept.
    """
    base = genre_root(root)
    clips: list[Clip] = []
    for genre in GENRES:
        folder = base / genre
        if not folder.is_dir():
            continue
        best: dict[str, Path] = {}
        for path in folder.iterdir():
            ext = path.suffix.lower()
            if path.name.startswith(".") or ext not in AUDIO_EXTENSIONS or not path.is_file():
                continue
            tid = track_id(path.name)
            kept = best.get(tid)
            if kept is None or AUDIO_EXTENSIONS.index(ext) < AUDIO_EXTENSIONS.index(kept.suffix.lower()):
                best[tid] = path
        clips.extend(Clip(tid, genre, best[tid]) for tid in sorted(best))
    return clips


def check_readable(clips: list[Clip]) -> tuple[list[Clip], list[tuple[Clip, str]]]:
    """Split ``clips`` into readable ones and skipped ``(clip, reason)`` pairs.

    A clip is unreadable when libsndfile cannot open it or it has no frames
    (the Kaggle copy's ``jazz.00054.wav`` is one). Each skipped clip raises an
    ``UnreadableClipWarning`` naming the file and the reason, and the rest go on.
    """
    import soundfile

    ok: list[Clip] = []
    skipped: list[tuple[Clip, str]] = []
    for clip in clips:
        try:
            info = soundfile.info(str(clip.path))
        except (soundfile.SoundFileError, RuntimeError, OSError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
        else:
            if info.frames > 0:
                ok.append(replace(clip, rate=int(info.samplerate)))
                continue
            reason = "no audio frames"
        skipped.append((clip, reason))
        warnings.warn(
            f"skipping unreadable clip {clip.path}: {reason}", UnreadableClipWarning, stacklevel=2
        )
    return ok, skipped


def load_feature_table(
    csv_path: str | Path,
) -> tuple[list[str], np.ndarray, list[str], list[str]]:
    """Read features_30_sec.csv as ``(track_ids, X, labels, feature_names)``.

    ``X`` is float64 with one row per clip and the feature columns in csv
    order; ``filename``, ``length`` and ``label`` are not features.
    """
    csv_path = Path(csv_path)
    # A regular file of bounded size (tagger.common.userfiles): a FIFO would block, /dev/zero fill memory.
    text = userfiles.read_text(csv_path, "feature table", userfiles.TABLE_LIMIT)
    with io.StringIO(text, newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{csv_path}: empty feature table") from None
        missing = [c for c in ("filename", "label") if c not in header]
        if missing:
            raise ValueError(f"{csv_path}: no {' or '.join(missing)} column")
        file_col, label_col = header.index("filename"), header.index("label")
        feature_cols = [i for i, c in enumerate(header) if c not in _NON_FEATURES]
        track_ids: list[str] = []
        labels: list[str] = []
        rows: list[list[float]] = []
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{csv_path}:{line_no}: {len(row)} fields, expected {len(header)}"
                )
            try:
                rows.append([float(row[i]) for i in feature_cols])
            except ValueError as exc:
                raise ValueError(f"{csv_path}:{line_no}: {exc}") from None
            track_ids.append(track_id(row[file_col]))
            labels.append(row[label_col])
    X = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(feature_cols))
    return track_ids, X, labels, [header[i] for i in feature_cols]
