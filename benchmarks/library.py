"""A synthetic music library in the formats people keep, built once and cached.

Track ``i`` is always the same file (its seed is ``i``), so a library of N
tracks is the first N of an endless sequence and a larger run only adds
files.  Formats follow a real-world mix (mostly MP3, then FLAC and AAC,
some Ogg Vorbis and Opus) at the bitrates stores and rippers use; tracks
last 3 to 5 minutes at 44.1 kHz stereo (Opus: 48 kHz, the only rate it has).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .synth import track

#: One cycle of the format mix: 4 MP3, 2 FLAC, 2 AAC, 1 Vorbis, 1 Opus per 10 tracks.
FORMAT_CYCLE = ("mp3", "flac", "m4a", "mp3", "ogg", "mp3", "flac", "m4a", "mp3", "opus")
#: The album collection of long tracks (issue 12): 4 Opus, 3 Vorbis, 2 MP3, 1 FLAC per 10, 5 to 10 minutes.
LONG_FORMAT_CYCLE = ("opus", "ogg", "mp3", "opus", "ogg", "flac", "opus", "ogg", "mp3", "opus")
#: format -> (soundfile major format, subtype, compression level, nominal bitrate label)
SOUNDFILE_CODECS = {
    "mp3": ("MP3", "MPEG_LAYER_III", 0.4, "192 kbps CBR"),
    "flac": ("FLAC", "PCM_16", 0.5, "lossless 16-bit"),
    "ogg": ("OGG", "VORBIS", 0.3, "Vorbis VBR ~q6"),
    "opus": ("OGG", "OPUS", 0.75, "Opus ~128 kbps"),
}
AAC_BITRATE = 256_000
MANIFEST = "manifest.json"
VERSION = 1  # bump when synth or encoders change: cached files are then rebuilt


@dataclass
class TrackInfo:
    """What was generated for one track, kept in the manifest."""

    index: int
    path: str  # relative to the library folder
    format: str
    seconds: float
    bpm: float
    sample_rate: int
    kbps: float
    version: int = VERSION


def spec(index: int) -> tuple[str, float, int]:
    """Format, length in seconds and sample rate of track ``index``."""
    fmt = FORMAT_CYCLE[index % len(FORMAT_CYCLE)]
    seconds = float(np.random.default_rng(10_000 + index).uniform(180.0, 300.0))
    return fmt, round(seconds, 2), 48000 if fmt == "opus" else 44100


def long_spec(index: int) -> tuple[str, float, int]:
    """Like :func:`spec`, for the library of long tracks (benchmarks/bench_long.py)."""
    fmt = LONG_FORMAT_CYCLE[index % len(LONG_FORMAT_CYCLE)]
    seconds = float(np.random.default_rng(20_000 + index).uniform(300.0, 600.0))
    return fmt, round(seconds, 2), 48000 if fmt == "opus" else 44100


SPECS = {"mixed": spec, "long": long_spec}


def _write(path: Path, data: np.ndarray, sr: int, fmt: str) -> None:
    if fmt in SOUNDFILE_CODECS:
        import soundfile as sf

        major, subtype, level, _ = SOUNDFILE_CODECS[fmt]
        extra = {"bitrate_mode": "CONSTANT"} if fmt == "mp3" else {}
        with sf.SoundFile(str(path), "w", sr, data.shape[1], subtype, format=major,
                          compression_level=level, **extra) as f:
            for i in range(0, len(data), 1 << 15):  # one big write overflows libsndfile's stack
                f.write(data[i : i + (1 << 15)])
        return
    import av

    with av.open(str(path), "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=sr, layout="stereo")
        stream.bit_rate = AAC_BITRATE
        planar = np.ascontiguousarray(data.T)
        step = 1024 * 64
        for i in range(0, planar.shape[1], step):
            frame = av.AudioFrame.from_ndarray(planar[:, i : i + step], format="fltp", layout="stereo")
            frame.sample_rate = sr
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _make(folder: str, index: int, kind: str = "mixed") -> TrackInfo:
    fmt, seconds, sr = SPECS[kind](index)
    rel = f"{fmt}/track-{index:05d}.{fmt}"
    path = Path(folder) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    data, bpm = track(index, seconds, sr)
    tmp = path.with_name(".tmp-" + path.name)  # hidden: a scan never sees half-written files
    _write(tmp, data, sr, fmt)
    os.replace(tmp, path)
    kbps = path.stat().st_size * 8 / seconds / 1000
    return TrackInfo(index, rel, fmt, seconds, round(bpm, 2), sr, round(kbps, 1))


def _load_manifest(folder: Path) -> dict[int, TrackInfo]:
    try:
        rows = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {r["index"]: TrackInfo(**r) for r in rows if r.get("version") == VERSION}


def build(folder: str | os.PathLike[str], tracks: int, jobs: int = 2, log=print, kind: str = "mixed") -> list[TrackInfo]:
    """Make sure ``folder`` holds tracks 0..tracks-1 of ``kind`` (see SPECS); generate only the missing ones."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    known = _load_manifest(folder)
    missing = [i for i in range(tracks) if i not in known or not (folder / known[i].path).is_file()]
    if missing:
        log(f"generating {len(missing)} track(s) in {folder} with {jobs} process(es)...")
        with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
            for info in pool.map(_make, [str(folder)] * len(missing), missing, [kind] * len(missing)):
                known[info.index] = info
                (folder / MANIFEST).write_text(json.dumps([asdict(t) for t in known.values()], indent=1))
    return [known[i] for i in range(tracks)]


def view(folder: str | os.PathLike[str], infos: list[TrackInfo], name: str, copies: int = 1) -> list[Path]:
    """A folder of hard links to exactly ``infos``, ``copies`` times over; the links, in order.

    A library may hold more tracks than a run uses, and a long run can scan
    each track several times under different paths (``copy-K/``): every
    link is a separate file to genretag, analysed in full.
    """
    root = Path(folder)
    out = root.parent / name
    links = [out / f"copy-{k}" / info.path for k in range(copies) for info in infos]
    wanted = {str(link) for link in links}
    for dirpath, _, files in os.walk(out):
        for f in files:
            if os.path.join(dirpath, f) not in wanted:
                os.unlink(os.path.join(dirpath, f))
    for link, info in zip(links, [i for _ in range(copies) for i in infos]):
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            os.link(root / info.path, link)
    return links
