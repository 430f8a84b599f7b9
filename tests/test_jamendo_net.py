"""The shipped MTG-Jamendo musicnn and FCN: parity with the original torch modules, windows, bad weights.

tests/data/jamendo_reference.npz holds outputs of the ORIGINAL networks (the authors' module
code with their checkpoints, run by scripts/convert_jamendo.py --reference) on a synthetic
signal the test regenerates and on windows of three real 16 kHz GTZAN clips (outputs only,
no audio); nothing is downloaded.
"""

from __future__ import annotations

import configparser
import fnmatch
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import GTZAN, REPO, SHARED
from plugins import jamendo_net
from plugins.jamendo_net import GENRE_TAGS, NETWORKS, SAMPLE_RATE, TAGS, TooShortError, synthetic_signal
from tagger.common.errors import ModelError

REFERENCE = Path(__file__).parent / "data" / "jamendo_reference.npz"
TOLERANCE = 1e-4  # mel (dB), probabilities and embeddings alike
EMBEDDING = {"musicnn": 200, "fcn": 64}


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread() -> Iterator[None]:
    """As the scan's workers run."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module", params=sorted(NETWORKS))
def net(request: pytest.FixtureRequest) -> jamendo_net.JamendoNet:
    return NETWORKS[request.param].load()


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE, allow_pickle=False) as data:
        return dict(data)


def test_waveform_to_tags_matches_the_original_on_a_synthetic_signal(net, reference: dict) -> None:
    """Windows, mel front end and network together, on a signal the test regenerates (no ../shared needed)."""
    y = synthetic_signal(float(reference["synthetic_seconds"]))
    windows = net.windows(y, net.DEFAULT_PATCHES)
    mel = net.mel(windows[0])
    expected_mel = reference[f"{net.name}.synthetic.mel"]
    if len(mel) != len(expected_mel):  # FCN's fixture keeps the first and last 64 of 1813 frames
        mel = np.concatenate([mel[:64], mel[-64:]])
    np.testing.assert_allclose(mel, expected_mel, rtol=0, atol=TOLERANCE)
    embedding, probs = net.forward(windows)
    np.testing.assert_allclose(probs, reference[f"{net.name}.synthetic.probs"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(embedding, reference[f"{net.name}.synthetic.embedding"], rtol=0, atol=TOLERANCE)
    track_embedding, track_probs = net(y)
    assert track_embedding.shape == (EMBEDDING[net.name],) and track_probs.shape == (50,)
    assert track_embedding.dtype == track_probs.dtype == np.float32
    expected = reference[f"{net.name}.synthetic.probs"].mean(axis=0)
    np.testing.assert_allclose(track_probs, expected, rtol=0, atol=TOLERANCE)


def test_tags_match_the_original_on_real_clips(net, reference: dict) -> None:
    from tagger.media.audio import decode

    folder = GTZAN / "audio-16k"
    if not folder.is_dir():
        pytest.skip(f"real 16 kHz GTZAN clips not present at {folder}")
    probs = {}
    for name in reference["clip_names"]:
        y = decode(folder / name.split(".")[0] / name, sr=SAMPLE_RATE, excerpt=None).samples
        embedding, probs[name] = net.forward(net.windows(y, 2))
        np.testing.assert_allclose(probs[name], reference[f"{net.name}.{name}.probs"], rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(embedding, reference[f"{net.name}.{name}.embedding"], rtol=0, atol=TOLERANCE)
    # parity is not met by near-constant outputs: the clips differ, and classical is named classical
    first, *others = probs.values()
    assert all(np.abs(first.mean(0) - other.mean(0)).max() > 0.1 for other in others)
    classical = probs["classical.00025.wav"].mean(axis=0)
    assert GENRE_TAGS[int(np.argmax(classical[:len(GENRE_TAGS)]))] == "genre---classical"


def test_windows_tile_an_excerpt_and_centre_on_equal_parts(net) -> None:
    size = net.INPUT_SAMPLES
    y = np.random.default_rng(2).standard_normal(30 * SAMPLE_RATE).astype(np.float32)
    one = net.windows(y, 1)
    assert one.shape == (1, size) and one.dtype == np.float32
    start = (len(y) - size) // 2
    assert np.array_equal(one[0], y[start:start + size])  # the middle
    if net.name == "musicnn":  # ten 3 s windows are the 30 s excerpt, in order
        assert np.array_equal(net.windows(y, 10).ravel(), y)
    many = net.windows(y, 4)  # more windows than fit: clipped to the waveform, overlapping
    assert many.shape == (4, size) and np.array_equal(many[-1], y[-size:]) == (net.name == "fcn")
    with pytest.raises(ValueError, match="at least 1"):
        net.windows(y, 0)
    with pytest.raises(ValueError, match="at least 1"):
        type(net).load(n_patches=0)
    _, probs = net.forward(net.windows(synthetic_signal(30.0), 2))
    assert probs.shape == (2, 50) and probs.min() >= 0 and probs.max() <= 1


def test_short_input_is_repeated_and_too_short_is_a_clear_error(net) -> None:
    y = synthetic_signal(2.0)
    windows = net.windows(y, 2)
    assert windows.shape == (2, net.INPUT_SAMPLES)
    assert np.array_equal(windows[0], np.resize(y, net.INPUT_SAMPLES))  # end to end, no silence
    embedding, probs = net(y)
    assert np.all(np.isfinite(embedding)) and probs.shape == (50,)
    with pytest.raises(TooShortError, match=r"too short: 0\.99 s of audio, need at least 1\.00 s"):
        net(np.zeros(SAMPLE_RATE - 100, np.float32))
    with pytest.raises(TooShortError, match="too short"):
        net(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="mono"):
        net(np.zeros((2, 5 * SAMPLE_RATE), np.float32))


def _arrays(name: str) -> dict[str, np.ndarray]:
    with np.load(jamendo_net.WEIGHTS[name], allow_pickle=False) as data:
        return dict(data)


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated", "incomplete", "wrong shape", "pickle", "nan"])
def test_bad_weights_file_is_a_model_error_naming_it(tmp_path: Path, name: str, damage: str) -> None:
    path = tmp_path / f"jamendo_{name}.npz"
    arrays = _arrays(name)
    if damage == "garbage":
        path.write_bytes(b"not a zip file at all" * 100)
    elif damage == "truncated":
        path.write_bytes(jamendo_net.WEIGHTS[name].read_bytes()[:500_000])
    elif damage == "incomplete":
        del arrays["out.w"]
    elif damage == "wrong shape":
        arrays["out.w"] = arrays["out.w"][:, :10]
    elif damage == "pickle":  # an object array would need pickle (i.e. code) to load
        arrays["out.b"] = np.array([object()] * 50, dtype=object)
    elif damage == "nan":
        arrays["out.b"][3] = np.nan
    if damage in ("incomplete", "wrong shape", "pickle", "nan"):
        np.savez(path, **arrays)
    with pytest.raises(ModelError) as info:
        NETWORKS[name].load(path)
    assert info.value.path == str(path) and str(path) in str(info.value)
    expected = {"missing": "weights file not found", "garbage": "corrupt", "truncated": "corrupt", "incomplete": "missing out.w",
                "wrong shape": "out.w", "pickle": "corrupt", "nan": "expected finite"}[damage]
    assert expected in info.value.reason and f"MTG-Jamendo {name}" in info.value.reason


def test_id_names_the_network_its_weights_and_the_patch_count(tmp_path: Path, net) -> None:
    cls = type(net)
    assert net.id == cls.load().id and net.id.startswith(f"jamendo_{net.name}-")
    assert net.id.endswith(f"-p{net.DEFAULT_PATCHES}") and net.n_patches == net.DEFAULT_PATCHES
    assert cls.load(n_patches=3).id not in (net.id, cls.load(n_patches=4).id)
    arrays = _arrays(net.name)
    arrays["out.b"] = arrays["out.b"] + 1
    np.savez(tmp_path / "other.npz", **arrays)
    assert cls.load(tmp_path / "other.npz").id != net.id
    assert jamendo_net.JamendoMusicnn.load().id != jamendo_net.JamendoFCN.load().id


def test_import_loads_no_torch_tensorflow_or_librosa() -> None:
    code = ("import sys, plugins.jamendo_net; "
            "print(*(m in sys.modules for m in ('torch', 'torchaudio', 'tensorflow', 'librosa')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["False"] * 4


def test_tags_are_the_networks_output_order_with_31_genres() -> None:
    assert len(TAGS) == 50 and list(TAGS) == sorted(TAGS)  # the training code binarised in sorted order
    assert len(GENRE_TAGS) == 31 and GENRE_TAGS == TAGS[:31]
    assert all(t.startswith(("instrument---", "mood/theme---")) for t in TAGS[31:])
    tags_txt = SHARED / "weights" / "mtg-jamendo" / "tags.txt"
    if tags_txt.is_file():
        assert tuple(tags_txt.read_text(encoding="utf-8").split()) == TAGS


def test_licence_and_credit_ship_beside_the_weights() -> None:
    licence = jamendo_net.MODELS / "jamendo.LICENSE"
    text = licence.read_text(encoding="utf-8")
    assert "MIT License" in text and "Music Technology Group, Universitat Pompeu Fabra" in text
    assert "Won" in text and "SMC" in text and "MTG-Jamendo dataset" in text
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    globs = [g.strip() for g in config["options.package_data"]["plugins"].split(",")]
    for path in (*jamendo_net.WEIGHTS.values(), licence):  # installed with the package
        package = Path(jamendo_net.__file__).parent  # the repo's, or site-packages' after `pip install .`
        assert any(fnmatch.fnmatch(path.relative_to(package).as_posix(), g) for g in globs), path
        assert path.stat().st_size < 4_000_000
