"""Make small, real audio files of every format genretag handles, for tests.

Files are generated rather than committed so each test gets fresh bytes in
``tmp_path`` and can choose the sample rate, channels, length and signal.
soundfile (libsndfile) writes WAV, AIFF, FLAC, Ogg Vorbis, Opus and MP3;
PyAV (FFmpeg) writes AAC and ALAC in MP4 (``.m4a``).  Tagging helpers use
mutagen directly: only the package itself must keep mutagen in tagger/media/tags.py.
"""

from __future__ import annotations

import base64
import os
import struct
import zlib
from pathlib import Path

import numpy as np

#: Every format ``make_audio`` can write, mapped to its file extension.
EXTENSIONS: dict[str, str] = {
    "wav": ".wav",
    "flac": ".flac",
    "ogg": ".ogg",
    "opus": ".opus",
    "mp3": ".mp3",
    "aiff": ".aiff",
    "m4a-aac": ".m4a",
    "m4a-alac": ".m4a",
}
FORMATS: tuple[str, ...] = tuple(EXTENSIONS)

# format -> (soundfile major format, default subtype)
_SOUNDFILE: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "aiff": ("AIFF", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
# Opus only encodes at these rates; libsndfile refuses anything else.
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
# ALAC bit depth -> PyAV planar sample format.
_ALAC_FORMATS = {16: "s16p", 24: "s32p"}  # FFmpeg stores s32p as 24-bit ALAC


def signal(
    seconds: float = 1.0, sr: int = 22050, channels: int = 1, kind: str = "tone", seed: int = 0
) -> np.ndarray:
    """Float32 samples shaped (frames, channels) in [-1, 1], deterministic per seed.

    ``tone`` is a sine (440 Hz, a fifth higher per extra channel) with a
    little noise so lossy encoders have something real to chew on; ``noise``
    is white noise; ``silence`` is zeros.
    """
    n = max(1, int(round(seconds * sr)))
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    if kind == "silence":
        out = np.zeros((n, channels))
    elif kind == "noise":
        out = 0.3 * rng.uniform(-1.0, 1.0, size=(n, channels))
    elif kind == "tone":
        freqs = 440.0 * 1.5 ** np.arange(channels)
        out = 0.5 * np.sin(2 * np.pi * t[:, None] * freqs) + 0.05 * rng.uniform(-1.0, 1.0, size=(n, channels))
    else:
        raise ValueError(f"unknown signal kind {kind!r} (tone, noise or silence)")
    return out.astype(np.float32)


def make_audio(
    path: str | os.PathLike[str],
    fmt: str,
    seconds: float = 1.0,
    sr: int | None = None,
    channels: int = 1,
    kind: str = "tone",
    subtype: str | int | None = None,
    seed: int = 0,
) -> Path:
    """Write ``seconds`` of ``kind`` signal to ``path`` as ``fmt`` and return the path.

    ``sr`` defaults to 22050 Hz, or 48000 Hz for Opus (which allows only
    ``OPUS_RATES``).  ``subtype`` is the libsndfile subtype for soundfile
    formats (e.g. ``"PCM_24"``, ``"FLOAT"``), the bit depth (16 or 24) for
    ALAC, and must be None for AAC.  The file carries no tags.
    """
    if fmt not in EXTENSIONS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if sr is None:
        sr = 48000 if fmt == "opus" else 22050
    if fmt == "opus" and sr not in OPUS_RATES:
        raise ValueError(f"opus needs a sample rate in {OPUS_RATES}, not {sr}")
    path = Path(path)
    data = signal(seconds, sr, channels, kind, seed)
    if fmt in _SOUNDFILE:
        import soundfile as sf

        major, default_subtype = _SOUNDFILE[fmt]
        sf.write(str(path), data, sr, format=major, subtype=str(subtype or default_subtype))
    else:
        _write_m4a(path, data, sr, codec=fmt.split("-")[1], bits=subtype)
    return path


def _write_m4a(path: Path, data: np.ndarray, sr: int, codec: str, bits: str | int | None) -> None:
    import av

    if codec == "aac":
        if bits is not None:
            raise ValueError("AAC has no bit depth; leave subtype as None")
        sample_format = "fltp"
        planar = np.ascontiguousarray(data.T)
    else:
        depth = int(bits or 16)
        if depth not in _ALAC_FORMATS:
            raise ValueError(f"ALAC bit depth must be one of {sorted(_ALAC_FORMATS)}, not {depth}")
        sample_format = _ALAC_FORMATS[depth]
        scale = 2 ** (15 if sample_format == "s16p" else 31) - 1
        dtype = np.int16 if sample_format == "s16p" else np.int32
        planar = np.ascontiguousarray(np.round(data.T.astype(np.float64) * scale).astype(dtype))
    layout = "mono" if data.shape[1] == 1 else "stereo" if data.shape[1] == 2 else f"{data.shape[1]}c"
    with av.open(str(path), "w", format="ipod") as container:
        stream = container.add_stream(codec, rate=sr, layout=layout)
        stream.format = sample_format
        frame = av.AudioFrame.from_ndarray(planar, format=sample_format, layout=layout)
        frame.sample_rate = sr
        frame.pts = 0
        # Re-chunk to the encoder's frame size; the last, short frame is allowed.
        size = stream.codec_context.frame_size or 1024
        resampler = av.AudioResampler(format=sample_format, layout=layout, rate=sr, frame_size=size)
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            container.mux(stream.encode(chunk))
        container.mux(stream.encode(None))


def decode(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Every decoded sample of a file as float32 (frames, channels) and its rate.

    Used to prove that tag writes never touch audio: compare before and after.
    """
    path = str(path)
    if not path.lower().endswith((".m4a", ".mp4")):
        import soundfile as sf

        data, sr = sf.read(path, dtype="float32", always_2d=True)
        return data, sr
    import av

    chunks = []
    with av.open(path) as container:
        stream = container.streams.audio[0]
        sr = stream.codec_context.sample_rate
        for frame in container.decode(stream):
            arr = frame.to_ndarray()
            arr = arr.T if frame.format.is_planar else arr.reshape(-1, len(frame.layout.channels))
            if arr.dtype.kind == "i":  # ALAC: scale integers like libsndfile does
                arr = arr / float(2 ** (8 * arr.dtype.itemsize - 1))
            chunks.append(arr.astype(np.float32))
    return np.concatenate(chunks), sr


def png(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (200, 30, 90)) -> bytes:
    """A tiny valid PNG, for cover art, without needing an imaging library."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


COVER = png()


def add_test_tags(
    path: str | os.PathLike[str],
    artist: str = "Test Artist",
    title: str = "Test Title",
    cover: bytes | None = COVER,
    genres: list[str] | None = None,
    id3v23: bool = False,
    album: str | None = None,
    album_artist: str | None = None,
    compilation: bool | None = None,
) -> None:
    """Give a file artist, title, front cover (and genres, album, album artist, compilation flag
    if given) in its native tag format.

    ID3 (MP3, WAV, AIFF) is written as v2.4, or v2.3 with ``id3v23`` (genres
    then joined with ``"; "``).  Used to check that genre writes leave every
    other tag and the cover alone.
    """
    import mutagen
    from mutagen import id3
    from mutagen.flac import FLAC, Picture
    from mutagen.mp4 import MP4, MP4Cover

    f = mutagen.File(str(path))
    if f is None:
        raise ValueError(f"{path}: mutagen cannot open this file")
    if f.tags is None:
        f.add_tags()
    tags = f.tags
    if isinstance(tags, id3.ID3):
        tags.add(id3.TPE1(encoding=3, text=[artist]))
        tags.add(id3.TIT2(encoding=3, text=[title]))
        if cover is not None:
            tags.add(id3.APIC(encoding=3, mime="image/png", type=3, desc="Cover", data=cover))
        if genres:
            tags.add(id3.TCON(encoding=3, text=["; ".join(genres)] if id3v23 else genres))
        if album is not None:
            tags.add(id3.TALB(encoding=3, text=[album]))
        if album_artist is not None:
            tags.add(id3.TPE2(encoding=3, text=[album_artist]))
        if compilation is not None:
            tags.add(id3.TCMP(encoding=3, text=["1" if compilation else "0"]))
        if id3v23:
            tags.update_to_v23()
        f.save(v2_version=3 if id3v23 else 4, v23_sep=None)
        return
    if isinstance(f, MP4):
        tags["\xa9ART"] = [artist]
        tags["\xa9nam"] = [title]
        if cover is not None:
            tags["covr"] = [MP4Cover(cover, imageformat=MP4Cover.FORMAT_PNG)]
        if genres:
            tags["\xa9gen"] = genres
        if album is not None:
            tags["\xa9alb"] = [album]
        if album_artist is not None:
            tags["aART"] = [album_artist]
        if compilation is not None:
            tags["cpil"] = compilation
        f.save()
        return
    # Vorbis comments: FLAC, Ogg Vorbis, Opus.
    tags["ARTIST"] = [artist]
    tags["TITLE"] = [title]
    if genres:
        tags["GENRE"] = genres
    for key, value in (("ALBUM", album), ("ALBUMARTIST", album_artist),
                       ("COMPILATION", None if compilation is None else str(int(compilation)))):
        if value is not None:
            tags[key] = [value]
    if cover is not None:
        pic = Picture()
        pic.type, pic.mime, pic.desc, pic.data = 3, "image/png", "Cover", cover
        pic.width = pic.height = 2
        pic.depth = 24
        if isinstance(f, FLAC):
            f.add_picture(pic)
        else:
            tags["METADATA_BLOCK_PICTURE"] = [base64.b64encode(pic.write()).decode("ascii")]
    f.save()


def mp3_with_big_tags(path: Path, picture_mb: float = 1.0, frames: int = 300, seed: int = 5) -> Path:
    """A 4 s MP3 whose ID3 tag holds a ``picture_mb`` MB cover and ``frames`` TXXX frames (slow to parse)."""
    from mutagen import id3
    from mutagen.mp3 import MP3

    make_audio(path, "mp3", seconds=4.0, kind="noise", seed=seed)
    f = MP3(str(path))
    f.add_tags()
    f.tags.add(id3.APIC(encoding=3, mime="image/jpeg", type=3, desc="cover", data=os.urandom(int(picture_mb * 2**20))))
    for i in range(frames):
        f.tags.add(id3.TXXX(encoding=3, desc=f"field {i}", text=[f"value {i}"]))
    f.save()
    return path
