"""Decoding: every format, excerpt from the middle, odd rates, channels and bit depths, clear errors."""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiofiles import FORMATS, make_audio, signal
from tagger.common.errors import AnalysisError, DecodeError
from tagger.media.audio import decode, excerpt_window, open_stream


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_decodes_to_mono_22050(tmp_path: Path, fmt: str) -> None:
    path = make_audio(tmp_path / f"x.{fmt.split('-')[-1]}", fmt, seconds=4.0, channels=2)
    clip = decode(path)
    assert clip.sr == 22050
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert clip.duration == pytest.approx(4.0, abs=0.1)
    assert len(clip.samples) / clip.sr == pytest.approx(clip.duration, abs=0.1)
    assert 0.1 < np.abs(clip.samples).max() <= 1.01


def test_excerpt_comes_from_the_middle(tmp_path: Path) -> None:
    sr = 8000
    t = np.arange(sr * 10) / sr
    y = np.zeros_like(t)
    y[4 * sr : 6 * sr] = 0.5 * np.sin(2 * np.pi * 300 * t[: 2 * sr])  # loud only from 4 s to 6 s
    sf.write(tmp_path / "mid.wav", y, sr)
    clip = decode(tmp_path / "mid.wav", excerpt=2.0)
    assert clip.offset == pytest.approx(4.0)
    assert len(clip.samples) == pytest.approx(2 * 22050, abs=2)
    assert np.sqrt(np.mean(clip.samples**2)) > 0.3  # the loud middle, not the silent edges


def test_short_file_is_decoded_whole(tmp_path: Path) -> None:
    path = make_audio(tmp_path / "s.flac", "flac", seconds=5.0)
    clip = decode(path, excerpt=30.0)
    assert clip.offset == 0.0 and len(clip.samples) == pytest.approx(5 * 22050, abs=2)


def test_m4a_excerpt_seeks(tmp_path: Path) -> None:
    path = make_audio(tmp_path / "long.m4a", "m4a-aac", seconds=12.0, sr=44100)
    clip = decode(path, excerpt=4.0)
    assert clip.offset == pytest.approx(4.0, abs=0.05)
    assert len(clip.samples) == pytest.approx(4 * 22050, abs=30)


def test_excerpt_window() -> None:
    assert excerpt_window(100.0, 30.0) == (35.0, 30.0)
    assert excerpt_window(20.0, 30.0) == (0.0, 20.0)
    assert excerpt_window(100.0, None) == (0.0, 100.0)


@pytest.mark.parametrize("sr", [8000, 11025, 44100, 48000, 96000])
def test_odd_sample_rates(tmp_path: Path, sr: int) -> None:
    clip = decode(make_audio(tmp_path / "r.wav", "wav", seconds=3.5, sr=sr))
    assert clip.sr == 22050 and len(clip.samples) == pytest.approx(3.5 * 22050, abs=3)


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_channel_counts(tmp_path: Path, channels: int) -> None:
    clip = decode(make_audio(tmp_path / "c.flac", "flac", seconds=3.5, channels=channels))
    assert clip.samples.ndim == 1 and len(clip.samples) == pytest.approx(3.5 * 22050, abs=2)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_bit_depths(tmp_path: Path, subtype: str) -> None:
    clip = decode(make_audio(tmp_path / "b.wav", "wav", seconds=3.5, subtype=subtype))
    assert 0.3 < np.abs(clip.samples).max() <= 1.01


def test_errors_name_the_reason(tmp_path: Path) -> None:
    (tmp_path / "empty.mp3").write_bytes(b"")
    with pytest.raises(DecodeError, match=r"empty\.mp3: empty file \(0 bytes\)"):
        decode(tmp_path / "empty.mp3")
    (tmp_path / "text.flac").write_text("this is not audio\n" * 100)
    with pytest.raises(DecodeError, match=r"text\.flac: cannot decode"):
        decode(tmp_path / "text.flac")
    with pytest.raises(DecodeError, match="cannot read file"):
        decode(tmp_path / "absent.wav")


def test_missing_decoder_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_audio(tmp_path / "a.m4a", "m4a-aac", seconds=3.5)
    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if name == "av":
            raise ImportError("No module named 'av'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_av)
    with pytest.raises(DecodeError, match=r"install PyAV with `pip install av`"):
        decode(path)


def test_real_library_samples_decode(library_samples: Path) -> None:
    files = [p for p in library_samples.rglob("*") if p.suffix in {".mp3", ".flac", ".ogg", ".m4a"}]
    assert len(files) >= 10
    for path in files:
        clip = decode(path)
        assert clip.duration > 1.0 and np.isfinite(clip.samples).all(), path


# -- seeking to the excerpt of a long file (issue 12, point 6) ----------------------------------

from tagger.media import audio  # noqa: E402

#: format -> native rate of the test file
LONG_FORMATS = {"opus": 48000, "ogg": 44100, "mp3": 44100, "flac": 44100}


@pytest.fixture(scope="module")
def long_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """100 s of stereo music-like noise per format: the excerpt starts 35 s in."""
    folder = tmp_path_factory.mktemp("long")
    files = {}
    for fmt, sr in LONG_FORMATS.items():
        data = signal(100.0, sr, 2, "noise", 5)
        major, subtype = {"opus": ("OGG", "OPUS"), "ogg": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III"),
                          "flac": ("FLAC", "PCM_16")}[fmt]  # fmt: skip
        files[fmt] = folder / f"long.{fmt}"
        with sf.SoundFile(str(files[fmt]), "w", sr, 2, subtype, format=major) as f:
            for i in range(0, len(data), 1 << 15):  # one big write overflows libsndfile's stack (MP3)
                f.write(data[i : i + (1 << 15)])
    return files


def _native(path: Path, excerpt: float | None) -> tuple[np.ndarray, int, float, float]:
    """What the file's first-choice decoder returns, at its native rate (no resampling)."""
    return audio._decoder_order(str(path), audio._decode_soundfile, audio._decode_pyav)[0](str(path), excerpt)


@pytest.mark.parametrize("fmt", list(LONG_FORMATS))
def test_excerpt_equals_decoding_from_the_start_and_cutting(long_files: dict[str, Path], fmt: str) -> None:
    data, sr, duration, start = _native(long_files[fmt], 30.0)
    whole, _, _, _ = _native(long_files[fmt], None)
    assert start == pytest.approx((duration - 30.0) / 2) and start == pytest.approx(35.0, abs=0.01)
    mixed = audio.AUDIO_EXTENSIONS[long_files[fmt].suffix] == "pyav"  # FFmpeg's frames are averaged as they come
    assert data.shape == (int(round(30.0 * sr)), 1 if mixed else 2)
    first = int(round(start * sr))
    np.testing.assert_allclose(data, whole[first : first + len(data)], rtol=0, atol=1e-4)
    clip = decode(long_files[fmt])
    assert clip.offset == start and len(clip.samples) == 30 * 22050


class _NoSeek:
    """A PyAV container whose seek fails (``error``) or lands ``late`` seconds after the target."""

    def __init__(self, container: object, late: float | None) -> None:
        self._container, self._late = container, late

    def seek(self, offset: int, *, stream: object, **kwargs: object) -> None:
        if self._late is None:
            raise OSError("Operation not permitted")
        self._container.seek(offset + int(self._late / stream.time_base), stream=stream, **kwargs)

    def __getattr__(self, name: str) -> object:
        return getattr(self._container, name)

    def __enter__(self) -> _NoSeek:
        return self

    def __exit__(self, *exc: object) -> None:
        self._container.close()


@pytest.mark.parametrize("late", [None, 5.0])
@pytest.mark.parametrize("fmt", ["opus", "ogg"])
def test_a_failed_seek_falls_back_to_decoding_from_the_start(long_files: dict[str, Path], fmt: str,
                                                             late: float | None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = long_files[fmt]
    expected = decode(path)
    streamed = np.concatenate(list(audio.open_stream(path, excerpt=30.0).chunks()))
    opened = []
    real_open = audio._open_pyav

    def open_unseekable(p: str) -> tuple:
        fh, container, stream, sr, duration = real_open(p)
        opened.append(p)
        return fh, _NoSeek(container, late), stream, sr, duration

    monkeypatch.setattr(audio, "_open_pyav", open_unseekable)
    clip = decode(path)
    assert len(opened) == 2  # opened again after the seek failed: no other decoder stepped in
    assert clip.offset == expected.offset
    np.testing.assert_array_equal(clip.samples, expected.samples)
    again = np.concatenate(list(audio.open_stream(path, excerpt=30.0).chunks()))
    np.testing.assert_array_equal(again, streamed)


def _stereo_opus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decode Opus as two channels again, as before the decoder mixed them down."""
    monkeypatch.setattr(audio, "_opus_to_mono", lambda stream: None)


@pytest.mark.parametrize("excerpt", [30.0, None])
def test_opus_is_mixed_down_by_its_decoder_to_the_mean_of_its_channels(long_files: dict[str, Path],
                                                                       excerpt: float | None,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    mono, sr, duration, start = audio._decode_pyav(str(long_files["opus"]), excerpt)
    assert mono.shape[1] == 1 and sr == 48000
    _stereo_opus(monkeypatch)
    planes = []
    real_add = audio._Downmix.add
    monkeypatch.setattr(audio._Downmix, "add", lambda mix, frame: (planes.append(len(frame.planes)),
                                                                   real_add(mix, frame)))  # fmt: skip
    stereo, _, duration2, start2 = audio._decode_pyav(str(long_files["opus"]), excerpt)  # averaged by _Downmix
    assert set(planes) == {2} and stereo.shape == mono.shape and (duration2, start2) == (duration, start)
    np.testing.assert_allclose(mono[:, 0], stereo[:, 0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("bit_rate,application", [(12000, "voip"), (32000, "audio")])
def test_opus_speech_modes_mix_down_as_faithfully(tmp_path: Path, bit_rate: int, application: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """SILK (12 kb/s) and hybrid (32 kb/s) frames: the decoder's own mono mix is as close to the source's.

    In hybrid frames it is not the mean of the stereo decode (SILK mixes in
    its mid/side domain), but it is no further from the mean of what was
    encoded; mono files are left as they are.
    """
    import av

    path = tmp_path / f"speech-{bit_rate}.opus"
    source = signal(8.0, 48000, 2, "tone", 3)
    planar = np.ascontiguousarray(source.T)
    with av.open(str(path), "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48000, layout="stereo")
        stream.bit_rate = bit_rate
        stream.codec_context.options = {"application": application}
        for i in range(0, planar.shape[1], 960):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar[:, i : i + 960]), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts = 48000, i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    mono = audio._decode_pyav(str(path), None)[0]
    _stereo_opus(monkeypatch)
    stereo = audio._decode_pyav(str(path), None)[0]
    assert mono.shape == stereo.shape == (len(stereo), 1) and len(stereo) >= 7 * 48000
    mix = source.mean(axis=1)[: len(mono)]
    error_mono = np.sum((mono[:, 0] - mix) ** 2)
    error_stereo = np.sum((stereo[:, 0] - mix) ** 2)
    assert error_mono <= 1.05 * error_stereo and error_mono < 0.1 * np.sum(mix**2)  # aligned, and faithful
    one = make_audio(tmp_path / "mono.opus", "opus", seconds=4.0, channels=1)
    assert audio._decode_pyav(str(one), None)[0].shape[1] == 1


def _frames_then_mean(path: Path) -> np.ndarray:
    """The whole file through PyAV the plain way: every frame to an array, joined, then the channel mean."""
    import av

    with av.open(str(path)) as container:
        joined = np.concatenate([audio._planes(f) for f in container.decode(container.streams.audio[0])], axis=1)
    return audio._to_mono(np.ascontiguousarray(joined.T))


@pytest.mark.parametrize("fmt,channels", [("ogg", 2), ("ogg", 3), ("m4a-aac", 2), ("m4a-alac", 2), ("ogg", 1)])
def test_ffmpeg_frames_are_averaged_as_they_come_bit_for_bit(tmp_path: Path, fmt: str, channels: int) -> None:
    path = make_audio(tmp_path / f"a{channels}{'.m4a' if fmt.startswith('m4a') else ''}", fmt, seconds=6.0,
                      channels=channels, kind="noise", seed=channels)  # fmt: skip
    data, _, _, start = audio._decode_pyav(str(path), None)
    expected = _frames_then_mean(path)
    assert start == 0 and data.shape[1] == 1 and data.dtype == np.float32
    assert 0 <= len(expected) - len(data) < 2048  # the stream's length; AAC's last frame is padded
    np.testing.assert_array_equal(data[:, 0], expected[: len(data)])


def _frame(samples: np.ndarray, layout: str, sr: int = 48000, fmt: str = "fltp") -> object:
    import av

    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format=fmt, layout=layout)
    frame.sample_rate = sr
    return frame


def test_downmix_takes_packed_and_integer_frames_and_keeps_what_follows() -> None:
    rng = np.random.default_rng(0)
    left, right = rng.uniform(-1, 1, (2, 300)).astype(np.float32)
    mix = audio._Downmix("x.ogg", 48000, 16)
    mix.add(_frame(np.stack([left, right]), "stereo"))
    mix.add(_frame(np.stack([left, right]).T.reshape(1, -1), "stereo", fmt="flt"))  # interleaved
    ints = (np.stack([left, right]) * 32767).astype(np.int16)
    mix.add(_frame(ints, "stereo", fmt="s16p"))
    first = mix.take(250)
    assert mix.size == 650 and first.dtype == np.float32
    rest = mix.take()
    got = np.concatenate([first, rest])
    expected = np.concatenate([(left + right) / np.float32(2)] * 2
                              + [audio._to_mono((ints.astype(np.float32) / 32767).T)])  # fmt: skip
    np.testing.assert_array_equal(got, expected)
    assert mix.size == 0


@pytest.mark.parametrize("second", [dict(layout="mono"), dict(layout="stereo", sr=44100)])
def test_a_stream_that_changes_rate_or_channels_midway_is_a_decode_error(second: dict) -> None:
    mix = audio._Downmix("/music/chained.ogg", 48000, 16)
    mix.add(_frame(np.zeros((2, 100), np.float32), "stereo"))
    shape = (1, 100) if second["layout"] == "mono" else (2, 100)
    with pytest.raises(DecodeError, match=r"chained\.ogg.*mid-stream"):
        mix.add(_frame(np.zeros(shape, np.float32), **second))


# -- issue 22: truncated files, odd samples and rates, messages ------------------------------------


@pytest.fixture(scope="module")
def cut_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """60 s files cut to their first 20% (about 12 s): the middle 30 s their headers promise is not there."""
    folder = tmp_path_factory.mktemp("cut")
    files = {}
    for fmt in ("flac", "mp3", "ogg", "opus", "wav"):
        path = make_audio(folder / f"cut.{fmt}", fmt, seconds=60.0, sr=16000 if fmt != "opus" else 48000)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 5])
        files[fmt] = path
    return files


@pytest.mark.parametrize("fmt", ["flac", "mp3", "ogg", "opus", "wav"])
def test_a_truncated_file_decodes_what_it_holds(cut_files: dict[str, Path], fmt: str) -> None:
    """Issue 22 (15): a cut FLAC was "cannot decode: psf_fseek() failed" (and a cut MP3 decoded nothing)."""
    clip = decode(cut_files[fmt])
    assert clip.offset == 0.0 and len(clip.samples) / clip.sr > 8.0
    streamed = sum(len(chunk) for chunk in open_stream(cut_files[fmt], excerpt=None).chunks())  # --excerpt 0
    assert streamed / clip.sr > 8.0


def test_pyav_also_decodes_the_start_of_a_truncated_file(cut_files: dict[str, Path]) -> None:
    """FFmpeg, the fallback when libsndfile cannot read a FLAC or MP3, takes what the start has too."""
    for fmt in ("flac", "mp3"):
        data, sr, _, start = audio._decode_pyav(str(cut_files[fmt]), 30.0)
        assert start == 0.0 and len(data) / sr > 11.0


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_an_error_not_silence(tmp_path: Path, value: float) -> None:
    """Issue 22 (17): a NaN- or Inf-filled float WAV was called "silent"."""
    y = signal(5.0)
    y[1000:] = value
    sf.write(tmp_path / "bad.wav", y, 22050, subtype="FLOAT")
    for read in (decode, lambda p: list(open_stream(p, excerpt=None).chunks())):
        with pytest.raises(AnalysisError, match=r"bad\.wav: the audio holds non-finite samples \(NaN or infinity\)"):
            read(tmp_path / "bad.wav")


@pytest.mark.parametrize("sr", [1, 4000])
def test_a_sample_rate_below_the_minimum_is_an_error(tmp_path: Path, sr: int) -> None:
    """Issue 22 (20): 20 samples at 1 Hz were resampled into 20 s of made-up audio and classified."""
    sf.write(tmp_path / "low.wav", signal(20.0 if sr == 1 else 5.0, sr=sr), sr, subtype="FLOAT")
    for read in (decode, lambda p: open_stream(p, excerpt=None)):
        with pytest.raises(AnalysisError, match=rf"^\S+low\.wav: sample rate {sr} Hz is below 8000 Hz, too low"):
            read(tmp_path / "low.wav")


def test_a_text_file_named_mp3_is_not_called_a_pipe(tmp_path: Path) -> None:
    """Issue 22 (17): libsndfile's MP3 reader says "not a regular file (possibly a pipe?)" of anything it cannot read."""
    (tmp_path / "notes.mp3").write_text("Just some notes, saved with the wrong extension.\n" * 50)
    with pytest.raises(DecodeError, match=r"notes\.mp3: cannot decode: soundfile: Format not recognised") as err:
        decode(tmp_path / "notes.mp3")
    assert "pipe" not in str(err.value)


def test_decoders_that_give_the_same_reason_are_quoted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 22 (17): "no audio frames could be decoded; no audio frames could be decoded"."""
    path = make_audio(tmp_path / "x.mp3", "mp3", seconds=4.0)

    def nothing(path: str, excerpt: float | None) -> None:
        raise DecodeError(path, "no audio frames could be decoded")

    monkeypatch.setattr(audio, "_decode_soundfile", nothing)
    monkeypatch.setattr(audio, "_decode_pyav", nothing)
    with pytest.raises(DecodeError, match=r"x\.mp3: cannot decode: no audio frames could be decoded$"):
        decode(path)


@pytest.mark.parametrize("kind", ["fifo", "link to a fifo", "device"])
def test_a_pipe_or_device_is_refused_without_waiting(tmp_path: Path, kind: str) -> None:
    """Issue 22 (16): opening a FIFO blocks until a writer comes; it is refused at once instead."""
    import os

    path = Path("/dev/zero") if kind == "device" else tmp_path / "pipe.mp3"
    if kind != "device":
        os.mkfifo(tmp_path / "pipe.mp3")
    if kind == "link to a fifo":
        (tmp_path / "link.mp3").symlink_to(path)
        path = tmp_path / "link.mp3"
    with pytest.raises(DecodeError, match=r": not a regular file \(a pipe, socket or device\)$"):
        audio.check_file(str(path))
