"""Decode a representative excerpt of any supported file to mono float32.

soundfile (WAV, AIFF, FLAC, MP3) and PyAV (MP4, Ogg Vorbis, Opus; FFmpeg ships in
its wheel, so ``pip install`` is the whole set-up) both seek, so only the
excerpt is decoded; soundfile is Vorbis and Opus's fallback. A window longer
than CHUNK_SECONDS is handed out chunk by chunk (:func:`open_stream`), so memory
does not grow with the file. Decoder speeds: docs/speed.md.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..common.errors import AnalysisError, DecodeError
from .params import DEFAULT_EXCERPT, SAMPLE_RATE, whole_or_seconds

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
#: Lowest sample rate analysed (telephone audio, the lowest Opus rate): a lower one carries no
#: music to tell a genre from, and resampling 20 samples at 1 Hz makes 20 s of made-up audio.
MIN_SAMPLE_RATE = 8000
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
    return os.path.splitext(path)[1].lower() in AUDIO_EXTENSIONS  # not Path(): a walk asks for every file


def excerpt_window(duration: float, excerpt: float | None) -> tuple[float, float]:
    """Start and length of the excerpt: centred, or the whole file when not longer by EXCERPT_SLACK."""
    excerpt = whole_or_seconds(excerpt)
    if excerpt is None or duration <= excerpt + EXCERPT_SLACK:
        return 0.0, duration
    return (duration - excerpt) / 2.0, excerpt


def decode(
    path: str | os.PathLike[str],
    *,
    sr: int = SAMPLE_RATE,
    excerpt: float | None = DEFAULT_EXCERPT,
) -> Excerpt:
    """Decode ``excerpt`` seconds from the middle of ``path`` (all of it when shorter).

    Raises DecodeError naming the file and the reason (AnalysisError for
    audio that decodes but cannot be analysed); never anything else for a
    bad file.
    """
    path = os.fspath(path)
    data, native_sr, duration, offset = _first_that_reads(path, excerpt, _decode_soundfile, _decode_pyav)
    mono = _finite(path, _to_mono(data))
    if native_sr != sr:
        mono = resample(mono, native_sr, sr)
    return Excerpt(np.ascontiguousarray(mono, dtype=np.float32), sr, duration, offset)


def check_file(path: str) -> os.stat_result:
    """The stat of a regular file that can be read and is not empty; else a DecodeError saying why.

    Opened without blocking and checked through that descriptor: a file
    replaced by a FIFO after the walk would otherwise hold its worker until
    a writer came (the whole --timeout), and a device would never end.
    """
    try:
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):  # open only what should be a file: opening a device can do things
            with open(path, "rb", opener=_nonblocking) as probe:
                st = os.fstat(probe.fileno())
    except OSError as exc:
        raise DecodeError(path, f"cannot read file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DecodeError(path, "not a regular file (a pipe, socket or device)")
    if st.st_size == 0:
        raise DecodeError(path, "empty file (0 bytes)")
    return st


def _nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK)


def _first_that_reads(path: str, excerpt: float | None, soundfile: Any, pyav: Any) -> Any:
    """What the first of the file's decoders (:func:`_decoder_order`) that can read it returns.

    When none can, a DecodeError gives each one's reason, once (two often
    say the same); audio that decodes but cannot be analysed (its sample
    rate) is an AnalysisError at once, as another decoder would find the same.
    """
    check_file(path)
    reasons = []
    for decoder in _decoder_order(path, soundfile, pyav):
        try:
            return decoder(path, excerpt)
        except AnalysisError:
            raise
        except DecodeError as exc:
            reasons.append(exc.reason)
        except MemoryError:
            raise DecodeError(path, "file too large to decode") from None
        except Exception as exc:  # decoders raise many unrelated types on garbage
            reasons.append(f"{type(exc).__name__}: {exc}")
    raise DecodeError(path, "cannot decode: " + "; ".join(dict.fromkeys(reasons)))


def _finite(path: str, mono: np.ndarray) -> np.ndarray:
    """``mono``, unless it holds NaN or infinity (a damaged float file): that is said, not analysed as silence."""
    if not np.all(np.isfinite(mono)):
        raise AnalysisError(path, "the audio holds non-finite samples (NaN or infinity): the file is damaged")
    return mono


def _check_rate(path: str, sr: int) -> None:
    if sr < MIN_SAMPLE_RATE:
        raise AnalysisError(path, f"sample rate {sr} Hz is below {MIN_SAMPLE_RATE} Hz, too low to analyse")


def _decoder_order(path: str, soundfile: Any, pyav: Any) -> list[Any]:
    """The decoders to try for ``path``, first choice first (see AUDIO_EXTENSIONS)."""
    suffix = Path(path).suffix.lower()
    if AUDIO_EXTENSIONS.get(suffix, "soundfile") == "soundfile":
        return [soundfile, pyav]
    return [pyav, soundfile] if suffix in SOUNDFILE_FALLBACK else [pyav]


def _to_mono(data: np.ndarray) -> np.ndarray:
    """Average channels, as librosa.to_mono does (frames x channels in).

    Column by column: ``mean(axis=1)`` over two channels takes ten times as long.
    One channel is returned as it is (a view), not copied again.
    """
    if data.ndim == 1 or data.shape[1] == 1:
        return (data if data.ndim == 1 else data[:, 0]).astype(np.float32, copy=False)
    mono = _sum_channels([data[:, c] for c in range(data.shape[1])], np.empty(len(data), dtype=np.float32))
    mono /= np.float32(data.shape[1])
    return mono


def _sum_channels(channels: list[np.ndarray], out: np.ndarray) -> np.ndarray:
    """The channels added in order into float32 ``out``: the sum both downmixes divide by the channel count."""
    np.copyto(out, channels[0])
    for channel in channels[1:]:
        out += channel
    return out


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """High-quality resampling with soxr, librosa's default resampler."""
    import soxr

    return soxr.resample(y, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def _open_soundfile(path: str) -> Any:
    import soundfile as sf

    try:
        return sf.SoundFile(os.fsencode(path))  # bytes: soundfile cannot encode non-UTF-8 names itself
    except sf.LibsndfileError as exc:
        reason = exc.error_string.strip()
        if "possibly a pipe" in reason:  # what its MP3 reader says of any file it does not recognise
            reason = "Format not recognised."
        raise DecodeError(path, f"soundfile: {reason}") from None


def _decode_soundfile(path: str, excerpt: float | None) -> tuple[np.ndarray, int, float, float]:
    import soundfile as sf

    with _open_soundfile(path) as f:
        native_sr = f.samplerate
        _check_rate(path, native_sr)
        duration = f.frames / native_sr
        start, length = excerpt_window(duration, excerpt)
        count = int(round(length * native_sr))
        try:
            data = _read_frames(f, int(round(start * native_sr)), count)
        except (sf.LibsndfileError, RuntimeError):
            if not start:
                raise
            data = None  # a FLAC cut short cannot even seek there
    if start and (data is None or data.shape[0] < min(count, min_frames(native_sr))):
        # A truncated file's header promises more than it holds: take what the start has, through a
        # new handle (libsndfile's is unusable after seeking past the end).
        with _open_soundfile(path) as f:
            start, data = 0.0, _read_frames(f, 0, count)
    if data.shape[0] == 0:
        raise DecodeError(path, "no audio frames could be decoded")
    return data, native_sr, duration, start


def min_frames(sr: int) -> int:
    """Frames in the shortest clip worth analysing (one 3 s slice)."""
    return 3 * sr


def _read_frames(f: object, first: int, count: int) -> np.ndarray:
    """Read ``count`` frames from ``first``, keeping what decodes before a damaged part.

    One read first: soundfile seeks again after every read, which is slow
    for MP3.  Only when that read fails is the excerpt read again block by
    block.
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


def _open_pyav(path: str) -> tuple[Any, Any, Any, int, float]:
    """File, container, first audio stream, its sample rate and duration (0 when unknown)."""
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
    try:
        if not container.streams.audio:
            raise DecodeError(path, "no audio stream in file")
        stream = container.streams.audio[0]
        _opus_to_mono(stream)
        native_sr = stream.codec_context.sample_rate or stream.rate
        if not native_sr:
            raise DecodeError(path, "audio stream has no sample rate")
        _check_rate(path, native_sr)
    except BaseException:
        container.close()
        fh.close()
        raise
    if stream.duration is not None and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / 1_000_000
    else:
        duration = 0.0
    return fh, container, stream, native_sr, duration


#: An Ogg Opus identification header ("OpusHead"): channel count at byte 9, mapping family at 18.
_OPUS_HEAD = b"OpusHead"


def _opus_to_mono(stream: Any) -> None:
    """Have FFmpeg's Opus decoder put out one channel of a stereo stream, the mean of the two.

    The analysis averages the channels anyway, and the decoder mixing before its
    inverse MDCT does that work once (docs/speed.md, "Opus mixed down by its
    decoder"; tests/test_audio.py checks the samples). Only the plain mono/stereo
    layout (mapping family 0) is touched, and only before the decoder opens.
    """
    ctx = stream.codec_context
    try:
        head = ctx.extradata if ctx.name == "opus" and not ctx.is_open else None
        if head and len(head) >= 19 and head.startswith(_OPUS_HEAD) and head[9] == 2 and head[18] == 0:
            ctx.extradata = head[:9] + b"\x01" + head[10:]
    except (AttributeError, ValueError, TypeError):  # a PyAV without these: decode both channels, as before
        pass


def _decode_pyav(path: str, excerpt: float | None) -> tuple[np.ndarray, int, float, float]:
    """The excerpt through FFmpeg, already averaged over channels: frames x 1."""
    opened = _open_pyav(path)
    _, _, _, native_sr, duration = opened
    start, length = excerpt_window(duration, excerpt)
    want = int(round(length * native_sr)) if duration else None
    capacity = (want or native_sr * 60) + native_sr
    mix = _Downmix(path, native_sr, capacity)
    with opened[0], opened[1]:
        skip = _fill(mix, _excerpt_frames(path, opened, start), want)
    if mix.size <= skip and start:  # a truncated file's header promises more than it holds: take what the start has
        start, opened, mix = 0.0, _open_pyav(path), _Downmix(path, native_sr, capacity)
        with opened[0], opened[1]:
            skip = _fill(mix, _excerpt_frames(path, opened, start), want)
    if mix.size <= skip:
        raise DecodeError(path, "no audio frames could be decoded")
    data = mix.take()[skip:]
    if want is not None:
        data = data[:want]
    if not duration:
        duration = len(data) / native_sr
    return data[:, np.newaxis], native_sr, duration, start


def _fill(mix: _Downmix, frames: Iterator[tuple[int, Any]], want: int | None) -> int:
    """Add ``frames`` to ``mix`` until it holds ``want`` samples of the excerpt; the samples before it."""
    skip = None
    for head, frame in frames:
        skip = head if skip is None else skip
        mix.add(frame)
        if want is not None and mix.size >= skip + want:
            break
    return skip or 0


class _Downmix:
    """Decoded frames averaged over their channels, straight into one growing float32 buffer.

    Each frame's planes are read where FFmpeg left them, with no per-frame array
    of every channel (docs/speed.md); the sum is in channel order in float32, as
    :func:`_to_mono`. A frame with another rate or channel count (a chained Ogg
    file) is a DecodeError, not audio played at the wrong speed.
    """

    def __init__(self, path: str, sr: int, capacity: int) -> None:
        self.path, self.sr = path, sr
        self.size = 0
        self.channels = 0
        self._buf = np.empty(max(capacity, 1 << 15), dtype=np.float32)

    def add(self, frame: Any) -> None:
        n = frame.samples
        planes = frame.planes
        planar_float = frame.format.name == "fltp"  # what FFmpeg's Vorbis, Opus, AAC and MP3 decoders give
        channels = len(planes) if planar_float else frame.layout.nb_channels
        if frame.sample_rate != self.sr or channels != (self.channels or channels):
            raise DecodeError(self.path, f"the stream changes from {self.channels} channels at {self.sr} Hz to "
                                         f"{channels} at {frame.sample_rate} Hz mid-stream")  # fmt: skip
        self.channels = channels
        if self.size + n > len(self._buf):
            grown = np.empty(max(2 * len(self._buf), self.size + n), dtype=np.float32)
            grown[: self.size] = self._buf[: self.size]
            self._buf = grown
        out = self._buf[self.size : self.size + n]
        self.size += n
        if planar_float and channels == 2:
            np.add(np.frombuffer(planes[0], _F32, n), np.frombuffer(planes[1], _F32, n), out=out)
            return
        _sum_channels([np.frombuffer(p, _F32, n) for p in planes] if planar_float else list(_planes(frame)), out)

    def take(self, n: int | None = None) -> np.ndarray:
        """The first ``n`` samples (all when None), averaged, as a new array; what follows them is kept."""
        n = self.size if n is None else min(n, self.size)
        head = self._buf[:n].copy()
        if self.channels > 1:
            head /= np.float32(self.channels)
        rest = self.size - n
        self._buf[:rest] = self._buf[n : self.size]
        self.size = rest
        return head


_F32 = np.dtype(np.float32)


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


#: Seconds decoded before the excerpt's start after a seek, and dropped: an Opus decoder needs
#: 80 ms of audio to converge after a jump (its seek pre-roll), and a Vorbis or AAC decoder
#: one packet to overlap with.
SEEK_PREROLL = 0.2


class _SeekFailed(Exception):
    """The container could not seek to the excerpt, or landed where the excerpt cannot be placed."""


def _excerpt_frames(path: str, opened: tuple[Any, Any, Any, int, float], start: float) -> Iterator[tuple[int, Any]]:
    """(head, frame) from ``start`` seconds on, ``head`` the first frame's samples before ``start``.

    ``opened`` is :func:`_open_pyav`'s result for ``path``; the caller closes
    it.  The excerpt is reached by seeking (Ogg: a bisection on page
    granules, a few reads), never by decoding from the beginning.  Only when
    the seek fails, or lands after the start or on frames without
    timestamps, is the file opened again and decoded from its beginning to
    ``start``: slower, same samples.
    """
    fh, container, stream, native_sr, _ = opened
    if start <= 0:
        yield from _frames_from(container, stream, start, native_sr, seek=False)
        return
    try:
        yield from _frames_from(container, stream, start, native_sr, seek=True)
        return
    except _SeekFailed:
        pass
    fh, container, stream, native_sr, _ = _open_pyav(path)
    with fh, container:
        yield from _frames_from(container, stream, start, native_sr, seek=False)


def _frames_from(container: Any, stream: Any, start: float, native_sr: int, *, seek: bool) -> Iterator[tuple[int, Any]]:
    """Frames that end after ``start`` seconds, each with its samples before ``start`` (only the first has any).

    With ``seek``, jumps to SEEK_PREROLL before ``start`` first and raises
    _SeekFailed, before yielding anything, when that cannot place the excerpt.
    Without, decodes from where the container is (its beginning).
    """
    import av

    if seek:
        try:
            container.seek(int(max(0.0, start - SEEK_PREROLL) / stream.time_base), stream=stream, any_frame=False,
                           backward=True)  # fmt: skip
        except (av.FFmpegError, OSError, ValueError, OverflowError) as exc:
            raise _SeekFailed(str(exc)) from None
    frames = _frames(container, stream)
    tick = float(stream.time_base) if stream.time_base else 0.0
    position: float | None = None  # seconds, at the current frame's first sample
    for frame in frames:  # until the frame that holds ``start``
        if frame.pts is not None and tick:
            position = frame.pts * tick
        elif position is None:
            if seek:
                raise _SeekFailed("no timestamps after the seek")
            position = 0.0
        if seek and position > start + 0.5 / native_sr:
            raise _SeekFailed(f"the seek landed at {position:.3f} s, after {start:.3f} s")
        seek = False  # only the first frame after a seek tells where it landed
        end = position + frame.samples / native_sr
        if end > start:
            yield max(0, int(round((start - position) * native_sr))), frame
            break
        position = end
    for frame in frames:  # the rest of the excerpt: no bookkeeping per frame
        yield 0, frame


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


# -- long windows, chunk by chunk ---------------------------------------------------------------

#: Longest stretch decoded and analysed at once (a last piece shorter than a quarter
#: of it joins the chunk before).  A longer window (``--excerpt 0`` on a long
#: recording) is streamed in chunks, so a worker's memory does not grow with the
#: file: about 0.5 GB per worker on 1- and 3-hour files, against 8 GB for a
#: one-hour file analysed in one piece (docs/speed.md).
CHUNK_SECONDS = 120.0
#: Native-rate frames read per decoder call while streaming.
_BLOCK_SECONDS = 30.0

Blocks = Callable[[], Iterator[np.ndarray]]


@dataclass(frozen=True)
class Stream:
    """A window of a file that is decoded chunk by chunk, only while :meth:`chunks` is iterated."""

    path: str
    sr: int
    duration: float  # length of the whole file in seconds
    offset: float  # where the window starts, seconds
    length: float  # the window's length by the file's header (a truncated file holds less)
    native_sr: int
    blocks: Blocks  # opens the file again and yields native-rate frames x channels

    def chunks(self, seconds: float = CHUNK_SECONDS) -> Iterator[np.ndarray]:
        """Mono float32 at ``sr`` in chunks of ``seconds`` (the last up to 1.25 times that)."""
        resampler = None
        if self.native_sr != self.sr:
            import soxr

            resampler = soxr.ResampleStream(self.native_sr, self.sr, 1, dtype="float32", quality="HQ")
        size = int(round(seconds * self.sr))
        tail = size // 4
        held: list[np.ndarray] = []
        count = 0
        for block in self.blocks():
            mono = _finite(self.path, _to_mono(block))
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=False)
            held.append(np.asarray(mono, dtype=np.float32))
            count += len(mono)
            while count >= size + tail:
                joined = np.concatenate(held)
                yield joined[:size]
                held, count = [joined[size:].copy()], count - size
        if resampler is not None:
            held.append(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True).astype(np.float32))
        rest = np.concatenate(held) if held else np.zeros(0, dtype=np.float32)
        if len(rest):
            yield rest


def open_stream(path: str | os.PathLike[str], *, sr: int = SAMPLE_RATE, excerpt: float | None = None) -> Stream:
    """Like :func:`decode`, but nothing is decoded until the stream's chunks are read.

    The file's header is read here, so an unreadable file fails now with a
    DecodeError naming the reason; a file damaged further on keeps what
    decoded before the damage, as :func:`decode` does.
    """
    path = os.fspath(path)
    native_sr, duration, start, length, blocks = _first_that_reads(path, excerpt, _soundfile_blocks, _pyav_blocks)
    return Stream(path, sr, duration, start, length, native_sr, _tolerant(path, blocks))


def _tolerant(path: str, blocks: Blocks) -> Blocks:
    """Blocks until a decoding error: it ends the stream once audio came, else is a DecodeError."""

    def run() -> Iterator[np.ndarray]:
        got = False
        try:
            for block in blocks():
                got = True
                yield block
        except DecodeError:
            if not got:
                raise
        except MemoryError:
            raise DecodeError(path, "file too large to decode") from None
        except Exception as exc:  # a damaged stretch, past what the block readers skip themselves
            if not got:
                raise DecodeError(path, f"cannot decode: {type(exc).__name__}: {exc}") from None

    return run


def _soundfile_blocks(path: str, excerpt: float | None) -> tuple[int, float, float, float, Blocks]:
    import soundfile as sf

    with _open_soundfile(path) as f:
        native_sr, frames = f.samplerate, f.frames
    _check_rate(path, native_sr)
    duration = frames / native_sr
    start, length = excerpt_window(duration, excerpt)

    def blocks() -> Iterator[np.ndarray]:
        per = max(1, int(_BLOCK_SECONDS * native_sr))
        pos, left = int(round(start * native_sr)), int(round(length * native_sr))
        with _open_soundfile(path) as f:
            if pos:
                f.seek(pos)
            while left > 0:
                try:  # read on without seeking: an MP3 seek is not sample-exact
                    data = f.read(min(per, left), dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError):  # a new handle: a failed read can leave this one unusable
                    with _open_soundfile(path) as again:
                        data = _read_frames(again, pos, min(per, left))  # seeks, and skips what is damaged
                if data.shape[0] == 0:
                    return
                yield data
                if data.shape[0] < min(per, left):  # shorter than its header says
                    return
                pos, left = pos + data.shape[0], left - data.shape[0]

    return native_sr, duration, start, length, blocks


def _pyav_blocks(path: str, excerpt: float | None) -> tuple[int, float, float, float, Blocks]:
    fh, container, stream, native_sr, duration = _open_pyav(path)
    fh.close()
    container.close()
    start, length = excerpt_window(duration, excerpt)

    def blocks() -> Iterator[np.ndarray]:
        opened = _open_pyav(path)
        fh, container = opened[0], opened[1]
        with fh, container:
            left = int(round(length * native_sr)) if duration else None
            per = max(1, int(_BLOCK_SECONDS * native_sr))
            mix = _Downmix(path, native_sr, per + native_sr)
            skip = None
            for head, frame in _excerpt_frames(path, opened, start):
                skip = head if skip is None else skip
                mix.add(frame)
                while mix.size >= skip + per:
                    data = mix.take(skip + per)[skip:]
                    skip = 0
                    if left is not None:
                        data, left = data[:left], left - min(left, len(data))
                    yield data[:, np.newaxis]
                    if left == 0:
                        return
            if mix.size > (skip or 0):
                data = mix.take()[skip or 0 :]
                yield (data if left is None else data[:left])[:, np.newaxis]

    return native_sr, duration, start, length, blocks
