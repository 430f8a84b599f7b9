"""The ``jamendo`` backend: a logistic-regression head on MTG-Jamendo musicnn's embedding.

The musicnn architecture as trained by Won, Ferraro, Bogdanov & Serra (SMC
2020; MIT, (c) Music Technology Group, UPF) on MTG-Jamendo's top-50 tags,
31 of them genres (electronic, ambient, soundtrack, world, ...).  Its front
end (plugins/jamendo_net.py, NumPy) runs in the workers on 16 kHz audio.
docs/jamendo.md has the networks, their licence and their cost.
"""

from __future__ import annotations

from tagger.inference.backends import FrontEnd

from .embedding_head import EmbeddingHead, NetFrontEnd


def load_front_end(network: str = "musicnn", n_patches: int | None = None) -> NetFrontEnd:
    """A shipped MTG-Jamendo network; ModelError naming its weights file if missing or corrupt."""
    from . import jamendo_net as net

    return NetFrontEnd(net.load(network, n_patches=n_patches), net.SAMPLE_RATE, net.TAGS)


class JamendoBackend(EmbeddingHead):
    """StandardScaler + logistic regression on MTG-Jamendo musicnn's penultimate layer."""

    name = "jamendo"
    FORMAT = "genretag-jamendo/1"
    EMBEDDING = "MTG-Jamendo musicnn embedding (penultimate layer, mean over patches)"

    @classmethod
    def front_end(cls) -> FrontEnd:
        return load_front_end()
