"""The first scan after a fresh install against the same scan repeated (issue 12, point 5).

```bash
nice -n 10 python -m benchmarks.bench_coldstart --tracks 20 --copies 5 --repeat 3 --baseline-ref main
```

For the working tree (and, with ``--baseline-ref``, a git ref for comparison)
this makes a fresh virtual environment in a temporary folder and installs
genretag into it as a user would (``pip install --no-deps .``: a wheel is
built and copied into the new ``site-packages``, byte-compiled there).  Its
dependencies are not downloaded again: a ``.pth`` file puts this
interpreter's ``site-packages`` after the new one, which is quick and
changes nothing that matters here.  numba keeps its compiled code under
``NUMBA_CACHE_DIR`` when that is set, for librosa's kernels as for
genretag's, so a new empty folder there is exactly what a fresh install
looks like to it.

Then, ``--repeat`` times: the *cold* scan, ``genretag scan LIBRARY --backend
svc --jobs 2`` with a new empty numba cache and a new database, and the
*warm* one, the same command with the cache the cold one left and another
new database: the same files analysed, the same work, the only difference
the compile.  Reported: medians of both, their ratio (the goal: at most
1.5), each pair's ratio, and whether the cold scan announced the compile
on stderr.  The library is ``--tracks`` tracks of benchmarks/library.py,
each present ``--copies`` times as hard links (``--tracks 20 --copies 5``:
100 files).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from . import library, procwatch

ROOT = Path(__file__).resolve().parents[1]
ANNOUNCEMENT = "preparing the analysis (once"


def fresh_install(source: Path, where: Path) -> Path:
    """A new venv under ``where`` with genretag installed from ``source``; its ``genretag`` script."""
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # This interpreter's packages (numpy, librosa, numba, pip, setuptools...) after the new venv's own.
    (Path(purelib) / "reuse-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(source)],
                   check=True, cwd=where)
    return venv / "bin" / "genretag"


def export(ref: str, where: Path) -> Path:
    """The tree of git ``ref`` (e.g. main) in ``where``, to install as the baseline."""
    where.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def scan(genretag: Path, lib: Path, tmp: Path, numba_cache: Path, name: str, files: int, jobs: int) -> dict:
    """One ``genretag scan`` with a new database; its wall and CPU time, and whether it announced a compile."""
    db = tmp / f"{name}.sqlite"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    env.update(NUMBA_CACHE_DIR=str(numba_cache), GENRETAG_HOME=str(tmp / "home"))
    load = os.getloadavg()[0]
    watched = procwatch.run([str(genretag), "scan", str(lib), "--db", str(db), "--backend", "svc", "--jobs",
                             str(jobs), "--json", "--no-progress"], env=env, cwd=str(tmp))  # fmt: skip
    try:
        summary = json.loads(watched.stdout)
    except ValueError:
        raise RuntimeError(f"{name}: scan failed (exit {watched.returncode}):\n{watched.stderr[-3000:]}") from None
    if summary.get("analysed") != files or summary.get("failed"):
        raise RuntimeError(f"{name}: expected {files} files analysed, got {json.dumps(summary)[:1000]}")
    db.unlink()
    return {"wall": round(watched.wall, 2), "cpu": round(watched.cpu, 2), "load": round(load, 2),
            "announced": ANNOUNCEMENT in watched.stderr}


def measure(label: str, source: Path, lib: Path, files: int, repeat: int, jobs: int, tmp: Path) -> dict:
    """Cold and warm scans of one installed tree, ``repeat`` pairs."""
    print(f"{label}: installing {source} into a fresh venv...", flush=True)
    genretag = fresh_install(source, tmp)
    pairs = []
    for i in range(repeat):
        cache = tmp / f"numba-{i}"
        cold = scan(genretag, lib, tmp, cache, f"cold-{i}", files, jobs)
        warm = scan(genretag, lib, tmp, cache, f"warm-{i}", files, jobs)
        pairs.append({"cold": cold, "warm": warm, "ratio": round(cold["wall"] / warm["wall"], 2)})
        print(f"  {label} pair {i + 1}: cold {cold['wall']:.2f} s (CPU {cold['cpu']:.1f} s, load {cold['load']}, "
              f"announced: {cold['announced']}), warm {warm['wall']:.2f} s (CPU {warm['cpu']:.1f} s, load "
              f"{warm['load']}, announced: {warm['announced']}), ratio {pairs[-1]['ratio']:.2f}", flush=True)
        shutil.rmtree(cache, ignore_errors=True)
    cold = statistics.median(p["cold"]["wall"] for p in pairs)
    warm = statistics.median(p["warm"]["wall"] for p in pairs)
    return {"label": label, "files": files, "pairs": pairs, "cold_median": cold, "warm_median": warm,
            "ratio_of_medians": round(cold / warm, 2),
            "cold_cpu_median": statistics.median(p["cold"]["cpu"] for p in pairs),
            "warm_cpu_median": statistics.median(p["warm"]["cpu"] for p in pairs)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=20)
    ap.add_argument("--copies", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--baseline-ref", help="also measure this git ref (e.g. main), installed the same way")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    infos = library.build(args.out / "library", args.tracks)
    name = f"coldstart-{args.tracks}x{args.copies}"
    links = library.view(args.out / "library", infos, name, args.copies)
    lib = args.out / name
    results = []
    with tempfile.TemporaryDirectory(prefix="genretag-coldstart-") as tmp:
        trees = [("this tree", ROOT)]
        if args.baseline_ref:
            trees.append((args.baseline_ref, export(args.baseline_ref, Path(tmp) / "baseline-src")))
        for i, (label, source) in enumerate(trees):
            where = Path(tmp) / f"install-{i}"
            where.mkdir()
            results.append(measure(label, source, lib, len(links), args.repeat, args.jobs, where))
    print(f"\n{len(links)} files, --jobs {args.jobs}, {args.repeat} pairs; medians of wall time:")
    for r in results:
        print(f"  {r['label']:>12}: first scan after install {r['cold_median']:.2f} s, repeated {r['warm_median']:.2f} s,"
              f" ratio {r['ratio_of_medians']:.2f} (pairs: {', '.join(str(p['ratio']) for p in r['pairs'])});"
              f" CPU {r['cold_cpu_median']:.1f} s vs {r['warm_cpu_median']:.1f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results, "load_end": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
