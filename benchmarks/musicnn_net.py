"""MSD_musicnn front end: CPU per clip, memory, resampler and patch-count effects.

Measures what docs/musicnn.md reports (every run single-threaded, as the scan's
workers run BLAS with one thread)::

    python -m benchmarks.musicnn_net speed      # numpy vs TensorFlow forward, 1/3/5/10 patches
    python -m benchmarks.musicnn_net memory     # peak RSS of a process running each runtime
    python -m benchmarks.musicnn_net resampler  # tag probabilities: soxr HQ/VHQ vs resampy kaiser_best
    python -m benchmarks.musicnn_net patches    # embedding of n evenly spaced patches vs all 10

``resampler`` needs ``pip install resampy`` (a measurement-only dependency);
``resampler`` and ``patches`` need the GTZAN clips in ../shared/gtzan.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

GTZAN = Path(__file__).resolve().parents[1].parent / "shared" / "gtzan"
SPEED_CLIP = "audio/pop/pop.00005.wav"
PATCH_COUNTS = (1, 2, 3, 5, 10)


def _clips(folder: str) -> list[Path]:
    return sorted((GTZAN / folder).glob("*/*.wav"))


def _use(gtzan: Path) -> None:
    global GTZAN
    GTZAN = gtzan


def tf_forward(net: object):  # noqa: ANN201 (returns a tf.function)
    """The same network as TensorFlow ops on the same npz arrays (the alternative runtime)."""
    import tensorflow as tf

    w = {k: tf.constant(v) for k, v in net.w.items()}

    def block(name: str, z: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu(z + w[f"{name}.b"]) * w[f"{name}.scale"] + w[f"{name}.shift"]

    @tf.function(input_signature=[tf.TensorSpec([None, 187, 96], tf.float32)])
    def forward(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = (x * w["input.scale"] + w["input.shift"])[..., None]  # NHWC, H = time, W = mel
        xp = tf.pad(x, [[0, 0], [3, 3], [0, 0], [0, 0]])
        front = []
        for name in ("timbral74", "timbral77"):
            z = tf.nn.conv2d(xp, w[f"{name}.w"][:, :, None, :], 1, "VALID")
            front.append(tf.reduce_max(block(name, z), axis=2))
        for name in ("temporal128", "temporal64", "temporal32"):
            z = tf.nn.conv2d(x, w[f"{name}.w"][:, :, None, :], 1, "SAME")
            front.append(tf.reduce_max(block(name, z), axis=2))
        h = tf.concat(front, axis=2)
        mid = [h]
        for i, name in enumerate(("mid1", "mid2", "mid3")):
            hp = tf.pad(h, [[0, 0], [3, 3], [0, 0]])
            z = block(name, tf.nn.conv1d(hp, w[f"{name}.w"], 1, "VALID"))
            h = z if i == 0 else z + h
            mid.append(h)
        feats = tf.concat(mid, axis=2)
        pooled = tf.reshape(tf.stack([tf.reduce_max(feats, 1), tf.reduce_mean(feats, 1)], 2), [-1, 1506])
        pooled = pooled * w["pool.scale"] + w["pool.shift"]
        pen = block("dense", pooled @ w["dense.w"])
        return pen, tf.sigmoid(pen @ w["out.w"] + w["out.b"])

    return forward


def _cpu(fn, repeat: int) -> float:  # noqa: ANN001
    """Best-of CPU seconds of one call (the machine is shared; the minimum is the cost)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def speed(repeat: int, with_tf: bool) -> None:
    from plugins.musicnn_net import MusicnnNet
    from tagger.media.audio import decode

    net = MusicnnNet.load()
    path = GTZAN / SPEED_CLIP
    y = decode(path, sr=16000, excerpt=None).samples
    runtimes = {"numpy": net.forward}
    if with_tf:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        graph = tf_forward(net)
        runtimes["tensorflow"] = lambda p: tuple(t.numpy() for t in graph(p))
        a, b = net.forward(net.patches(y)), runtimes["tensorflow"](net.patches(y))
        print(f"numpy vs tensorflow runtime: max |d prob| {np.abs(a[1] - b[1]).max():.1e}")
    print(f"decode {path.name} to 16 kHz (soxr HQ): "
          f"{_cpu(lambda: decode(path, sr=16000, excerpt=None), repeat):.3f} CPU s")
    for n in PATCH_COUNTS:
        patches = net.patches(y, n)
        row = [f"{n:2d} patches: mel+patches {_cpu(lambda: net.patches(y, n), repeat):.3f}"]
        for name, fn in runtimes.items():
            fn(patches)  # warm-up (tf traces its graph)
            row.append(f"{name} forward {_cpu(lambda: fn(patches), repeat):.3f}")
        print(", ".join(row) + " CPU s")


def memory() -> None:
    """Peak RSS of fresh processes: numpy runtime vs importing TensorFlow (with the tf runtime)."""
    code = {
        "numpy": "from plugins.musicnn_net import MusicnnNet, synthetic_signal; import sys; "
                 "n = MusicnnNet.load(); n(np.tile(synthetic_signal(), 5), None); "
                 "print('tensorflow' in sys.modules)",
        "tensorflow": "from plugins.musicnn_net import MusicnnNet, synthetic_signal; "
                      "from benchmarks.musicnn_net import tf_forward; n = MusicnnNet.load(); "
                      "f = tf_forward(n); f(n.patches(np.tile(synthetic_signal(), 5))); print(True)",
    }
    for name, body in code.items():
        script = ("import numpy as np, resource; " + body +
                  "; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        tf_loaded, rss = out.stdout.split()[-2:]
        print(f"{name}: peak RSS {float(rss):.0f} MB (tensorflow imported: {tf_loaded})")


def resampler(limit: int) -> None:
    """Tag probabilities of the 22050 Hz clips, resampled three ways, vs resampy kaiser_best."""
    import resampy
    import soundfile as sf
    import soxr

    from plugins.musicnn_net import MusicnnNet

    net = MusicnnNet.load()
    ways = {
        "soxr HQ (tagger/media/audio.py)": lambda y, sr: soxr.resample(y, sr, 16000, quality="HQ"),
        "soxr VHQ": lambda y, sr: soxr.resample(y, sr, 16000, quality="VHQ"),
    }
    per_patch: dict[str, list[float]] = {k: [] for k in ways}
    per_track: dict[str, list[np.ndarray]] = {k: [] for k in ways}
    cpu: dict[str, float] = {k: 0.0 for k in [*ways, "resampy kaiser_best"]}
    clips = _clips("audio")[:limit]
    for path in clips:
        y, sr = sf.read(path, dtype="float32")
        if y.ndim > 1:
            y = y.mean(axis=1)
        start = time.process_time()
        y_ref = resampy.resample(y, sr, 16000, filter="kaiser_best").astype(np.float32)
        cpu["resampy kaiser_best"] += time.process_time() - start
        ref = net.forward(net.patches(y_ref, None))[1]
        for name, fn in ways.items():
            start = time.process_time()
            y16 = fn(y, sr).astype(np.float32)
            cpu[name] += time.process_time() - start
            probs = net.forward(net.patches(y16, None))[1]
            per_patch[name].extend(np.abs(probs - ref).max(axis=1))
            per_track[name].append(np.abs(probs.mean(0) - ref.mean(0)))
    print(f"{len(clips)} clips of {GTZAN}/audio (22050 Hz), all patches, vs resampy kaiser_best "
          f"(the original musicnn's resampler):")
    for name in ways:
        p, t = np.asarray(per_patch[name]), np.asarray(per_track[name])
        print(f"  {name}: per patch, largest tag change: max {p.max():.4f}, 99th pct {np.percentile(p, 99):.4f}, "
              f"median {np.median(p):.5f}; per track (mean of patches): max {t.max():.4f}, "
              f"mean {t.mean():.5f}, tracks with a tag moved > 0.02: {(t.max(axis=1) > 0.02).sum()}")
    print("  resampling CPU per clip: " + ", ".join(f"{k} {v / len(clips) * 1000:.0f} ms" for k, v in cpu.items()))


def patches(limit: int) -> None:
    """Cosine similarity of the n-patch embedding to the all-patch mean, and the tags' change.

    Raw cosine flatters (the embeddings share a large common part), so it is also given after
    subtracting the mean all-patch embedding of the clips ("centred").
    """
    from plugins.musicnn_net import MusicnnNet, patch_indices
    from tagger.media.audio import decode

    net = MusicnnNet.load()
    clips = (_clips("audio") + _clips("audio-16k"))[:limit]
    full_e, part_e, tagd = [], {n: [] for n in PATCH_COUNTS}, {n: [] for n in PATCH_COUNTS}
    for path in clips:
        y = decode(path, sr=16000, excerpt=None).samples
        every = net.patches(y, None)
        pen, prob = net.forward(every)
        full_e.append(pen.mean(0))
        total = len(every)
        for n in PATCH_COUNTS:
            chosen = patch_indices(total, n)
            part_e[n].append(pen[chosen].mean(0))
            tagd[n].append(float(np.abs(prob[chosen].mean(0) - prob.mean(0)).max()))
    full = np.asarray(full_e)
    centre = full.mean(axis=0)

    def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    print(f"{len(clips)} clips ({GTZAN}/audio + audio-16k, WAV), all patches (10) vs n evenly spaced:")
    for n in PATCH_COUNTS:
        part = np.asarray(part_e[n])
        raw, centred, t = cosine(part, full), cosine(part - centre, full - centre), np.asarray(tagd[n])
        print(f"  n={n:2d}: embedding cosine mean {raw.mean():.4f} (5th pct {np.percentile(raw, 5):.4f}), "
              f"centred mean {centred.mean():.4f} (5th pct {np.percentile(centred, 5):.4f}, "
              f"min {centred.min():.4f}); largest tag change: mean {t.mean():.3f}, "
              f"95th pct {np.percentile(t, 95):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("speed", "memory", "resampler", "patches"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--limit", type=int, default=1000, help="at most this many clips")
    parser.add_argument("--no-tf", action="store_true", help="speed: numpy runtime only")
    parser.add_argument("--gtzan", type=Path, default=GTZAN, help=f"GTZAN folder (default {GTZAN})")
    args = parser.parse_args()
    _use(args.gtzan)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # as the scan's workers run
        if args.what == "speed":
            speed(args.repeat, not args.no_tf)
        elif args.what == "memory":
            memory()
        elif args.what == "resampler":
            resampler(args.limit)
        else:
            patches(args.limit)
    print(f"(this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
