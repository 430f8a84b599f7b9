"""Model files and their cards: finding, checking, loading and saving them.

A model is a file written by a backend's ``save`` plus a JSON card beside it
(``<stem>.card.json``) that says which backend, genres and preprocessing it
expects and how it was trained and measured.  Which file a backend uses:
``--model PATH`` if given, else the user's current model for that backend
(``<data dir>/models/<backend>/current``), else the one shipped in the
backend's package.

joblib/pickle models run code when loaded, so models are only ever loaded
from the data directory, the backend's own package, or an explicit path.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .backends import Backend, get_backend
from .errors import BackendError, ModelError
from .features import preprocessing
from .paths import models_dir

#: Preprocessing keys that must match between a model and the pipeline, per input kind.
MUST_MATCH = {
    "features": ("sr", "stft", "features"),
    "slices": ("sr", "stft", "n_fft", "hop_length", "n_mels", "slice_frames", "log_mel"),
}
CURRENT = "current"


def card_path(model_path: Path) -> Path:
    """Where the card of ``model_path`` lives: ``svc.joblib`` -> ``svc.card.json``."""
    return model_path.with_name(model_path.name.split(".")[0] + ".card.json")


def file_id(path: Path) -> str:
    """A short content hash: the model id stored with every cached result."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


@dataclass
class Model:
    """A loaded, checked model ready to predict."""

    backend: Backend
    path: Path
    card: dict[str, Any]
    id: str

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def input_kind(self) -> str:
        return self.backend.input_kind

    @property
    def genres(self) -> list[str]:
        return list(self.backend.genres_)


def resolve_model_path(backend: str, explicit: str | os.PathLike[str] | None = None) -> Path:
    """The model file a backend should use, by the precedence in the module docstring."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ModelError(path, "model file not found")
        return path.resolve()
    pointer = models_dir() / backend / CURRENT
    if pointer.is_file():
        target = pointer.parent / pointer.read_text(encoding="utf-8").strip()
        if target.is_file():
            return target
        raise ModelError(pointer, f"points to {target.name}, which does not exist")
    shipped = get_backend(backend).default_model()
    if shipped and Path(shipped).is_file():
        return Path(shipped)
    raise ModelError(
        models_dir() / backend,
        f"no trained model for backend {backend!r}: run `genretag train --backend {backend}`",
    )


def read_card(model_path: Path) -> dict[str, Any]:
    """The model's card; ModelError when missing or not valid JSON."""
    path = card_path(model_path)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(model_path, f"no model card (expected {path.name} beside it)") from None
    except (OSError, ValueError) as exc:
        raise ModelError(path, f"unreadable model card: {exc}") from None
    if not isinstance(card, dict):
        raise ModelError(path, "model card is not a JSON object")
    return card


def check_card(card: dict[str, Any], backend: str, input_kind: str, model_path: Path) -> None:
    """Refuse a model trained for another backend or with other preprocessing."""
    if card.get("backend") != backend:
        raise ModelError(model_path, f"model is for backend {card.get('backend')!r}, not {backend!r}")
    theirs = card.get("preprocessing") or {}
    ours = preprocessing()
    diff = [
        f"{key}: model {theirs.get(key)!r}, pipeline {ours[key]!r}"
        for key in MUST_MATCH[input_kind]
        if theirs.get(key) != ours[key]
    ]
    if diff:
        raise ModelError(model_path, "preprocessing does not match the pipeline (" + "; ".join(diff) + ")")


def load_model(backend: str, path: str | os.PathLike[str] | None = None) -> Model:
    """Resolve, check and load the model for ``backend``, naming the file on any failure."""
    cls = get_backend(backend)
    model_path = resolve_model_path(backend, path)
    card = read_card(model_path)
    check_card(card, backend, cls.input_kind, model_path)
    try:
        instance = cls.load(model_path)
    except ModelError:
        raise
    except Exception as exc:  # corrupt, truncated or foreign files fail in many ways
        raise ModelError(model_path, f"corrupt or unreadable model file ({type(exc).__name__}: {exc})") from None
    genres = list(getattr(instance, "genres_", []) or [])
    if card.get("genres") and list(card["genres"]) != genres:
        raise ModelError(model_path, "genres in the model file differ from its card")
    if not genres:
        raise ModelError(model_path, "model has no genres; was it fitted?")
    return Model(instance, model_path, card, file_id(model_path))


def library_versions() -> dict[str, str]:
    """Versions that decide whether a model reproduces, recorded in every card."""
    versions = {"python": platform.python_version()}
    for dist in ("genretag", "numpy", "scikit-learn", "librosa", "tensorflow", "tensorflow-cpu", "keras", "joblib"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def make_card(backend: Backend, **sections: Any) -> dict[str, Any]:
    """A card for a freshly fitted backend; ``sections`` add training data, split, metrics."""
    card: dict[str, Any] = {
        "backend": backend.name,
        "input_kind": backend.input_kind,
        "genres": list(backend.genres_),
        "preprocessing": preprocessing(),
        "params": _jsonable(backend.get_params()),
        "model": _jsonable(backend.describe()),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "platform": f"{platform.system()} {platform.machine()}; {sys.implementation.name}",
    }
    card.update(_jsonable(sections))
    return card


def save_model(backend: Backend, card: dict[str, Any], out: str | os.PathLike[str] | None = None,
               *, make_current: bool = True) -> Path:
    """Write model and card; unless ``out`` is given, into the data dir as the current model."""
    if out is None:
        folder = models_dir() / backend.name
        folder.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = folder / f"{backend.name}-{stamp}{backend.model_suffix}"
    else:
        path = Path(out).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside its place under a temporary name with the same suffix (Keras wants it), then
    # renamed: a plugin's failing save leaves neither a half-written model nor a damaged older one.
    tmp_model = path.with_name(f".{path.name}.{os.getpid()}.tmp{''.join(path.suffixes[-1:])}")
    try:
        backend.save(tmp_model)
        os.replace(tmp_model, path)
    except Exception as exc:
        tmp_model.unlink(missing_ok=True)
        raise BackendError(f"backend {backend.name!r}: save failed: {type(exc).__name__}: {exc}") from None
    card = dict(card, id=file_id(path), file=path.name)
    tmp = card_path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, card_path(path))
    if out is None and make_current:
        set_current(backend.name, path)
    return path


def set_current(backend: str, path: Path) -> None:
    """Make ``path`` (inside the data dir) the model ``backend`` uses by default."""
    pointer = models_dir() / backend / CURRENT
    pointer.parent.mkdir(parents=True, exist_ok=True)
    tmp = pointer.with_suffix(".tmp")
    tmp.write_text(path.name + "\n", encoding="utf-8")
    os.replace(tmp, pointer)


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON, turning numpy scalars and paths into plain values."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def backend_rows() -> list[dict[str, Any]]:
    """One row per installed backend for ``genretag backends``: package, model, accuracy, status.

    ``trained`` says whether a model file with a readable card was found;
    when not, ``model_error`` says why (usually: run ``genretag train``).
    """
    from .backends import discover

    rows = []
    for name, info in sorted(discover().items()):
        row: dict[str, Any] = {
            "name": name, "entry_point": info.value, "distribution": info.distribution,
            "version": info.version, "input_kind": info.input_kind, "status": "ok" if info.ok else "broken",
            "error": info.error, "trained": False, "model": None, "model_id": None, "accuracy": None,
            "protocol": None,
        }  # fmt: skip
        if info.ok:
            try:
                path = resolve_model_path(name)
                card = read_card(path)
            except Exception as exc:  # report, never fail the listing
                row["model_error"] = str(exc)
            else:
                row["trained"] = True
                row["model"] = str(path)
                row["model_id"] = card.get("id")
                metrics = card.get("metrics") or {}
                row["protocol"] = metrics.get("protocol")
                if metrics.get("track_accuracy") is not None:
                    clips = f", {metrics['n_test']} clips" if metrics.get("n_test") else ""
                    row["accuracy"] = f"{metrics['track_accuracy']:.3f} ({metrics.get('protocol', '?')} test{clips})"
        rows.append(row)
    return rows
