"""The shipped EfficientAT mn04_as network: parity with the original torch model, windows, bad weights.

tests/data/efficientat_reference.npz holds outputs of the ORIGINAL model (EfficientAT's own
code and checkpoint, run by scripts/convert_efficientat.py --reference): on a synthetic
signal the test regenerates, and on the middle 10 s of three real GTZAN clips (every 20th
mel frame, the 384-d pooled features, the 512-d hidden layer that is the embedding, and the
527 probabilities; no audio). Nothing is downloaded.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import GTZAN
from plugins import efficientat_net
from plugins.efficientat_net import (EMBEDDING_DIM, MAX_PASS_SAMPLES, MIN_SAMPLES, N_CLASSES, SAMPLE_RATE, WHOLE,
                                     WINDOW_SAMPLES, EfficientATNet, TooShortError, synthetic_signal, window_starts)
from tagger.common.errors import ModelError

REFERENCE = Path(__file__).parent / "data" / "efficientat_reference.npz"
TOLERANCE = 1e-4  # mel, pooled features, embedding and probabilities alike (worst measured: 1.3e-5)


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread() -> Iterator[None]:
    """As the scan's workers run."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def net() -> EfficientATNet:
    return EfficientATNet.load()


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE, allow_pickle=False) as data:
        return dict(data)


def test_waveform_to_outputs_match_the_original_model(net: EfficientATNet, reference: dict) -> None:
    """Mel front end and network together, on a 10 s signal the test regenerates (no ../shared)."""
    seconds, sr = reference["synthetic_params"]
    assert (seconds, sr) == (efficientat_net.SYNTHETIC_SECONDS, SAMPLE_RATE)
    y = synthetic_signal(seconds)
    every = int(reference["mel_every"])
    mel = net.mel(y)
    assert mel.shape == (128, 1000) and mel.dtype == np.float32
    np.testing.assert_allclose(mel[:, ::every], reference["synthetic_mel"], rtol=0, atol=TOLERANCE)
    embedding, probs = net(y, n_windows=1)
    assert embedding.shape == (EMBEDDING_DIM,) == (512,) and probs.shape == (N_CLASSES,)
    np.testing.assert_allclose(probs, reference["synthetic_probs"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(embedding, reference["synthetic_embedding"], rtol=0, atol=TOLERANCE)
    pooled = net.outputs(mel[None]).pooled[0]
    np.testing.assert_allclose(pooled, reference["synthetic_pooled"], rtol=0, atol=TOLERANCE)
    assert probs.max() > 0.3  # the comparison is not met by all-zero outputs
    assert efficientat_net.LABELS[int(np.argmax(probs))] == "Music"


def test_outputs_match_the_original_model_on_real_clips(net: EfficientATNet, reference: dict) -> None:
    """The middle 10 s of each clip, decoded at 32 kHz by genretag as the converter did."""
    from tagger.media.audio import decode

    if not (GTZAN / "audio").is_dir():
        pytest.skip(f"real GTZAN clips not present at {GTZAN / 'audio'}")
    every = int(reference["mel_every"])
    assert len(reference["clip_names"]) == 3
    probs_seen = []
    for name, mel, pooled, emb, probs in zip(reference["clip_names"], reference["clip_mel"], reference["clip_pooled"],
                                             reference["clip_embedding"], reference["clip_probs"], strict=True):
        y = decode(GTZAN / name, sr=SAMPLE_RATE, excerpt=None).samples
        mels = net.windows(y, 1)
        assert mels.shape == (1, 128, 1000)
        np.testing.assert_allclose(mels[0][:, ::every], mel, rtol=0, atol=TOLERANCE, err_msg=str(name))
        ours = net.outputs(mels)
        np.testing.assert_allclose(ours.probs[0], probs, rtol=0, atol=TOLERANCE, err_msg=str(name))
        np.testing.assert_allclose(ours.embedding[0], emb, rtol=0, atol=TOLERANCE, err_msg=str(name))
        np.testing.assert_allclose(ours.pooled[0], pooled, rtol=0, atol=TOLERANCE, err_msg=str(name))
        probs_seen.append(ours.probs[0])
    # the clips are told apart: parity is not met by near-constant outputs
    assert np.abs(probs_seen[0] - probs_seen[1]).max() > 0.1 and np.abs(probs_seen[1] - probs_seen[2]).max() > 0.1


def test_windows_of_a_30_s_excerpt(net: EfficientATNet) -> None:
    y = np.tile(synthetic_signal(), 3)  # 30 s
    assert window_starts(len(y), 1) == [WINDOW_SAMPLES]  # the middle 10 s
    assert window_starts(len(y), 3) == [0, WINDOW_SAMPLES, 2 * WINDOW_SAMPLES]
    three = net.windows(y, 3)
    assert three.shape == (3, 128, 1000)
    assert np.array_equal(three[1], net.mel(y[WINDOW_SAMPLES:2 * WINDOW_SAMPLES]))
    assert np.array_equal(net.windows(y, 1)[0], three[1])
    assert net.windows(y, WHOLE).shape == (1, 128, 3000)
    embedding, probs = net(y, n_windows=3)
    per_window = net.forward(three)
    np.testing.assert_allclose(probs, per_window[1].mean(axis=0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(embedding, per_window[0].mean(axis=0), rtol=0, atol=1e-6)
    whole_emb, whole_probs = net(y, n_windows=WHOLE)
    assert whole_emb.shape == (EMBEDDING_DIM,) and 0 <= whole_probs.min() and whole_probs.max() <= 1
    np.testing.assert_array_equal(net(y)[0], whole_emb)  # the default: one pass over the excerpt
    assert np.abs(whole_emb - embedding).max() > 1e-3  # and not the mean of the three windows
    with pytest.raises(ValueError, match="at least 1"):
        window_starts(len(y), -1)


def test_long_input_runs_in_bounded_passes(net: EfficientATNet) -> None:
    """A whole track is not one pass (its activations would grow with it): equal parts of <= 40 s."""
    y = np.tile(synthetic_signal(), 10)  # 100 s
    parts = net.parts(y, WHOLE)
    assert [len(p) for p in parts] == [len(y) // 3] * 3 and len(y) // 3 <= MAX_PASS_SAMPLES
    assert parts[1].base is not None  # views, not copies
    embedding, probs = net(y, n_windows=WHOLE)
    one_by_one = [net.forward(net.mel(p)[None]) for p in parts]
    np.testing.assert_allclose(embedding, np.mean([e[0] for e, _ in one_by_one], axis=0), rtol=0, atol=1e-5)
    np.testing.assert_allclose(probs, np.mean([p[0] for _, p in one_by_one], axis=0), rtol=0, atol=1e-6)
    # many windows go through in groups of at most 40 s, with the same mean as all at once
    embedding, probs = net(y, n_windows=9)
    np.testing.assert_allclose(probs, net.forward(net.windows(y, 9))[1].mean(axis=0), rtol=0, atol=1e-6)


def test_window_count_is_part_of_the_id(net: EfficientATNet) -> None:
    assert net.n_windows == efficientat_net.DEFAULT_WINDOWS == WHOLE and net.id.endswith("-whole")
    three = net.with_windows(3)
    assert three.id != net.id and three.id.endswith("-w3") and three.w is net.w
    assert EfficientATNet.load(n_windows=1).id == net.id.replace("-whole", "-w1")
    y = np.tile(synthetic_signal(), 3)
    np.testing.assert_array_equal(three(y)[1], net(y, n_windows=3)[1])
    with pytest.raises(ValueError, match="n_windows"):
        EfficientATNet.load(n_windows=-1)


def test_short_input_is_one_window_and_too_short_a_clear_error(net: EfficientATNet) -> None:
    """Under 10 s: one pass over what there is (no zero padding); under 1 s: TooShortError."""
    y = synthetic_signal(4.0)
    assert net.windows(y, 3).shape == (1, 128, 400)
    embedding, probs = net(y, n_windows=3)
    np.testing.assert_allclose(probs, net.forward(net.mel(y)[None])[1][0], rtol=0, atol=1e-6)
    assert net(y[:MIN_SAMPLES])[1].shape == (N_CLASSES,)
    with pytest.raises(TooShortError, match=r"too short: 1\.00 s of audio, need at least 1\.00 s"):
        net(y[:MIN_SAMPLES - 1])
    with pytest.raises(TooShortError, match="too short"):
        net(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="mono"):
        net(np.zeros((2, 5 * SAMPLE_RATE), np.float32))
    with pytest.raises(ValueError, match="expected mels"):
        net.forward(np.zeros((1, 64, 100), np.float32))


def test_loud_and_silent_input_give_finite_probabilities(net: EfficientATNet) -> None:
    t = np.arange(12 * SAMPLE_RATE) / SAMPLE_RATE
    loud = 100 * np.sign(np.sin(2 * np.pi * 220 * t)).astype(np.float32)  # far beyond full scale
    for y in (loud, np.zeros_like(loud)):
        embedding, probs = net(y)
        assert np.all(np.isfinite(embedding)) and np.all(np.isfinite(probs))
        assert 0 <= probs.min() and probs.max() <= 1


def _arrays() -> dict[str, np.ndarray]:
    with np.load(efficientat_net.WEIGHTS, allow_pickle=False) as data:
        return dict(data)


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated", "incomplete", "wrong shape", "pickle", "nan"])
def test_bad_weights_file_is_a_model_error_naming_it(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "efficientat_mn04.npz"
    arrays = _arrays()
    if damage == "garbage":
        path.write_bytes(b"not a zip file at all" * 100)
    elif damage == "truncated":
        path.write_bytes(efficientat_net.WEIGHTS.read_bytes()[:1_000_000])
    elif damage == "incomplete":
        del arrays["b7.dw.w"]
    elif damage == "wrong shape":
        arrays["b14.se.fc1.w"] = arrays["b14.se.fc1.w"][:50]
    elif damage == "pickle":  # an object array would need pickle (i.e. code) to load
        arrays["out.b"] = np.array([object()] * N_CLASSES, dtype=object)
    elif damage == "nan":
        arrays["hidden.b"][3] = np.nan
    if damage in ("incomplete", "wrong shape", "pickle", "nan"):
        np.savez(path, **arrays)
    with pytest.raises(ModelError) as info:
        EfficientATNet.load(path)
    assert info.value.path == str(path) and str(path) in str(info.value)
    expected = {"missing": "weights file not found", "garbage": "corrupt", "truncated": "corrupt",
                "incomplete": "missing b7.dw.w", "wrong shape": "b14.se.fc1.w", "pickle": "corrupt",
                "nan": "hidden.b"}[damage]
    assert expected in info.value.reason


def test_id_is_the_weights_content(tmp_path: Path, net: EfficientATNet) -> None:
    assert net.id == EfficientATNet.load().id and net.id.startswith("efficientat_mn04-")
    arrays = _arrays()
    arrays["out.b"] = arrays["out.b"] + 1
    np.savez(tmp_path / "other.npz", **arrays)
    assert EfficientATNet.load(tmp_path / "other.npz").id != net.id


def test_import_loads_no_torch_tensorflow_or_librosa() -> None:
    code = ("import sys, plugins.efficientat_net as m; m.EfficientATNet.load(); "
            "print(*[x in sys.modules for x in ('torch', 'tensorflow', 'librosa', 'torchaudio')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[1])
    assert out.stdout.split() == ["False"] * 4


def test_licence_credit_and_labels_ship_beside_the_weights() -> None:
    text = efficientat_net.WEIGHTS.with_suffix(".LICENSE").read_text(encoding="utf-8")
    assert "MIT License" in text and "Copyright (c) 2022 Florian Schmid" in text
    assert "Schmid, Khaled Koutini and Gerhard Widmer" in text and "ICASSP 2023" in text
    assert "a425fdce92572e602a1d5634799bd9f1f2efa806" in text and "CC BY-SA 4.0" in text
    labels = efficientat_net.LABELS
    assert len(labels) == N_CLASSES and len(set(labels)) == N_CLASSES
    assert labels[0] == "Speech" and labels[137] == "Music" and "Video game music" in labels


def test_wrong_labels_file_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "labels.txt"
    bad.write_text("Speech\nMusic\n", encoding="utf-8")
    with pytest.raises(ModelError, match="expected 527 AudioSet labels, found 2") as info:
        efficientat_net._read_labels(bad)
    assert info.value.path == str(bad)
    with pytest.raises(ModelError, match="cannot read"):
        efficientat_net._read_labels(tmp_path / "absent.txt")
