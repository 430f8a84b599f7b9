"""Convert musicnn's MSD_musicnn (or MTT_musicnn) TF1 checkpoint into the weights file genretag ships.

Run once at development time, not by users. The source is the musicnn 0.1.0
wheel (ISC licence, (c) Music Technology Group, Universitat Pompeu Fabra;
Pons & Serra, "musicnn: pre-trained convolutional neural networks for music
audio tagging", ISMIR 2019 late-breaking demo)::

    pip download musicnn==0.1.0 --no-deps -d /tmp/musicnn
    unzip /tmp/musicnn/musicnn-0.1.0-py3-none-any.whl -d /tmp/musicnn
    python -m scripts.convert_musicnn --wheel-dir /tmp/musicnn \
        --reference ../shared/gtzan/audio/pop/pop.00005.wav \
        ../shared/gtzan/audio/jazz/jazz.00001.wav ../shared/gtzan/audio-16k/classical/classical.00025.wav
    python -m scripts.convert_musicnn --wheel-dir /tmp/musicnn --checkpoint MTT_musicnn --reference

The checkpoint prefix ``musicnn/MSD_musicnn/`` is opened directly with TF's
checkpoint reader (``tf.train.load_checkpoint`` on the folder would follow the
``checkpoint`` file beside it, which names the author's own path). Adam's slots
and the step counter are left out. Each batch normalisation (evaluation mode, epsilon 1e-3 as in
``tf.compat.v1.layers.batch_normalization``) is folded into one scale and one
shift per channel; it cannot go into the conv weights because the network
applies it *after* the ReLU (and before max-pooling).

Writes ``plugins/models/musicnn_msd.npz`` (``musicnn_mtt.npz``; float32 arrays only: ``np.load``
reads it with ``allow_pickle=False``, so it cannot carry code) and
``plugins/models/musicnn_msd.LICENSE`` (the wheel's licence text and the credit).

With ``--reference`` it also runs the *original* TF1 graph (the inference part
of the wheel's ``MSD_musicnn/.meta``, its variables set from the same prefix;
see ``original_outputs``) on mel patches of a few real clips and on a synthetic
signal, and writes ``tests/data/musicnn_reference.npz`` for the parity test.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "plugins" / "models" / "musicnn_msd.npz"
LICENSE = REPO / "plugins" / "models" / "musicnn_msd.LICENSE"
REFERENCE = REPO / "tests" / "data" / "musicnn_reference.npz"
# checkpoint in the wheel -> (MusicnnNet.load's model, weights, licence, parity fixture). MTT_musicnn
# has MSD_musicnn's shapes; its fixture holds outputs only, on the MSD fixture's patches.
CHECKPOINTS = {
    "MSD_musicnn": ("msd", WEIGHTS, LICENSE, REFERENCE),
    "MTT_musicnn": ("mtt", WEIGHTS.with_name("musicnn_mtt.npz"), LICENSE.with_name("musicnn_mtt.LICENSE"),
                    REFERENCE.with_name("musicnn_mtt_reference.npz")),
}
BN_EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization's default

# Layer creation order in musicnn/models.py build_musicnn (tf.compat.v1.layers
# numbers its layers in that order): our name -> (conv/dense name, batch-norm name).
CONVS = {
    "timbral74": "conv2d",
    "timbral77": "conv2d_1",
    "temporal128": "conv2d_2",
    "temporal64": "conv2d_3",
    "temporal32": "conv2d_4",
    "mid1": "conv2d_5",
    "mid2": "conv2d_6",
    "mid3": "conv2d_7",
    "dense": "dense",
    "out": "dense_1",
}
NORMS = {
    "input": "batch_normalization",
    "timbral74": "batch_normalization_1",
    "timbral77": "batch_normalization_2",
    "temporal128": "batch_normalization_3",
    "temporal64": "batch_normalization_4",
    "temporal32": "batch_normalization_5",
    "mid1": "batch_normalization_6",
    "mid2": "batch_normalization_7",
    "mid3": "batch_normalization_8",
    "pool": "batch_normalization_9",
    "dense": "batch_normalization_10",
}
CREDIT = """\
genretag ships the weights of the {checkpoint} model from musicnn 0.1.0
(https://github.com/jordipons/musicnn), converted to plugins/models/{weights}
by scripts/convert_musicnn.py. Please cite:

  Jordi Pons and Xavier Serra, "musicnn: pre-trained convolutional neural networks
  for music audio tagging", Late-Breaking/Demo session, ISMIR 2019.

The weights are distributed under musicnn's licence (ISC), reproduced here:

"""


def _mel_basis() -> np.ndarray:
    """librosa's mel filters as musicnn used them: 16 kHz, n_fft 512, 96 bands, Slaney."""
    import librosa

    return librosa.filters.mel(sr=16000, n_fft=512, n_mels=96).astype(np.float32)


def _reader(prefix: Path):  # noqa: ANN202 (a TF type)
    """A reader on the checkpoint prefix itself (tf.train.load_checkpoint on a directory
    would follow the ``checkpoint`` file to the author's path)."""
    import tensorflow as tf

    return tf.compat.v1.train.NewCheckpointReader(str(prefix) + "/")  # the prefix ends in "/"


def convert(prefix: Path) -> dict[str, np.ndarray]:
    """The checkpoint's evaluation-time weights, named for their layer, float32."""
    import tensorflow as tf

    reader = _reader(prefix)
    names = set(reader.get_variable_to_shape_map())

    def get(name: str) -> np.ndarray:
        return np.asarray(reader.get_tensor(name), dtype=np.float64)

    arrays: dict[str, np.ndarray] = {}
    used = set()
    for ours, theirs in CONVS.items():
        arrays[f"{ours}.w"] = get(f"{theirs}/kernel")
        arrays[f"{ours}.b"] = get(f"{theirs}/bias")
        used |= {f"{theirs}/kernel", f"{theirs}/bias"}
    for ours, theirs in NORMS.items():
        gamma, beta = get(f"{theirs}/gamma"), get(f"{theirs}/beta")
        mean, var = get(f"{theirs}/moving_mean"), get(f"{theirs}/moving_variance")
        scale = gamma / np.sqrt(var + BN_EPSILON)
        arrays[f"{ours}.scale"] = scale
        arrays[f"{ours}.shift"] = beta - mean * scale
        used |= {f"{theirs}/{v}" for v in ("gamma", "beta", "moving_mean", "moving_variance")}
    left = sorted(n for n in names - used if "Adam" not in n and "power" not in n)
    if left:
        raise SystemExit(f"unconverted variables in the checkpoint: {left}")
    # The conv kernels are (time, freq, in=1, out); drop the unit input axis.
    for ours in ("timbral74", "timbral77", "temporal128", "temporal64", "temporal32", "mid1", "mid2", "mid3"):
        w = arrays[f"{ours}.w"]
        assert w.shape[2] == 1, (ours, w.shape)
        arrays[f"{ours}.w"] = w[:, :, 0, :]
    arrays["mel_basis"] = _mel_basis()
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}


def write_weights(arrays: dict[str, np.ndarray], wheel_dir: Path, checkpoint: str = "MSD_musicnn") -> Path:
    """The .npz (compressed, no pickles) and the licence file beside it."""
    _, weights, licence_path, _ = CHECKPOINTS[checkpoint]
    weights.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(weights, **arrays)
    licence = (wheel_dir / "musicnn-0.1.0.dist-info" / "LICENSE.md").read_text(encoding="utf-8")
    credit = CREDIT.format(checkpoint=checkpoint, weights=weights.name)
    licence_path.write_text(credit + licence.strip() + "\n", encoding="utf-8")
    return weights


def original_outputs(prefix: Path, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tag probabilities and penultimate layer of the ORIGINAL TF1 graph.

    The graph is the one the author saved (``MSD_musicnn/.meta``), not a
    re-implementation: its inference part (up to ``model/Sigmoid`` and the
    penultimate batch norm) is cut out of the saved GraphDef, each variable node
    becomes a constant holding the checkpoint's value, and it runs under TF 2's
    ``tf.compat.v1`` with ``is_training`` (``model/Placeholder_2``) fed False, batches
    of one patch as musicnn's extractor fed it. The training part of the saved
    graph (gradients, Adam) does not import under TF 2 and is not needed.
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    meta = meta_graph_pb2.MetaGraphDef()
    meta.ParseFromString((prefix / ".meta").read_bytes())
    outputs = ["model/Sigmoid", "model/batch_normalization_10/batchnorm/add_1"]
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(meta.graph_def, outputs)
    reader = _reader(prefix)
    for node in graph_def.node:
        node.attr.pop("_output_shapes", None)
        node.device = ""
        if node.op == "VariableV2":
            value = reader.get_tensor(node.name)
            node.op = "Const"
            for key in list(node.attr):
                if key != "dtype":
                    del node.attr[key]
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    x = graph.get_tensor_by_name("model/Placeholder:0")
    training = graph.get_tensor_by_name("model/Placeholder_2:0")
    fetch = [graph.get_tensor_by_name(f"{name}:0") for name in outputs]
    probs, penult = [], []
    with tf.compat.v1.Session(graph=graph) as sess:
        for patch in patches:
            p, h = sess.run(fetch, {x: patch[None], training: False})
            probs.append(p[0])
            penult.append(h[0])
    return np.asarray(probs, np.float32), np.asarray(penult, np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wheel-dir", type=Path, required=True, help="the unpacked musicnn 0.1.0 wheel")
    parser.add_argument("--checkpoint", choices=sorted(CHECKPOINTS), default="MSD_musicnn")
    parser.add_argument("--reference", type=Path, nargs="*", default=None,
                        help="write the parity fixture: on these real clips (MSD_musicnn), or, given "
                             "no clips, on the patches of tests/data/musicnn_reference.npz (MTT_musicnn)")
    args = parser.parse_args(argv)
    prefix = args.wheel_dir / "musicnn" / args.checkpoint  # files ".index", ".data-*", ".meta"
    arrays = convert(prefix)
    weights = write_weights(arrays, args.wheel_dir, args.checkpoint)
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB, {len(arrays)} arrays)")
    if args.reference is not None:
        write_reference(prefix, args.reference, args.checkpoint)


def write_reference(prefix: Path, clips: list[Path], checkpoint: str = "MSD_musicnn") -> None:
    """Two mel patches per real clip, and the original graph's outputs on them and on the synthetic signal.

    Only derived arrays are stored (GTZAN audio may not be committed); the synthetic
    signal's patches are not stored: the test regenerates the signal and runs the
    whole waveform -> tags path on it. Given no clips, the patches are those of the
    MSD_musicnn fixture (same front end), and are not stored again.
    """
    from plugins import musicnn_net
    from tagger.media.audio import decode

    model, _, _, reference = CHECKPOINTS[checkpoint]
    net = musicnn_net.MusicnnNet.load(model=model)
    arrays: dict[str, np.ndarray] = {}
    if clips:
        patches = np.concatenate([
            net.patches(decode(clip, sr=musicnn_net.SAMPLE_RATE, excerpt=None).samples, 2) for clip in clips
        ])
        arrays["clip_names"] = np.array([f"{c.parent.parent.name}/{c.parent.name}/{c.name}" for c in clips])
        arrays["clip_patches"] = patches
    else:
        with np.load(REFERENCE, allow_pickle=False) as msd:
            patches = msd["clip_patches"]
            arrays["clip_names"] = msd["clip_names"]
    arrays["clip_probs"], arrays["clip_penultimate"] = original_outputs(prefix, patches)
    synthetic = net.patches(musicnn_net.synthetic_signal(), None)
    arrays["synthetic_probs"], arrays["synthetic_penultimate"] = original_outputs(prefix, synthetic)
    reference.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(reference, **arrays)
    print(f"wrote {reference} ({reference.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
