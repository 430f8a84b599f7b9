"""Model inputs for training: feature-table rows, or features/slices/embeddings extracted from GTZAN audio.

Audio is analysed whole (as the feature table was) in the scan's worker pool,
and each clip's result is cached under the data dir by file identity and
analysis parameters, so training again decodes nothing. Nothing here splits
across clips: the trainer splits by track first, then flattens slices. Augmented
copies are made, at the waveform level, only for the clips the trainer names.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagger.analysis.features import FEATURE_NAMES, preprocessing
from tagger.analysis.wire import AnalysisTask
from tagger.common import userfiles
from tagger.common.errors import FileError, GenretagError
from tagger.common.paths import data_dir
from tagger.common.progress import Progress  # told the clip count, then each clip: cached, analysed or failed
from tagger.inference import inputs
from tagger.inference.kinds import get_kind

from .data import UnreadableClipWarning, check_readable, find_clips, load_feature_table
from .splits import PARTS, Split

CACHE_VERSION = 1


@dataclass
class ClipSet:
    """One input per clip: a (57,) feature row, a (k, 128, 130) stack of log-mel slices or a (d,) embedding."""

    kind: str  # an input kind of tagger.inference.kinds
    source: str  # the feature table or the audio folder
    track_ids: list[str]
    labels: list[str]
    inputs: list[np.ndarray]
    paths: dict[str, Path] = field(default_factory=dict)  # track id -> audio file (empty for a table)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    cached: int = 0  # clips read from the cache instead of analysed
    backend: str | None = None  # whose front end made the embeddings
    rates: dict[str, int] = field(default_factory=dict)  # track id -> the file's own sample rate

    def upsampled(self, rate: int) -> list[str]:
        """Track ids whose files hold less bandwidth than an analysis at ``rate`` uses."""
        return sorted(t for t, r in self.rates.items() if r and r < rate)

    def label_of(self) -> dict[str, str]:
        """Genre of every track id."""
        return dict(zip(self.track_ids, self.labels))


@dataclass(frozen=True)
class Augment:
    """Waveform augmentation of training clips: ranges drawn from per copy, per clip.

    Gain only changes the features: log-mel slices are in dB relative to
    each slice's peak, so a slice model is blind to it (and to the noise
    level only through the SNR, which is what is drawn).
    """

    copies: int = 1
    snr_db: tuple[float, float] = (15.0, 40.0)
    gain_db: tuple[float, float] = (-6.0, 6.0)
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)
    shift_seconds: tuple[float, float] = (-1.5, 1.5)

    def draw(self, track: str, copy: int, seed: int) -> dict[str, float]:
        """This copy's parameters: the same for a given (track, copy, seed) on every machine."""
        digest = hashlib.sha256(f"{seed}:{track}:{copy}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        return {
            "snr_db": float(rng.uniform(*self.snr_db)),
            "gain_db": float(rng.uniform(*self.gain_db)),
            "pitch_semitones": float(rng.uniform(*self.pitch_semitones)),
            "shift_seconds": float(rng.uniform(*self.shift_seconds)),
            "noise_seed": int(rng.integers(2**31)),
        }


def apply_augment(y: np.ndarray, sr: int, params: dict[str, float]) -> np.ndarray:
    """Pitch shift, circular time shift, gain, then white noise at the drawn SNR; same length out."""
    import librosa

    out = np.asarray(y, dtype=np.float32)
    if params["pitch_semitones"]:
        out = librosa.effects.pitch_shift(out, sr=sr, n_steps=params["pitch_semitones"])
    out = np.roll(out, int(round(params["shift_seconds"] * sr)))
    out = out * np.float32(10.0 ** (params["gain_db"] / 20.0))
    power = float(np.mean(out.astype(np.float64) ** 2))
    noise = np.random.default_rng(params["noise_seed"]).standard_normal(len(out))
    out = out + np.sqrt(power / 10.0 ** (params["snr_db"] / 10.0)) * noise
    return out.astype(np.float32)


def cache_dir() -> Path:
    """Per-clip extraction results: safe to delete, rebuilt on the next run."""
    return data_dir() / "cache" / "training"


def from_table(csv_path: str | os.PathLike[str]) -> ClipSet:
    """Rows of a GTZAN feature table (features_30_sec.csv) as a features ClipSet."""
    try:
        ids, X, labels, names = load_feature_table(csv_path)
    except (OSError, ValueError) as exc:
        raise GenretagError(f"cannot read feature table: {exc}") from None
    if tuple(names) != FEATURE_NAMES:
        missing = [n for n in FEATURE_NAMES if n not in names]
        raise GenretagError(
            f"{csv_path}: columns are not the 57 GTZAN features in order"
            + (f" (missing {', '.join(missing[:5])})" if missing else "")
        )
    if not ids:
        raise GenretagError(f"{csv_path}: no rows")
    return ClipSet("features", str(csv_path), ids, labels, list(X))


def from_audio(roots: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], kind: str, *,
               backend: str | None = None, jobs: int | None = None, progress: Progress | None = None,
               use_cache: bool = True) -> ClipSet:
    """Every readable clip of the GTZAN copies under ``roots``, analysed for ``kind``.

    For embeddings, ``backend`` names the backend whose front end runs.
    Several folders pool their clips (for instance the 22050 Hz originals
    and clips someone resampled to 16 kHz); a track id found in an earlier
    folder wins and the later copy is listed in ``skipped``.  Unreadable
    clips and clips whose analysis fails are skipped and listed in
    ``skipped``; a clip id is only ever in the result with its input.
    """
    roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
    clips, skipped = [], []
    for root in roots:
        try:
            found = find_clips(root)
        except FileNotFoundError as exc:
            raise GenretagError(str(exc)) from None
        have = {c.track_id for c in clips}
        clips += [c for c in found if c.track_id not in have]
        skipped += [(str(c.path), "duplicate of a clip in an earlier --data folder") for c in found if c.track_id in have]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreadableClipWarning)  # listed in ``skipped`` instead
        readable, unreadable = check_readable(clips)
    skipped += [(str(c.path), reason) for c, reason in unreadable]
    front_end = _front_end_id(kind, backend)
    keys = [_cache_key(c.path, kind, front_end=front_end) for c in readable]
    results, hits = _extract([(c.path, key, None) for c, key in zip(readable, keys)], kind, backend, jobs, progress,
                             use_cache)
    out = ClipSet(kind, "; ".join(map(str, roots)), [], [], [], skipped=skipped, backend=backend)
    for clip, key in zip(readable, keys):
        value = results[key]
        if isinstance(value, str):
            out.skipped.append((str(clip.path), value))
            continue
        out.track_ids.append(clip.track_id)
        out.labels.append(clip.genre)
        out.inputs.append(value)
        out.paths[clip.track_id] = clip.path
        out.rates[clip.track_id] = clip.rate
    out.cached = hits
    if not out.track_ids:
        raise GenretagError(f"no usable GTZAN clips under {out.source}")
    return out


def augmented(clips: ClipSet, track_ids: Iterable[str], spec: Augment, seed: int, *,
              jobs: int | None = None, progress: Progress | None = None,
              use_cache: bool = True) -> dict[str, list[np.ndarray]]:
    """``spec.copies`` augmented inputs for each of ``track_ids`` (audio ClipSets only)."""
    if not clips.paths:
        raise GenretagError("augmentation needs audio (--data), not a feature table")
    jobs_list = []
    front_end = _front_end_id(clips.kind, clips.backend)
    for tid in track_ids:
        for copy in range(spec.copies):
            params = spec.draw(tid, copy, seed)
            path = clips.paths[tid]
            jobs_list.append((path, _cache_key(path, clips.kind, params, front_end), params))
    results, _ = _extract(jobs_list, clips.kind, clips.backend, jobs, progress, use_cache)
    out: dict[str, list[np.ndarray]] = {}
    tid_of = {p: t for t, p in clips.paths.items()}
    for path, key, _ in jobs_list:
        value = results[key]
        if isinstance(value, str):
            raise GenretagError(f"{path}: augmented copy failed: {value}")
        out.setdefault(tid_of[path], []).append(value)
    return out


def _front_end_id(kind: str, backend: str | None) -> str | None:
    """The id of the front end that makes ``kind`` inputs for ``backend`` (part of a clip's cache key), or None."""
    fe = inputs.loaded_front_end(kind, backend)
    return fe.id if fe is not None else None


def _cache_key(path: Path, kind: str, augment: dict[str, float] | None = None, front_end: str | None = None) -> str:
    st = os.stat(path)
    ident = {"v": CACHE_VERSION, "path": str(Path(path).resolve()), "size": st.st_size,
             "mtime_ns": st.st_mtime_ns, "kind": kind, "preprocessing": preprocessing(), "augment": augment}
    if front_end is not None:
        ident["front_end"] = front_end
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def _load_cached(key: str) -> np.ndarray | None:
    try:  # a regular file of bounded size only (tagger.common.userfiles): a FIFO planted there would block training
        with userfiles.open_input(cache_dir() / f"{key}.npy", "analysis cache file", userfiles.TABLE_LIMIT) as f:
            return np.load(f, allow_pickle=False)
    except (OSError, ValueError, FileError):  # absent, or truncated by a crash: analyse again
        return None


def _store(key: str, value: np.ndarray) -> None:
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{key}.{os.getpid()}.tmp.npy"
    np.save(tmp, value, allow_pickle=False)
    os.replace(tmp, folder / f"{key}.npy")


def _extract(jobs_list: list[tuple[Path, str, dict[str, float] | None]], kind: str, backend: str | None,
             jobs: int | None, progress: Progress | None, use_cache: bool) -> tuple[dict[str, np.ndarray | str], int]:
    """Analyse each (file, cache key, augmentation) once; cached values are read, not recomputed.

    Returns the input (or error text) per key and how many came from the cache.

    Augmented copies are rendered in this process to temporary WAV files
    that the pool then analyses like any clip, so one runner (with its
    per-file timeout and crash recovery) does all the analysis.
    """
    from tagger.run.runners import make_runner

    results: dict[str, np.ndarray | str] = {}
    todo = []
    if progress:
        progress.set_total(len(jobs_list))
    for path, key, params in jobs_list:
        if key in results:
            continue
        value = _load_cached(key) if use_cache else None
        if value is None:
            todo.append((path, key, params))
            continue
        results[key] = value
        if progress:
            progress.advance(str(path), "cached")
    hits = len(results)
    if not todo:
        return results, hits
    analysis = inputs.analysis_params(kind, backend, excerpt=None)  # clips are analysed whole
    with tempfile.TemporaryDirectory(prefix="genretag-augment-") as tmp:
        key_of: dict[str, str] = {}

        def tasks() -> Iterator[AnalysisTask]:
            for path, key, params in todo:
                source = _render(path, params, Path(tmp) / f"{key}.wav") if params else path
                key_of[str(source)] = key
                yield AnalysisTask(str(source), analysis)

        for result in make_runner(jobs).run(tasks()):
            key = key_of[result.path]
            value = get_kind(kind).model_input(result)
            if result.error or value is None or len(value) == 0:
                results[key] = result.error or "no input produced"
            else:
                results[key] = value
                _store(key, value)
            if progress:
                progress.advance(result.path, "failed" if isinstance(results[key], str) else "analysed")
    return results, hits


def _render(path: Path, params: dict[str, float], target: Path) -> Path:
    """Write the augmented whole clip as a float WAV for the pool to analyse."""
    import soundfile

    from tagger.media.audio import decode

    clip = decode(path, excerpt=None)  # at the pipeline's rate: the worker resamples for a front end
    soundfile.write(str(target), apply_augment(clip.samples, clip.sr, params), clip.sr, subtype="FLOAT")
    return target


@dataclass
class Part:
    """One part of a split as model rows: inputs, genre, owning track and slice position per row."""

    X: np.ndarray
    y: np.ndarray
    owners: np.ndarray
    pos: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def tracks(self) -> list[str]:
        """The distinct track ids with at least one row here, in row order."""
        return list(dict.fromkeys(self.owners.tolist()))


def partition(clips: ClipSet, split: Split) -> dict[str, Part]:
    """Rows of each part of ``split``: tracks are assigned first, slices follow their track.

    Only a ``slice_level`` split (slice-random) deals rows out across
    tracks, through ``Split.slice_indices``; every other protocol keeps all
    rows of a track in one part.
    """
    per_clip = [get_kind(clips.kind).rows(v) for v in clips.inputs]
    counts = [len(r) for r in per_clip]
    X = np.concatenate(per_clip) if per_clip else np.empty((0,))
    owners = np.repeat(np.array(clips.track_ids, dtype=object), counts)
    labels = np.repeat(np.array(clips.labels, dtype=object), counts)
    pos = np.concatenate([np.arange(n) for n in counts]) if counts else np.empty(0, dtype=int)
    idx = split.slice_indices(owners.tolist())
    return {name: Part(X[i], labels[i], owners[i], pos[i]) for name, i in zip(PARTS, idx)}


def with_copies(part: Part, copies: dict[str, list[np.ndarray]], kind: str) -> Part:
    """``part`` plus the rows of augmented copies whose original (track, slice) is in it."""
    label_of = dict(zip(part.owners.tolist(), part.y.tolist()))
    inside = set(zip(part.owners.tolist(), part.pos.tolist()))
    X, y, owners, pos = [part.X], [part.y], [part.owners], [part.pos]
    for tid, values in copies.items():
        for value in values:
            rows = get_kind(kind).rows(value)
            keep = [j for j in range(len(rows)) if (tid, j) in inside]
            if not keep:
                continue
            X.append(rows[keep])
            y.append(np.array([label_of[tid]] * len(keep), dtype=object))
            owners.append(np.array([tid] * len(keep), dtype=object))
            pos.append(np.array(keep))
    return Part(np.concatenate(X), np.concatenate(y), np.concatenate(owners), np.concatenate(pos))
