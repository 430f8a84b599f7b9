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

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import sys
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ..analysis.features import preprocessing
from ..common import userfiles
from ..common.errors import BackendError, FileError, ModelError, NoModelError
from ..common.paths import models_dir
from . import inputs
from .backends import Backend, FrontEnd, Needs, backend_info, get_backend
from .kinds import get_kind
from .outputs import PLUGIN_FAILURES, check_genres, failure_text, plugin_call

CURRENT = "current"


def card_path(model_path: Path) -> Path:
    """Where the card of ``model_path`` lives: ``svc.joblib`` -> ``svc.card.json``."""
    return model_path.with_name(model_path.name.split(".")[0] + ".card.json")


def file_id(path: Path) -> str:
    """A short content hash: the model id stored with every cached result."""
    digest = hashlib.sha256()
    with userfiles.open_input(path, "model file", userfiles.MODEL_LIMIT) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


class Model:
    """A checked model whose network or estimator loads when first needed.

    :func:`open_model` checks card and file without loading; ``backend`` loads on
    first use (:meth:`start_loading` begins it in a thread), so an unchanged
    rescan never loads it. ``id`` is the file's hash plus the backend's package
    and version, so a plugin upgrade re-predicts. ``front_end`` is loaded for
    embedding backends; ``needs`` names a missing framework, and :meth:`require`
    stops whoever would load the model, before any work.
    """

    def __init__(self, cls: type[Backend], path: Path, card: dict[str, Any], id: str,
                 front_end: FrontEnd | None = None, backend: Backend | None = None,
                 needs: Needs | None = None) -> None:
        self.cls, self.path, self.card, self.id, self.front_end = cls, path, card, id, front_end
        self.needs = needs
        self._backend = backend
        self._error: ModelError | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.cls.name

    @property
    def input_kind(self) -> str:
        return self.cls.input_kind

    @property
    def genres(self) -> list[str]:
        """The model's genres: its card's until it is loaded (loading checks that they agree)."""
        return list(self._backend.genres_ if self._backend is not None else self.card["genres"])

    @property
    def ident(self) -> str:
        """Backend and model id in one string (what a failed prediction records)."""
        return f"{self.name} {self.id}"

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    @property
    def backend(self) -> Backend:
        """The fitted backend, loaded now if it is not yet (waiting for a load already started)."""
        return self.load()

    def require(self) -> None:
        """Raise the BackendError naming the pip command when the backend's framework is not installed."""
        if self.needs is not None and self._backend is None:
            raise self.needs.error(self.name)

    def load(self) -> Backend:
        """Load the model file once; ModelError naming it when it cannot be."""
        self.require()
        with self._lock:
            if self._backend is None:
                if self._error is not None:
                    raise self._error
                try:
                    self._backend = _load_backend(self.cls, self.path, self.card)
                except ModelError as exc:
                    self._error = exc
                    raise
            return self._backend

    def start_loading(self) -> None:
        """Begin loading in a background thread (once); :meth:`load` then waits for it.

        A model that cannot load for want of its framework raises here, at once (:meth:`require`).
        """
        self.require()
        if self._backend is not None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._load_quietly, name="genretag-model-load", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Let a background load finish (it may hold the process's stderr); its error waits for :meth:`load`."""
        if self._thread is not None:
            self._thread.join()

    def _load_quietly(self) -> None:
        with contextlib.suppress(ModelError):  # kept in _error for whoever needs the model
            self.load()


def resolve_model_path(backend: str, explicit: str | os.PathLike[str] | None = None) -> Path:
    """The model file a backend should use, by the precedence in the module docstring."""
    if explicit:
        path = Path(explicit).expanduser()
        _checked_model_file(path)
        return path.resolve()
    target = current_target(backend)
    if target is not None:
        return target
    shipped = backend_info(backend).cls.default_model()  # type: ignore[union-attr]  # raises when there is none
    if shipped and Path(shipped).is_file():
        return Path(shipped)
    raise NoModelError(
        models_dir() / backend,
        f"no trained model for backend {backend!r}: run `genretag train --backend {backend}`",
    )


def current_target(backend: str) -> Path | None:
    """The model file ``models/<backend>/current`` names, or None when there is no pointer.

    The pointer may only name a file inside its own folder: models are
    unpickled, so an absolute path, a ``..`` or a symlink leading out of the
    folder (anyone able to write the pointer could aim it at any pickle) is
    a ModelError naming the pointer, never a load.
    """
    folder = models_dir() / backend
    pointer = folder / CURRENT
    if not pointer.is_file():
        return None
    try:
        name = userfiles.read_text(pointer, "model pointer").strip()
    except FileError as exc:
        raise ModelError(pointer, exc.reason) from None
    if not name:
        raise ModelError(pointer, "model pointer is empty; run `genretag models use ID` or train again")
    if "\0" in name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ModelError(pointer, f"points to {name!r}, outside {folder}; a pointer may only name a file in its folder")
    target = folder / name
    try:
        real, home = target.resolve(strict=True), folder.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        raise ModelError(pointer, f"points to {name}, which does not exist") from None
    if not real.is_relative_to(home) or real == home:
        raise ModelError(pointer, f"points to {name}, a link leading outside {folder}; not loaded")
    if not real.is_file():
        raise ModelError(pointer, f"points to {name}, which is not a file")
    return target


def read_card(model_path: Path) -> dict[str, Any]:
    """The model's card; ModelError when missing or not valid JSON."""
    path = card_path(model_path)
    if not os.path.lexists(path):
        raise ModelError(model_path, f"no model card (expected {path.name} beside it)")
    try:
        card = userfiles.read_json(path, "model card", userfiles.CARD_LIMIT)
    except FileError as exc:
        raise ModelError(path, exc.reason) from None
    if not isinstance(card, dict):
        raise ModelError(path, "model card is not a JSON object")
    return card


def check_card(card: dict[str, Any], backend: str, input_kind: str, model_path: Path,
               front_end: FrontEnd | None = None) -> None:
    """Refuse a model trained for another backend, with other preprocessing or on another front end."""
    if card.get("backend") != backend:
        raise ModelError(model_path, f"model is for backend {card.get('backend')!r}, not {backend!r}")
    _check_labels(model_path, backend, card.get("genres"))
    theirs = card.get("preprocessing") or {}
    ours = preprocessing()
    diff = [
        f"{key}: model {theirs.get(key)!r}, pipeline {ours[key]!r}"
        for key in get_kind(input_kind).must_match
        if theirs.get(key) != ours[key]
    ]
    if diff:
        raise ModelError(model_path, "preprocessing does not match the pipeline (" + "; ".join(diff) + ")")
    if front_end is not None and card.get("front_end") not in (None, front_end.id):
        raise ModelError(model_path, f"model was trained on front end {card['front_end']}, "
                                     f"but backend {backend!r} now has front end {front_end.id}")


def open_model(backend: str, path: str | os.PathLike[str] | None = None) -> Model:
    """Resolve and check the model for ``backend`` up front, cheaply; load it only if that cannot be avoided.

    The card must match the backend and the pipeline, and the file must be
    intact: the very file whose hash its card records (save_model writes it),
    or one the backend's :meth:`~tagger.inference.backends.Backend.check_file` accepts.
    A backend without such a check, or a card without genres, gets its model
    loaded here, so a corrupt model always fails before any work.
    """
    info = backend_info(backend)
    cls: type[Backend] = info.cls  # type: ignore[assignment]  # backend_info raises when there is none
    model_path = resolve_model_path(backend, path)
    card = read_card(model_path)
    fe = inputs.loaded_front_end(cls.input_kind, backend)
    check_card(card, backend, cls.input_kind, model_path, fe)
    try:
        digest = file_id(model_path)
    except FileError as exc:
        raise ModelError(model_path, exc.reason) from None
    except OSError as exc:
        raise ModelError(model_path, f"cannot read model file: {exc.strerror or exc}") from None
    ident = digest + (f" {info.distribution}=={info.version}" if info.distribution else "")
    model = Model(cls, model_path, card, ident, fe, needs=info.needs)
    if not _intact(cls, model_path, card, digest):
        model.load()
    return model


def load_model(backend: str, path: str | os.PathLike[str] | None = None) -> Model:
    """Resolve, check and load the model for ``backend``, naming the file on any failure."""
    model = open_model(backend, path)
    model.load()
    return model


def _intact(cls: type[Backend], path: Path, card: dict[str, Any], digest: str) -> bool:
    """Whether the model file is known good without loading it (False: only loading can tell)."""
    if not card.get("genres"):
        return False  # the genres then come from the model itself
    if card.get("id") == digest:
        return True  # byte for byte the file save_model wrote and hashed into its card
    try:
        cls.check_file(path)
    except NotImplementedError:
        return False
    except ModelError:
        raise
    except PLUGIN_FAILURES as exc:
        raise ModelError(path, f"corrupt or unreadable model file ({failure_text(exc)})") from None
    return True


def _check_labels(model_path: Path, backend: Any, genres: Any) -> None:
    """ModelError unless ``genres`` are labels a tag can hold: no NUL, newline or escape (outputs.check_genres)."""
    if genres:
        try:
            check_genres(backend, genres)
        except BackendError as exc:
            raise ModelError(model_path, str(exc)) from None


def _checked_model_file(path: Path) -> None:
    """ModelError unless ``path`` is a regular file of bounded size (common.userfiles), before any loader opens it."""
    try:
        userfiles.check_input(path, "model file", userfiles.MODEL_LIMIT)
    except FileError as exc:
        raise ModelError(path, exc.reason) from None


def _load_backend(cls: type[Backend], model_path: Path, card: dict[str, Any]) -> Backend:
    _checked_model_file(model_path)
    try:
        instance = cls.load(model_path)
    except ModelError:
        raise
    except PLUGIN_FAILURES as exc:  # corrupt, truncated or foreign files fail in many ways
        raise ModelError(model_path, f"corrupt or unreadable model file ({failure_text(exc)})") from None
    genres = list(getattr(instance, "genres_", []) or [])
    _check_labels(model_path, instance, genres)
    if card.get("genres") and list(card["genres"]) != genres:
        raise ModelError(model_path, "genres in the model file differ from its card")
    if not genres:
        raise ModelError(model_path, "model has no genres; was it fitted?")
    return instance


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
    fe = inputs.loaded_front_end(backend.input_kind, backend.name)
    if fe is not None:  # a head is only valid on the front end it learned from
        card["front_end"] = fe.id
    card.update(_jsonable(sections))
    return card


def check_out(out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None] = (),
              within: Iterable[str | os.PathLike[str] | None] = ()) -> Path:
    """Where ``train --out`` may write a model and its card; FileError naming the file that forbids it.

    Neither may be a directory, FIFO or device, nor one of the command's
    ``inputs`` or a file inside its input folders ``within``
    (tagger.common.userfiles.check_output).  The card beside the model
    (``<stem>.card.json``) is replaced only together with the model it
    describes: a card there that names another file is someone else's.
    """
    path = userfiles.check_output(out, "model", inputs, within)
    card = card_path(path)
    if card.name == path.name:
        raise FileError(path, "is named like a model card; give the model its backend's suffix (model.joblib, ...)")
    userfiles.check_output(card, "model card", inputs, within)
    if os.path.lexists(card):
        try:
            owner = userfiles.read_json(card, "model card", userfiles.CARD_LIMIT)
        except FileError:
            owner = None
        named = owner.get("file") if isinstance(owner, dict) else None
        if named != path.name:
            whose = f"the card of {named}" if isinstance(named, str) else "not a card of this model"
            raise FileError(card, f"is {whose}; training to {path.name} would replace it: give another --out")
    return path


def save_model(backend: Backend, card: dict[str, Any], out: str | os.PathLike[str] | None = None,
               *, make_current: bool = True) -> Path:
    """Write model and card; unless ``out`` is given, into the data dir as the current model.

    Earlier models in the data dir are kept (``genretag models`` lists them,
    ``genretag models use ID`` brings one back): each gets its own timestamped name.
    """
    if out is None:
        folder = models_dir() / backend.name
        folder.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = folder / f"{backend.name}-{stamp}{backend.model_suffix}"
        n = 1
        while path.exists() or card_path(path).exists():  # two trainings in one second: keep both
            n += 1
            path = folder / f"{backend.name}-{stamp}-{n}{backend.model_suffix}"
    else:
        path = check_out(out)  # again, just before writing: train checked it with its inputs before any work
        path.parent.mkdir(parents=True, exist_ok=True)
    # Model and card are both written beside their places under temporary names (the model's with its suffix:
    # Keras wants it), then renamed one after the other: a plugin's failing save or a full disk leaves neither
    # a half-written model nor a damaged older one, and a card is never written without its model.
    tmp_model = path.with_name(f".{path.name}.{os.getpid()}.tmp{''.join(path.suffixes[-1:])}")
    tmp_card: str | None = None
    try:
        with plugin_call(backend, "save"):
            backend.save(tmp_model)
        card = dict(card, id=file_id(tmp_model), file=path.name)
        fd, tmp_card = tempfile.mkstemp(prefix=f".{card_path(path).name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(card, indent=2, sort_keys=True) + "\n")
        os.replace(tmp_model, path)
        os.replace(tmp_card, card_path(path))
    except BaseException:
        tmp_model.unlink(missing_ok=True)
        if tmp_card is not None:
            Path(tmp_card).unlink(missing_ok=True)
        raise
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
        if (missing := info.needs) is not None:  # listed with its model, and how to make it usable
            row["status"], row["error"] = missing.status, missing.command
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
                elif heldout := heldout_precision(metrics):  # a personal model (genretag learn)
                    row["accuracy"] = HELDOUT.format(*heldout)
        rows.append(row)
    return rows


@dataclass
class ModelListing:
    """What ``genretag models`` shows: one row per model file, and pointers that could not be followed."""

    rows: list[dict[str, Any]]
    problems: list[str]


#: How a personal model's figure reads where a trained model shows its test accuracy.
HELDOUT = "{:.3f} held-out precision ({} tags)"


def heldout_precision(metrics: Any) -> tuple[float, int] | None:
    """A personal model's figure in place of accuracy: its genres' pooled held-out precision, and tag count.

    ``genretag learn`` has no test part; this is the precision of the genre
    tags its saved genres wrote on artists held out (see tagger.run.learn).
    """
    heldout = metrics.get("heldout") if isinstance(metrics, dict) else None
    if not isinstance(heldout, dict) or not isinstance(heldout.get("precision"), (int, float)):
        return None
    return float(heldout["precision"]), int(heldout.get("kept") or 0)


def _model_row(backend: str, path: Path, card: dict[str, Any], shipped: bool) -> dict[str, Any]:
    metrics = card.get("metrics") if isinstance(card.get("metrics"), dict) else {}
    training = card.get("training") if isinstance(card.get("training"), dict) else {}
    heldout = heldout_precision(metrics)
    return {
        "backend": backend, "id": str(card.get("id") or ""), "date": card.get("date"),
        "data": training.get("data"), "protocol": metrics.get("protocol"),
        "accuracy": metrics.get("track_accuracy"), "n_test": metrics.get("n_test"),
        "heldout_precision": heldout[0] if heldout else None, "heldout_tags": heldout[1] if heldout else None,
        "file": str(path), "shipped": shipped, "current": False,
    }  # fmt: skip


def _trained_models(backend: str) -> list[tuple[Path, dict[str, Any]]]:
    """The model files kept in ``models/<backend>/`` with a readable card naming a file beside it."""
    folder = models_dir() / backend
    found = []
    for card_file in sorted(folder.glob("*.card.json")) if folder.is_dir() else []:
        try:
            card = userfiles.read_json(card_file, "model card", userfiles.CARD_LIMIT)
        except FileError:
            continue  # a half-written or foreign file is not a model
        name = card.get("file") if isinstance(card, dict) else None
        if not isinstance(name, str) or Path(name).name != name or card.get("backend") != backend:
            continue
        if (folder / name).is_file() and card_path(folder / name) == card_file:
            found.append((folder / name, card))
    return found


def list_models(backend: str | None = None) -> ModelListing:
    """Every model of ``backend`` (or of every backend): those training kept, and the shipped one.

    Only cards are read, never a model, so listing imports no framework.
    ``current`` marks the model a scan would use without ``--model``.
    """
    from .backends import discover

    installed = {name: info for name, info in discover().items() if info.ok}
    kept = {p.name for p in models_dir().iterdir() if p.is_dir()} if models_dir().is_dir() else set()
    if backend and backend not in installed and backend not in kept:
        get_backend(backend)  # raises BackendError: unknown or broken, and says which
    names = {backend} if backend else set(installed) | kept
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for name in sorted(names):
        mine = [_model_row(name, path, card, False) for path, card in _trained_models(name)]
        shipped = installed[name].cls.default_model() if name in installed else None
        if shipped and Path(shipped).is_file():
            try:
                mine.append(_model_row(name, Path(shipped), read_card(Path(shipped)), True))
            except ModelError as exc:
                problems.append(str(exc))
        try:
            current = current_target(name)
        except ModelError as exc:
            problems.append(str(exc))
            current = None
        else:
            current = current.resolve() if current else Path(shipped).resolve() if shipped else None
        for row in mine:
            row["current"] = current is not None and Path(row["file"]).resolve() == current
        rows += sorted(mine, key=lambda r: (not r["shipped"], str(r["date"] or "")))
    return ModelListing(rows, problems)


def _stem(path: str) -> str:
    return Path(path).name.split(".")[0]


def use_model(model_id: str, backend: str | None = None) -> dict[str, Any]:
    """Make the model whose card id is ``model_id`` (or starts with it) its backend's current one.

    Retraining on the same data with the same seed gives the same file, so
    two kept models can share an id: the model's file name (with or without
    its suffix) picks one of them.

    A shipped model is made current by removing the pointer.  Returns the
    model's row; GenretagError when no model or several models match.
    """
    from ..common.errors import GenretagError

    wanted = model_id.strip().lower()
    if not wanted:
        raise GenretagError("give a model id (see `genretag models`)")
    rows = list_models(backend).rows
    by_name = [r for r in rows if wanted in (Path(r["file"]).name.lower(), _stem(r["file"]).lower())]
    matches = by_name or [r for r in rows if r["id"].lower().startswith(wanted)]
    if not matches:
        raise GenretagError(f"no model with id {model_id!r} (see `genretag models`)")
    if len(matches) > 1:
        which = ", ".join(f"{r['id']} ({r['backend']}: {Path(r['file']).name})" for r in matches)
        raise GenretagError(f"model id {model_id!r} is ambiguous: {which}; give more of it, or the file name")
    row = matches[0]
    get_backend(row["backend"])  # a model its backend cannot load (framework not installed) is not made current
    pointer = models_dir() / row["backend"] / CURRENT
    try:
        if row["shipped"]:
            pointer.unlink(missing_ok=True)
        else:
            set_current(row["backend"], Path(row["file"]))
    except OSError as exc:
        raise ModelError(pointer, f"cannot change the model pointer: {exc.strerror or exc}") from None
    return dict(row, current=True)
