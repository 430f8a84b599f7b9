"""``genretag train``: fit a backend on GTZAN under a split protocol and save it with its card.

The order keeps the figures honest: one input per clip, split by track, and
only then slices and augmented copies (of training clips only). The valid part
goes to ``fit`` and chooses the abstain threshold (tagger/decide/abstain.py;
for a backend that refits on train+valid, from the recipe fitted without that
refit); the test part is scored once and written into the card with every
training clip's id. For users: docs/training.md "What train does".
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tagger.common.errors import BackendError, GenretagError
from tagger.common.progress import Progress
from tagger.defaults import (DEFAULT_AUGMENT, DEFAULT_FOLD, DEFAULT_JOBS, DEFAULT_PROTOCOL, DEFAULT_REFIT, DEFAULT_SEED,
                             FOLD_PROTOCOLS)
from tagger.inference.outputs import backend_name, check_genres, checked_proba, plugin_call

from .dataset import Augment, ClipSet, Part, augmented, from_audio, from_table, partition, with_copies
from .scoring import evaluate
from .splits import Split, get_split

#: Training rows a fitted backend predicts as a check of its output before it is scored or saved.
PROBE_ROWS = 8
#: Receives one dict of metrics per epoch (or tuning step) from the backend's ``fit``.
OnEpoch = Callable[[dict[str, Any]], None]


@dataclass(kw_only=True)
class TrainOptions:
    """Everything ``genretag train`` takes; ``augment`` is the number of augmented copies (0: off)."""

    backend: str
    data: str | None = None
    features: str | None = None
    split: str = DEFAULT_PROTOCOL
    fold: int = DEFAULT_FOLD
    k: int | None = None  # folds of a fold protocol [default: FOLD_PROTOCOLS' k]
    epochs: int | None = None
    seed: int = DEFAULT_SEED
    augment: int = DEFAULT_AUGMENT
    out: str | None = None
    jobs: int | None = DEFAULT_JOBS
    refit: bool = DEFAULT_REFIT  # after the protocol's measure, fit the saved model on every clip (refit_on_all)


def load_clips(kind: str, data: str | Sequence[str] | None, features: str | None, jobs: int | None = None,
               progress: Progress | None = None, backend: str | None = None) -> ClipSet:
    """One input per clip, from the feature table or extracted (and cached) from audio.

    ``backend`` names whose front end makes embeddings (the embedding kind).
    """
    from tagger.inference.kinds import get_kind

    if data and features:
        raise GenretagError("give --data or --features, not both")
    if features:
        if not get_kind(kind).from_table:
            raise GenretagError(f"a feature table holds no audio; this backend learns from {kind}: give --data")
        return from_table(features)
    if data:
        return from_audio(data, kind, backend=backend, jobs=jobs, progress=progress)
    raise GenretagError("give --data (a GTZAN audio folder) or --features (features_30_sec.csv)")


def make_split(name: str, clips: ClipSet, *, seed: int, k: int | None, fold: int) -> Split:
    """The protocol's split of ``clips``; a bad k or fold is the user's error, said in one line."""
    k = k or FOLD_PROTOCOLS.get(name, 10)
    try:
        return get_split(name, clips.track_ids, clips.labels, seed=seed, k=k, fold=fold)
    except ValueError as exc:
        raise GenretagError(str(exc)) from None


def seed_everything(seed: int) -> None:
    """Seed Python and NumPy; a backend seeds its own framework from ``fit(seed=...)``.

    The Keras backends call ``keras.utils.set_random_seed`` and pin
    TensorFlow's op choice inside ``fit``, so this module never imports
    TensorFlow and the svc path stays free of it.
    """
    random.seed(seed)
    np.random.seed(seed)


def fit(cls: type, parts: dict[str, Part], *, epochs: int | None, seed: int, on_epoch: OnEpoch | None = None,
        params: dict[str, Any] | None = None) -> Any:
    """A fresh backend with default parameters (or ``params``), fitted on train with valid for tuning/stopping."""
    train, valid = parts["train"], parts["valid"]
    has_valid = len(valid) > 0
    with plugin_call(cls, "fit"):
        backend = cls(**(params or {}))
        backend.fit(train.X, train.y.tolist(), X_valid=valid.X if has_valid else None,
                    y_valid=valid.y.tolist() if has_valid else None, epochs=epochs, seed=seed, callback=on_epoch)
    check_fitted(backend, train)
    return backend


def check_fitted(backend: Any, train: Part) -> None:
    """Refuse a fitted backend whose genres_ or predictions are unusable, before anything is scored or saved.

    genres_ must name at least one of the genres it was trained on (a
    backend may know more, never none: its columns would mean nothing here);
    a few training rows go through the same checks as every prediction
    (tagger.inference.outputs), so a model is checked even when the test part is empty.
    """
    genres = check_genres(backend)
    labels = sorted(set(train.y.tolist()))
    if not set(genres) & set(labels):
        raise BackendError(f"backend {backend_name(backend)!r}: genres_ ({', '.join(map(repr, genres[:5]))}) names "
                           f"none of the training labels ({', '.join(map(repr, labels[:5]))})")
    checked_proba(backend, train.X[:PROBE_ROWS])


#: Below this many valid clips, a cheap backend's abstain threshold comes from out-of-fold predictions instead.
SMALL_VALID = 100
#: Artist-grouped folds of train+valid for those out-of-fold predictions.
INNER_FOLDS = 5


def choose_abstain(cls: type, backend: Any, parts: dict[str, Part], *, epochs: int | None, seed: int) -> dict[str, Any]:
    """The card's ``abstain`` section, from validation data only, never test (tagger.decide.abstain gives the rule).

    A small valid part (under SMALL_VALID tracks) also chose the hyperparameters
    and swings too much (docs/scan.md), so for a backend cheap to refit the
    threshold is then chosen on out-of-fold predictions of every train+valid track
    (INNER_FOLDS artist-grouped folds, same recipe); otherwise valid judges.
    """
    from tagger.decide.abstain import choose_threshold
    from tagger.inference.kinds import get_kind

    from .scoring import confidences, predict_rows

    valid = parts["valid"]
    pooled = len(parts["train"].tracks()) + len(valid.tracks())
    if 0 < len(valid.tracks()) < SMALL_VALID and get_kind(cls.input_kind).one_row and pooled >= 4 * INNER_FOLDS:
        conf, correct = _out_of_fold(cls, parts, epochs=epochs, seed=seed)
        return choose_threshold(conf, correct, chosen_on=f"out-of-fold predictions of the {pooled} train+valid "
                                f"tracks ({INNER_FOLDS} artist-grouped folds, same recipe)")
    if not len(valid):
        return choose_threshold([], [], chosen_on="valid part (empty: no threshold)")
    judge, chosen_on = backend, "valid part"
    if backend.get_params().get("refit_on_valid"):  # an __init__ parameter, so a copy can turn it off
        seed_everything(seed)
        judge = fit(cls, parts, epochs=epochs, seed=seed, params={"refit_on_valid": False})
        chosen_on = "valid part, predicted by the same recipe without its refit on train+valid"
    conf, correct = confidences(judge.genres_, valid, predict_rows(judge, valid.X))
    return choose_threshold(conf, correct, chosen_on=chosen_on)


def pooled(*parts: Part) -> Part:
    """The rows of several parts as one."""
    return Part(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("X", "y", "owners", "pos")))


def refit_on_all(cls: type, backend: Any, parts: dict[str, Part], *, epochs: int | None,
                 seed: int) -> tuple[Any, dict[str, Any], dict[str, Any] | None]:
    """The model to ship: fitted on every clip (train, valid and test) once the protocol has measured the recipe.

    It takes the choices the protocol's model made on its valid part
    (``best_params_``: C, the SVC voters, the epochs), so nothing is tuned
    on the test clips.  A one-row backend's abstain threshold is chosen
    afresh on out-of-fold predictions of every clip (artist-grouped folds,
    same recipe, tuned inside each fold); a slices backend keeps the
    protocol's.  Returns (model, refit section of the card, abstain or None).
    """
    from tagger.decide.abstain import choose_threshold
    from tagger.inference.kinds import get_kind

    chosen = getattr(backend, "best_params_", None) or {}
    params = {**backend.get_params(), **chosen}
    every = pooled(parts["train"], parts["valid"], parts["test"])
    none = Part(*(getattr(every, f)[:0] for f in ("X", "y", "owners", "pos")))
    seed_everything(seed)
    final = fit(cls, {"train": every, "valid": none}, epochs=None if "epochs" in chosen else epochs, seed=seed,
                params=params)
    n = len(every.tracks())
    abstain = None
    if get_kind(cls.input_kind).one_row and n >= 4 * INNER_FOLDS:
        conf, correct = _out_of_fold(cls, {"train": every, "valid": none}, epochs=epochs, seed=seed, params=params)
        abstain = choose_threshold(conf, correct, chosen_on=f"out-of-fold predictions of all {n} clips "
                                   f"({INNER_FOLDS} artist-grouped folds, the saved model's parameters)")
    section = {"clips": n, "rows": len(every), "params": dict(chosen),  # make_card makes it plain JSON
               "note": "the saved model was fit on every clip of train, valid and test after the protocol "
                       "measured the same recipe; the metrics are that measure's, not this model's"}
    return final, section, abstain


def _out_of_fold(cls: type, parts: dict[str, Part], *, epochs: int | None, seed: int,
                 params: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Confidence and correctness of every train+valid track, each predicted by a model that never saw its artist.

    Each fold's model is tuned on the next fold, or with ``params`` fitted
    as given on all the other folds (one fit per fold).
    """
    from .scoring import confidences, predict_rows
    from .splits import artist_group, group_folds

    pool = pooled(parts["train"], parts["valid"])
    groups = [artist_group(t, g) for t, g in zip(pool.owners.tolist(), pool.y.tolist())]
    fold = group_folds(pool.y.tolist(), groups, INNER_FOLDS, np.random.default_rng(seed))
    conf, correct = [], []
    for f in range(INNER_FOLDS):
        test = fold == f
        valid = fold == (f + 1) % INNER_FOLDS if params is None else np.zeros_like(test)
        sub = {name: Part(pool.X[m], pool.y[m], pool.owners[m], pool.pos[m])
               for name, m in (("train", ~(test | valid)), ("valid", valid), ("test", test))}
        seed_everything(seed)
        judge = fit(cls, sub, epochs=epochs, seed=seed, params=params)
        c, ok = confidences(judge.genres_, sub["test"], predict_rows(judge, sub["test"].X))
        conf.append(c)
        correct.append(ok)
    return np.concatenate(conf), np.concatenate(correct)


def _check_parts(split: Split, clips: ClipSet) -> None:
    counts = split.counts()
    if not split.train:
        hint = (" (clip ids must be GTZAN's, like blues.00029; for other names use --split kfold)"
                if split.name in ("fault-filtered", "stratified") else "")
        raise GenretagError(f"no clip of the {split.name} train part ({counts['train']['listed']} listed) "
                            f"is in {clips.source}{hint}")
    if len(set(clips.labels[i] for i, t in enumerate(clips.track_ids) if t in set(split.train))) < 2:
        raise GenretagError(f"the {split.name} train part found in {clips.source} has fewer than two genres")


def pool_valid(split: Split, clips: ClipSet) -> tuple[Split, str | None]:
    """Re-cut valid from train+valid when the train part lacks genres the valid part has.

    With a partial GTZAN copy, the fault-filtered train part can miss whole
    genres (here: no blues or classical clip of its train part is present),
    and a model cannot learn a genre it never sees.  The pooled clips are
    re-split by track (stratified, 80/20, seeded), so test stays untouched
    and honest; only the early-stopping signal loses artist separation.
    """
    label_of = clips.label_of()
    missing = sorted({label_of[t] for t in split.valid} - {label_of[t] for t in split.train})
    if not missing or split.slice_level or len(split.train) + len(split.valid) < 5:
        return split, None
    pooled = split.train + split.valid
    inner = get_split("kfold", pooled, [label_of[t] for t in pooled], seed=split.seed, k=5, fold=0)
    why = (f"valid re-cut as a stratified 20% of the {split.name} train+valid clips: its train part has no "
           f"{', '.join(missing)} clip here")
    return replace(split, train=sorted(inner.train + inner.valid), valid=inner.test), why


def train(opts: TrainOptions, *, progress: Progress | None = None, on_epoch: OnEpoch | None = None) -> dict[str, Any]:
    """Fit ``opts.backend``, score its test part, save model and card; return a summary."""
    from tagger.inference.backends import get_backend
    from tagger.inference.models import check_out, make_card, save_model

    cls = get_backend(opts.backend)
    if opts.out:  # before any work: never replace a device, FIFO, the feature table, a clip or another's card
        check_out(opts.out, inputs=[opts.features], within=[opts.data] if isinstance(opts.data, str) else opts.data or ())
    kind = cls.input_kind
    clips = load_clips(kind, opts.data, opts.features, opts.jobs, progress, backend=opts.backend)
    split = make_split(opts.split, clips, seed=opts.seed, k=opts.k, fold=opts.fold)
    counts = split.counts()  # the protocol's own parts, before any re-cut of valid
    split, valid_note = pool_valid(split, clips)
    _check_parts(split, clips)
    parts = partition(clips, split)
    spec = Augment(copies=opts.augment) if opts.augment else None
    original_rows = len(parts["train"])
    if spec:
        copies = augmented(clips, parts["train"].tracks(), spec, opts.seed, jobs=opts.jobs, progress=progress)
        parts["train"] = with_copies(parts["train"], copies, kind)
    seed_everything(opts.seed)
    backend = fit(cls, parts, epochs=opts.epochs, seed=opts.seed, on_epoch=on_epoch)
    abstain = choose_abstain(cls, backend, parts, epochs=opts.epochs, seed=opts.seed)
    metrics = evaluate(backend, parts["test"], kind, threshold=abstain["threshold"])
    history = backend.history()
    folds = split.name in FOLD_PROTOCOLS
    seen = sorted(set(parts["train"].tracks()) | set(parts["valid"].tracks()))
    refit = None
    if opts.refit and len(parts["test"]):
        backend, refit, final_abstain = refit_on_all(cls, backend, parts, epochs=opts.epochs, seed=opts.seed)
        if final_abstain is not None:
            refit["protocol_abstain"], abstain = abstain, final_abstain
        seen = sorted(set(seen) | set(parts["test"].tracks()))
    card = make_card(
        backend,
        training={
            "data": opts.features or clips.source, "split": split.name, "split_seed": opts.seed,
            "k": (opts.k or FOLD_PROTOCOLS[split.name]) if folds else None, "fold": opts.fold if folds else None,
            "upsampled": upsampled_note(clips),
            "seed": opts.seed, "epochs": opts.epochs, "epochs_run": len(next(iter(history.values()), [])) or None,
            "augment": None if spec is None else vars(spec) | {"rows_added": len(parts["train"]) - original_rows},
            "n_train": len(parts["train"].tracks()), "n_valid": len(parts["valid"].tracks()),
            "n_train_rows": len(parts["train"]), "n_valid_rows": len(parts["valid"]),
            "counts": counts, "valid_part": valid_note or "the protocol's", "skipped": clips.skipped,
            "refit": refit, "track_ids": seen,
        },
        metrics={"protocol": split.name, "leaky": split.leaky, "test_present": counts["test"]["found"],
                 "test_listed": counts["test"]["listed"], **metrics},
        history=history,
        abstain=abstain,
    )  # fmt: skip
    path = save_model(backend, card, opts.out)
    return {"backend": opts.backend, "model": str(path), "current": opts.out is None, "data": card["training"]["data"],
            "protocol": split.name, "leaky": split.leaky, "counts": counts, "cached": clips.cached,
            "skipped": clips.skipped, "training": card["training"], "metrics": card["metrics"],
            "abstain": card["abstain"]}  # fmt: skip


def upsampled_note(clips: ClipSet) -> str | None:
    """Say which clips hold less bandwidth than the analysis rate (e.g. GTZAN clips resampled to 16 kHz).

    Features and log-mel slices at 22050 Hz see an empty band above 8 kHz in
    such clips, so figures that include them must say so.
    """
    from tagger.analysis.features import preprocessing
    from tagger.inference.kinds import get_kind

    if get_kind(clips.kind).has_front_end:
        return None  # the front end runs at its own rate; the backend's card says which
    low = clips.upsampled(preprocessing()["sr"])
    if not low:
        return None
    return (f"{len(low)} of {len(clips.track_ids)} clips were stored below {preprocessing()['sr']} Hz "
            f"and were upsampled: nothing above {min(clips.rates[t] for t in low) // 2} Hz in them")


def print_epoch(info: dict[str, Any]) -> None:
    """One line per epoch or tuning step, whatever metrics the backend reports."""
    from tagger.views import ui

    parts = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()]
    ui.err().print("  ".join(parts), highlight=False)


def print_result(result: dict[str, Any]) -> None:
    """What was trained on, how it scored on the test part, and where the model went."""
    from tagger.views import ui

    m = result["metrics"]
    protocol = result["protocol"] + (" [leaky: slices of one track on both sides]" if result["leaky"] else "")
    lines = [
        ("backend", result["backend"]), ("data", result["data"]), ("protocol", protocol),
        *_part_lines(result),
        ("test track accuracy", _num(m.get("track_accuracy"))), ("test slice accuracy", _num(m.get("slice_accuracy"))),
        ("test macro-F1", _num(m.get("macro_f1"))), ("model", result["model"]),
        ("current model", "yes" if result["current"] else f"no (--out: use it with --model {result['model']})"),
    ]  # fmt: skip
    lines.insert(-2, ("abstain threshold", _abstain_line(result["abstain"], m.get("abstain"))))
    refit = result["training"].get("refit")
    if refit:
        chosen = ", ".join(f"{k}={v}" for k, v in refit["params"].items()) or "its defaults"
        lines.insert(-2, ("saved model", f"refit on all {refit['clips']} clips (train+valid+test) with {chosen}; "
                                         "the test figures above measure the same recipe fit without them"))
    if result["training"]["valid_part"] != "the protocol's":
        lines.append(("valid part", result["training"]["valid_part"]))
    if result["cached"]:
        lines.insert(2, ("clips from cache", result["cached"]))
    ui.out().print(ui.table(f"Trained {result['backend']}", ["", ""], lines))
    for path, reason in result["skipped"]:
        ui.err().print(f"[yellow]skipped[/] {path}: {reason}", highlight=False)
    if result["training"].get("upsampled"):
        ui.err().print(f"[yellow]note:[/] {result['training']['upsampled']}", highlight=False)
    if m.get("n_test", 0) < 30:
        ui.err().print(f"[yellow]note:[/] the test part has {m.get('n_test', 0)} clips here, "
                             "too few for a reliable figure", highlight=False)


def _abstain_line(section: dict[str, Any], test: dict[str, Any] | None) -> str:
    """The threshold chosen on valid, what it did there and what it does on test."""
    if not section.get("threshold"):
        return f"none: {section.get('why_none', 'everything kept on valid')}"
    line = (f"{section['threshold']:.4g}, chosen on valid: precision {section['valid_precision']:.3f} "
            f"at coverage {section['valid_coverage']:.3f} ({section['valid_kept']} of {section['n_valid']} clips)")
    if test and test.get("n"):
        line += (f"; on test: precision {_num(test['precision'])} at coverage {test['coverage']:.3f} "
                 f"({test['n_kept']} of {test['n']} clips)")
    return line


def _part_lines(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Clips per part as found against listed; for slice-random, the slices dealt out instead."""
    c, t, m = result["counts"], result["training"], result["metrics"]
    if result["leaky"]:
        return [("train rows", f"{t['n_train_rows']} from {t['n_train']} clips"),
                ("valid rows", f"{t['n_valid_rows']} from {t['n_valid']} clips"),
                ("test rows", f"{m.get('n_rows', 0)} from {m.get('n_test', 0)} clips")]
    return [(f"{part} clips", f"{c[part]['found']} of {c[part]['listed']} listed") for part in ("train", "valid", "test")]


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"

