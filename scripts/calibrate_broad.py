"""Calibrate the broad source (tagger/decide/broad.py) on the GTZAN clips and write it into tagger/decide/broad_genres.toml.

Development time, not shipped.  Each embedding backend's front end (its
shipped default) gives tag outputs for every GTZAN clip present (cached in
benchmarks/out/ears/ by scripts/compare_ears.py's ``outputs``).  For every set
of backends a track's tags can come from, and every genre the file maps:

* one of GTZAN's ten: a logistic (Platt) fit of the clip's genre on the
  logit of the raw score; its threshold is the lowest whose out-of-fold
  precision (5 artist folds, training/splits.py) has a one-sided 90% Wilson
  lower bound >= 0.80 (tagger/run/learn.py threshold_for, as ``learn`` chooses);
* any other: no labelled clip, but GTZAN's clips are music of the ten, so
  the score is the share of them (those of genres the file calls ``near``
  left out) scoring lower, and the threshold lets it fire on at most
  ``--false-alarms`` of them, never below a raw score of ``--raw-floor``.

It prints per genre what it found, the broad source's precision and
coverage on the GTZAN genres held out by fold, and what the tagged files in
../shared/library-samples get::

    OMP_NUM_THREADS=1 python scripts/calibrate_broad.py --data ../shared/gtzan/audio ../shared/gtzan/audio-16k \\
        --samples ../shared/library-samples
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from compare_ears import clips, outputs  # noqa: E402

from tagger.decide import broad, vocabulary
from tagger.run import learn  # noqa: E402

DATA = Path(broad.__file__).parent / broad.DATA_FILE
MARK = "# --- calibration: written by scripts/calibrate_broad.py"
LEVELS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 1.0)
PRECISION = 0.80


def front_ends() -> dict[str, tuple[str, object]]:
    """Backend -> (cache name, loader) of each embedding backend's shipped front end."""
    from plugins import efficientat, jamendo
    from plugins.efficientat_net import DEFAULT_WINDOWS
    from plugins.jamendo_net import JamendoMusicnn
    from plugins.musicnn import MusicnnBackend
    from plugins.musicnn_net import DEFAULT_PATCHES

    return {"musicnn": (f"msd{DEFAULT_PATCHES}", MusicnnBackend.front_end),
            "efficientat": (f"mn04w{DEFAULT_WINDOWS}", efficientat.load_front_end),
            "jamendo": (f"jmusicnn{JamendoMusicnn.DEFAULT_PATCHES}", jamendo.load_front_end)}


def artist_folds(ids: list[str], labels: list[str], k: int = 5) -> np.ndarray:
    from training.splits import get_split

    fold = np.zeros(len(ids), dtype=int)
    index = {t: i for i, t in enumerate(ids)}
    for f in range(k):
        for t in get_split("artist-kfold", ids, labels, seed=0, k=k, fold=f).test:
            fold[index[t]] = f
    return fold


def logit(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 1e-6, 1 - 1e-6)
    return np.log(x / (1 - x))[:, None]


def platt(raw: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    m = LogisticRegression(C=1.0).fit(logit(raw), truth)
    return float(m.intercept_[0]), float(m.coef_[0, 0])


def gtzan_folds(raw: np.ndarray, truth: np.ndarray, folds: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    """(the calibration table, out-of-fold scores, held-out decisions) of one of GTZAN's ten."""
    oof = np.zeros(len(raw))
    for f in np.unique(folds):
        a, b = platt(raw[folds != f], truth[folds != f])
        oof[folds == f] = 1 / (1 + np.exp(-(a + b * logit(raw[folds == f])[:, 0])))
    chosen = learn.threshold_for(oof, truth, PRECISION)
    held = learn.held_out(oof, truth, folds, PRECISION)
    heldout = np.zeros(len(raw), dtype=bool)
    for f in np.unique(folds):
        t = learn.threshold_for(oof[folds != f], truth[folds != f], PRECISION)["threshold"]
        if t is not None:
            heldout[folds == f] = np.round(oof[folds == f], 4) >= t
    n = len(raw)
    if chosen["threshold"] is None:
        how = (f"gtzan-folds on {n} clips ({int(truth.sum())} of the genre), 5 artist folds: no threshold's "
               f"out-of-fold precision reaches {PRECISION:.2f} at its 90% lower bound (best {chosen['precision'] or 0:.2f} "
               f"on {chosen['kept']} clips, bound {learn.bound_text(chosen['precision_low'] or 0)}); never given")
    else:
        hp = held["heldout_precision"]
        how = (f"gtzan-folds on {n} clips ({int(truth.sum())} of the genre), 5 artist folds: out-of-fold precision "
               f"{chosen['precision']:.2f} on {chosen['kept']} clips (90% lower bound "
               f"{learn.bound_text(chosen['precision_low'])}), recall {chosen['recall']:.2f}; thresholds chosen on "
               f"the other folds: precision {'-' if hp is None else f'{hp:.2f}'} on {held['heldout_kept']} clips")
    table = {"kind": "gtzan-folds", "platt": list(platt(raw, truth)), "threshold": chosen["threshold"], "how": how}
    return table, oof, heldout


def false_alarm(raw: np.ndarray, negative: np.ndarray, share: float, floor: float) -> dict:
    """The calibration table of a genre GTZAN does not have: fires on at most ``share`` of the negative clips."""
    neg = raw[negative]
    knots = [float(q) for q in np.quantile(neg, LEVELS)]
    limit = 1 - share
    i = LEVELS.index(limit) if limit in LEVELS else None
    if i is None:
        raise SystemExit(f"--false-alarms {share}: choose one of {[round(1 - x, 2) for x in LEVELS[1:-1]]}")
    allowed = int(share * len(neg))  # the quantile interpolates: never let more than this many clips through
    above = float(np.sort(neg)[-(allowed + 1)]) + 1e-6 if allowed < len(neg) else 0.0
    floored = max(knots[i], above) < floor
    knots[i] = max(knots[i], above, floor)
    for j in range(1, len(knots)):  # ascending, strictly, for interpolation
        knots[j] = max(knots[j], knots[j - 1] + 1e-6)
    fires = int((neg >= knots[i]).sum())
    how = (f"false-alarm: fires on {fires} of {len(neg)} GTZAN clips of other genres "
           f"({fires / len(neg):.1%}; at most {share:.0%} allowed) at raw score {knots[i]:.3g}"
           + (f" (the raw floor {floor}: the {limit:.0%} quantile is lower)" if floored else ""))
    return {"kind": "false-alarm", "knots": [round(k, 6) for k in knots], "levels": list(LEVELS),
            "threshold": limit, "how": how}


def toml_value(v: object) -> str:
    if v is None:
        raise ValueError
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(round(v, 6))
    return str(v)


def write(tables: dict[str, dict[str, dict]], measured: dict[str, dict], header: str) -> None:
    lines = [header.rstrip("\n"), MARK + "; everything below is replaced ------", ""]
    for parts, figures in measured.items():  # what `genretag report` shows beside the head's figures
        lines.append(f'[measured."{parts}"]')
        lines += [f"{k} = {toml_value(v)}" for k, v in figures.items()]
        lines.append("")
    for parts, genres in tables.items():
        for key, table in genres.items():
            lines.append(f'[calibration."{parts}".{key}]')
            lines += [f"{k} = {toml_value(v)}" for k, v in table.items() if v is not None]
            lines.append("")
    DATA.write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", required=True, help="GTZAN genre folders (audio, audio-16k)")
    parser.add_argument("--samples", help="../shared/library-samples: print what its tagged files get")
    parser.add_argument("--false-alarms", type=float, default=0.02, help="share of GTZAN clips a non-GTZAN genre may fire on")
    parser.add_argument("--raw-floor", type=float, default=0.3, help="lowest raw score a non-GTZAN genre fires at")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write the data file")
    args = parser.parse_args()

    text = DATA.read_text(encoding="utf-8")
    header = text.split(MARK)[0]
    mapping = broad.parse(header, str(DATA))
    items = clips(args.data)
    ids, labels = [t for t, _, _ in items], [g for _, g, _ in items]
    keys = np.array([vocabulary.canonical(g).key for g in labels])
    folds = artist_folds(ids, labels)
    names, tags = {}, {}
    for backend, (name, load) in front_ends().items():
        fe = load()
        names[backend] = fe.tag_names
        tags[backend] = outputs(name, load, items)["tags"]
    gtzan = set(keys)
    tables: dict[str, dict[str, dict]] = {}
    measured: dict[str, dict] = {}
    print(f"{len(ids)} GTZAN clips; precision target {PRECISION} at the 90% Wilson lower bound; "
          f"false alarms <= {args.false_alarms:.0%}, raw floor {args.raw_floor}")
    for size in range(1, len(tags) + 1):
        for parts in itertools.combinations(sorted(tags), size):
            key_parts = "+".join(parts)
            raws = []
            for i in range(len(ids)):
                track = {f"{b}:{t}": float(p) for b in parts for t, p in zip(names[b], tags[b][i])}
                raws.append(mapping.raw(track, "fusion")[1])
            tables[key_parts] = {}
            decided_oof = np.full(len(ids), None, dtype=object)
            held_scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            print(f"\n== {key_parts}")
            for genre in mapping.genres:
                if not any(genre in r for r in raws):
                    continue
                raw = np.array([r.get(genre, 0.0) for r in raws])
                if genre in gtzan:
                    table, oof, heldout = gtzan_folds(raw, keys == genre, folds)
                    held_scores[genre] = (oof, heldout)
                else:
                    near = {vocabulary.canonical(n).key for n in mapping.near.get(genre, ())}
                    above = {g.key for g in vocabulary.parents(genre)}
                    negative = ~np.isin(keys, list(near | above))
                    table = false_alarm(raw, negative, args.false_alarms, args.raw_floor)
                    cut = table["knots"][list(LEVELS).index(table["threshold"])]
                    hits = {g: int(((raw >= cut) & (keys == g)).sum()) for g in sorted(gtzan)}
                    table["how"] += "; on all GTZAN clips by genre: " + (
                        ", ".join(f"{g} {n}" for g, n in hits.items() if n) or "none")
                tables[key_parts][genre] = table
                print(f"  {genre:<18} {table['how']}")
            # the broad source alone on GTZAN's genres, thresholds chosen on the other folds
            for i in range(len(ids)):
                given = [(g, s[0][i]) for g, s in held_scores.items() if s[1][i]]
                if given:
                    decided_oof[i] = max(given, key=lambda gs: gs[1])[0]
            kept = np.array([d is not None for d in decided_oof])
            right = np.array([d == k for d, k in zip(decided_oof, keys)])
            if kept.any():
                print(f"  broad alone on GTZAN's genres, held out by artist fold: coverage {kept.mean():.2f} "
                      f"({kept.sum()} of {len(ids)}), precision {right[kept].mean():.2f}")
            measured[key_parts] = {"clips": len(ids), "given": int(kept.sum()), "right": int(right[kept].sum()),
                                   "genres": sorted(g for g in held_scores if tables[key_parts][g]["threshold"] is not None)}
    if args.dry_run:
        return
    write(tables, measured, header)
    print(f"\nwrote {DATA}")
    if args.samples:
        samples(Path(args.samples), broad.load(DATA), names)


def samples(root: Path, data: broad.Broad, names: dict) -> None:
    """What the broad source gives the tagged files of library-samples, tags from every backend."""
    from tagger.media.audio import decode, resample
    from tagger.media.tags import describe

    loaded = {b: load() for b, (_, load) in front_ends().items()}
    print(f"\nlibrary samples ({root}), broad source alone, tags of {'+'.join(sorted(loaded))}:")
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in (".mp3", ".flac", ".ogg", ".m4a")):
        try:
            y = decode(path, sr=32000, excerpt=30.0).samples
        except Exception as exc:  # noqa: BLE001 - a research script: report and go on
            print(f"  {path.name}: cannot decode ({exc})")
            continue
        track = {}
        for b, fe in loaded.items():
            x = y if fe.sample_rate == 32000 else resample(y, 32000, fe.sample_rate)
            if len(x) < fe.sample_rate * 3:
                x = np.tile(x, int(np.ceil(fe.sample_rate * 3 / max(len(x), 1))))
            _, t = fe(x)
            track |= {f"{b}:{n}": float(p) for n, p in zip(fe.tag_names, t)}
        d = broad.consult(None, "head not asked", track, "fusion", data)
        file_genre = "; ".join(describe(path).genres) or "-"
        said = d.genre and ", ".join(f"{g} {s:.2f}" for g, s in d.broad) or d.abstained
        print(f"  {path.name[:40]:<40} tag {file_genre:<14} -> {said}")


if __name__ == "__main__":
    main()
