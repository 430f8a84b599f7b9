"""The analysis step for one file, run in whichever process does the work.

It stats, decodes and analyses a file and returns a plain, picklable
record.  It never raises for a bad file: the error travels back as text, so
one bad file costs that file only.  Local worker processes and Dask workers
call the same :func:`analyse_file`.
"""

from __future__ import annotations

import ctypes
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..analysis.features import SLICE_SECONDS, analyse
from ..analysis.wire import AnalysisResult, AnalysisTask
from ..common.errors import FileError
from ..media import tags
from ..media.audio import CHUNK_SECONDS, check_file, decode, open_stream
from ..media.params import SAMPLE_RATE
from . import inputs
from .kinds import Kind

#: Peak level under which a file counts as silent (-80 dBFS).
SILENCE_PEAK = 1e-4
#: 3 s slices kept from a long window for slices models (10 minutes' worth, spread evenly).
MAX_SLICES = 200


def analyse_file(task: AnalysisTask) -> AnalysisResult:
    """Decode and analyse one file; any failure becomes ``error``."""
    started = time.perf_counter()
    result = AnalysisResult(task.path)
    try:
        st = check_file(task.path)  # before any open that could block on a FIFO put there since the walk
        result.size, result.mtime = st.st_size, st.st_mtime
        result.meta = describe(task.path)
        kind = inputs.kind_of(task.params)
        if kind.streams and task.params.longer_than(CHUNK_SECONDS):
            fields = _analyse_streamed(task, result, kind)  # a long window: chunk by chunk
        else:  # the usual 30 s: one read, one analysis
            fe = inputs.worker_front_end(task)  # loaded and checked before any decoding
            clip = decode(task.path, sr=task.params.sample_rate, excerpt=kind.window(task.params))
            result.duration, result.offset = clip.duration, clip.offset
            result.seconds = len(clip.samples) / clip.sr
            _check_length(task.path, result.seconds)
            _check_loudness(task.path, float(np.max(np.abs(clip.samples))))
            fields = kind.compute(task, clip.samples, clip.sr, fe)
        for name, value in fields.items():
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


def describe(path: str) -> tags.FileMeta | None:
    """The file's own tags (album, artist, genres) for album mode and ``learn``, or None.

    Unreadable tags never fail the analysis: the audio is what a scan is for.
    """
    if not tags.supported(path):
        return None
    try:
        return tags.describe(path)
    except Exception:  # noqa: BLE001 - damaged tags: the audio may still decode
        return None


def _check_length(path: str, seconds: float) -> None:
    if seconds < SLICE_SECONDS:
        raise FileError(path, f"too short: {seconds:.2f} s of audio, need at least {SLICE_SECONDS:g} s")


def _check_loudness(path: str, peak: float) -> None:
    if peak < SILENCE_PEAK:
        raise FileError(path, "audio is silent (peak below -80 dBFS)")


def _analyse_streamed(task: AnalysisTask, result: AnalysisResult, kind: Kind) -> dict[str, Any]:
    """A window longer than CHUNK_SECONDS (``--excerpt 0``: the whole file), chunk by chunk.

    Memory stays that of one chunk whatever the file's length.  At most
    MAX_SLICES 3 s slices, evenly spread over the window, are kept for
    slices models; ``result.seconds`` is the length actually analysed.
    """
    stream = open_stream(task.path, sr=task.params.sample_rate, excerpt=task.params.excerpt)
    result.duration, result.offset = stream.duration, stream.offset
    seen = {"samples": 0, "peak": 0.0}

    def watched() -> Iterator[np.ndarray]:
        for y in stream.chunks():
            if not seen["samples"]:  # the first chunk is the whole window when that is short
                _check_length(task.path, len(y) / stream.sr)
            seen["samples"] += len(y)
            seen["peak"] = max(seen["peak"], float(np.max(np.abs(y))))
            yield y

    out = kind.compute_stream(task.path, watched(), stream.sr, MAX_SLICES)
    if not seen["samples"]:
        raise FileError(task.path, "no audio frames could be decoded")
    result.seconds = seen["samples"] / stream.sr
    _check_loudness(task.path, seen["peak"])
    return out


def warm_up() -> None:
    """Import the analysis path and compile its kernels once, before workers fork from this process.

    It also keeps BLAS to one thread (the pool already runs one worker per
    core, and BLAS threads spinning between small products only cost CPU),
    imports the decoders, so a forked worker pays for nothing but its files,
    and tells the heap to keep its buffers (:func:`keep_heap`).
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

    from ..analysis import dsp

    dsp.prepare()
    rng = np.random.default_rng(0)
    y = (0.1 * rng.standard_normal(int(SAMPLE_RATE * 3.5))).astype(np.float32)
    analyse(y, SAMPLE_RATE, features=True, slices=True)


def keep_heap() -> None:
    """Make glibc reuse freed analysis buffers instead of unmapping them after every file.

    Analysis allocates arrays of several MB; by default glibc unmaps each
    when freed, and the next file's arrays fault in fresh zeroed pages.
    Arrays up to 32 MB (glibc's limit) now come from the heap, which is
    trimmed only beyond 256 MB free.  Elsewhere than glibc this does nothing.
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
