"""Decode a representative excerpt of any supported file to mono float32.

libsndfile (through soundfile) reads WAV, AIFF, FLAC, Ogg Vorbis, Opus and
MP3 and can seek, so only the excerpt is decoded.  AAC and ALAC in MP4
containers go through PyAV, which ships FFmpeg inside its wheel, so
``pip install`` stays the whole set-up.
"""

from __future__ import annotations

import os
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
    ".ogg": "soundfile",
    ".oga": "soundfile",
    ".opus": "soundfile",
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
    """Start and length of the excerpt: centred, or the whole file when shorter."""
    if not excerpt or excerpt <= 0 or duration <= excerpt:
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
        size = os.path.getsize(path)
    except OSError as exc:
        raise DecodeError(path, f"cannot read file: {exc.strerror or exc}") from None
    if size == 0:
        raise DecodeError(path, "empty file (0 bytes)")
    kind = AUDIO_EXTENSIONS.get(Path(path).suffix.lower(), "soundfile")
    order = [_decode_soundfile, _decode_pyav] if kind == "soundfile" else [_decode_pyav]
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
    """Average channels, as librosa.to_mono does (frames x channels in)."""
    if data.ndim == 1:
        return data.astype(np.float32, copy=False)
    return data.mean(axis=1, dtype=np.float32)


def _resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """High-quality resampling with soxr, librosa's default resampler."""
    import soxr

    return soxr.resample(y, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def _decode_soundfile(path: str, excerpt: float | None) -> tuple[np.ndarray, int, float, float]:
    import soundfile as sf

    try:
        f = sf.SoundFile(path)
    except sf.LibsndfileError as exc:
        raise DecodeError(path, f"soundfile: {exc.error_string}") from None
    with f:
        native_sr = f.samplerate
        frames = f.frames
        if native_sr <= 0:
            raise DecodeError(path, f"invalid sample rate {native_sr}")
        duration = frames / native_sr
        start, length = excerpt_window(duration, excerpt)
        first = int(round(start * native_sr))
        count = int(round(length * native_sr))
        if first and f.seekable():
            f.seek(first)
        elif first:
            f.read(first, dtype="float32")
        data = f.read(count, dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        raise DecodeError(path, "no audio frames could be decoded")
    return data, native_sr, duration, start


def _decode_pyav(path: str, excerpt: float | None) -> tuple[np.ndarray, int, float, float]:
    try:
        import av
    except ImportError:  # pragma: no cover - av is a hard dependency
        raise DecodeError(
            path, f"no decoder for {Path(path).suffix} files: install PyAV with `pip install av`"
        ) from None
    try:
        container = av.open(path)
    except av.FFmpegError as exc:
        raise DecodeError(path, f"pyav: {exc}") from None
    with container:
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
        chunks: list[np.ndarray] = []
        have = 0
        want = int(round(length * native_sr)) if duration else None
        for frame in container.decode(stream):
            arr = frame.to_ndarray()
            if arr.ndim == 1:
                arr = arr[np.newaxis, :]
            if not frame.format.is_planar:  # interleaved: (1, frames*channels)
                arr = arr.reshape(-1, len(frame.layout.channels)).T
            if arr.dtype.kind in "iu":
                arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
            frame_time = float(frame.pts * frame.time_base) if frame.pts is not None else None
            if start > 0 and frame_time is not None and not chunks:
                skip = int(round((start - frame_time) * native_sr))
                if skip >= arr.shape[1]:
                    continue
                if skip > 0:
                    arr = arr[:, skip:]
            chunks.append(arr.astype(np.float32, copy=False).T)
            have += arr.shape[1]
            if want is not None and have >= want:
                break
    if not chunks:
        raise DecodeError(path, "no audio frames could be decoded")
    data = np.concatenate(chunks, axis=0)
    if want is not None:
        data = data[:want]
    if not duration:
        duration = data.shape[0] / native_sr
    return data, native_sr, duration, start
