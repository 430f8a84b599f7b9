"""The first scan after installing says why it pauses, once (issue 12, point 5).

tagger/analysis/dsp.py's few compiled kernels are built by numba the first time and
loaded from its cache afterwards; the analysis no longer imports librosa,
whose own numba kernels took most of the old 23 s.  A fresh NUMBA_CACHE_DIR
is what a fresh install looks like to numba.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from audiofiles import make_audio
from tagger.analysis import dsp

GENRETAG = str(Path(sys.executable).with_name("genretag"))


def _scan(folder: Path, cache_dir: Path, db: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    return subprocess.run([GENRETAG, "scan", str(folder), "--db", str(db), "--json", "--no-progress", "--force"],
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip


def test_first_scan_announces_the_compile_once(tmp_path: Path) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    make_audio(folder / "a.flac", "flac", seconds=4.0, kind="tone", seed=1)
    cache_dir = tmp_path / "numba-cache"
    first = _scan(folder, cache_dir, tmp_path / "db.sqlite")
    assert first.returncode == 0, first.stderr
    assert first.stderr.count(dsp.ANNOUNCEMENT) == 1
    assert any(cache_dir.rglob("*.nbi")), "the compiled kernels were not cached"
    second = _scan(folder, cache_dir, tmp_path / "db.sqlite")
    assert second.returncode == 0, second.stderr
    assert dsp.ANNOUNCEMENT not in second.stderr


def test_analysis_does_not_import_librosa() -> None:
    code = ("import sys, numpy as np\n"
            "from tagger.analysis.features import analyse\n"
            "y = np.random.default_rng(0).standard_normal(22050 * 4).astype(np.float32)\n"
            "out = analyse(y, 22050)\n"
            "assert out.features.shape == (57,) and out.slices.shape == (1, 128, 130)\n"
            "print('librosa' in sys.modules)\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
