"""Files genretag reads as input or writes as output: the checks every command shares.

An input (genre map, feature table, config, model, card) must be a regular file
of bounded size, checked before opening and again on the non-blocking
descriptor, so a FIFO cannot block the read nor ``/dev/zero`` fill memory. An
output genretag replaces must not be a directory, FIFO, device or one of the
command's own inputs; :func:`check_output` says so in one FileError before any work.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .errors import FileError

KiB, MiB = 1 << 10, 1 << 20
#: Size limits per kind of input: far above any real one, far below what would exhaust memory.
TEXT_LIMIT = 1 * MiB  # config files, genre maps, model pointers: a few lines
CARD_LIMIT = 16 * MiB  # a model card lists its training clips and history
TABLE_LIMIT = 256 * MiB  # GTZAN's features_3_sec.csv is 9 MB
MODEL_LIMIT = 2048 * MiB  # the shipped models are 3 MB at most

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size(limit: int) -> str:
    return f"{limit // MiB} MiB" if limit >= MiB else f"{limit // KiB} KiB"


def _check(path: str | os.PathLike[str], what: str, limit: int, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise FileError(path, f"the {what} is {_kind(info.st_mode)}")
    if info.st_size > limit:
        raise FileError(path, f"the {what} is larger than {_size(limit)}; not read")


def check_input(path: str | os.PathLike[str], what: str, limit: int) -> os.stat_result:
    """Stat ``path`` (following links): FileError unless it is a regular file of at most ``limit`` bytes.

    For files a library opens by name (joblib, Keras); read files
    yourself through :func:`open_input`.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileError(path, f"{what} not found") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise FileError(path, f"cannot read the {what}: {getattr(exc, 'strerror', None) or exc}") from None
    _check(path, what, limit, info)
    return info


@contextlib.contextmanager
def open_input(path: str | os.PathLike[str], what: str, limit: int) -> Iterator[BinaryIO]:
    """``path`` opened for binary reading once :func:`check_input` passes, checked again on the descriptor."""
    check_input(path, what, limit)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise FileError(path, f"cannot read the {what}: {exc.strerror or exc}") from None
    try:
        _check(path, what, limit, os.fstat(fd))  # replaced by a FIFO or device since the stat
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def read_bytes(path: str | os.PathLike[str], what: str, limit: int) -> bytes:
    """The contents of a checked input file, never more than ``limit`` bytes (it may grow while read)."""
    try:
        with open_input(path, what, limit) as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise FileError(path, f"cannot read the {what}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise FileError(path, f"the {what} is larger than {_size(limit)}; not read")
    return data


def read_text(path: str | os.PathLike[str], what: str, limit: int = TEXT_LIMIT) -> str:
    """A checked input file as UTF-8 text (a BOM is dropped); FileError naming the line of a bad byte."""
    data = read_bytes(path, what, limit)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileError(path, f"line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as UTF-8") from None


def parse_json(text: str, path: str | os.PathLike[str], what: str) -> Any:
    """JSON from an input file; FileError for invalid JSON and for nesting too deep to parse."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise FileError(path, f"the {what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise FileError(path, f"the {what} is nested too deeply to read") from None


def read_json(path: str | os.PathLike[str], what: str, limit: int = TEXT_LIMIT) -> Any:
    """A checked input file parsed as JSON."""
    return parse_json(read_text(path, what, limit), path, what)


# ---------------------------------------------------------------------------
# Outputs.


def _identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def check_output(path: str | os.PathLike[str], what: str, inputs: Iterable[str | os.PathLike[str] | None] = (),
                 within: Iterable[str | os.PathLike[str] | None] = (), stream: bool = False) -> Path:
    """``path`` when genretag may replace it: absent, or a regular file that is none of ``inputs``.

    A symlink is judged by what it leads to.  ``within`` are input folders:
    an existing file inside one of them is an input too (a training clip).
    ``stream``: the output is written into, not renamed over (``export -o``),
    so a FIFO, terminal or device is where it may go, as for any Unix
    tool; only the inputs are refused.  FileError otherwise, naming the
    file and why, before anything is written.
    """
    path = Path(path).expanduser()
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return path
    except (OSError, ValueError) as exc:
        raise FileError(path, f"cannot write the {what} there: {getattr(exc, 'strerror', None) or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        if stream:
            return path
        raise FileError(path, f"is {_kind(info.st_mode)}, not a file genretag may replace with the {what}")
    here = (info.st_dev, info.st_ino)
    for source in inputs:
        if source is not None and _identity(source) == here:
            raise FileError(path, f"is one of this command's inputs ({source}); write the {what} elsewhere")
    real = path.resolve()
    for folder in within:
        if folder is not None and real.is_relative_to(Path(folder).resolve()):
            raise FileError(path, f"is inside the input folder {folder}; write the {what} elsewhere")
    return path
