"""A pretrained network's weights from an .npz of float32 arrays: no pickles, every array checked.

The converters in training/ and scripts/ write these files once; the networks in plugins/
read them with ``allow_pickle=False`` (so a file can hold only arrays, never code) and check
each array against the network's table of names and shapes before any is used.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from tagger.common import userfiles
from tagger.common.errors import FileError, ModelError


def read_arrays(path: Path, shapes: dict[str, tuple[int, ...]], what: str) -> tuple[dict[str, np.ndarray], bytes]:
    """The arrays named in ``shapes``, and the file's bytes (for an id of its content).

    ModelError(path, reason) when the file is missing, unreadable, not an npz, truncated,
    needs pickle, lacks an array, or holds one of the wrong shape or type or not finite.
    ``what`` names the network in the reason.
    """
    try:  # a regular file of bounded size, as every input (tagger.common.userfiles)
        data = userfiles.read_bytes(path, f"{what} weights file", userfiles.MODEL_LIMIT)
    except FileError as exc:
        raise ModelError(path, exc.reason) from None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ModelError(path, f"corrupt {what} weights file ({type(exc).__name__}: {exc})") from None
    missing = sorted(set(shapes) - set(arrays))
    if missing:
        raise ModelError(path, f"incomplete {what} weights file: missing {', '.join(missing)}")
    for name, shape in shapes.items():
        a = arrays[name]
        if a.shape != shape or a.dtype != np.float32 or not np.all(np.isfinite(a)):
            raise ModelError(path, f"bad {what} weights: {name} is {a.dtype}{list(a.shape)}, "
                                   f"expected finite float32{list(shape)}")
    return {name: arrays[name] for name in shapes}, data
