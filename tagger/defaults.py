"""Every user-facing default and choice list, once: the library, the CLI, the config example and the beets plugin
read them here.

Plain Python that imports nothing, so any front door can read it at start-up without NumPy or TensorFlow.
:data:`CLI` lists what each command's options show (default, choices); tests/test_defaults.py holds the
command line to it, so an option added without an entry here fails that test.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# ---------------------------------------------------------------------------
# scan

#: The backend a scan uses when none is named (README "Results" says why fusion).
DEFAULT_BACKEND = "fusion"
#: Seconds analysed from the middle of each file; 0 (or None) for the whole file.
DEFAULT_EXCERPT = 30.0
#: Worker processes; None: all cores, 0: in this process.
DEFAULT_JOBS: int | None = None
#: Seconds one file may take before its worker is stopped (``scan --timeout``); 0: no limit.
DEFAULT_TIMEOUT = 300.0
#: The longest --timeout: a week per file is already "no limit"; larger values overflowed the waits.
MAX_TIMEOUT = 7 * 24 * 3600.0
#: What --cluster can start.
CLUSTERS = ("local",)
#: scan --abstain-below: None decides by the model card's rule (tagger/decide/decision.py); 0 never abstains.
DEFAULT_ABSTAIN_BELOW: float | None = None
#: Where the head abstains, name genres from the networks' own outputs (tagger/decide/broad.py; ``--broad``).
DEFAULT_BROAD = True

# ---------------------------------------------------------------------------
# tag (and scan --write)

#: Album mode (``--by``): one genre per track, per album or per folder (tagger/decide/albums.py).
TRACK, ALBUM, FOLDER = "track", "album", "folder"
ALBUM_MODES = (TRACK, ALBUM, FOLDER)
DEFAULT_BY = TRACK
#: Genres written per file; None: 1, or every genre reaching its threshold with a multi-label model.
DEFAULT_TOP: int | None = None
#: Joins genres where a format has no multi-value form (ID3v2.3).
DEFAULT_SEPARATOR = "; "
#: tag --write-above: write a genre only if at least this likely (0: whatever the scan decided).
DEFAULT_WRITE_ABOVE = 0.0
#: tag --write-above with --from-tags.  Tag probabilities are independent sigmoids (a track can be 0.6 rock
#: and 0.5 indie), not shares of one softmax, so 0.3 already says "this tag applies" for most tag models.
DEFAULT_WRITE_ABOVE_FROM_TAGS = 0.3
#: --hard-links: a file with several names is edited in place, split off, or skipped (docs/tagging.md).
IN_PLACE, SPLIT, SKIP = "in-place", "split", "skip"
HARD_LINKS = (IN_PLACE, SPLIT, SKIP)
DEFAULT_HARD_LINKS = IN_PLACE

# ---------------------------------------------------------------------------
# show, export

#: A cached file's status (``--status``): abstained is ok but too uncertain for a genre.
STATUSES = ("ok", "error", "missing", "abstained")
EXPORT_FORMATS = ("csv", "json")
DEFAULT_EXPORT_FORMAT = "csv"
#: ``export -o``: standard output.
STDOUT = "-"

# ---------------------------------------------------------------------------
# learn

#: Target precision a learnable genre must reach (``learn --precision``).
LEARN_PRECISION = 0.9
#: Artist-grouped cross-validation folds (fewer when there are fewer artists).
LEARN_FOLDS = 5

# ---------------------------------------------------------------------------
# train, report

#: Every split protocol (training/splits.py); the first is the default.
PROTOCOLS: tuple[str, ...] = ("fault-filtered", "stratified", "kfold", "artist-kfold", "slice-random")
DEFAULT_PROTOCOL = PROTOCOLS[0]
#: Protocols that cut the clips into k folds (``--fold``, ``--k`` apply), with their default k.
FOLD_PROTOCOLS: dict[str, int] = {"kfold": 10, "artist-kfold": 5}
#: The fewest folds ``--k`` accepts.
MIN_FOLDS = 3
#: The fold used as test part of a fold protocol.
DEFAULT_FOLD = 0
#: Seed of the split, the model and augmentation; NumPy's legacy seeding takes 0 to 2**32 - 1 only.
DEFAULT_SEED = 0
MAX_SEED = 2**32 - 1
#: Augmented copies of each training clip (``train --augment``).
DEFAULT_AUGMENT = 0
#: After measuring, fit the saved model on every clip (``train --refit``).
DEFAULT_REFIT = True
#: ``report --backend``: every installed backend.
ALL_BACKENDS = "all"
#: ``report --by``: album mode compared with track mode (with --all-folds).
REPORT_MODES = (TRACK, ALBUM)


# ---------------------------------------------------------------------------
# What each command's options show.


class Shown(NamedTuple):
    """An option's default as click holds it, and its choices (None: free text or a number)."""

    default: Any = None
    choices: tuple[str, ...] | None = None


_DATA = {"split": Shown(DEFAULT_PROTOCOL, PROTOCOLS), "fold": Shown(), "k": Shown(), "jobs": Shown(DEFAULT_JOBS)}
_TAG = {"top": Shown(DEFAULT_TOP), "write_above": Shown(), "min_confidence": Shown(), "broad": Shown(DEFAULT_BROAD),
        "separator": Shown(DEFAULT_SEPARATOR), "by": Shown(DEFAULT_BY, ALBUM_MODES),
        "hard_links": Shown(DEFAULT_HARD_LINKS, HARD_LINKS)}  # fmt: skip

#: command ("" for the group) -> option's parameter name -> what it shows.  Every option whose default is
#: not None or off, that has choices, or whose help names a "[default: ...]" has an entry (None: decided
#: at run time, as its help says).
CLI: dict[str, dict[str, Shown]] = {
    "": {"config_file": Shown()},
    "scan": {"backend": Shown(DEFAULT_BACKEND), "db_path": Shown(), "jobs": Shown(DEFAULT_JOBS),
             "excerpt": Shown(DEFAULT_EXCERPT), "timeout": Shown(DEFAULT_TIMEOUT), "cluster": Shown(None, CLUSTERS),
             "abstain_below": Shown(DEFAULT_ABSTAIN_BELOW), **_TAG},
    "tag": {"db_path": Shown(), **_TAG},
    "undo": {"db_path": Shown()},
    "show": {"db_path": Shown(), "status": Shown(None, STATUSES), "by": Shown(DEFAULT_BY, ALBUM_MODES)},
    "export": {"db_path": Shown(), "fmt": Shown(DEFAULT_EXPORT_FORMAT, EXPORT_FORMATS), "output": Shown(STDOUT),
               "status": Shown(None, STATUSES)},
    "learn": {"db_path": Shown(), "precision": Shown(LEARN_PRECISION)},
    "train": {**_DATA, "epochs": Shown(), "seed": Shown(DEFAULT_SEED), "augment": Shown(DEFAULT_AUGMENT),
              "out": Shown(), "refit": Shown(DEFAULT_REFIT)},
    "report": {"backend": Shown(ALL_BACKENDS), **_DATA, "seed": Shown(), "by": Shown(DEFAULT_BY, REPORT_MODES)},
    "env": {}, "backends": {}, "models": {}, "config": {},
}  # fmt: skip
