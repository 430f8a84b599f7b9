"""Which pretrained front ends (and how many patches) the default head should listen through: artist-kfold on GTZAN.

Research, run at development time (not shipped in the wheel).  Every GTZAN
clip present (../shared/gtzan/audio and audio-16k: 173) is decoded once at
32 kHz, as a fused scan does, and each candidate front end's output is
computed from it (resampled to the front end's own rate) and kept in
benchmarks/out/ears/.  Each candidate, a front end or several side by side,
is then judged exactly as ``genretag report --split artist-kfold --all-folds``
judges a backend: 5 artist-grouped folds, each fold's head (StandardScaler +
logistic regression, plugins/embedding_head.py) tuned on the next fold and
tested on a fold whose artists it never heard.  Printed per candidate:
pooled accuracy over the 173 clips, mean ± std over folds, the coverage
reached at 0.85 pooled out-of-fold precision, and the CPU per 30 s excerpt of
its front ends (one thread, median over the clips)::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python scripts/compare_ears.py --data ../shared/gtzan/audio \\
        ../shared/gtzan/audio-16k
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out" / "ears"
DECODE_RATE = 32000
EXCERPT = 30.0


def front_ends() -> dict[str, Callable[[], object]]:
    """Candidate front ends by name, each loaded when first needed (a missing network is left out)."""
    out: dict[str, Callable[[], object]] = {}

    def musicnn(n: int | None) -> Callable[[], object]:
        def load() -> object:
            from plugins.musicnn import MusicnnFrontEnd
            from plugins.musicnn_net import SAMPLE_RATE, TAGS, MusicnnNet

            return MusicnnFrontEnd(MusicnnNet.load(), SAMPLE_RATE, TAGS, n)
        return load

    for n in (3, 5, 10):
        out[f"msd{n}"] = musicnn(n)
    try:
        from plugins import efficientat

        for n in (1, 3, 0):  # windows of 10 s, or 0: the whole excerpt in one pass
            out[f"mn04w{n}"] = (lambda n=n: efficientat.load_front_end(n))
    except ImportError:
        pass
    try:
        from plugins import jamendo

        for network, patches in (("musicnn", (3, 10)), ("fcn", (1,))):
            for n in patches:
                out[f"j{network}{n}"] = (lambda network=network, n=n: jamendo.load_front_end(network, n))
    except ImportError:
        pass
    return out


def clips(roots: list[str]) -> list[tuple[str, str, Path]]:
    from training.data import find_clips

    seen: dict[str, tuple[str, str, Path]] = {}
    for root in roots:
        for c in find_clips(root):
            seen.setdefault(c.track_id, (c.track_id, c.genre, c.path))
    return sorted(seen.values())


def outputs(name: str, load: Callable[[], object], items: list[tuple[str, str, Path]]) -> dict[str, np.ndarray]:
    """Embedding, tags and CPU seconds of front end ``name`` for every clip, computed once and kept."""
    from tagger.media.audio import decode, resample

    fe = load()
    key = hashlib.sha256(f"{fe.id}|{DECODE_RATE}|{EXCERPT}|{[t for t, _, _ in items]}".encode()).hexdigest()[:16]
    path = OUT / f"{name}-{key}.npz"
    if path.is_file():
        with np.load(path) as f:
            return dict(f)
    embeddings, tags, cpu = [], [], []
    for tid, _, clip in items:
        y = decode(clip, sr=DECODE_RATE, excerpt=EXCERPT).samples
        if fe.sample_rate != DECODE_RATE:
            y = resample(y, DECODE_RATE, fe.sample_rate)
        started = time.process_time()
        e, t = fe(y)
        cpu.append(time.process_time() - started)
        embeddings.append(np.asarray(e, np.float32))
        tags.append(np.asarray(t if t is not None else [], np.float32))
    out = {"embedding": np.stack(embeddings), "tags": np.stack(tags), "cpu": np.asarray(cpu)}
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def judge(X: np.ndarray, ids: list[str], labels: list[str], k: int = 5, seed: int = 0) -> dict[str, float]:
    """Artist-kfold as ``report --all-folds`` runs it: pooled and per-fold accuracy, coverage at 0.85 precision."""
    from plugins.embedding_head import EmbeddingHead
    from training.splits import get_split

    index = {t: i for i, t in enumerate(ids)}
    y = np.asarray(labels)
    conf, right, per_fold = [], [], []
    for fold in range(k):
        split = get_split("artist-kfold", ids, labels, seed=seed, k=k, fold=fold)
        tr, va, te = ([index[t] for t in part] for part in (split.train, split.valid, split.test))
        head = EmbeddingHead().fit(X[tr], y[tr].tolist(), X_valid=X[va], y_valid=y[va].tolist(), seed=seed)
        proba = head.predict_proba(X[te])
        guess = np.asarray(head.genres_)[proba.argmax(1)]
        per_fold.append(float(np.mean(guess == y[te])))
        conf.append(proba.max(1))
        right.append(guess == y[te])
    conf, right = np.concatenate(conf), np.concatenate(right)
    order = np.argsort(-conf, kind="stable")
    precision = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    ok = np.nonzero(precision >= 0.85)[0]
    return {"accuracy": float(right.mean()), "mean": float(np.mean(per_fold)), "std": float(np.std(per_fold)),
            "coverage85": float((ok.max() + 1) / len(order)) if len(ok) else 0.0, "n": len(right)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", required=True, help="GTZAN genre folders (audio, audio-16k)")
    parser.add_argument("--max-parts", type=int, default=3, help="largest combination tried")
    parser.add_argument("--only", nargs="*", help="front ends to consider (default: all available)")
    parser.add_argument("--tags", action="store_true", help="also try each combination with its tag outputs")
    args = parser.parse_args()
    items = clips(args.data)
    ids, labels = [t for t, _, _ in items], [g for _, g, _ in items]
    candidates = {n: f for n, f in front_ends().items() if not args.only or n in args.only}
    out = {name: outputs(name, load, items) for name, load in candidates.items()}
    rows = []
    musicnns = {n for n in out if n.startswith("msd")}
    for size in range(1, args.max_parts + 1):
        for combo in itertools.combinations(out, size):
            if len(musicnns & set(combo)) > 1 or len({c.rstrip("0123456789") for c in combo}) < len(combo):
                continue  # one variant of each network per combination
            for with_tags in (False, True) if args.tags else (False,):
                blocks = [out[c]["embedding"] for c in combo]
                if with_tags:
                    blocks += [np.log(np.clip(out[c]["tags"], 1e-4, 1 - 1e-4)) for c in combo if out[c]["tags"].size]
                result = judge(np.concatenate(blocks, axis=1).astype(np.float64), ids, labels)
                cpu = sum(float(np.median(out[c]["cpu"])) for c in combo)
                rows.append(("+".join(combo) + (" +tags" if with_tags else ""), result, cpu))
    rows.sort(key=lambda r: -r[1]["accuracy"])
    print(f"artist-kfold (5 folds, seed 0) on {len(ids)} GTZAN clips; CPU = front ends per 30 s excerpt, one thread")
    print(f"{'candidate':<40} {'pooled':>7} {'mean±std':>13} {'cov@.85':>8} {'CPU ms':>7}")
    for name, r, cpu in rows:
        print(f"{name:<40} {r['accuracy']:7.3f} {r['mean']:7.3f}±{r['std']:.3f} {r['coverage85']:8.2f} {cpu * 1000:7.0f}")


if __name__ == "__main__":
    main()
