"""Convert EfficientAT's mn04_as checkpoint into the weights file genretag ships.

Run once at development time, not by users, with a Python that has torch (the
product never imports it)::

    python scripts/convert_efficientat.py --weights-dir ../shared/weights/efficientat

reads ``mn04_as_mAP_432.pt`` (a plain PyTorch state dict, loaded with
``weights_only=True``, so no code in it runs), folds every batch norm
(evaluation mode: running averages, epsilon 1e-3 as EfficientAT's ``MN`` sets
it) into the weights and bias of the convolution before it, and writes

- ``plugins/models/efficientat_mn04.npz``: float32 arrays only (``np.load``
  reads it with ``allow_pickle=False``, so it cannot carry code), including the
  mel filter bank (torchaudio's own, see ``torchaudio_mel_banks``), so the runtime
  needs neither torch nor torchaudio;
- ``plugins/models/efficientat_mn04.labels.txt``: the 527 AudioSet class names,
  one a line, in the network's output order;
- ``plugins/models/efficientat_mn04.LICENSE``: the MIT licence and the credit.

With ``--reference CODE_DIR CLIP...`` it also runs the ORIGINAL model: the
reference code of ``fschmid56/EfficientAT`` checked out in CODE_DIR (outside this
repository, never committed), its ``get_model(width_mult=0.4)`` with the
checkpoint loaded strictly and ``AugmentMelSTFT`` in eval mode, on the synthetic
signal of ``plugins.efficientat_net`` and on a 10 s window of each clip, and
writes ``tests/data/efficientat_reference.npz`` (outputs only, no audio)::

    git --git-dir=<fetched EfficientAT> archive a425fdce | tar x -C /tmp/efat_ref
    PYTHONPATH=. python scripts/convert_efficientat.py --weights-dir ../shared/weights/efficientat \\
        --reference /tmp/efat_ref ../shared/gtzan/audio/pop/pop.00005.wav \\
        ../shared/gtzan/audio/jazz/jazz.00001.wav ../shared/gtzan/audio/classical/classical.00025.wav

The clips are decoded with genretag's own ``tagger.media.audio.decode(path, sr=32000,
excerpt=None)`` (soundfile, mean of channels, soxr "HQ" from 22050 Hz), the
same call the parity test makes, so both sides see the same samples.

The reference code imports torchvision (for ``ConvNormActivation``) and
torchaudio (for ``compliance.kaldi.get_mel_banks``, which the conversion uses
too); the builds of those that match torch 2.13 here have compiled extensions
that do not load, so ``_import_without_extensions`` imports just those two
pure-Python modules from the installed wheels (``pip install --no-deps
torchvision==0.28.0 torchaudio==2.11.1 pillow``), without their packages'
``__init__`` (which loads the extensions). The masking
augmentations (torchaudio.transforms) are built with ``freqm=0, timem=0``:
in eval mode the reference never applies them.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import sys
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a file: make `plugins` and `tagger` importable
    sys.path.insert(0, str(REPO))

from plugins import efficientat_net as net_mod  # noqa: E402

CHECKPOINT = "mn04_as_mAP_432.pt"
BN_EPSILON = 1e-3  # MN's norm_layer: partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
REFERENCE = REPO / "tests" / "data" / "efficientat_reference.npz"
MEL_EVERY = 20  # the fixture keeps every 20th mel frame (50 of a 10 s window): small, still a check
CREDIT = """\
genretag ships the weights of EfficientAT's "mn04_as" network (MobileNetV3, width 0.4,
trained on AudioSet, mAP 0.432), converted to plugins/models/efficientat_mn04.npz by
scripts/convert_efficientat.py. Please cite:

  Florian Schmid, Khaled Koutini and Gerhard Widmer, "Efficient Large-Scale Audio
  Tagging via Transformer-to-CNN Knowledge Distillation", ICASSP 2023.

Source: https://github.com/fschmid56/EfficientAT (code, labels and licence at commit
a425fdce92572e602a1d5634799bd9f1f2efa806); the checkpoint mn04_as_mAP_432.pt is the
project's release asset (sha256 899a8c6217063f6941793102a2780b3dd788ab11fce468d9cf5f0577c453321c).

The class names in efficientat_mn04.labels.txt are the display names of the AudioSet
ontology (Gemmeke et al., "Audio Set: An ontology and human-labeled dataset for audio
events", ICASSP 2017; https://github.com/audioset/ontology), made available by Google Inc.
under a Creative Commons Attribution-ShareAlike 4.0 International (CC BY-SA 4.0) licence,
as listed in EfficientAT's metadata/class_labels_indices.csv.

The weights are distributed under EfficientAT's licence (MIT), reproduced here:

"""


def kaldi_mel_banks(n_mels: int, n_fft: int, sr: int, fmin: float, fmax: float) -> np.ndarray:
    """Kaldi-style triangular mel filters, (n_mels, n_fft // 2 + 1), as EfficientAT builds them.

    torchaudio.compliance.kaldi.get_mel_banks with no VTLN warping (factor 1.0): mel(f) =
    1127 ln(1 + f / 700), triangles equally spaced in mel between fmin and fmax, evaluated at
    the FFT bins 0 .. n_fft/2 - 1; EfficientAT pads a zero column for the Nyquist bin.
    Computed in float64, as a check on torchaudio's filters (which are what is shipped):
    torchaudio computes them in float32, where ``mel - left`` cancels digits of values near
    3000 and torch's log is not correctly rounded, so they differ by up to 1.3e-5; repeating
    its float32 steps in numpy does not reproduce its rounding either (1.8e-5 apart).
    """

    def mel(f: np.ndarray | float) -> np.ndarray:
        return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)

    low, high = mel(fmin), mel(fmax)
    delta = (high - low) / (n_mels + 1)
    band = np.arange(n_mels, dtype=np.float64)[:, None]
    left, centre, right = low + band * delta, low + (band + 1) * delta, low + (band + 2) * delta
    bins = mel(sr / n_fft * np.arange(n_fft // 2))[None, :]
    up = (bins - left) / (centre - left)
    down = (right - bins) / (right - centre)
    banks = np.maximum(0.0, np.minimum(up, down))
    return np.pad(banks, ((0, 0), (0, 1)))


def _fold(state: dict[str, np.ndarray], conv: str, norm: str) -> tuple[np.ndarray, np.ndarray]:
    """A bias-free conv followed by eval-mode batch norm, as one weight and bias."""
    w = state[f"{conv}.weight"]
    gamma, beta = state[f"{norm}.weight"], state[f"{norm}.bias"]
    mean, var = state[f"{norm}.running_mean"], state[f"{norm}.running_var"]
    scale = gamma / np.sqrt(var + BN_EPSILON)
    return w * scale.reshape(-1, *([1] * (w.ndim - 1))), beta - mean * scale


def convert(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The checkpoint (float64 numpy) as genretag's arrays, named as SHAPES in efficientat_net."""
    out: dict[str, np.ndarray] = {}
    used: set[str] = set()

    def conv_bn(ours: str, prefix: str) -> None:
        """Fold ``prefix``'s conv (``.0``) and batch norm (``.1``); weights keep (out, in, kh, kw) for now."""
        out[f"{ours}.w"], out[f"{ours}.b"] = _fold(state, f"{prefix}.0", f"{prefix}.1")
        used.add(f"{prefix}.0.weight")
        used.update(f"{prefix}.1.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"))

    conv_bn("stem", "features.0")
    for i, block in enumerate(net_mod.BLOCKS, start=1):
        layers = iter(range(4))
        prefix = f"features.{i}.block"
        if block.expanded != block.inputs:
            conv_bn(f"b{i}.expand", f"{prefix}.{next(layers)}")
        conv_bn(f"b{i}.dw", f"{prefix}.{next(layers)}")
        if block.se:
            se = f"{prefix}.{next(layers)}.conc_se_layers.0"
            for fc in ("fc1", "fc2"):
                out[f"b{i}.se.{fc}.w"] = state[f"{se}.{fc}.weight"]
                out[f"b{i}.se.{fc}.b"] = state[f"{se}.{fc}.bias"]
                used.update((f"{se}.{fc}.weight", f"{se}.{fc}.bias"))
        conv_bn(f"b{i}.project", f"{prefix}.{next(layers)}")
    conv_bn("last", f"features.{len(net_mod.BLOCKS) + 1}")
    for name, w in out.items():  # 1x1 convs -> (out, in); depthwise -> (c, k, k); stem -> (8, 9)
        if name == "stem.w":
            out[name] = w.reshape(len(w), -1)
        elif name.endswith(".dw.w"):
            out[name] = w[:, 0]
        elif w.ndim == 4:
            out[name] = w[:, :, 0, 0]
    for ours, theirs in (("hidden", "classifier.2"), ("out", "classifier.5")):
        out[f"{ours}.w"] = state[f"{theirs}.weight"]
        out[f"{ours}.b"] = state[f"{theirs}.bias"]
        used |= {f"{theirs}.weight", f"{theirs}.bias"}
    left = sorted(set(state) - used)
    if left:
        raise SystemExit(f"unconverted tensors in the checkpoint: {left}")
    out["mel_basis"] = torchaudio_mel_banks()
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
    bad = {k: (a.shape, net_mod.SHAPES.get(k)) for k, a in arrays.items() if a.shape != net_mod.SHAPES.get(k)}
    if bad or set(arrays) != set(net_mod.SHAPES):
        mismatch = bad or set(arrays) ^ set(net_mod.SHAPES)
        raise SystemExit(f"converted arrays do not match efficientat_net.SHAPES: {mismatch}")
    return arrays


def read_checkpoint(path: Path) -> dict[str, np.ndarray]:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.double().numpy() for k, v in state.items()}


def read_labels(weights_dir: Path) -> list[str]:
    with open(weights_dir / "class_labels_indices.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    assert [int(r[0]) for r in rows] == list(range(len(rows))), "labels out of index order"
    return [r[2] for r in rows]


def write_files(arrays: dict[str, np.ndarray], weights_dir: Path) -> None:
    """The .npz (compressed, float32 only), the labels and the licence beside it."""
    net_mod.WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(net_mod.WEIGHTS, **arrays)
    labels = read_labels(weights_dir)
    assert len(labels) == net_mod.N_CLASSES and all("\n" not in x for x in labels)
    net_mod.LABELS_FILE.write_text("\n".join(labels) + "\n", encoding="utf-8")
    licence = (weights_dir / "LICENSE").read_text(encoding="utf-8")
    net_mod.WEIGHTS.with_suffix(".LICENSE").write_text(CREDIT + licence.strip() + "\n", encoding="utf-8")


# -- the original model, for the parity fixture ----------------------------------------


def _import_without_extensions() -> None:
    """Make torchvision.ops.misc and torchaudio.compliance.kaldi importable (pure Python).

    The torchvision and torchaudio wheels that match torch 2.13 here carry compiled extensions
    that do not load (CUDA build, older ABI); their packages' ``__init__`` loads them. Empty
    package modules pointing at the installed folders let just these two modules import.
    """
    import importlib.util

    if "torchaudio.compliance.kaldi" in sys.modules:
        return
    roots = {name: Path(importlib.util.find_spec(name).origin).parent for name in ("torchvision", "torchaudio")}
    for package in ("torchvision", "torchvision.ops", "torchaudio"):
        top, *sub = package.split(".")
        module = types.ModuleType(package)
        module.__path__ = [str(roots[top].joinpath(*sub))]
        sys.modules[package] = module
    import torchaudio.compliance.kaldi  # noqa: F401


def torchaudio_mel_banks() -> np.ndarray:
    """EfficientAT's mel filters from torchaudio itself, as AugmentMelSTFT builds them in eval mode.

    Taken from the original function rather than re-derived: where a strong tone sits on a
    triangle's edge, the 1e-5 differences of an independent computation (see kaldi_mel_banks)
    move that band's log mel by up to 5e-4.
    """
    _import_without_extensions()
    from torchaudio.compliance import kaldi

    banks, _ = kaldi.get_mel_banks(net_mod.N_MELS, net_mod.N_FFT, float(net_mod.SAMPLE_RATE), net_mod.FMIN,
                                   net_mod.FMAX, 100.0, -500.0, 1.0)
    banks = np.pad(banks.double().numpy(), ((0, 0), (0, 1)))  # AugmentMelSTFT's zero Nyquist column
    formula = kaldi_mel_banks(net_mod.N_MELS, net_mod.N_FFT, net_mod.SAMPLE_RATE, net_mod.FMIN, net_mod.FMAX)
    gap = np.abs(banks - formula).max()
    print(f"mel filter bank: torchaudio's vs the formula in float64: max |diff| {gap:.2e}")
    if gap > 1e-4:
        raise SystemExit("torchaudio's mel filters do not follow the kaldi formula: wrong settings?")
    return banks


def _reference_model(code_dir: Path, checkpoint: Path):  # noqa: ANN202 (torch types)
    """EfficientAT's own MN (mn04: width 0.4, defaults otherwise) and AugmentMelSTFT, in eval mode."""
    import torch

    _import_without_extensions()
    sys.path.insert(0, str(code_dir))
    with contextlib.chdir(code_dir), contextlib.redirect_stdout(io.StringIO()):  # helpers/utils reads metadata/
        from models.mn.model import get_model
        from models.preprocess import AugmentMelSTFT

        model = get_model(width_mult=0.4, pretrained_name=None)  # mlp head, SE on channels, strides 2
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True), strict=True)
        mel = AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=0, timem=0)
    model.eval()
    mel.eval()
    assert (mel.fmin, mel.fmax) == (net_mod.FMIN, net_mod.FMAX), (mel.fmin, mel.fmax)
    return model, mel


def reference_outputs(model, mel, y: np.ndarray) -> dict[str, np.ndarray]:  # noqa: ANN001
    """The original model on one waveform: mel (128, frames), the 384-d pooled features it
    returns, its classifier's 512-d hidden layer (read with a hook on the Hardswish after the
    first Linear: ``classifier.3``) and the 527 sigmoid probabilities."""
    import torch

    seen = {}
    hook = model.classifier[3].register_forward_hook(lambda _m, _i, out: seen.update(hidden=out.clone()))
    try:
        with torch.no_grad():
            spec = mel(torch.from_numpy(np.asarray(y, np.float32))[None])
            logits, features = model(spec.unsqueeze(0))
    finally:
        hook.remove()
    return {"mel": spec[0].numpy(), "pooled": features[0].numpy(), "embedding": seen["hidden"][0].numpy(),
            "probs": torch.sigmoid(logits)[0].numpy()}


def write_reference(code_dir: Path, checkpoint: Path, clips: list[Path]) -> None:
    """The original model's outputs on the synthetic signal and on the middle 10 s of each clip.

    Only outputs are stored (GTZAN audio may not be committed), and of the mels only every
    MEL_EVERY-th frame; the test regenerates the synthetic signal and decodes the clips.
    """
    import torch

    from tagger.media.audio import decode

    torch.set_num_threads(1)
    model, mel = _reference_model(code_dir, checkpoint)
    signal = net_mod.synthetic_signal()
    synthetic = reference_outputs(model, mel, signal)
    synthetic["mel"] = synthetic["mel"][:, ::MEL_EVERY]
    fixture = {f"synthetic_{k}": v for k, v in synthetic.items()}
    fixture["synthetic_params"] = np.array([net_mod.SYNTHETIC_SECONDS, net_mod.SAMPLE_RATE], np.float64)
    fixture["mel_every"] = np.array(MEL_EVERY)
    per_clip, decoded, starts = [], [], []
    for clip in clips:
        y = decode(clip, sr=net_mod.SAMPLE_RATE, excerpt=None).samples
        (start,) = net_mod.window_starts(len(y), 1)
        decoded.append(y)
        starts.append(start)
        out = reference_outputs(model, mel, y[start:start + net_mod.WINDOW_SAMPLES])
        out["mel"] = out["mel"][:, ::MEL_EVERY]
        per_clip.append(out)
    if clips:
        fixture["clip_names"] = np.array([f"{c.parent.parent.name}/{c.parent.name}/{c.name}" for c in clips])
        fixture.update({f"clip_{k}": np.stack([out[k] for out in per_clip]) for k in per_clip[0]})
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(REFERENCE, **fixture)
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size / 1e3:.0f} kB)")
    # the parity figures docs/efficientat.md quotes
    net = net_mod.EfficientATNet.load()
    _print_gaps(net, "synthetic signal", [signal], [synthetic])
    if clips:
        windows = [y[s:s + net_mod.WINDOW_SAMPLES] for y, s in zip(decoded, starts, strict=True)]
        _print_gaps(net, f"{len(clips)} clips", windows, per_clip)


def _print_gaps(net, what: str, signals: list[np.ndarray], refs: list[dict[str, np.ndarray]]) -> None:  # noqa: ANN001
    """Largest |ours - original| over ``signals`` for the mel (stored frames), features, embedding, probabilities."""
    gaps = dict.fromkeys(("mel", "pooled", "embedding", "probs"), 0.0)
    for y, ref in zip(signals, refs, strict=True):
        mel = net.mel(y)
        ours = net.outputs(mel[None])
        gaps["mel"] = max(gaps["mel"], float(np.abs(mel[:, ::MEL_EVERY] - ref["mel"]).max()))
        for k in ("pooled", "embedding", "probs"):
            gaps[k] = max(gaps[k], float(np.abs(getattr(ours, k)[0] - ref[k]).max()))
    print(f"{what}, max |ours - original|: " + ", ".join(f"{k} {v:.1e}" for k, v in gaps.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights-dir", type=Path, required=True,
                        help=f"folder with {CHECKPOINT}, class_labels_indices.csv and LICENSE")
    parser.add_argument("--reference", nargs="+", type=Path, metavar=("CODE_DIR", "CLIP"),
                        help="EfficientAT's reference code, then real clips for tests/data/efficientat_reference.npz")
    args = parser.parse_args(argv)
    arrays = convert(read_checkpoint(args.weights_dir / CHECKPOINT))
    write_files(arrays, args.weights_dir)
    print(f"wrote {net_mod.WEIGHTS} ({net_mod.WEIGHTS.stat().st_size / 1e6:.2f} MB, {len(arrays)} arrays)")
    if args.reference:
        write_reference(args.reference[0], args.weights_dir / CHECKPOINT, args.reference[1:])


if __name__ == "__main__":
    main()
