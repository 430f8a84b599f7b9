"""Measure a model on the test part of a protocol, honestly labelled, for ``genretag report``.

The figures are computed by training/scoring.py, as a scan would see each
track (its slices' mean probabilities).  A figure is never shown bare when it
cannot be trusted: the row says when the protocol is leaky (slice-random),
when the model's card lists test clips among its training clips
(contaminated; the clean subset is then scored on its own), and how many of
the listed test clips were present at all.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagger.common.errors import BackendError, GenretagError, ModelError, NoModelError
from tagger.common.progress import Progress
from tagger.decide import decision
from tagger.defaults import (ALL_BACKENDS, DEFAULT_BY, DEFAULT_FOLD, DEFAULT_JOBS, DEFAULT_PROTOCOL, DEFAULT_SEED,
                             FOLD_PROTOCOLS)
from tagger.inference.kinds import get_kind

from .dataset import ClipSet, Part, partition
from .scoring import evaluate, measure, predict_rows, selective, track_probs


def contamination(card: dict[str, Any], test_tracks: Sequence[str], protocol: str, seed: int) -> dict[str, Any]:
    """Whether the model was trained on any of ``test_tracks``, from the clips its card lists."""
    training = card.get("training") or {}
    trained = training.get("track_ids")
    if trained is None:
        return {"status": "unknown", "overlap": [],
                "message": "the model's card does not list its training clips: contamination unknown"}
    overlap = sorted(set(test_tracks) & set(trained))
    same_split = training.get("split") == protocol == "slice-random" and training.get("split_seed") == seed
    if same_split:
        return {"status": "leaky", "overlap": overlap,
                "message": f"leaky: other slices of {len(overlap)} of {len(test_tracks)} test tracks were trained on"}
    if overlap:
        return {"status": "contaminated", "overlap": overlap,
                "message": f"contaminated: {len(overlap)} of {len(test_tracks)} test clips are in the model's "
                           "training data"}  # fmt: skip
    return {"status": "clean", "overlap": [], "message": ""}


@dataclass(kw_only=True)
class ReportOptions:
    """What ``genretag report`` measures: which models, on which data and protocol."""

    backend: str = ALL_BACKENDS
    model: str | None = None
    data: str | Sequence[str] | None = None
    features: str | None = None
    split: str = DEFAULT_PROTOCOL
    seed: int | None = None
    fold: int | None = None
    k: int | None = None
    all_folds: bool = False
    plots: str | None = None
    jobs: int | None = DEFAULT_JOBS
    by: str = DEFAULT_BY  # "album": also compare album mode on artist-grouped clips (training/album_eval.py)


def report(opts: ReportOptions, progress: Progress | None = None) -> dict[str, Any]:
    """One row per model: measured on the data given, or as its card recorded when none is."""
    from tagger.inference.backends import discover, get_backend

    if opts.backend == ALL_BACKENDS:
        if opts.model:
            raise GenretagError("--model names one model: give its --backend too")
        names = sorted(name for name, info in discover().items() if info.ok)
    else:
        get_backend(opts.backend)
        names = [opts.backend]
    loader = _Loader(opts, progress)
    rows = [_row_or_error(name, opts, loader) for name in names]
    plots = write_plots(rows, opts.plots) if opts.plots else []
    data = opts.features or ("; ".join(map(str, opts.data)) if isinstance(opts.data, (list, tuple)) else opts.data)
    return {"split": opts.split, "data": data, "rows": rows, "plots": plots}


class _Loader:
    """Load each kind of input once per report, whichever backends ask for it."""

    def __init__(self, opts: ReportOptions, progress: Progress | None) -> None:
        self.opts, self.progress, self.sets = opts, progress, {}

    def available(self, kind: str) -> str | None:
        """Why ``kind`` inputs cannot be had, or None."""
        if not (self.opts.data or self.opts.features):
            return "no data given"

        if not get_kind(kind).from_table and not self.opts.data:
            return f"needs audio (--data): a feature table has no {get_kind(kind).description}"
        return None

    def get(self, kind: str, backend: str) -> ClipSet:
        from .train import load_clips

        key = (kind, backend if get_kind(kind).has_front_end else None)  # a front end's inputs are its backend's own
        if key not in self.sets:
            self.sets[key] = load_clips(kind, self.opts.data, self.opts.features, self.opts.jobs, self.progress,
                                        backend=backend)
        return self.sets[key]


def _row(name: str, opts: ReportOptions, loader: _Loader) -> dict[str, Any]:
    from tagger.inference.backends import backend_info
    from tagger.inference.models import open_model, resolve_model_path

    from .train import make_split, upsampled_note

    # Not get_backend: a card's figures need no framework; measuring loads the model, which says what is missing.
    kind = backend_info(name).cls.input_kind  # type: ignore[union-attr]  # report() checked the name
    why = loader.available(kind)
    if opts.by == "album" and not opts.all_folds:
        raise GenretagError("--by album compares out-of-fold predictions: add --all-folds (with --split artist-kfold)")
    if opts.all_folds:
        if why:
            raise GenretagError(f"--all-folds trains a model per fold: give --data or --features ({why})")
        if opts.split not in FOLD_PROTOCOLS:
            raise GenretagError(f"--all-folds goes with --split {' or '.join(FOLD_PROTOCOLS)}")
        if not get_kind(kind).one_row and opts.backend == "all":
            return {"backend": name, "skipped": "--all-folds trains a network per fold: name this backend "
                    "with --backend to run it"}
        return cross_validate(name, loader.get(kind, name), opts)
    try:
        path = resolve_model_path(name, opts.model)
    except NoModelError as exc:  # never trained: nothing to measure, and nothing wrong
        return {"backend": name, "skipped": str(exc)}
    # A model that is there but unusable (truncated, foreign, bad card) is an error, not a skip, even when
    # only its card's figures are shown: _row_or_error makes it an error row under --backend all,
    # else the report's Error line.  open_model checks the file against its card without loading it.
    model = open_model(name, path)
    card = model.card
    if why == "no data given":
        return _card_row(name, path, card)
    if why:
        return {"backend": name, "model": str(path), "skipped": why}
    model.load()
    clips = loader.get(kind, name)
    if (card.get("training") or {}).get("refit"):  # it heard every clip: measure its recipe, never the model
        return cross_validate(name, clips, opts, refit_of=str(path))
    seed, k, fold = _split_params(card, opts)
    split = make_split(opts.split, clips, seed=seed, k=k, fold=fold)
    test = partition(clips, split)["test"]
    metrics = evaluate(model.backend, test, kind, threshold=decision.card_threshold(card), with_curve=True)
    row = _base(name, str(path), model.id, opts.split, split.leaky, clips.source, split.counts()["test"])
    row.update(metrics, source="measured", split_seed=seed, fold=fold if opts.split in FOLD_PROTOCOLS else None,
               history=card.get("history") or {})
    row["contamination"] = contamination(card, test.tracks(), opts.split, seed)
    overlap = set(row["contamination"]["overlap"])
    if row["contamination"]["status"] == "contaminated" and len(overlap) < metrics["n_test"]:
        keep = np.array([t not in overlap for t in test.owners.tolist()])
        clean = Part(test.X[keep], test.y[keep], test.owners[keep], test.pos[keep])
        clean_metrics = evaluate(model.backend, clean, kind)
        row["clean"] = {k: clean_metrics[k] for k in ("n_test", "track_accuracy", "slice_accuracy", "macro_f1")}
    row["notes"] = _notes(row) + [note for note in [upsampled_note(clips)] if note]
    return row


def _row_or_error(name: str, opts: ReportOptions, loader: _Loader) -> dict[str, Any]:
    """A backend's row; with ``--backend all``, a misbehaving one becomes an error row, not the end of the report."""
    try:
        row = _row(name, opts, loader)
        if row.get("precision_coverage"):
            from tagger.decide.broad import measured_for

            row["broad"] = measured_for(name)  # beside the head's: the broad source on GTZAN's genres
        return row
    except (BackendError, ModelError) as exc:
        if opts.backend != ALL_BACKENDS:
            raise
        return {"backend": name, "error": str(exc)}


def _split_params(card: dict[str, Any], opts: ReportOptions) -> tuple[int, int, int]:
    """Seed, k and fold of the split: the options', else the card's when it used this protocol."""
    training = card.get("training") or {}
    same = training.get("split") == opts.split

    def pick(value: int | None, key: str, default: int) -> int:
        if value is not None:
            return value
        return training.get(key) if same and training.get(key) is not None else default

    return (pick(opts.seed, "split_seed", DEFAULT_SEED), pick(opts.k, "k", FOLD_PROTOCOLS.get(opts.split, 10)),
            pick(opts.fold, "fold", DEFAULT_FOLD))


def _base(name: str, model: str, model_id: str | None, protocol: str, leaky: bool, data: str,
          test_counts: dict[str, int]) -> dict[str, Any]:
    return {"backend": name, "model": model, "model_id": model_id, "protocol": protocol, "leaky": leaky,
            "data": data, "test_present": test_counts["found"], "test_listed": test_counts["listed"]}


def _card_row(name: str, path: Path, card: dict[str, Any]) -> dict[str, Any]:
    """A row from the figures the card recorded when the model was trained."""
    m = card.get("metrics") or {}
    row = {"backend": name, "model": str(path), "model_id": card.get("id"), "source": "card",
           "protocol": m.get("protocol"), "leaky": bool(m.get("leaky")), "data": (card.get("training") or {}).get("data"),
           "test_present": m.get("test_present", m.get("n_test")), "test_listed": m.get("test_listed"),
           **{k: m.get(k) for k in ("n_test", "track_accuracy", "slice_accuracy", "macro_f1", "labels", "confusion",
                                   "per_genre", "precision_coverage", "abstain")},
           "history": card.get("history") or {}}  # fmt: skip
    row["notes"] = ["as recorded in the model card at training time (give --data or --features to measure)"]
    row["notes"] += _notes(row)
    return row


def _notes(row: dict[str, Any]) -> list[str]:
    """Plain warnings that go with a row's figures."""
    notes = []
    if row.get("leaky") or row.get("protocol") == "slice-random":
        notes.append("leaky protocol: 3 s slices of one recording are on both sides of the split; "
                     "not a figure for music the model has never heard")
    present, listed = row.get("test_present"), row.get("test_listed")
    if present is not None and listed and present < listed:
        notes.append(f"only {present} of the {listed} test clips the {row['protocol']} split lists were present")
    if row.get("n_test") is not None and row["n_test"] < 30:
        notes.append(f"{row['n_test']} test clips: one clip moves accuracy by "
                     f"{100 / max(row['n_test'], 1):.0f} points")
    status = (row.get("contamination") or {}).get("status")
    if status in ("contaminated", "unknown"):
        notes.append(row["contamination"]["message"])
    if row.get("clean"):
        c = row["clean"]
        notes.append(f"on the {c['n_test']} test clips the model never saw: track accuracy "
                     f"{c['track_accuracy']:.3f}, macro-F1 {c['macro_f1']:.3f}")
    return notes


def cross_validate(name: str, clips: ClipSet, opts: ReportOptions, refit_of: str | None = None) -> dict[str, Any]:
    """Train a fresh model per fold of a fold protocol and report mean ± std over the folds' test parts.

    Every clip is tested exactly once, by a model that never saw it (nor,
    under artist-kfold, its artist).  Another protocol has one test part,
    measured by one fresh model.  ``refit_of`` names the saved model whose
    recipe this measures, when that model heard every clip (train --refit).
    """
    from tagger.inference.backends import get_backend

    from .train import choose_abstain, fit, make_split, pool_valid, seed_everything, upsampled_note

    cls = get_backend(name)
    folded = opts.split in FOLD_PROTOCOLS
    seed, k = DEFAULT_SEED if opts.seed is None else opts.seed, (opts.k or FOLD_PROTOCOLS[opts.split]) if folded else 1
    per_fold, confusion, labels, pooled, selective_folds, out_of_fold = [], None, None, [], [], []
    for fold in range(k):
        seed_everything(seed)
        split, _ = pool_valid(make_split(opts.split, clips, seed=seed, k=k if folded else None, fold=fold), clips)
        parts = partition(clips, split)
        backend = fit(cls, parts, epochs=None, seed=seed)
        chosen = choose_abstain(cls, backend, parts, epochs=None, seed=seed)
        m, conf, correct = measure(backend, parts["test"], cls.input_kind, threshold=chosen["threshold"])
        if opts.by == "album":
            out_of_fold.append(track_probs(parts["test"], predict_rows(backend, parts["test"].X)))
        per_fold.append(m)
        pooled.append((conf, correct))
        selective_folds.append({"fold": fold, "valid": chosen, "test": m.get("abstain"),
                                "table": (m.get("precision_coverage") or {}).get("table")})
        if labels is None:
            labels, confusion = m["labels"], np.zeros((len(m["labels"]),) * 2, dtype=int)
        confusion += _align(m, labels)
    stats = {key: _mean_std([m[key] for m in per_fold]) for key in ("track_accuracy", "macro_f1")}
    n = sum(m["n_test"] for m in per_fold)
    made = f"{k} fresh models" if folded else "a fresh model"
    row = _base(name, f"{made} ({name} defaults)", None, opts.split, split.leaky, clips.source,
                {"found": n, "listed": n})
    row.update(source=f"cross-validated, {k} folds" if folded else "a fresh model on the protocol's train part",
               n_test=n, slice_accuracy=None, labels=labels,
               confusion=confusion.tolist(), folds=[m["track_accuracy"] for m in per_fold],
               track_accuracy=stats["track_accuracy"][0], track_accuracy_std=stats["track_accuracy"][1],
               macro_f1=stats["macro_f1"][0], macro_f1_std=stats["macro_f1"][1], history={})
    if not folded:  # one test part: its per-genre figures as a saved model's would have them
        row.update({key: per_fold[0].get(key) for key in ("per_genre", "slice_accuracy")})
    conf, correct = (np.concatenate(x) for x in zip(*pooled))
    row["precision_coverage"] = selective(conf, correct, None, with_curve=True) | {
        "pooled": f"every fold's test part ({k} models)", "folds": selective_folds,
        "at_valid_thresholds": _fold_thresholds(selective_folds)}
    row["notes"] = [f"mean ± std over {k} folds; the confusion matrix adds up every fold's test part"] if folded else []
    if refit_of:
        row["notes"].insert(0, f"{refit_of} was fit on every clip (train --refit), so its recipe is measured "
                               f"here by {made} that never heard the test clips")
    if opts.by == "album":
        from .album_eval import compare

        row["by_album"] = compare(list(backend.genres_), out_of_fold)
    row["notes"] += [note for note in [upsampled_note(clips)] if note]
    return row


def _fold_thresholds(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """Test precision and coverage at each fold's own valid-chosen threshold, as mean ± std."""
    used = [f["test"] for f in folds if f["valid"]["threshold"] and f["test"] and f["test"]["n_kept"]]
    out: dict[str, Any] = {"folds_with_threshold": len(used), "folds": len(folds)}
    for key in ("precision", "coverage"):
        values = [u[key] for u in used]
        out[key], out[f"{key}_std"] = _mean_std(values) if values else (None, None)
    return out


def _align(metrics: dict[str, Any], labels: list[str]) -> np.ndarray:
    """A fold's confusion matrix on the first fold's label order (folds share all genres)."""
    if metrics["labels"] != labels:
        raise GenretagError("folds disagree on the genres present; too few clips per genre for k folds")
    return np.asarray(metrics["confusion"], dtype=int)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


# -- terminal ---------------------------------------------------------------------------------


def _fmt(value: float | None, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def print_report(result: dict[str, Any]) -> None:
    """The results table, then per model its per-genre figures, confusion matrix and notes."""
    from tagger.views import ui

    rows = [r for r in result["rows"] if not r.get("skipped")]
    ui.out().print(ui.table(
        f"Results ({result['data'] or 'model cards'})",
        ["model", "protocol", "clips", "track acc", "slice acc", "macro-F1", "figure"],
        [(r["backend"], r.get("protocol") or "-",
          _clips(r), _fmt(r.get("track_accuracy"), r.get("track_accuracy_std")), _fmt(r.get("slice_accuracy")),
          _fmt(r.get("macro_f1"), r.get("macro_f1_std")), _verdict(r)) for r in rows],
        justify=["left", "left", "right", "right", "right", "right", "left"],
    ))  # fmt: skip
    for r in result["rows"]:
        if r.get("skipped"):
            ui.err().print(f"{r['backend']}: skipped: {r['skipped']}", highlight=False)
            continue
        if r.get("error"):
            ui.err().print(f"{r['backend']}: error: {r['error']}", markup=False, highlight=False)
            continue
        ui.err().print(f"{r['backend']}: model {r['model']}" + (f" (id {r['model_id']})" if r["model_id"] else ""),
                       highlight=False)
        if r.get("per_genre"):
            ui.out().print(ui.table(
                f"{r['backend']}: per genre ({r['protocol']} test part)", ["genre", "precision", "recall", "F1", "clips"],
                [(g, _fmt(v["precision"]), _fmt(v["recall"]), _fmt(v["f1"]), v["support"])
                 for g, v in r["per_genre"].items()], justify=["left", "right", "right", "right", "right"],
            ))  # fmt: skip
        if r.get("confusion"):
            ui.out().print(ui.table(
                f"{r['backend']}: confusion matrix (rows true, columns predicted; {r['n_test']} clips)",
                ["", *[g[:5] for g in r["labels"]]],
                [(g, *row) for g, row in zip(r["labels"], r["confusion"])],
                justify=["left", *["right"] * len(r["labels"])],
            ))  # fmt: skip
        if r.get("precision_coverage"):
            _print_precision_coverage(ui, r)
        if r.get("broad"):
            b = r["broad"]
            ui.out().print(f"{r['backend']}: broad source alone ({b['backends']} tags; {', '.join(b['genres'])}): "
                           f"coverage {b['coverage']:.2f} ({b['given']} of {b['clips']} GTZAN clips), precision "
                           f"{_fmt(b['precision'])}, thresholds chosen on the other artist folds "
                           f"(scripts/calibrate_broad.py)", markup=False, highlight=False)
        for note in r.get("notes", []):
            ui.err().print(f"[yellow]{r['backend']}:[/] {note}", highlight=False)
        if r.get("by_album"):
            from .album_eval import lines

            for line in lines(r["backend"], r["by_album"]):
                ui.out().print(line, markup=False, highlight=False)
    for path in result.get("plots", []):
        ui.err().print(f"wrote {path}", highlight=False)


def _print_precision_coverage(ui: Any, row: dict[str, Any]) -> None:
    """Precision at each coverage: abstaining below a threshold keeps fewer tracks, more of them right."""
    pc, mark = row["precision_coverage"], row["precision_coverage"].get("threshold")
    where = pc.get("pooled") or f"{row['protocol']} test part"
    ui.out().print(ui.table(
        f"{row['backend']}: precision at each coverage ({where}; a track is kept when its best probability "
        "reaches the threshold)", ["threshold", "coverage", "precision", "kept", ""],
        [(f"{t['threshold']:.4g}", _fmt(t["coverage"]), _fmt(t["precision"]), f"{t['n_kept']} of {t['n']}",
          "<- the model's threshold (chosen on valid)" if mark and t["threshold"] == mark else "")
         for t in pc["table"]], justify=["right", "right", "right", "right", "left"],
    ))  # fmt: skip
    if pc.get("at_valid_thresholds"):
        f = pc["at_valid_thresholds"]
        ui.err().print(f"{row['backend']}: at each fold's threshold chosen on its valid part "
                       f"({f['folds_with_threshold']} of {f['folds']} folds chose one): test precision "
                       f"{_fmt(f['precision'], f['precision_std'])}, coverage {_fmt(f['coverage'], f['coverage_std'])}",
                       highlight=False)  # fmt: skip
    elif not mark and row.get("source") != "card":
        ui.err().print(f"{row['backend']}: its card has no abstain threshold (retrain it to choose one on valid); "
                       "pick a scan --abstain-below from this table", highlight=False)


def _clips(row: dict[str, Any]) -> str:
    n, present, listed = row.get("n_test"), row.get("test_present"), row.get("test_listed")
    if n is None:
        return "-"
    if listed and present is not None and present < listed:
        return f"{n} ({present} of {listed} listed)"
    return str(n)


def _verdict(row: dict[str, Any]) -> str:
    """One word on how far the figure can be trusted."""
    if row.get("error"):
        return "error"
    if row.get("leaky"):
        return "leaky"
    status = (row.get("contamination") or {}).get("status")
    if status in ("contaminated", "unknown"):
        return status
    return "from card" if row.get("source") == "card" else "held-out"


# -- plots --------------------------------------------------------------------------------------


def write_plots(rows: list[dict[str, Any]], folder: str | os.PathLike[str]) -> list[str]:
    """Confusion matrix and (when the card has them) training curves as PNG, per model."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise GenretagError("--plots needs matplotlib: pip install 'genretag[plots]'") from None
    from tagger.common.userfiles import check_output

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)

    def chart(name: str) -> Path:  # savefig opens it for writing: never a FIFO (it would block) or a device
        return check_output(out / name, "chart")

    written = []
    for r in rows:
        if r.get("skipped") or not r.get("confusion"):
            continue
        stem = f"{r['backend']}-{r['protocol']}"
        written.append(_plot_confusion(plt, r, chart(f"{stem}-confusion.png")))
        if r.get("history"):
            written.append(_plot_history(plt, r, chart(f"{r['backend']}-curves.png")))
        if (r.get("precision_coverage") or {}).get("curve"):
            written.append(_plot_precision_coverage(plt, r, chart(f"{stem}-precision-coverage.png")))
    return [str(p) for p in written]


def _plot_confusion(plt: Any, row: dict[str, Any], path: Path) -> Path:
    cm = np.asarray(row["confusion"])
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(row["labels"])), row["labels"], rotation=45, ha="right")
    ax.set_yticks(range(len(row["labels"])), row["labels"])
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = _fmt(row.get("track_accuracy"))
    ax.set_title(f"{row['backend']}, {row['protocol']} test: {row['n_test']} clips, accuracy {acc}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_precision_coverage(plt: Any, row: dict[str, Any], path: Path) -> Path:
    """Precision against coverage over every threshold, with the model's threshold marked."""
    pc = row["precision_coverage"]
    _, coverage, precision = zip(*pc["curve"])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(coverage, precision, drawstyle="steps-post", label="test part")
    at = pc.get("at_threshold")
    if at and at.get("n_kept"):
        ax.plot([at["coverage"]], [at["precision"]], "o", color="tab:red",
                label=f"model's threshold {at['threshold']:.3g} (chosen on valid)")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("coverage (share of tracks given a genre)")
    ax.set_ylabel("precision (share of those that are right)")
    ax.set_title(f"{row['backend']}, {pc.get('pooled') or row['protocol'] + ' test'}: {row['n_test']} clips")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_history(plt: Any, row: dict[str, Any], path: Path) -> Path:
    history = row["history"]
    groups = [[k for k in history if "loss" in k], [k for k in history if "acc" in k]]
    groups = [g for g in groups if g] or [list(history)]
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.8), squeeze=False)
    for ax, keys in zip(axes[0], groups):
        for key in keys:
            ax.plot(range(1, len(history[key]) + 1), history[key], label=key)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.suptitle(f"{row['backend']}: training curves")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
