"""The ``fusion`` backend: one logistic-regression head over several pretrained front ends side by side.

Its input is the concatenation of the embeddings of the backends named in
``PARTS`` (each an ``"embedding"`` backend, found through the registry as
any third party's would be), computed from one decode of the file
(tagger/inference/fusion.py).  Which networks, and how many patches each hears, was
chosen by artist-kfold on every GTZAN clip present: docs/fusion.md gives
every candidate's figure and cost, and ``scripts/compare_ears.py`` measures
them again.

A third party combines other front ends by subclassing with its own
``name``, ``PARTS`` and model file, registered under ``genretag.backends``.
"""

from __future__ import annotations

from typing import ClassVar

from tagger.inference.backends import FrontEnd

from .embedding_head import EmbeddingHead


class FusionBackend(EmbeddingHead):
    """StandardScaler + logistic regression on the embeddings of ``PARTS``' front ends, concatenated."""

    name = "fusion"
    FORMAT = "genretag-fusion/1"
    #: The embedding backends heard, in this order.
    PARTS: ClassVar[tuple[str, ...]] = ("musicnn", "efficientat")
    EMBEDDING = "embeddings of several pretrained front ends side by side"

    @classmethod
    def front_end(cls) -> FrontEnd:
        """Every part's front end (each loaded once per process), fused: ModelError naming a bad weights file."""
        from tagger.inference.inputs import fuse

        return fuse(cls.PARTS)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "parts": list(self.PARTS)}
