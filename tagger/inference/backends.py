"""The backend protocol and the registry that finds backends through entry points.

A backend is a genre classifier with a scikit-learn-like interface.  The
built-in ones (svc, cnn, resnet) and any third party's are found the same
way: an entry point in the group ``genretag.backends`` naming a Backend
subclass.  This module never imports a backend's own module until asked.

Writing a backend means subclassing :class:`Backend` and filling in the
four methods below; docs/backends.md, "Writing a backend", walks through one.
"""

from __future__ import annotations

import importlib.util
import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..common.errors import BackendError
from .frontend import FrontEnd
from .kinds import get_kind, kind_problem

ENTRY_POINT_GROUP = "genretag.backends"


class Backend(ABC):
    """A genre classifier: fit on GTZAN-style data, predict probabilities per genre.

    ``__init__`` only stores hyperparameters (as in scikit-learn), so
    ``get_params`` can rebuild them for model cards.  Learned state ends in
    an underscore; ``genres_`` fixes the column order of ``predict_proba``.
    """

    #: Name users type after ``--backend``; must equal the entry point's name.
    name: ClassVar[str]
    #: ``"features"``: rows of the 57 GTZAN features, shape (n, 57).
    #: ``"slices"``: 3 s log-mel slices, shape (n, 128, 130).
    #: ``"embedding"``: rows of the backend's own front end's embedding, shape (n, d).
    #: The kinds are tagger.inference.kinds.KINDS; a plugin may register another.
    input_kind: ClassVar[str]
    #: The genre-like subset of the front end's ``tag_names`` (``tag --from-tags`` writes these).
    genre_tags: ClassVar[tuple[str, ...]] = ()
    #: Extension of the model file ``save`` writes, e.g. ``".joblib"``.
    model_suffix: ClassVar[str] = ".model"
    #: Modules ``fit`` and ``load`` import that a plain install may lack (the class itself must import
    #: without them), and the pip requirement that brings them: without them the backend is listed as
    #: needing it, and a command that would load or fit a model stops first with that pip command.
    requires: ClassVar[tuple[str, ...]] = ()
    requires_install: ClassVar[str] = ""

    genres_: list[str]
    #: True when ``predict_proba`` gives each genre an independent probability (a multi-label model,
    #: e.g. ``genretag learn``'s): rows then need not sum to 1, and several genres may apply.
    multilabel_: bool = False

    @abstractmethod
    def fit(
        self,
        X: np.ndarray,
        y: Sequence[str],
        *,
        X_valid: np.ndarray | None = None,
        y_valid: Sequence[str] | None = None,
        epochs: int | None = None,
        seed: int = 0,
        callback: Any = None,
    ) -> Backend:
        """Learn from inputs ``X`` and genre labels ``y``; return self."""

    @abstractmethod
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Return an (n, len(genres_)) array of probabilities for inputs ``X``."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the fitted model to ``path`` (card excluded: the core writes it)."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path) -> Backend:
        """Read a model written by ``save``; raise on a corrupt or foreign file."""

    @classmethod
    def check_file(cls, path: Path) -> None:
        """Check cheaply, without loading a framework, that ``path`` is an intact model of this backend.

        Raise (any exception) when it is not.  A scan asks this when the
        model's card does not vouch for the file by its hash, and loads the
        model itself only when a file needs a prediction.  The default cannot
        tell without loading: it raises NotImplementedError, and the model
        is then loaded before the scan starts.
        """
        raise NotImplementedError

    @classmethod
    def front_end(cls) -> FrontEnd:
        """``"embedding"`` backends: load the front end (in each worker process, once).

        Raise tagger.common.errors.ModelError(weights file, reason) when its weights
        are missing or corrupt; the user then sees that one line.
        """
        raise NotImplementedError(f"backend {cls.name!r} has no front end")

    @classmethod
    def default_model(cls) -> Path | None:
        """The model file shipped inside the backend's package, if any."""
        return None

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters from the ``__init__`` signature, for model cards and ``cls(**params)``.

        ``deep`` is scikit-learn's (``clone`` passes it); no parameter is an
        estimator, so it changes nothing.
        """
        return {name: getattr(self, name) for name in self._param_defaults() if hasattr(self, name)}

    def set_params(self, **params: Any) -> Backend:
        """Set hyperparameters by name (scikit-learn's ``set_params``); an unknown name is a ValueError."""
        names = list(self._param_defaults())
        for key, value in params.items():
            if key not in names:
                raise ValueError(f"Invalid parameter {key!r} for {type(self).__name__}; valid ones: {names}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        """The class and the parameters that differ from their defaults, as scikit-learn shows an estimator."""
        defaults = self._param_defaults()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if repr(v) != repr(defaults[k])]
        return f"{type(self).__name__}({', '.join(changed)})"

    @classmethod
    def _param_defaults(cls) -> dict[str, Any]:
        """The ``__init__`` parameters and their defaults; an ``__init__`` taking ``**kwargs`` passes them to
        its parent's, so the parent's are collected too (the Keras backends share theirs this way)."""
        found: dict[str, Any] = {}
        for klass in cls.__mro__:
            if "__init__" not in vars(klass) or klass is object:
                continue
            params = inspect.signature(vars(klass)["__init__"]).parameters.values()
            for p in params:
                if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                    found.setdefault(p.name, p.default)
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return found

    def history(self) -> dict[str, list[float]]:
        """Per-epoch training metrics, for learning curves (empty if none)."""
        return getattr(self, "history_", {}) or {}

    def describe(self) -> dict[str, Any]:
        """What the model card should say about this model beyond its params (architecture, changes)."""
        return {}


REQUIRED = ("fit", "predict_proba", "save", "load")


@dataclass
class BackendInfo:
    """What ``genretag backends`` reports about one entry point."""

    name: str
    value: str  # "module:attr" of the entry point
    distribution: str | None
    version: str | None
    cls: type[Backend] | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """The class imported and is a valid backend (its framework may still be missing: :attr:`needs`)."""
        return self.cls is not None

    @property
    def input_kind(self) -> str | None:
        return getattr(self.cls, "input_kind", None)

    @property
    def needs(self) -> Needs | None:
        """What must be installed before this backend can load or fit a model; None when nothing."""
        return missing_requirements(self.cls) if self.cls is not None else None

    def require(self) -> type[Backend]:
        """The backend class, or the BackendError that says which pip command makes it usable."""
        missing = self.needs
        if missing is not None:
            raise missing.error(self.name)
        return self.cls  # type: ignore[return-value]  # backend_info returns only found classes


@dataclass(frozen=True)
class Needs:
    """A backend's missing modules and the pip requirement that installs them."""

    modules: tuple[str, ...]
    requirement: str

    @property
    def status(self) -> str:
        return f"needs {self.requirement}"

    @property
    def command(self) -> str:
        return f"pip install '{self.requirement}'"

    def error(self, backend: str) -> BackendError:
        """What stops a command that needs ``backend``: one line, with the command that fixes it."""
        return BackendError(f"backend {backend!r} {self.status} ({', '.join(self.modules)} not installed): "
                            f"{self.command}")


def missing_requirements(cls: type[Backend]) -> Needs | None:
    """Which of ``cls.requires`` cannot be imported, found without importing them (TensorFlow takes seconds)."""
    missing = tuple(name for name in getattr(cls, "requires", ()) if not _importable(name))
    if not missing:
        return None
    return Needs(missing, getattr(cls, "requires_install", "") or " ".join(missing))


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses the name, or a module without a spec
        return False


def check_backend_class(name: str, obj: Any) -> str | None:
    """Why ``obj`` is not a usable backend class, or None when it is."""
    if not inspect.isclass(obj):
        return f"entry point is a {type(obj).__name__}, not a class"
    missing = [m for m in REQUIRED if not callable(getattr(obj, m, None))]
    if missing:
        return "missing " + ", ".join(missing)
    if inspect.isabstract(obj):
        return "abstract methods not implemented: " + ", ".join(sorted(obj.__abstractmethods__))
    problem = kind_problem(getattr(obj, "input_kind", None))
    if problem:
        return problem
    inherited = getattr(obj.front_end, "__func__", None) is Backend.front_end.__func__
    if get_kind(obj.input_kind).has_front_end and inherited:
        return f"input_kind {obj.input_kind!r} needs a front_end() classmethod"
    if getattr(obj, "name", None) != name:
        return f"class declares name {getattr(obj, 'name', None)!r} but is registered as {name!r}"
    return None


_extra: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    """Register a backend class in this process, without an entry point (tests, notebooks)."""
    _extra[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Forget a backend registered with :func:`register`."""
    _extra.pop(name, None)


def _entry_points() -> dict[str, list[metadata.EntryPoint]]:
    """Entry points of the group by name; one distribution seen twice on sys.path counts once."""
    by_name: dict[str, list[metadata.EntryPoint]] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        same = by_name.setdefault(ep.name, [])
        if all(other.value != ep.value for other in same):
            same.append(ep)
    return by_name


def _conflict(name: str, eps: list[metadata.EntryPoint]) -> str:
    claims = " and ".join(f"{_dist_name(ep) or '?'} ({ep.value})" for ep in eps)
    return f"backend name {name!r} is claimed by {claims}; uninstall one"


def _dist_name(ep: metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist else None


def _load(name: str, ep: metadata.EntryPoint) -> BackendInfo:
    """Import one entry point and check its class; failures become ``error``, never exceptions."""
    dist = getattr(ep, "dist", None)
    info = BackendInfo(name, ep.value, _dist_name(ep), dist.version if dist else None)
    try:
        obj = ep.load()
    except Exception as exc:  # a plugin's import can fail in any way
        info.error = f"failed to import {ep.value}: {type(exc).__name__}: {exc}"
    else:
        info.error = check_backend_class(name, obj)
        if info.error is None:
            info.cls = obj
    return info


def discover() -> dict[str, BackendInfo]:
    """Every backend found through entry points (loaded), plus registered ones.

    A broken plugin becomes an entry with ``error`` set instead of an
    exception, so one bad package never stops the others or the listing.
    Two packages claiming one name are listed as broken with both claims;
    using that name (:func:`get_backend`) is an error until one is removed.
    """
    found: dict[str, BackendInfo] = {}
    for name, eps in _entry_points().items():
        info = _load(name, eps[0])
        if len(eps) > 1:
            info.cls, info.error = None, _conflict(name, eps)
        found[name] = info
    for name, cls in _extra.items():
        found[name] = BackendInfo(name, f"{cls.__module__}:{cls.__qualname__}", None, None, cls=cls)
    return found


def backend_modules() -> dict[str, tuple[str, str | None]]:
    """Module of each backend -> its name and distribution, from metadata only (nothing is imported)."""
    owners = {ep.module: (name, _dist_name(ep)) for name, eps in _entry_points().items() for ep in eps}
    return owners | {cls.__module__: (name, None) for name, cls in _extra.items()}


def get_backend(name: str) -> type[Backend]:
    """The usable backend class registered under ``name``; BackendError if absent, ambiguous, broken or
    missing what it :attr:`~Backend.requires` (naming the pip command), before the caller does any work.

    Only this backend's module is imported, so a broken or slow plugin
    elsewhere costs nothing.  Code that only reads the class (its name,
    input kind, shipped model) uses :func:`backend_info` instead.
    """
    return backend_info(name).require()


def backend_info(name: str) -> BackendInfo:
    """Like :func:`get_backend`, with the package (distribution) and version that provide it."""
    if name in _extra:
        cls = _extra[name]
        return BackendInfo(name, f"{cls.__module__}:{cls.__qualname__}", None, None, cls=cls)
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted({*eps, *_extra})) or "none"
        raise BackendError(f"unknown backend {name!r} (installed: {known}); see `genretag backends`")
    if len(eps[name]) > 1:
        raise BackendError(_conflict(name, eps[name]))
    info = _load(name, eps[name][0])
    if info.cls is None:
        raise BackendError(f"backend {name!r} is broken: {info.error}")
    return info
