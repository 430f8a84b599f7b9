"""EfficientAT mn04 front end: CPU per 30 s excerpt, and what the window count changes.

Measures what docs/efficientat.md reports, single-threaded as the scan's workers run::

    python -m benchmarks.efficientat_net speed --repeat 5     # mel and forward CPU per 30 s excerpt
    python -m benchmarks.efficientat_net windows              # GTZAN: output change, genre probe per embedding

``windows`` needs the GTZAN clips in ../shared/gtzan (audio/ and audio-16k/); it decodes each
clip as the scan does (30 s from the middle), runs every window count, and fits a logistic
regression on the embeddings with artist-grouped 5-fold cross-validation (3 seeds).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks import musicnn_net as musicnn_bench

GTZAN = Path(__file__).resolve().parents[1].parent / "shared" / "gtzan"
SPEED_CLIP = "audio/jazz/jazz.00001.wav"
WINDOW_COUNTS = (1, 2, 3, 0)  # 0: WHOLE


def _label(n_windows: int) -> str:
    return "whole" if n_windows == 0 else f"{n_windows} x 10 s"


def _cpu(fn: Callable[[], object], repeat: int) -> float:
    """Best-of CPU seconds of one call, after one untimed call."""
    fn()
    return musicnn_bench._cpu(fn, repeat)


def speed(gtzan: Path, repeat: int) -> None:
    from plugins.efficientat_net import EfficientATNet, synthetic_signal
    from tagger.media.audio import decode

    clip = gtzan / SPEED_CLIP
    y = decode(clip, sr=32000).samples if clip.is_file() else np.tile(synthetic_signal(), 3)
    print(f"input: {clip if clip.is_file() else 'synthetic signal x 3'}, {len(y) / 32000:.1f} s at 32 kHz")
    net = EfficientATNet.load()
    print("| windows | mel ms | forward ms | total ms |\n| --- | ---: | ---: | ---: |")
    for n in WINDOW_COUNTS:
        mels = net.windows(y, n)
        mel_s = _cpu(lambda n=n: net.windows(y, n), repeat)
        fwd_s = _cpu(lambda mels=mels: net.forward(mels), repeat)
        total = _cpu(lambda n=n: net(y, n), repeat)
        print(f"| {_label(n)} | {1000 * mel_s:.1f} | {1000 * fwd_s:.1f} | {1000 * total:.1f} |")


def _probe(x: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> str:
    """Logistic regression on standardised ``x``: artist-grouped 5-fold accuracy, mean of 3 shuffles, per C."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    accs = []
    for c in (0.01, 0.1, 1.0):
        runs = []
        for seed in (0, 1, 2):
            model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
            cv = StratifiedGroupKFold(5, shuffle=True, random_state=seed)
            runs.append(np.mean(cross_val_predict(model, x, labels, groups=groups, cv=cv) == labels))
        accs.append(np.mean(runs))
    return " / ".join(f"{a:.3f}" for a in accs)


def windows(gtzan: Path) -> None:
    from plugins.efficientat_net import EfficientATNet
    from tagger.media.audio import decode
    from training.data import find_clips
    from training.splits import artist_group

    net = EfficientATNet.load()
    clips = [c for folder in ("audio", "audio-16k") if (gtzan / folder).is_dir() for c in find_clips(gtzan / folder)]
    out: dict[int, dict[str, list]] = {n: {"pooled": [], "embedding": [], "probs": []} for n in WINDOW_COUNTS}
    cpu = dict.fromkeys(WINDOW_COUNTS, 0.0)
    for clip in clips:
        y = decode(clip.path, sr=32000).samples
        for n in WINDOW_COUNTS:
            start = time.process_time()
            outputs = net.outputs(net.windows(y, n))
            cpu[n] += time.process_time() - start
            for key in out[n]:
                out[n][key].append(getattr(outputs, key).mean(axis=0))
    labels = np.array([c.genre for c in clips])
    groups = np.array([artist_group(c.track_id, c.genre) for c in clips])
    print(f"{len(clips)} clips, {len(set(groups))} artist groups; accuracies for C = 0.01 / 0.1 / 1")
    print("| windows | CPU ms per clip (mean) | cosine to whole: median (min) | largest probability change "
          "vs whole: median | accuracy, embedding (hidden 512) | pooled 384 | logit(probabilities) 527 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    whole = np.array(out[0]["embedding"])
    for n in WINDOW_COUNTS:
        e, p = np.array(out[n]["embedding"]), np.array(out[n]["probs"])
        cos = np.sum(e * whole, 1) / np.linalg.norm(e, axis=1) / np.linalg.norm(whole, axis=1)
        change = np.abs(p - np.array(out[0]["probs"])).max(axis=1)
        logits = np.log(np.clip(p, 1e-7, 1 - 1e-7) / np.clip(1 - p, 1e-7, 1))
        print(f"| {_label(n)} | {1000 * cpu[n] / len(clips):.0f} | {np.median(cos):.3f} ({cos.min():.3f}) "
              f"| {np.median(change):.3f} | {_probe(e, labels, groups)} "
              f"| {_probe(np.array(out[n]['pooled']), labels, groups)} | {_probe(logits, labels, groups)} |")


def main(argv: list[str] | None = None) -> None:
    from threadpoolctl import threadpool_limits

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("speed", "windows"))
    parser.add_argument("--gtzan", type=Path, default=GTZAN)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with threadpool_limits(1):
        speed(args.gtzan, args.repeat) if args.what == "speed" else windows(args.gtzan)


if __name__ == "__main__":
    main()
