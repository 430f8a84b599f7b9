"""Decode a representative excerpt of any supported file to mono float32.

libsndfile (through soundfile) reads WAV, AIFF, FLAC and MP3 and can seek,
so only the excerpt is decoded.  AAC and ALAC in MP4 containers, Ogg Vorbis
and Opus go through PyAV, which ships FFmpeg inside its wheel, so
``pip install`` stays the whole set-up; FFmpeg also seeks, and decodes a
30 s excerpt of Vorbis 1.4 times and of Opus 2.8 times faster than
libsndfile, which remains their fallback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DecodeError

SAMPLE_RATE = 22050
DEFAULT_EXCERPT = 30.0

#: Extensions genretag analyses, mapped to the decoder that reads them first.
AUDIO_EXTENSIONS: dict[str, str] = {
    ".mp3": "soundfile",
    ".flac": "soundfile",
    ".ogg": "pyav",
    ".oga": "pyav",
    ".opus": "pyav",
    ".wav": "soundfile",
    ".wave": "soundfile",
    ".aif": "soundfile",
    ".aiff": "soundfile",
    ".aifc": "soundfile",
    ".au": "soundfile",
    ".m4a": "pyav",
    ".mp4": "pyav",
    ".m4b": "pyav",
    ".aac": "pyav",
    ".alac": "pyav",
}
#: Extensions FFmpeg reads first that libsndfile can read when FFmpeg fails.
SOUNDFILE_FALLBACK = frozenset({".ogg", ".oga", ".opus"})
#: A file at most this much longer than the excerpt is analysed whole: trimming
#: 0.01 s off a 30.01 s clip would shift every STFT frame and move its features
#: by up to 3% from those of the whole clip (the GTZAN table's definition).
EXCERPT_SLACK = 1.0


@dataclass(frozen=True)
class Excerpt:
    """Mono samples of the analysed part of a file, and where it came from."""

    samples: np.ndarray  # float32, mono, at ``sr``
    sr: int
    duration: float  # length of the whole file in seconds
    offset: float  # where the excerpt starts in the file, seconds


def is_audio(path: str | os.PathLike[str]) -> bool:
    """True when the file's extension is one genretag analyses."""
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def excerpt_window(duration: float, excerpt: float | None) -> tuple[float, float]:
    """Start and length of the excerpt: centred, or the whole file when not longer by EXCERPT_SLACK."""
    if not excerpt or excerpt <= 0 or duration <= excerpt + EXCERPT_SLACK:
        return 0.0, duration
    return (duration - excerpt) / 2.0, excerpt


def decode(
    path: str | os.PathLike[str],
    *,
    sr: int = SAMPLE_RATE,
    excerpt: float | None = DEFAULT_EXCERPT,
) -> Excerpt:
    """Decode ``excerpt`` seconds from the middle of ``path`` (all of it when shorter).

    Raises DecodeError naming the file and the reason; never anything else
    for a bad file.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as probe:  # a clear reason for unreadable files, before any decoder
            empty = not probe.read(1)
    except OSError as exc:
        raise DecodeError(path, f"cannot read file: {exc.strerror or exc}") from None
    if empty:
        raise DecodeError(path, "empty file (0 bytes)")
    suffix = Path(path).suffix.lower()
    kind = AUDIO_EXTENSIONS.get(suffix, "soundfile")
    if kind == "soundfile":
        order = [_decode_soundfile, _decode_pyav]
    else:
        order = [_decode_pyav, _decode_soundfile] if suffix in SOUNDFILE_FALLBACK else [_decode_pyav]
    reasons = []
    for decoder in order:
        try:
            data, native_sr, duration, offset = decoder(path, excerpt)
            break
        except DecodeError as exc:
            reasons.append(exc.reason)
        except MemoryError:
            raise DecodeError(path, "file too large to decode") from None
        except Exception as exc:  # decoders raise many unrelated types on garbage
            reasons.append(f"{type(exc).__name__}: {exc}")
    else:
        raise DecodeError(path, "cannot decode: " + "; ".join(reasons))
    mono = _to_mono(data)
    if not np.all(np.isfinite(mono)):
        mono = np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0)
    if native_sr != sr:
        mono = _resample(mono, native_sr, sr)
    return Excerpt(np.ascontiguousarray(mono, dtype=np.float32), sr, duration, offset)


def _to_mono(data: np.ndarray) -> np.ndarray:
    """Average channels, as librosa.to_mono does (frames x channels in).

    Column by column: ``mean(axis=1)`` over two channels takes ten times as long.
    """
    if data.ndim == 1:
        return data.astype(np.float32, copy=False)
    mono = data[:, 0].astype(np.float32, copy=True)
    for channel in range(1, data.shape[1]):
        mono += data[:, channel]
    if data.shape[1] > 1:
        mono /= np.float32(data.shape[1])
    return mono


def _resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """High-quality resampling with soxr, librosa's default resampler."""
    import soxr

    return soxr.resample(y, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def _decode_soundfile(path: str, excerpt: float | None) -> tuple[np.ndarray, int, float, float]:
    import soundfile as sf

    try:
        f = sf.SoundFile(os.fsencode(path))  # bytes: soundfile cannot encode non-UTF-8 names itself
    except sf.LibsndfileError as exc:
        raise DecodeError(path, f"soundfile: {exc.error_string.strip()}") from None
    with f:
        native_sr = f.samplerate
        if native_sr <= 0:
            raise DecodeError(path, f"invalid sample rate {native_sr}")
        duration = f.frames / native_sr
        start, length = excerpt_window(duration, excerpt)
        count = int(round(length * native_sr))
        data = _read_frames(f, int(round(start * native_sr)), count)
        if start and data.shape[0] < min(count, min_frames(native_sr)):
            # A truncated file's header promises more than it holds: take what the start has.
            start, data = 0.0, _read_frames(f, 0, count)
    if data.shape[0] == 0:
        raise DecodeError(path, "no audio frames could be decoded")
    return data, native_sr, duration, start


def min_frames(sr: int) -> int:
    """Frames in the shortest clip worth analysing (one 3 s slice)."""
    return 3 * sr


def _read_frames(f: object, first: int, count: int) -> np.ndarray:
    """Read ``count`` frames from ``first``, keeping what decodes before a damaged part.

    One read first: soundfile seeks again after every read, which costs the
    MP3 decoder ~0.3 ms a time (6 ms an excerpt in 64k-frame blocks).  Only
    when that read fails is the excerpt read again block by block.
    """
    import soundfile as sf

    if first:
        f.seek(first)  # type: ignore[attr-defined]
    try:
        return f.read(count, dtype="float32", always_2d=True)  # type: ignore[attr-defined]
    except (sf.LibsndfileError, RuntimeError):
        f.seek(first)  # type: ignore[attr-defined]
    channels, sr = f.channels, f.samplerate  # type: ignore[attr-defined]
    blocks: list[np.ndarray] = []
    errors = 0
    pos, left = first, count
    while left > 0:
        try:
            block = f.read(min(left, 1 << 16), dtype="float32", always_2d=True)  # type: ignore[attr-defined]
        except (sf.LibsndfileError, RuntimeError):
            # A damaged stretch: step one second past it, as players do, a few times at most.
            errors += 1
            pos, left = pos + sr, left - sr
            try:
                if errors > 10 or left <= 0:
                    raise RuntimeError
                f.seek(pos)  # type: ignore[attr-defined]
            except (sf.LibsndfileError, RuntimeError):
                if not blocks:
                    raise
                break
            continue
        if block.shape[0] == 0:
            break
        blocks.append(block)
        pos += block.shape[0]
        left -= block.shape[0]
    return np.concatenate(blocks) if blocks else np.zeros((0, channels), dtype=np.float32)


def _decode_pyav(path: str, excerpt: float | None) -> tuple[np.ndarray, int, float, float]:
    try:
        import av
    except ImportError:  # pragma: no cover - av is a hard dependency
        raise DecodeError(
            path, f"no decoder for {Path(path).suffix} files: install PyAV with `pip install av`"
        ) from None
    fh = open(path, "rb")  # a file object: FFmpeg cannot take every POSIX file name as text
    try:
        container = av.open(fh)
    except av.FFmpegError as exc:
        fh.close()
        raise DecodeError(path, f"pyav: {getattr(exc, 'strerror', None) or exc}") from None
    with fh, container:
        if not container.streams.audio:
            raise DecodeError(path, "no audio stream in file")
        stream = container.streams.audio[0]
        native_sr = stream.codec_context.sample_rate or stream.rate
        if not native_sr:
            raise DecodeError(path, "audio stream has no sample rate")
        if stream.duration is not None and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        else:
            duration = 0.0
        start, length = excerpt_window(duration, excerpt)
        if start > 0:
            container.seek(int(start / stream.time_base), stream=stream, any_frame=False, backward=True)
        want = int(round(length * native_sr)) if duration else None
        fifo = av.AudioFifo()  # frames are joined in C: per-frame numpy work cost more than decoding
        skip = None
        for frame in _frames(container, stream):
            if skip is None:  # the first frame after a seek may start before the excerpt
                skip = 0
                if start > 0 and frame.pts is not None:
                    skip = max(0, int(round((start - float(frame.pts * frame.time_base)) * native_sr)))
            frame.pts = None  # the fifo checks timestamps; they are not needed any more
            fifo.write(frame)
            if want is not None and fifo.samples >= skip + want:
                break
        joined = fifo.read() if fifo.samples else None
    if joined is None or joined.samples <= (skip or 0):
        raise DecodeError(path, "no audio frames could be decoded")
    data = _planes(joined)[:, skip:]
    if want is not None:
        data = data[:, :want]
    data = data.T  # frames x channels, each channel contiguous
    if not duration:
        duration = data.shape[0] / native_sr
    return data, native_sr, duration, start


def _planes(frame: object) -> np.ndarray:
    """A decoded frame's samples as float32, channels x frames."""
    arr = frame.to_ndarray()  # type: ignore[attr-defined]
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if not frame.format.is_planar:  # type: ignore[attr-defined]  # interleaved: (1, frames*channels)
        arr = arr.reshape(-1, len(frame.layout.channels)).T  # type: ignore[attr-defined]
    if arr.dtype.kind in "iu":
        return arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    return arr.astype(np.float32, copy=False)


def _frames(container: object, stream: object) -> Iterator[object]:
    """Decoded frames, skipping packets that fail to decode (damaged parts of a file)."""
    import av

    bad = 0
    for packet in container.demux(stream):  # type: ignore[attr-defined]
        try:
            yield from packet.decode()
        except av.InvalidDataError:
            bad += 1
            if bad > 50:
                raise
