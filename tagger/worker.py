"""The analysis step for one file, run in whichever process does the work.

It stats, decodes and analyses a file and returns a plain, picklable
record.  It never raises for a bad file: the error travels back as text, so
one bad file costs that file only.  Local worker processes and Dask workers
call the same :func:`analyse_file`.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import inputs
from .audio import decode
from .errors import FileError
from .features import SLICE_SECONDS, analyse

#: Peak level under which a file counts as silent (-80 dBFS).
SILENCE_PEAK = 1e-4


@dataclass(frozen=True)
class AnalysisTask:
    """What to analyse and how; small, so it is cheap to send to any worker.

    ``kind`` is the model's input kind (tagger.inputs); for ``"embedding"``,
    ``backend`` names the backend whose front end the worker loads.
    """

    path: str
    excerpt: float | None = 30.0
    kind: str = "features"
    backend: str | None = None


@dataclass
class AnalysisResult:
    """A file's analysis, or the reason there is none."""

    path: str
    size: int | None = None
    mtime: float | None = None
    duration: float | None = None
    offset: float | None = None
    seconds: float | None = None  # length of the analysed excerpt
    features: np.ndarray | None = None
    slices: np.ndarray | None = None
    embedding: np.ndarray | None = None
    tags: np.ndarray | None = None  # the front end's tag probabilities, if it has tags
    front_end: str | None = None  # id of the front end that made ``embedding``
    error: str | None = None
    elapsed: float = 0.0
    worker: str = field(default_factory=lambda: str(os.getpid()))


def analyse_file(task: AnalysisTask) -> AnalysisResult:
    """Decode and analyse one file; any failure becomes ``error``."""
    started = time.perf_counter()
    result = AnalysisResult(task.path)
    try:
        st = os.stat(task.path)
        result.size, result.mtime = st.st_size, st.st_mtime
        clip = decode(task.path, sr=inputs.sample_rate(task), excerpt=task.excerpt)
        result.duration, result.offset = clip.duration, clip.offset
        result.seconds = len(clip.samples) / clip.sr
        if result.seconds < SLICE_SECONDS:
            raise FileError(task.path, f"too short: {result.seconds:.2f} s of audio, need at least {SLICE_SECONDS:g} s")
        peak = float(np.max(np.abs(clip.samples)))
        if peak < SILENCE_PEAK:
            raise FileError(task.path, "audio is silent (peak below -80 dBFS)")
        for name, value in inputs.compute(task, clip.samples, clip.sr).items():
            setattr(result, name, value)
    except FileError as exc:
        result.error = exc.reason
    except OSError as exc:
        result.error = f"cannot read file: {exc.strerror or exc}"
    except MemoryError:
        result.error = "out of memory while analysing"
    except Exception as exc:  # keep the batch going; the text says it is unexpected
        result.error = f"unexpected {type(exc).__name__} while analysing: {exc}"
    result.elapsed = time.perf_counter() - started
    return result


def warm_up() -> None:
    """Import and JIT-compile the analysis path once, before workers fork from this process.

    It also keeps BLAS to one thread: the pool already runs one worker per
    core, and OpenBLAS's own threads, spinning between the analysis's small
    matrix products, doubled its CPU per file (docs/speed.md).  Decoders are
    imported here too, so a forked worker pays for nothing but its files,
    and the heap is told to keep its buffers (:func:`keep_heap`).
    """
    keep_heap()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        pass
    else:
        threadpool_limits(1)
    import av  # noqa: F401
    import soundfile  # noqa: F401
    import soxr  # noqa: F401

    rng = np.random.default_rng(0)
    y = (0.1 * rng.standard_normal(int(22050 * 3.5))).astype(np.float32)
    analyse(y, 22050, features=True, slices=True)


def keep_heap() -> None:
    """Make glibc reuse freed analysis buffers instead of unmapping them after every file.

    Analysis allocates ~10 MB arrays; by default glibc returns each to the
    kernel when freed, and the next file's arrays then fault in fresh zeroed
    pages: ~3,700 page faults and 15% of the analysis CPU per file.  Arrays
    up to 32 MB (glibc's limit) now come from the heap, which is trimmed only
    beyond 256 MB free.  Elsewhere than glibc this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 256 << 20)
