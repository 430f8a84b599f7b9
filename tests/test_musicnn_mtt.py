"""MTT_musicnn (musicnn trained on MagnaTagATune) through MusicnnNet: parity with the original TF1 graph.

tests/data/musicnn_mtt_reference.npz holds the ORIGINAL MTT_musicnn graph's outputs (see
training/convert_musicnn.py --checkpoint MTT_musicnn --reference) on the mel patches stored in
the MSD fixture (same front end) and on the synthetic signal the test regenerates.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from plugins import musicnn_net
from plugins.musicnn_net import MTT_TAGS, TAGS, MusicnnNet, synthetic_signal
from tagger.errors import ModelError

DATA = Path(__file__).parent / "data"
TOLERANCE = 1e-4


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread() -> Iterator[None]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def net() -> MusicnnNet:
    return MusicnnNet.load(model="mtt")


def test_mtt_matches_the_original_graph_and_names_classical(net: MusicnnNet) -> None:
    with np.load(DATA / "musicnn_mtt_reference.npz", allow_pickle=False) as ref, \
         np.load(DATA / "musicnn_reference.npz", allow_pickle=False) as msd:
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
    _, msd_probs = MusicnnNet.load().forward(np.load(DATA / "musicnn_reference.npz")["clip_patches"][:2])
    assert np.abs(msd_probs - probs[:2]).max() > 0.1


def test_tags_id_and_licence_follow_the_model(tmp_path: Path, net: MusicnnNet) -> None:
    assert net.tags == MTT_TAGS and len(MTT_TAGS) == 50 and "classical" in MTT_TAGS and "classical" not in TAGS
    assert MusicnnNet.load().tags == TAGS
    assert net.id.startswith("musicnn_mtt-") and net.id[len("musicnn_mtt-"):] != MusicnnNet.load().id[len("musicnn_msd-"):]
    text = musicnn_net.MTT_WEIGHTS.with_suffix(".LICENSE").read_text(encoding="utf-8")
    assert "MTT_musicnn" in text and "Music Technology Group, Universitat Pompeu Fabra" in text and "Pons" in text
    broken = tmp_path / "musicnn_mtt.npz"
    broken.write_bytes(musicnn_net.MTT_WEIGHTS.read_bytes()[:100_000])
    with pytest.raises(ModelError, match="corrupt musicnn weights") as info:
        MusicnnNet.load(broken, model="mtt")
    assert info.value.path == str(broken)
    with pytest.raises(KeyError):
        MusicnnNet.load(model="nope")
