"""Several pretrained front ends heard as one: one decode, each part at its own rate, outputs side by side.

What an ``"embedding"`` backend returns when its head listens through more than
one network (plugins/fusion.py). A file is decoded once, at the highest rate any
part takes, and resampled once per rate; each part's output is cached under its
own id, so changing one part re-analyses only what that part lacks. Any
:class:`tagger.inference.backends.FrontEnd` can be a part.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence

import numpy as np

from ..analysis.wire import PartOutput
from ..media.audio import resample
from .frontend import FrontEnd


class FusedFrontEnd:
    """Front ends side by side: the embedding is their embeddings concatenated in ``parts`` order.

    ``parts`` pairs each front end with the name it is known by (its
    backend's name), which prefixes its tag names: ``"musicnn:rock"``.
    """

    def __init__(self, parts: Sequence[tuple[str, FrontEnd]]) -> None:
        if not parts:
            raise ValueError("a fused front end needs at least one part")
        names = [name for name, _ in parts]
        if len(set(names)) != len(names):
            raise ValueError(f"a fused front end names each part once, not {names}")
        self.parts: tuple[tuple[str, FrontEnd], ...] = tuple(parts)
        self.sample_rate: int = max(int(fe.sample_rate) for _, fe in parts)
        digest = hashlib.sha256("\n".join(fe.id for _, fe in parts).encode()).hexdigest()[:16]
        self.id: str = f"fused-{digest}"
        self.tag_names: tuple[str, ...] = tuple(f"{name}:{tag}" for name, fe in parts for tag in fe.tag_names)

    def run(self, y: np.ndarray, skip: Collection[str] = ()) -> list[PartOutput]:
        """Each part's output for one waveform at ``sample_rate``, leaving out the parts whose id is in ``skip``."""
        by_rate: dict[int, np.ndarray] = {self.sample_rate: y}
        out = []
        for _, fe in self.parts:
            if fe.id in skip:
                continue
            rate = int(fe.sample_rate)
            if rate not in by_rate:
                by_rate[rate] = resample(y, self.sample_rate, rate)  # as decoding does: soxr, HQ
            embedding, tags = fe(by_rate[rate])
            out.append(PartOutput(fe.id, np.asarray(embedding, dtype=np.float32),
                                  None if tags is None else np.asarray(tags, dtype=np.float32)))
        return out

    def join(self, outputs: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray]:
        """(embedding, tags) of one track from its parts' outputs by id; KeyError naming a missing part."""
        embeddings, tags = [], []
        for _, fe in self.parts:
            embedding, part_tags = outputs[fe.id]
            embeddings.append(np.asarray(embedding, dtype=np.float32))
            if fe.tag_names:
                tags.append(np.asarray(part_tags, dtype=np.float32) if part_tags is not None
                            else np.full(len(fe.tag_names), np.nan, dtype=np.float32))
        return np.concatenate(embeddings), (np.concatenate(tags) if tags else np.zeros(0, np.float32))

    def __call__(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.join(by_id(self.run(y)))


def by_id(outputs: Iterable[PartOutput]) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Parts' outputs as :meth:`FusedFrontEnd.join` takes them: (embedding, tags) by part id."""
    return {p.front_end: (p.embedding, p.tags) for p in outputs}


