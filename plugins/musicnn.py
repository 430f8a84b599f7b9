"""The ``musicnn`` backend: a logistic-regression head on MSD_musicnn's 200-d embedding.

The front end (plugins/musicnn_net.py, pure NumPy, trained on the Million Song
Dataset's 50 Last.fm tags) runs in the workers and gives per track the mean
penultimate layer over 3 s patches and the 50 tag probabilities, both cached.
The head learns GTZAN's genres from the embedding; ``genre_tags`` are the
genre-like tags (none for classical or reggae). Importing this module imports
neither the network nor TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tagger.inference.backends import FrontEnd

from .embedding_head import EmbeddingHead

FORMAT = "genretag-musicnn/1"
#: The genre-like tags among MSD_musicnn's 50 (its spelling); none is classical or reggae.
GENRE_TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "dance", "alternative rock", "jazz", "metal",
    "chillout", "classic rock", "soul", "indie rock", "electronica", "folk", "punk", "blues", "hard rock",
    "ambient", "experimental", "Hip-Hop", "country", "easy listening", "funk", "electro", "heavy metal",
    "Progressive rock", "rnb", "indie pop", "House",
)  # fmt: skip


class MusicnnFrontEnd:
    """MusicnnNet as a genretag front end: 16 kHz mono -> (200-d embedding, 50 tag probabilities).

    The embedding is a mean over ``n_patches`` 3 s patches of the excerpt
    (all of them when None), so the count is part of the id.
    """

    def __init__(self, net: Any, sample_rate: int, tag_names: Sequence[str], n_patches: int | None) -> None:
        self.net = net
        self.n_patches = n_patches
        self.id: str = f"{net.id}/patches={n_patches or 'all'}"
        self.sample_rate = int(sample_rate)
        self.tag_names = tuple(tag_names)

    def __call__(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        embedding, tags = self.net(y, n_patches=self.n_patches)
        return np.asarray(embedding, dtype=np.float32), np.asarray(tags, dtype=np.float32)


class MusicnnBackend(EmbeddingHead):
    """StandardScaler + logistic regression (plugins/embedding_head.py) on the MSD_musicnn embedding."""

    name = "musicnn"
    genre_tags = GENRE_TAGS
    FORMAT = FORMAT
    EMBEDDING = "MSD_musicnn embedding (mean of the 200-d penultimate layer over 3 s patches)"

    @classmethod
    def front_end(cls) -> FrontEnd:
        """The shipped network (plugins/models/musicnn_msd.npz); ModelError naming it if missing or corrupt."""
        from .musicnn_net import DEFAULT_PATCHES, SAMPLE_RATE, TAGS, MusicnnNet

        return MusicnnFrontEnd(MusicnnNet.load(), SAMPLE_RATE, TAGS, DEFAULT_PATCHES)
