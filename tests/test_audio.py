"""Decoding: every format, excerpt from the middle, odd rates, channels and bit depths, clear errors."""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiofiles import FORMATS, make_audio
from tagger.audio import decode, excerpt_window
from tagger.errors import DecodeError


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
