"""The ``efficientat`` backend: a logistic-regression head on EfficientAT mn04's AudioSet embedding.

EfficientAT's mn04_as (Schmid, Koutini & Widmer, ICASSP 2023; MIT) is a
MobileNetV3 distilled from transformers on AudioSet's 527 classes; its
front end (plugins/efficientat_net.py, NumPy) runs in the workers on 32 kHz
audio.  Alone it knows genres less well than musicnn; beside it (the
``fusion`` backend) it adds what AudioSet heard.  docs/efficientat.md has
the network, its licence and its cost.
"""

from __future__ import annotations

from tagger.inference.backends import FrontEnd

from .embedding_head import EmbeddingHead, NetFrontEnd


def load_front_end(n_windows: int | None = None) -> NetFrontEnd:
    """The shipped network (plugins/models/efficientat_mn04.npz); ModelError naming it if missing or corrupt."""
    from . import efficientat_net as net

    kwargs = {} if n_windows is None else {"n_windows": n_windows}
    return NetFrontEnd(net.EfficientATNet.load(**kwargs), net.SAMPLE_RATE, net.LABELS)


class EfficientATBackend(EmbeddingHead):
    """StandardScaler + logistic regression on mn04's 512-d classifier hidden layer (mean over its passes)."""

    name = "efficientat"
    FORMAT = "genretag-efficientat/1"
    EMBEDDING = "EfficientAT mn04 embedding (AudioSet; the classifier's 512-d hidden layer)"

    @classmethod
    def front_end(cls) -> FrontEnd:
        return load_front_end()
