"""Find the audio files under the paths a user gives, lazily and safely.

Symlinked folders are followed once (a loop is detected by device and inode
and skipped), unreadable folders are reported and skipped, hidden files and
folders are left out unless asked for.  Files come out in sorted order, one
at a time, so a library of any size is walked in constant memory.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from .audio import is_audio

OnError = Callable[[str, str], None]


@dataclass(frozen=True, kw_only=True)
class WalkOptions:
    """Which files a walk yields."""

    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    hidden: bool = False
    follow_links: bool = True
    audio_only: bool = True
    extra: dict = field(default_factory=dict)


def _matches(patterns: Sequence[str], name: str, rel: str) -> bool:
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in patterns)


def _wanted(name: str, rel: str, opts: WalkOptions) -> bool:
    if opts.audio_only and not is_audio(name):
        return False
    if opts.include and not _matches(opts.include, name, rel):
        return False
    return not _matches(opts.exclude, name, rel)


def walk(paths: Sequence[str], opts: WalkOptions = WalkOptions(), on_error: OnError | None = None) -> Iterator[str]:
    """Yield absolute paths of the files to analyse under ``paths`` (files or folders).

    A file named explicitly is yielded even if hidden, as long as the
    include/exclude globs and the audio extension allow it.  Each file is
    yielded once however the paths overlap (``scan lib lib``, ``scan lib
    lib/a.mp3``): a folder already walked is not walked again, and a file
    named explicitly is left to its own argument by the folders around it.
    """
    report = on_error or (lambda path, reason: None)
    roots: list[tuple[str, os.stat_result]] = []
    for given in paths:
        root = os.path.abspath(os.fsdecode(given))
        try:
            roots.append((root, os.stat(root)))
        except OSError as exc:
            report(root, f"cannot access: {exc.strerror or exc}")
    named = {_identity(st) for root, st in roots if _named_file(root, st, opts)}
    seen_dirs: set[tuple[int, int]] = set()
    done: set[tuple[int, int]] = set()
    for root, st in roots:
        if stat.S_ISDIR(st.st_mode):
            if _identity(st) not in seen_dirs:  # named twice, or inside a folder walked before
                yield from _walk_dir(root, opts, report, seen_dirs, st, named)
            continue
        name = os.path.basename(root)
        if _named_file(root, st, opts):
            if _identity(st) not in done:
                done.add(_identity(st))
                yield root
        elif not stat.S_ISREG(st.st_mode):  # a pipe or device would block a worker forever
            report(root, "not a regular file")
        elif not is_audio(name):
            report(root, "not a supported audio file")


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _named_file(root: str, st: os.stat_result, opts: WalkOptions) -> bool:
    """Whether a path given as an argument is a file to analyse (its name passes the globs: it is its own path)."""
    name = os.path.basename(root)
    return stat.S_ISREG(st.st_mode) and _wanted(name, name, opts)


def _walk_dir(root: str, opts: WalkOptions, report: OnError, seen: set[tuple[int, int]],
              root_stat: os.stat_result, named: set[tuple[int, int]]) -> Iterator[str]:
    seen.add(_identity(root_stat))
    globs = bool(opts.include or opts.exclude)
    cut = len(root.rstrip(os.sep)) + 1  # "/" and "/music" alike
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            report(folder, f"cannot read folder: {exc.strerror or exc}")
            continue
        subdirs = []
        for entry in entries:
            name = entry.name
            if not opts.hidden and name.startswith("."):
                continue
            # relative paths only matter to globs; computing them costs more than the walk itself
            rel = entry.path[cut:] if globs else name
            try:
                is_dir = entry.is_dir(follow_symlinks=opts.follow_links)
            except OSError:
                is_dir = False
            if is_dir:
                if _matches(opts.exclude, name, rel):
                    continue
                try:
                    st = entry.stat(follow_symlinks=True)
                except OSError as exc:
                    report(entry.path, f"cannot access folder: {exc.strerror or exc}")
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    if entry.is_symlink():
                        report(entry.path, "symlink loop or repeated folder, skipped")
                    continue
                seen.add(key)
                subdirs.append(entry.path)
            elif _wanted(name, rel, opts):
                try:
                    if entry.is_file(follow_symlinks=True) and not (named and _identity(entry.stat()) in named):
                        yield entry.path
                except OSError:
                    continue
        stack.extend(reversed(subdirs))
