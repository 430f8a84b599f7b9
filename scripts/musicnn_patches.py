"""What fewer musicnn patches cost in accuracy: ``python -m scripts.musicnn_patches --data DIR [--data DIR]``.

The musicnn front end averages its embedding over ``n`` evenly spaced 3 s
patches of a track's 30 s excerpt (plugins/musicnn_net.py); fewer patches
are faster (about 0.05 CPU s each).  This runs the network once on every
patch of every clip, then, for each patch count, builds the embeddings a
scan with that count would cache and scores the musicnn head under
``artist-kfold`` with every fold tested once (as ``genretag report
--all-folds``), so the counts are compared on the same clips and folds.

Example:
    python -m scripts.musicnn_patches --data ../shared/gtzan/audio --data ../shared/gtzan/audio-16k
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from training.data import check_readable, find_clips
from training.dataset import Part
from training.scoring import score
from training.splits import FOLD_PROTOCOLS, get_split

COUNTS: tuple[int | None, ...] = (1, 2, 3, 5, None)


def per_patch(paths: list[str]) -> tuple[list[np.ndarray], float]:
    """Every clip's penultimate layer per patch (n, 200), decoded as a scan decodes, and CPU s per patch."""
    from threadpoolctl import threadpool_limits

    from plugins.musicnn_net import SAMPLE_RATE, MusicnnNet
    from tagger.media.audio import decode

    threadpool_limits(1)  # as in scan's worker processes
    net = MusicnnNet.load()
    out, cpu, n = [], 0.0, 0
    for path in paths:
        y = decode(path, sr=SAMPLE_RATE, excerpt=30.0).samples
        started = time.process_time()
        penultimate, _ = net.forward(net.patches(y, None))
        cpu += time.process_time() - started
        n += len(penultimate)
        out.append(penultimate)
    return out, cpu / max(n, 1)


def cross_validated(X: np.ndarray, ids: list[str], labels: list[str], k: int, seed: int) -> dict[str, float]:
    """Mean and std of track accuracy over artist-kfold folds, valid = the next fold (C chosen there)."""
    from plugins.musicnn import MusicnnBackend

    accs, row_of = [], {t: i for i, t in enumerate(ids)}
    for fold in range(k):
        split = get_split("artist-kfold", ids, labels, k=k, fold=fold, seed=seed)
        rows = {p: [row_of[t] for t in getattr(split, p)] for p in ("train", "valid", "test")}
        y = np.array(labels, dtype=object)
        model = MusicnnBackend().fit(X[rows["train"]], y[rows["train"]].tolist(),
                                     X_valid=X[rows["valid"]], y_valid=y[rows["valid"]].tolist(), seed=seed)
        test = rows["test"]
        part = Part(X[test], y[test], np.array(ids, dtype=object)[test], np.zeros(len(test), dtype=int))
        accs.append(score(model.genres_, part, model.predict_proba(X[test]), per_slice=False)["track_accuracy"])
    return {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "folds": accs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", required=True, help="GTZAN audio folder (repeatable)")
    parser.add_argument("--k", type=int, default=FOLD_PROTOCOLS["artist-kfold"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args(argv)
    from plugins.musicnn_net import patch_indices

    clips, seen = [], set()
    for root in args.data:
        found = [c for c in find_clips(root) if c.track_id not in seen]
        seen |= {c.track_id for c in found}
        clips += found
    clips, _ = check_readable(clips)
    ids, labels = [c.track_id for c in clips], [c.genre for c in clips]
    patches, cpu_per_patch = per_patch([str(c.path) for c in clips])
    rows = []
    for n in COUNTS:
        X = np.stack([p[patch_indices(len(p), n)].mean(axis=0) for p in patches])
        result = cross_validated(X, ids, labels, args.k, args.seed)
        rows.append({"patches": n or "all", "accuracy": result["mean"], "std": result["std"],
                     "folds": result["folds"], "forward_cpu_s": cpu_per_patch * (n or 10)})
        print(f"patches {n or 'all':>4}: artist-kfold accuracy {result['mean']:.3f} ± {result['std']:.3f} "
              f"({len(ids)} clips, {args.k} folds); forward ≈ {rows[-1]['forward_cpu_s']:.3f} CPU s per track")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"clips": len(ids), "k": args.k, "seed": args.seed, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
