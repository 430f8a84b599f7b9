"""MTG-Jamendo musicnn and FCN front ends: CPU per 30 s excerpt, and which layer to use as embedding.

Measures what docs/jamendo.md reports, single-threaded as the scan's workers run BLAS::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 python -m benchmarks.jamendo_net speed
    python -m benchmarks.jamendo_net blocks  # musicnn's 10-window call per timbral block size
    python -m benchmarks.jamendo_net probe   # needs the GTZAN clips in ../shared/gtzan

``probe`` fits a logistic regression (standardised inputs, C=1) on each candidate embedding of
every GTZAN clip present (audio + audio-16k), artist-grouped 5-fold as ``training.splits`` groups
them, and prints the out-of-fold accuracy: a relative comparison of layers, not a model choice.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

from benchmarks.musicnn_net import _cpu

GTZAN = Path(__file__).resolve().parents[1].parent / "shared" / "gtzan"
SPEED_CLIP = "audio-16k/pop/pop.00024.wav"
MUSICNN_PATCHES = (1, 3, 5, 10)


def _excerpt(gtzan: Path) -> tuple[np.ndarray, str]:
    """A 30 s, 16 kHz excerpt: a GTZAN clip when present, else the synthetic signal."""
    from plugins.jamendo_net import synthetic_signal

    path = gtzan / SPEED_CLIP
    if path.is_file():
        from tagger.media.audio import decode

        return decode(path, sr=16000, excerpt=None).samples, path.name
    return synthetic_signal(30.0), "synthetic 30 s signal"


def speed(gtzan: Path, repeat: int) -> None:
    from plugins.jamendo_net import JamendoFCN, JamendoMusicnn

    y, name = _excerpt(gtzan)
    print(f"{name}: {len(y) / 16000:.1f} s at 16 kHz; best of {repeat}, CPU s (time.process_time)")
    for cls, counts in ((JamendoMusicnn, MUSICNN_PATCHES), (JamendoFCN, (1,))):
        net = cls.load()
        for n in counts:
            windows = net.windows(y, n)
            front = _cpu(lambda: net.normalised_mel(net.windows(y, n)), repeat)
            total = _cpu(lambda: net(y, n), repeat)
            print(f"  {net.name:7s} {n:2d} window(s) of {cls.INPUT_SAMPLES / 16000:.0f} s: "
                  f"mel {front * 1000:.0f} ms, whole call {total * 1000:.0f} ms "
                  f"({total / len(windows) * 1000:.0f} ms per window)")


def blocks(gtzan: Path, repeat: int) -> None:
    """musicnn's whole call on 10 windows for each timbral block size, sizes interleaved per round."""
    from plugins import jamendo_net

    y, name = _excerpt(gtzan)
    sizes = (2, 3, 4, 6, 8)
    best = dict.fromkeys(sizes, float("inf"))
    for _ in range(repeat):
        for size in sizes:
            jamendo_net.TIMBRAL_BLOCK = size
            net = jamendo_net.JamendoMusicnn.load()
            best[size] = min(best[size], _cpu(lambda: net(y, 10), 1))
    print(f"{name}, musicnn 10 windows, best of {repeat}: " +
          ", ".join(f"block {size}: {t * 1000:.0f} ms" for size, t in best.items()))


def probe(gtzan: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from plugins.jamendo_net import JamendoFCN, JamendoMusicnn
    from tagger.media.audio import decode
    from training.data import track_id
    from training.splits import artist_group, group_folds

    clips = {track_id(p): p for folder in ("audio", "audio-16k") for p in sorted((gtzan / folder).glob("*/*.wav"))}
    if not clips:
        raise SystemExit(f"no GTZAN clips under {gtzan}/audio or audio-16k")
    musicnn, fcn = JamendoMusicnn.load(), JamendoFCN.load()
    rows: dict[str, list[np.ndarray]] = {}
    labels, start = [], time.process_time()
    for tid, path in sorted(clips.items()):
        y = decode(path, sr=16000, excerpt=None).samples
        x = musicnn.normalised_mel(musicnn.windows(y, musicnn.DEFAULT_PATCHES))
        pooled = musicnn.pooled(x)
        penultimate, logits = musicnn.head(pooled)
        m_probs = 1 / (1 + np.exp(-logits))
        f_emb, f_probs = fcn.forward(fcn.windows(y, 1))
        for key, value in (("musicnn pooled 1506", pooled), ("musicnn penultimate 200", penultimate),
                           ("musicnn 50 tag probabilities", m_probs), ("fcn last conv 64", f_emb),
                           ("fcn 50 tag probabilities", f_probs)):
            rows.setdefault(key, []).append(value.mean(axis=0))
        labels.append(tid.split(".")[0])
    print(f"{len(labels)} clips, {time.process_time() - start:.0f} CPU s to embed")
    groups = [artist_group(tid, label) for tid, label in zip(sorted(clips), labels)]
    folds = group_folds(labels, groups, 5, np.random.default_rng(0))
    y_all = np.asarray(labels)
    rows["musicnn penultimate 200 + fcn last conv 64"] = [
        np.concatenate(pair) for pair in zip(rows["musicnn penultimate 200"], rows["fcn last conv 64"])]
    for key, values in rows.items():
        X = np.asarray(values)
        right = 0
        for f in range(5):
            model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
            model.fit(X[folds != f], y_all[folds != f])
            right += int((model.predict(X[folds == f]) == y_all[folds == f]).sum())
        print(f"  {key:45s} artist 5-fold accuracy {right / len(y_all):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("speed", "blocks", "probe"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--gtzan", type=Path, default=GTZAN, help=f"GTZAN folder (default {GTZAN})")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # as the scan's workers run
        if args.what == "speed":
            speed(args.gtzan, args.repeat)
        elif args.what == "blocks":
            blocks(args.gtzan, args.repeat)
        else:
            probe(args.gtzan)
    print(f"(this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
