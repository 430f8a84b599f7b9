"""Checks on what a backend hands back, shared by scan, train and report.

A backend may be anyone's code: its ``predict_proba`` can return the wrong
shape, NaN, non-probabilities or columns that do not match ``genres_``. Scan,
train and report all go through these functions, so a misbehaving backend is
refused with the same one-line reason everywhere, before any figure is
computed or any model saved.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ..common.errors import BackendError, GenretagError

#: The longest genre label a backend may have: it goes into tags, tables and file names' neighbours.
MAX_GENRE = 100
#: How far a row of probabilities may sum from 1 (float32 softmax is off by ~1e-7).
SUM_TOLERANCE = 1e-3


#: What a backend's code may raise that must not end genretag as it would: any exception, and sys.exit()
#: (a plugin's sys.exit(4) ended genretag with exit 4 and no message).  Ctrl-C still stops.
PLUGIN_FAILURES: tuple[type[BaseException], ...] = (Exception, SystemExit)


def backend_name(backend: Any) -> str:
    """The name a user knows the backend by, for error messages (``backend`` may be that name already)."""
    if isinstance(backend, str):
        return backend
    return str(getattr(backend, "name", None) or type(backend).__name__)


def failure_text(exc: BaseException) -> str:
    """What went wrong inside a backend's code, for an error line: the exception, or the sys.exit it called."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def plugin_call(backend: Any, what: str) -> Iterator[None]:
    """Run a backend's ``what`` (fit, predict_proba, ...): whatever it raises or exits with becomes a BackendError.

    The error names the backend (class or instance) and the method; a
    GenretagError the backend raised on purpose passes unchanged.
    """
    try:
        yield
    except GenretagError:
        raise
    except PLUGIN_FAILURES as exc:  # third-party code fails in any way; the user gets one line, not a traceback
        raise BackendError(f"backend {backend_name(backend)!r}: {what} failed: {failure_text(exc)}") from None


def acceptable_label(genre: str) -> bool:
    """Whether ``genre`` can be a genre label: at most MAX_GENRE printable characters, no outer spaces.

    Labels end up in tags, tables and terminals: a NUL, newline or escape
    sequence in one would break them, so none is accepted.
    """
    return 0 < len(genre) <= MAX_GENRE and genre.isprintable() and genre == genre.strip()


def check_genres(backend: Any, genres: Any = None) -> list[str]:
    """``genres_`` (or ``genres``) as a list: distinct, non-empty strings; BackendError otherwise."""
    name = backend_name(backend)
    if genres is None:
        genres = getattr(backend, "genres_", None)
    if genres is None:
        raise BackendError(f"backend {name!r}: has no genres_ after fitting or loading")
    if isinstance(genres, (str, bytes, Mapping)) or not hasattr(genres, "__iter__"):
        raise BackendError(f"backend {name!r}: genres_ must be a list of genre names, got {type(genres).__name__}")
    out = list(genres)
    if not out:
        raise BackendError(f"backend {name!r}: genres_ is empty")
    seen: set[str] = set()
    for genre in out:
        if not isinstance(genre, str) or not genre:
            raise BackendError(f"backend {name!r}: genres_ must hold non-empty strings, got {genre!r}")
        if not acceptable_label(genre):
            shown = repr(genre if len(genre) <= 40 else genre[:40] + "...")
            raise BackendError(f"backend {name!r}: genres_ holds {shown}: a genre is at most {MAX_GENRE} printable "
                               "characters, without control characters (newlines, NUL, escapes) or outer spaces")
        if genre in seen:
            raise BackendError(f"backend {name!r}: genres_ lists {genre!r} twice")
        seen.add(genre)
    return [str(g) for g in out]


def check_probabilities(backend: Any, probs: Any, rows: int, genres: Any = None) -> np.ndarray:
    """``probs`` as float64 (rows, genres) when it is a valid answer to ``rows`` inputs.

    Valid: that exact shape (one column per ``genres_`` entry, in order),
    finite, not negative, each row summing to 1 within SUM_TOLERANCE (a
    multi-label backend's values each at most 1 instead).
    Anything else raises BackendError naming the backend and what is wrong.
    """
    name = backend_name(backend)
    columns = len(check_genres(backend, genres))
    try:
        arr = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BackendError(f"backend {name!r}: predict_proba returned {type(probs).__name__} that is not "
                           f"an array of numbers ({exc})") from None
    if arr.shape != (rows, columns):
        raise BackendError(f"backend {name!r}: predict_proba returned shape {arr.shape} for {rows} inputs; "
                           f"expected {(rows, columns)}, one column per entry of genres_")
    if rows == 0:
        return arr
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise BackendError(f"backend {name!r}: predict_proba returned NaN or infinite values "
                           f"in {int(bad.sum())} of {rows} rows")
    if (arr < -SUM_TOLERANCE).any():
        raise BackendError(f"backend {name!r}: predict_proba returned negative values "
                           f"(minimum {arr.min():.4g}); probabilities are in [0, 1]")
    if getattr(backend, "multilabel_", False):  # independent per-genre probabilities: each in [0, 1]
        if (arr > 1 + SUM_TOLERANCE).any():
            raise BackendError(f"backend {name!r}: predict_proba returned values above 1 "
                               f"(maximum {arr.max():.4g}); probabilities are in [0, 1]")
        return arr
    sums = arr.sum(axis=1)
    off = np.abs(sums - 1.0) > SUM_TOLERANCE
    if off.any():
        raise BackendError(f"backend {name!r}: predict_proba rows must sum to 1; {int(off.sum())} of {rows} rows "
                           f"sum to between {sums[off].min():.4g} and {sums[off].max():.4g}")
    return arr


def checked_proba(backend: Any, X: np.ndarray) -> np.ndarray:
    """``backend.predict_proba(X)``, checked; an exception inside the backend becomes BackendError too."""
    with plugin_call(backend, "predict_proba"):
        probs = backend.predict_proba(X)
    return check_probabilities(backend, probs, len(X))
