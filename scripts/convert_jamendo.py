"""Convert the MTG-Jamendo taggers of Won et al. (SMC 2020) into the weights files genretag ships.

Run once at development time, not by users, in a Python that has torch (the product never
imports it)::

    python scripts/convert_jamendo.py --weights-dir ../shared/weights/mtg-jamendo

reads ``musicnn.pth`` and ``fcn.pth`` (state dicts of the authors' ``training/model.py``
networks, trained on MTG-Jamendo's top-50 tags; ``tags.txt`` is their output order), folds each
batch normalisation (evaluation mode, torch's epsilon 1e-5) into the convolution or dense layer
before it where it can, and writes ``plugins/models/jamendo_{musicnn,fcn}.npz`` (float32 arrays
only, read with ``allow_pickle=False``) and ``plugins/models/jamendo.LICENSE``.

With ``--reference CODE_DIR`` it also runs the ORIGINAL networks (the ``training/`` folder of
``7x11x13/sota-music-tagging-models`` at the commit below, placed outside this repository, never
committed) on a synthetic signal and on a few real 16 kHz GTZAN clips, and writes
``tests/data/jamendo_reference.npz``: outputs only (mel, embeddings, probabilities), never audio::

    git clone https://github.com/7x11x13/sota-music-tagging-models /tmp/sota  # at COMMIT
    pip download torchaudio --no-deps -d /tmp/ta && unzip /tmp/ta/torchaudio-*.whl -d /tmp/ta/site
    rm /tmp/ta/site/torchaudio/lib/*.so   # CUDA builds; MelSpectrogram/AmplitudeToDB need none
    PYTHONPATH=/tmp/ta/site python scripts/convert_jamendo.py \\
        --weights-dir ../shared/weights/mtg-jamendo --reference /tmp/sota/training \\
        --clips ../shared/gtzan/audio-16k/classical/classical.00025.wav ...

That fork's ``MelSpecBatchNorm`` wraps the front end the weights were saved without
(``spec.*``/``spec_bn.*`` become ``spec.spec.*``/``spec.bn.*``); the weights load under that
renaming with every key matched. The mel filter bank and window are buffers in the weights
files (torchaudio keeps them), so the front end does not depend on the torchaudio version.
Its module ``librosa`` import (used only by the harmonic CNN) is stubbed when librosa is absent.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "plugins" / "models"
LICENSE = MODELS / "jamendo.LICENSE"
REFERENCE = REPO / "tests" / "data" / "jamendo_reference.npz"
SOURCE = "https://github.com/7x11x13/sota-music-tagging-models"  # fork of minzwon/sota-music-tagging-models
COMMIT = "8907dd96f448c7351eb1127cbb2299bcb54b5c73"
BN_EPSILON = 1e-5  # torch.nn.BatchNorm*d's default
SYNTHETIC_SECONDS = 30.0
CREDIT = f"""\
genretag ships the MTG-Jamendo musicnn and FCN taggers trained by Minz Won et al.,
converted to plugins/models/jamendo_musicnn.npz and jamendo_fcn.npz by
scripts/convert_jamendo.py from models/jamendo/{{musicnn,fcn}}/best_model.pth of
{SOURCE} @ {COMMIT}
(a fork of https://github.com/minzwon/sota-music-tagging-models with byte-identical weights).
Please cite:

  Minz Won, Andres Ferraro, Dmitry Bogdanov and Xavier Serra, "Evaluation of CNN-based
  automatic music tagging models", Sound and Music Computing Conference (SMC), 2020.

  Dmitry Bogdanov, Minz Won, Philip Tovstogan, Alastair Porter and Xavier Serra,
  "The MTG-Jamendo dataset for automatic music tagging", Machine Learning for Music
  Discovery Workshop, ICML 2019.

The weights are distributed under the repository's licence (MIT), reproduced here:

"""


def _state(path: Path) -> dict[str, np.ndarray]:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)  # a plain state dict of tensors
    return {k: v.double().numpy() for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _fold(state: dict, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """An evaluation-mode batch norm as a per-channel scale and shift."""
    scale = state[f"{bn}.weight"] / np.sqrt(state[f"{bn}.running_var"] + BN_EPSILON)
    return scale, state[f"{bn}.bias"] - state[f"{bn}.running_mean"] * scale


def _folded_conv(state: dict, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """conv -> bn as one conv: weight scaled per output channel, bias shifted."""
    scale, shift = _fold(state, f"{layer}.bn")
    w = state[f"{layer}.conv.weight"] * scale.reshape(-1, *[1] * (state[f"{layer}.conv.weight"].ndim - 1))
    return w, state[f"{layer}.conv.bias"] * scale + shift


def _front_end(state: dict) -> dict[str, np.ndarray]:
    scale, shift = _fold(state, "spec_bn")
    return {"window": state["spec.spectrogram.window"], "mel_fb": state["spec.mel_scale.fb"],
            "input.scale": scale, "input.shift": shift}


def convert_musicnn(state: dict) -> dict[str, np.ndarray]:
    """Musicnn (Pons et al.) as Won et al. built it; names and layouts as plugins/jamendo_net.py reads them."""
    out = _front_end(state)
    for i, name in enumerate(("timbral67", "timbral38")):  # Conv_V: (204, 1, kf, 7) -> (kt, kf, 204)
        w, b = _folded_conv(state, f"layers.{i}")
        out[f"{name}.w"], out[f"{name}.b"] = w[:, 0].transpose(2, 1, 0), b
    for i, name in zip((2, 3, 4), ("temporal129", "temporal65", "temporal33")):  # Conv_H: (51, 1, k) -> (k, 51)
        w, b = _folded_conv(state, f"layers.{i}")
        out[f"{name}.w"], out[f"{name}.b"] = w[:, 0].T, b
    for name in ("layer1", "layer2", "layer3"):  # Conv_1d: (64, c, 7) -> (7, c, 64)
        w, b = _folded_conv(state, name)
        out[f"mid{name[-1]}.w"], out[f"mid{name[-1]}.b"] = w.transpose(2, 1, 0), b
    scale, shift = _fold(state, "bn")  # dense1 -> bn -> relu
    out["dense.w"] = (state["dense1.weight"] * scale[:, None]).T
    out["dense.b"] = state["dense1.bias"] * scale + shift
    out["out.w"], out["out.b"] = state["dense2.weight"].T, state["dense2.bias"]
    return out


def convert_fcn(state: dict) -> dict[str, np.ndarray]:
    """FCN (Choi et al. 2016) as Won et al. built it: five 3x3 conv blocks, (out, in, 3, 3) -> (3, 3, in, out)."""
    out = _front_end(state)
    for i in range(1, 6):
        w, b = _folded_conv(state, f"layer{i}")
        out[f"conv{i}.w"], out[f"conv{i}.b"] = w.transpose(2, 3, 1, 0), b
    out["out.w"], out["out.b"] = state["dense.weight"].T, state["dense.bias"]
    return out


CONVERTERS = {"musicnn": convert_musicnn, "fcn": convert_fcn}


def write_weights(weights_dir: Path) -> None:
    MODELS.mkdir(parents=True, exist_ok=True)
    for name, convert in CONVERTERS.items():
        converted = convert(_state(weights_dir / f"{name}.pth"))
        arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in converted.items()}
        path = MODELS / f"jamendo_{name}.npz"
        np.savez_compressed(path, **arrays)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {len(arrays)} arrays)")
    licence = (weights_dir / "LICENSE").read_text(encoding="utf-8")
    LICENSE.write_text(CREDIT + licence.strip() + "\n", encoding="utf-8")


# -- the original networks, for the parity fixture ----------------------------------------------


def original_models(code_dir: Path, weights_dir: Path) -> dict:
    """The authors' Musicnn and FCN modules with the original weights, in evaluation mode."""
    import torch

    try:
        import librosa  # noqa: F401  (modules.py imports it at module level)
    except ImportError:
        sys.modules["librosa"] = types.ModuleType("librosa")  # only the harmonic CNN calls it
    sys.path.insert(0, str(code_dir))
    import model  # the reference code's training/model.py

    built = {"musicnn": model.Musicnn(dataset="jamendo"), "fcn": model.FCN()}
    for name, net in built.items():
        state = torch.load(weights_dir / f"{name}.pth", map_location="cpu", weights_only=True)
        if not hasattr(net, "spec_bn"):  # the fork's MelSpecBatchNorm layout
            state = {("spec.bn." + k[8:] if k.startswith("spec_bn.") else
                      "spec.spec." + k[5:] if k.startswith("spec.") else k): v for k, v in state.items()}
        net.load_state_dict(state, strict=True)
        net.eval()
    return built


def _db_mel(net, x):  # noqa: ANN001, ANN202 (torch types)
    """The original front end up to AmplitudeToDB (before the input batch norm), (batch, frames, 96)."""
    front = net.spec
    if hasattr(front, "db"):  # fork: MelSpecBatchNorm(spec, db, bn)
        return front.db(front.spec(x)).transpose(1, 2)
    return net.to_db(net.spec(x)).transpose(1, 2)


def _embedding_hook(net) -> list:  # noqa: ANN001
    """What plugins/jamendo_net.py calls the embedding: the input of the dropout before the last dense.

    Musicnn: relu(bn(dense1(pooled))), 200 values; FCN: layer5's output flattened, 64 values.
    """
    captured: list = []
    net.dropout.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].detach().clone()))
    return captured


def reference_outputs(code_dir: Path, weights_dir: Path, clips: list[Path]) -> dict[str, np.ndarray]:
    """Original outputs per network window: on the synthetic signal and on each real clip."""
    import torch
    from scipy.io import wavfile

    sys.path.insert(0, str(REPO))
    from plugins import jamendo_net  # window placement and the synthetic signal (numpy only)

    signals = {"synthetic": jamendo_net.synthetic_signal(SYNTHETIC_SECONDS)}
    for clip in clips:
        rate, audio = wavfile.read(clip)
        if rate != jamendo_net.SAMPLE_RATE or audio.dtype != np.int16 or audio.ndim != 1:
            raise SystemExit(f"{clip}: expected 16 kHz mono 16-bit WAV")
        signals[clip.name] = audio.astype(np.float32) / 32768
    out: dict[str, np.ndarray] = {"synthetic_seconds": np.float64(SYNTHETIC_SECONDS),
                                  "clip_names": np.array([c.name for c in clips])}
    for name, net in original_models(code_dir, weights_dir).items():
        cls = jamendo_net.NETWORKS[name]
        captured = _embedding_hook(net)
        for key, y in signals.items():
            windows = cls.windows(y, cls.DEFAULT_PATCHES if key == "synthetic" else 2)
            captured.clear()
            with torch.no_grad():
                x = torch.from_numpy(windows)
                probs = net(x).numpy()
                mel = _db_mel(net, x[:1]).numpy()[0]
            out[f"{name}.{key}.probs"] = probs
            out[f"{name}.{key}.embedding"] = captured[0].reshape(len(windows), -1).numpy()
            if key == "synthetic":  # the first window's mel: 188 frames for musicnn, the ends for FCN
                out[f"{name}.synthetic.mel"] = mel if len(mel) <= 200 else np.concatenate([mel[:64], mel[-64:]])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights-dir", type=Path, required=True, help="folder with musicnn.pth, fcn.pth, LICENSE")
    parser.add_argument("--reference", type=Path, metavar="CODE_DIR",
                        help="the reference code's training/ folder: also write tests/data/jamendo_reference.npz")
    parser.add_argument("--clips", type=Path, nargs="*", default=(), help="16 kHz mono WAV clips for the fixture")
    args = parser.parse_args(argv)
    write_weights(args.weights_dir)
    if args.reference:
        arrays = reference_outputs(args.reference, args.weights_dir, list(args.clips))
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(REFERENCE, **{k: np.asarray(v) for k, v in arrays.items()})
        print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
