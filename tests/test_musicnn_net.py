"""The shipped MSD_musicnn and MTT_musicnn networks: parity with the original TF1 graphs, front end, bad weights.

tests/data/musicnn_reference.npz holds outputs of the ORIGINAL graph (the author's saved
.meta restored from the checkpoint, see scripts/convert_musicnn.py) on mel patches of three
real GTZAN clips and on a synthetic signal the test regenerates; nothing is downloaded.
tests/data/musicnn_mtt_reference.npz holds MTT_musicnn's original outputs on the same patches.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from plugins import musicnn_net
from plugins.musicnn_net import MIN_SAMPLES, MTT_TAGS, SAMPLE_RATE, TAGS, MusicnnNet, TooShortError, synthetic_signal
from tagger.common.errors import ModelError

REFERENCE = Path(__file__).parent / "data" / "musicnn_reference.npz"
TOLERANCE = 1e-4


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread() -> Iterator[None]:
    """As the scan's workers run; many BLAS threads only spin on these small products."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def net() -> MusicnnNet:
    return MusicnnNet.load()


@pytest.fixture(scope="module")
def mtt() -> MusicnnNet:
    return MusicnnNet.load(model="mtt")


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE, allow_pickle=False) as data:
        return dict(data)


def test_tag_probabilities_match_the_original_graph_on_real_clips(net: MusicnnNet, reference: dict) -> None:
    penultimate, probs = net.forward(reference["clip_patches"])
    assert len(reference["clip_names"]) == 3 and probs.shape == (6, 50)
    np.testing.assert_allclose(probs, reference["clip_probs"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(penultimate, reference["clip_penultimate"], rtol=0, atol=1e-3)
    # the clips are told apart: parity is not met by near-constant outputs
    assert np.abs(probs[0] - probs[2]).max() > 0.1 and np.abs(probs[2] - probs[4]).max() > 0.1


def test_waveform_to_tags_matches_the_original_graph(net: MusicnnNet, reference: dict) -> None:
    """Mel front end, patching and network together, on a signal the test regenerates."""
    y = synthetic_signal()
    embedding, tags = net(y, n_patches=None)
    assert embedding.shape == (200,) and tags.shape == (50,) and embedding.dtype == np.float32
    np.testing.assert_allclose(tags, reference["synthetic_probs"].mean(axis=0), rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(embedding, reference["synthetic_penultimate"].mean(axis=0), rtol=0, atol=1e-3)


def test_mel_front_end_is_musicnns_extractor(net: MusicnnNet) -> None:
    """librosa's mel spectrogram as musicnn computed it (reflect-padded STFT, float16, log10(1e4 S + 1))."""
    import librosa

    y = synthetic_signal(4.0)
    S = librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE, n_fft=512, hop_length=256, n_mels=96,
                                       pad_mode="reflect").T
    expected = np.log10(10000 * S.astype(np.float16).astype(np.float32) + 1)
    np.testing.assert_allclose(net.mel(y), expected, rtol=0, atol=1e-3)


def test_loud_audio_does_not_overflow_the_log_compression(net: MusicnnNet) -> None:
    """10000 * S on musicnn's float16 array overflows to inf under numpy 2 once S > 6.55."""
    t = np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE
    loud = np.sign(np.sin(2 * np.pi * 220 * t)).astype(np.float32)  # full-scale square wave
    spec = net.mel(loud)
    assert np.all(np.isfinite(spec))
    assert spec.max() > np.log10(10000 * 6.56 + 1)  # the case that overflowed is exercised
    _, tags = net(loud)
    assert np.all(np.isfinite(tags))


def test_shapes_patch_choice_and_probability_range(net: MusicnnNet) -> None:
    y = np.tile(synthetic_signal(), 5)  # 32.5 s -> 10 patches, like a 30 s excerpt
    every = net.patches(y, None)
    assert every.shape == (10, 187, 96) and every.dtype == np.float32
    # Transforming fewer frames may change the FFT's last bit, which can flip a float16 rounding
    # of the mel value: the same patches agree to 1e-3 (another patch differs by far more).
    assert np.allclose(net.patches(y, 1), every[[5]], rtol=0, atol=1e-3)  # the middle one
    assert np.allclose(net.patches(y, 3), every[[1, 5, 8]], rtol=0, atol=1e-3)  # centres of three equal parts
    assert not np.allclose(every[4], every[5], rtol=0, atol=1e-3)
    assert np.array_equal(net.patches(y, 99), every)
    with pytest.raises(ValueError, match="at least 1"):
        net.patches(y, 0)
    penultimate, probs = net.forward(every[:4])
    assert penultimate.shape == (4, 200) and probs.shape == (4, len(TAGS)) == (4, 50)
    assert probs.min() >= 0 and probs.max() <= 1
    embedding, tags = net(y)
    assert embedding.shape == (200,) and tags.shape == (50,)
    np.testing.assert_allclose(tags, net.forward(net.patches(y, musicnn_net.DEFAULT_PATCHES))[1].mean(0),
                               rtol=0, atol=1e-6)


def test_too_short_input_is_a_clear_error(net: MusicnnNet) -> None:
    with pytest.raises(TooShortError, match=r"too short: 2\.98 s of audio, need at least 2\.98 s"):
        net(np.zeros(MIN_SAMPLES - 1, np.float32))
    with pytest.raises(TooShortError, match="too short"):
        net(np.zeros(0, np.float32))
    assert net.patches(np.zeros(MIN_SAMPLES, np.float32)).shape == (1, 187, 96)
    with pytest.raises(ValueError, match="mono"):
        net(np.zeros((2, 5 * SAMPLE_RATE), np.float32))


def _arrays() -> dict[str, np.ndarray]:
    with np.load(musicnn_net.WEIGHTS, allow_pickle=False) as data:
        return dict(data)


@pytest.mark.parametrize("damage", ["missing", "fifo", "garbage", "truncated", "incomplete", "wrong shape", "pickle"])
def test_bad_weights_file_is_a_model_error_naming_it(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "musicnn_msd.npz"
    if damage == "fifo":
        os.mkfifo(path)  # read as it was, it blocked forever
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all" * 100)
    elif damage == "truncated":
        path.write_bytes(musicnn_net.WEIGHTS.read_bytes()[:1_000_000])
    elif damage == "incomplete":
        arrays = _arrays()
        del arrays["mid2.w"]
        np.savez(path, **arrays)
    elif damage == "wrong shape":
        arrays = _arrays()
        arrays["dense.w"] = arrays["dense.w"][:100]
        np.savez(path, **arrays)
    elif damage == "pickle":  # an object array would need pickle (i.e. code) to load
        arrays = _arrays()
        arrays["out.b"] = np.array([object()] * 50, dtype=object)
        np.savez(path, **arrays)
    with pytest.raises(ModelError) as info:
        MusicnnNet.load(path)
    assert info.value.path == str(path) and str(path) in str(info.value)
    expected = {"missing": "musicnn weights file not found", "fifo": "is a FIFO", "garbage": "corrupt", "truncated": "corrupt",
                "incomplete": "missing mid2.w", "wrong shape": "dense.w", "pickle": "corrupt"}[damage]
    assert expected in info.value.reason


def test_id_is_the_weights_content(tmp_path: Path, net: MusicnnNet) -> None:
    assert net.id == MusicnnNet.load().id and net.id.startswith("musicnn_msd-")
    arrays = _arrays()
    arrays["out.b"] = arrays["out.b"] + 1
    np.savez(tmp_path / "other.npz", **arrays)
    assert MusicnnNet.load(tmp_path / "other.npz").id != net.id


def test_import_loads_no_tensorflow() -> None:
    code = "import sys, plugins.musicnn_net; print('tensorflow' in sys.modules, 'librosa' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[1])
    assert out.stdout.split() == ["False", "False"]


def test_licence_and_credit_ship_beside_the_weights() -> None:
    text = musicnn_net.WEIGHTS.with_suffix(".LICENSE").read_text(encoding="utf-8")
    assert "Music Technology Group, Universitat Pompeu Fabra" in text and "Permission to use" in text
    assert "Pons" in text and "ISMIR 2019" in text


def test_mtt_matches_the_original_graph_and_names_classical(mtt: MusicnnNet) -> None:
    """MTT_musicnn: same shapes and front end, its fixture holds outputs on the MSD fixture's patches."""
    net = mtt
    with np.load(REFERENCE.with_name("musicnn_mtt_reference.npz"), allow_pickle=False) as ref, \
         np.load(REFERENCE, allow_pickle=False) as msd:
        assert list(ref["clip_names"]) == list(msd["clip_names"])
        penultimate, probs = net.forward(msd["clip_patches"])
        np.testing.assert_allclose(probs, ref["clip_probs"], rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(penultimate, ref["clip_penultimate"], rtol=0, atol=1e-3)
        embedding, tags = net(synthetic_signal(), n_patches=None)
        np.testing.assert_allclose(tags, ref["synthetic_probs"].mean(axis=0), rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(embedding, ref["synthetic_penultimate"].mean(axis=0), rtol=0, atol=1e-3)
        names = list(msd["clip_names"])
    classical = names.index("audio-16k/classical/classical.00025.wav")
    assert net.tags[int(np.argmax(probs[2 * classical:2 * classical + 2].mean(axis=0)))] == "classical"
    # not the MSD network under another name
    _, msd_probs = MusicnnNet.load().forward(np.load(REFERENCE)["clip_patches"][:2])
    assert np.abs(msd_probs - probs[:2]).max() > 0.1


def test_mtt_tags_id_and_licence_follow_the_model(tmp_path: Path, mtt: MusicnnNet) -> None:
    net = mtt
    assert net.tags == MTT_TAGS and len(MTT_TAGS) == 50 and "classical" in MTT_TAGS and "classical" not in TAGS
    assert MusicnnNet.load().tags == TAGS
    assert net.id.startswith("musicnn_mtt-")
    assert net.id[len("musicnn_mtt-"):] != MusicnnNet.load().id[len("musicnn_msd-"):]
    text = musicnn_net.MTT_WEIGHTS.with_suffix(".LICENSE").read_text(encoding="utf-8")
    assert "MTT_musicnn" in text and "Music Technology Group, Universitat Pompeu Fabra" in text and "Pons" in text
    broken = tmp_path / "musicnn_mtt.npz"
    broken.write_bytes(musicnn_net.MTT_WEIGHTS.read_bytes()[:100_000])
    with pytest.raises(ModelError, match="corrupt musicnn weights") as info:
        MusicnnNet.load(broken, model="mtt")
    assert info.value.path == str(broken)
    with pytest.raises(KeyError):
        MusicnnNet.load(model="nope")
