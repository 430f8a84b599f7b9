"""Scanning on a real Dask cluster: same cache as a local scan, lost workers, timeouts, unreadable roots.

Every cluster here is a real ``distributed.LocalCluster`` on 127.0.0.1, of
worker processes except where a test only needs a cluster to lose; the
local reference scans use ``LocalRunner``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from audiofiles import make_audio
from tagger import __version__
from tagger.cli import cli
from tagger.common.errors import GenretagError
from tagger.inference.models import load_model
from tagger.inference.worker import AnalysisTask
from tagger.media.params import AnalysisParams
from tagger.run.runners import LocalRunner, Runner
from tagger.run.scan import ScanOptions, ScanSummary, scan
from tagger.store.cache import Cache

distributed = pytest.importorskip("distributed")
import dask  # noqa: E402

import task_funcs  # noqa: E402
from tagger.run.dask_runner import INSTALL_HINT, DaskRunner, local_cluster  # noqa: E402

pytestmark = pytest.mark.dask

COMPARED = ("genre", "confidence", "status", "error", "size", "mtime")


@pytest.fixture(scope="module")
def svc():
    return load_model("svc")


def build_library(root: Path, n: int, seconds: float, bad: bool) -> Path:
    """``n`` good tracks (tone and noise, wav and flac), plus a zero-byte and a garbage file if ``bad``."""
    root.mkdir(parents=True)
    for i in range(n):
        fmt = ("wav", "flac")[i % 2]
        make_audio(root / f"track{i:02d}.{fmt}", fmt, seconds=seconds, kind=("tone", "noise")[i // 2 % 2], seed=i)
    if bad:
        (root / "empty.wav").write_bytes(b"")
        (root / "garbage.mp3").write_bytes(np.random.default_rng(0).bytes(4000))
    return root


def run_scan(root: Path, db: Path, model: Any, runner: Runner, progress: Any = None, **opts: Any) -> ScanSummary:
    with Cache(db) as cache:
        return scan([str(root)], cache, model, runner, ScanOptions(**opts), progress)


def stored(db: Path) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """The tracks rows and feature vectors of a cache, by path."""
    with Cache(db) as cache:
        rows = {r["path"]: r for r in cache.tracks()}
        feats = cache.features_for(list(rows))
    return rows, {p: np.asarray(v) for p, v in feats.items()}


def assert_same(got: tuple[dict, dict], want: tuple[dict, dict], paths: set[str] | None = None) -> None:
    """The rows (and features) of ``paths``, or of every file, match between two caches."""
    rows, feats = got
    ref_rows, ref_feats = want
    paths = set(ref_rows) if paths is None else paths
    assert paths <= set(rows)
    for p in sorted(paths):
        assert {c: rows[p][c] for c in COMPARED} == {c: ref_rows[p][c] for c in COMPARED}, p
        if ref_rows[p]["probabilities"] is not None:
            probs, ref = json.loads(rows[p]["probabilities"]), json.loads(ref_rows[p]["probabilities"])
            assert probs == pytest.approx(ref, abs=1e-6), p
    assert {p for p in feats if p in paths} == {p for p in ref_feats if p in paths}
    for p in paths & set(ref_feats):
        np.testing.assert_array_equal(feats[p], ref_feats[p], err_msg=p)  # the same code on the same bytes


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, svc) -> tuple[Path, tuple[dict, dict]]:
    """Six 4 s tracks and two bad files, with a local scan of them as the reference."""
    base = tmp_path_factory.mktemp("small")
    root = build_library(base / "lib", 6, 4.0, bad=True)
    run_scan(root, base / "local.db", svc, LocalRunner(2))
    return root, stored(base / "local.db")


@pytest.fixture(scope="module")
def long(tmp_path_factory: pytest.TempPathFactory, svc) -> tuple[Path, tuple[dict, dict]]:
    """Six 2-minute tracks (about a second of whole-file analysis each), with a local scan as the reference."""
    base = tmp_path_factory.mktemp("long")
    root = build_library(base / "lib", 6, 120.0, bad=False)
    run_scan(root, base / "local.db", svc, LocalRunner(2), excerpt=None)
    return root, stored(base / "local.db")


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Any, Any]]:
    """A LocalCluster of two worker processes, and a client of its own to watch and hurt it.

    A LocalCluster gives up on a worker that is not back within the lost-worker timeout (15 s), and
    on a loaded machine a nanny's restart can take that long: here, every restart must count.
    """
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "120s"}), local_cluster(2) as local, \
            distributed.Client(local, set_as_default=False) as client:  # fmt: skip
        yield local, client


def ready(client: Any) -> dict[str, int]:
    """Wait for both workers (one may be restarting) and return their pids."""
    client.wait_for_workers(2, timeout=60)
    return client.run(os.getpid)


def test_dask_scan_caches_what_a_local_scan_does(small, tmp_path: Path, svc) -> None:
    root, reference = small
    db = tmp_path / "dask.db"
    summary = run_scan(root, db, svc, DaskRunner(cluster="local", workers=2))
    assert (summary.seen, summary.analysed, summary.failed) == (8, 6, 2)
    assert summary.runner == "Dask local cluster of 2 worker processes"
    assert_same(stored(db), reference)
    errors = {Path(p).name: r["error"] for p, r in stored(db)[0].items() if r["status"] == "error"}
    assert set(errors) == {"empty.wav", "garbage.mp3"} and all(errors.values())
    with sqlite3.connect(db) as conn:
        assert conn.execute("select status from scans").fetchall() == [("completed",)]


def test_rescan_of_a_cached_library_starts_no_cluster(small, tmp_path: Path, svc,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = small
    db = tmp_path / "cache.db"
    run_scan(root, db, svc, LocalRunner(2))

    def no_cluster(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a scan with nothing to analyse started a Dask cluster")

    monkeypatch.setattr(distributed, "LocalCluster", no_cluster)
    summary = run_scan(root, db, svc, DaskRunner(cluster="local", workers=2))
    assert (summary.cached, summary.failed_cached, summary.analysed) == (6, 2, 0)


def test_cli_scan_on_a_local_cluster(small, tmp_path: Path) -> None:
    root, reference = small
    db = tmp_path / "cli.db"
    result = CliRunner().invoke(cli, ["scan", str(root), "--cluster", "local", "-j", "2", "--db", str(db),
                                      "--json", "--no-progress"])
    assert result.exit_code == 1, result.output  # two bad files
    data = json.loads(result.stdout)
    assert (data["seen"], data["analysed"], data["failed"], data["interrupted"]) == (8, 6, 2, False)
    assert data["runner"] == "Dask local cluster of 2 worker processes"
    assert sorted(Path(e["path"]).name for e in data["errors"]) == ["empty.wav", "garbage.mp3"]
    assert_same(stored(db), reference)


class KillBusyWorker:
    """Scan progress that SIGKILLs a worker holding a file as soon as the first result is in."""

    def __init__(self, client: Any, pids: dict[str, int]) -> None:
        self.client, self.pids = client, pids
        self.killed: str | None = None

    def set_total(self, total: int) -> None:
        pass

    def advance(self, path: str, status: str) -> None:
        if self.killed is None:
            busy = [w for w, keys in self.client.processing().items() if keys and w in self.pids]
            self.killed = busy[0]
            os.kill(self.pids[self.killed], signal.SIGKILL)


def test_worker_killed_mid_scan_is_retried_by_dask_and_nothing_is_lost(cluster, long, tmp_path: Path, svc) -> None:
    local, client = cluster
    root, reference = long
    killer = KillBusyWorker(client, ready(client))
    db = tmp_path / "dask.db"
    summary = run_scan(root, db, svc, DaskRunner(scheduler=local.scheduler_address), killer, excerpt=None)
    assert killer.killed and killer.killed not in client.nthreads()  # it really died
    assert (summary.analysed, summary.failed) == (6, 0)
    assert_same(stored(db), reference)


def test_file_held_by_a_killed_worker_is_marked_failed_then_retried(cluster, long, tmp_path: Path, svc) -> None:
    local, client = cluster
    root, reference = long
    killer = KillBusyWorker(client, ready(client))
    db = tmp_path / "dask.db"
    local.scheduler.allowed_failures = 0  # Dask gives up at the first death, so the runner must report it
    try:
        summary = run_scan(root, db, svc, DaskRunner(scheduler=local.scheduler_address), killer, excerpt=None)
    finally:
        local.scheduler.allowed_failures = distributed.config.get("distributed.scheduler.allowed-failures")
    rows, _ = stored(db)
    assert set(rows) == set(reference[0])  # every file has a row
    failed = {p for p, r in rows.items() if r["status"] == "error"}
    assert failed and summary.failed == len(failed) and summary.analysed == 6 - len(failed)
    for p in failed:
        assert rows[p]["error"].startswith(f"Dask worker {killer.killed} died before finishing it"), rows[p]["error"]
    assert_same(stored(db), reference, set(rows) - failed)
    ready(client)
    again = run_scan(root, db, svc, DaskRunner(scheduler=local.scheduler_address), excerpt=None, retry_failed=True)
    assert (again.analysed, again.cached, again.failed) == (len(failed), 6 - len(failed), 0)
    assert_same(stored(db), reference)


def test_file_past_the_timeout_is_failed_and_its_stuck_worker_restarted(cluster, tmp_path: Path, svc) -> None:
    """The workers' analysis hangs on one file, as it would reading from a hung network mount."""
    local, client = cluster
    root = build_library(tmp_path / "lib", 3, 4.0, bad=False)
    stuck = make_audio(tmp_path / "hang.wav", "wav", seconds=4.0)
    before = ready(client)
    client.run(task_funcs.hang_on_dask_workers)
    runner = DaskRunner(scheduler=local.scheduler_address, timeout=3.0, restart_stuck=True)
    runner.prepare([str(tmp_path)])
    files = [stuck, *sorted(p for p in root.rglob("*") if p.is_file())]
    whole = AnalysisParams(excerpt=None)
    try:
        results = {Path(r.path).name: r for r in runner.run(AnalysisTask(str(p), whole) for p in files)}
    finally:
        client.run(task_funcs.hang_on_dask_workers, False)
    assert results["hang.wav"].error == "timed out after 3 s"
    assert [results[f"track{i:02d}.{('wav', 'flac')[i % 2]}"].error for i in range(3)] == [None] * 3
    after = ready(client)  # a thread cannot be interrupted: the worker blocked in open() was restarted
    assert len(set(after.values()) - set(before.values())) == 1
    # Restarting is the default only on a cluster the runner started itself, never on a shared one.
    assert DaskRunner(cluster="local").restart_stuck and not DaskRunner(scheduler="tcp://127.0.0.1:1").restart_stuck


def test_scan_stops_before_any_file_when_a_worker_cannot_see_the_library(cluster, small, tmp_path: Path) -> None:
    """A third worker runs in a private mount namespace where the library's folder is an empty tmpfs:
    the real situation of a worker machine that lacks the shared storage."""
    if os.geteuid() != 0 or not shutil.which("unshare") or subprocess.run(["unshare", "--mount", "true"]).returncode:
        pytest.skip("needs root and unshare to give one worker a private mount namespace")
    local, client = cluster
    ready(client)
    root = build_library(tmp_path / "lib", 1, 4.0, bad=False)
    hide = f'mount -t tmpfs none "{tmp_path}" && exec "$@"'
    worker = subprocess.Popen(
        ["unshare", "--mount", "sh", "-c", hide, "sh", sys.executable, "-m", "distributed.cli.dask_worker",
         local.scheduler_address, "--name", "no-share", "--nthreads", "1", "--no-nanny", "--no-dashboard",
         "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client.wait_for_workers(3, timeout=60)
        db = tmp_path / "cache.db"
        result = CliRunner().invoke(cli, ["scan", str(root), "--scheduler", local.scheduler_address,
                                          "--db", str(db), "--no-progress"])
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert result.exit_code == 1, result.output
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert f"(no-share) cannot read {root}: No such file or directory" in line
    assert line.count("cannot read") == 1  # the two workers that see it are not blamed
    assert "same path" in line
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from tracks").fetchone() == (0,)
        assert conn.execute("select status from scans").fetchall() == [("failed",)]


def test_worker_with_another_genretag_version_is_refused(cluster, small, tmp_path: Path, svc,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    local, client = cluster
    root, _ = small
    ready(client)
    monkeypatch.setattr("tagger.run.dask_runner.__version__", "0.0.0-other")  # this process only: workers keep theirs
    with pytest.raises(GenretagError) as exc:
        run_scan(root, tmp_path / "cache.db", svc, DaskRunner(scheduler=local.scheduler_address))
    assert str(exc.value).count(f"has genretag {__version__}, this machine 0.0.0-other") == 2
    assert str(exc.value).endswith("Every Dask worker needs genretag 0.0.0-other and the library at the same path "
                                   "as this machine (shared storage).")


def test_missing_extra_names_the_pip_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    runner = DaskRunner(cluster="local")
    with pytest.raises(GenretagError) as exc:
        list(runner.run([AnalysisTask(str(tmp_path / "a.wav"))]))
    assert str(exc.value) == INSTALL_HINT == "Dask support needs the extra: pip install 'genretag[dask]'"


def test_unreachable_scheduler_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runner = DaskRunner(scheduler=f"tcp://127.0.0.1:{port}", connect_timeout=1)
    with pytest.raises(GenretagError, match=rf"^Cannot connect to the Dask scheduler at tcp://127.0.0.1:{port}: "):
        list(runner.run([AnalysisTask(str(tmp_path / "a.wav"))]))


@pytest.mark.parametrize("address, reason", [
    ("garbage", "missing port number in address 'garbage'"),
    ("foo://host:1", "unknown address scheme 'foo'"),
])  # fmt: skip
def test_an_address_dask_cannot_parse_is_one_error_line_at_once(tmp_path: Path, address: str, reason: str) -> None:
    """Issue 22: the right Error line, then a 60 s hang and a ``Client.__del__`` TimeoutError traceback.

    A real process, so the half-built Client's finaliser runs at exit as it did for the user; the hang
    shows as the 30 s timeout expiring.
    """
    (tmp_path / "lib").mkdir()
    make_audio(tmp_path / "lib" / "a.wav", "wav", seconds=1.0)
    env = {**os.environ, "GENRETAG_HOME": str(tmp_path / "home")}
    proc = subprocess.run([str(Path(sys.executable).with_name("genretag")), "scan", str(tmp_path / "lib"),
                           "--backend", "svc", "--scheduler", address, "--no-progress"],
                          capture_output=True, text=True, timeout=30, env=env)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.splitlines()  # nothing after it: no "Exception ignored", no traceback
    assert line.startswith(f"Error: Cannot connect to the Dask scheduler at {address}: {reason}"), proc.stderr


class LoseOnFirstResult:
    """Scan progress that does something drastic to the cluster once the first result is in."""

    def __init__(self, action: Any) -> None:
        self.action, self.done = action, False

    def set_total(self, total: int) -> None:
        pass

    def advance(self, path: str, status: str) -> None:
        if not self.done:
            self.done = True
            self.action()


@pytest.mark.parametrize("lose, message", [
    ("workers", r"The Dask cluster \(Dask scheduler tcp://127\.0\.0\.1:\d+\) has had no workers for \d+ s"),
    ("scheduler", r"Lost the connection to the Dask scheduler \(Dask scheduler tcp://127\.0\.0\.1:\d+\)"),
], ids=["workers", "scheduler"])  # fmt: skip
def test_scan_stops_cleanly_and_keeps_results_when_the_cluster_goes(long, tmp_path: Path, svc, lose: str,
                                                                     message: str) -> None:
    root, reference = long
    db = tmp_path / "dask.db"
    # Threads in this process: the quickest real cluster to start, and enough to lose.
    with distributed.LocalCluster(n_workers=1, processes=False, protocol="tcp://", host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False}) as local:
        runner = DaskRunner(scheduler=local.scheduler_address, connect_timeout=1.0)
        action = (lambda: local.scale(0)) if lose == "workers" else local.close
        with pytest.raises(GenretagError, match=f"^{message}; scan again to resume$"):
            run_scan(root, db, svc, runner, LoseOnFirstResult(action), excerpt=None)
    rows, _ = stored(db)
    assert rows and all(r["status"] == "ok" for r in rows.values())  # what came back before is kept
    assert_same(stored(db), reference, set(rows))
    with sqlite3.connect(db) as conn:
        assert conn.execute("select status from scans").fetchall() == [("failed",)]


def test_dask_path_never_imports_tensorflow() -> None:
    code = ("import sys, tagger.run.dask_runner, distributed; from tagger.inference.models import load_model; "
            "load_model('svc'); print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
