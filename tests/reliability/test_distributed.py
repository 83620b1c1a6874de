"""The catalog stage on a real multi-process Dask cluster (issue 22): a ``dask scheduler`` and two
``dask worker`` processes, started as separate OS processes on 127.0.0.1 and reached with ``engine.kind:
address``, give the same catalogue as the default LocalCluster; and SIGKILLing one worker mid-run still
completes, identically.

"Identical" means: the same files, byte for byte, and manifests that agree on fingerprint, counts, gates and
extra (only the runner's timing fields differ).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lensaudit.config import load_config
from lensaudit.run import Manifest, RunContext, run_stage
from lensaudit.stages import get_stage

pytestmark = pytest.mark.slow

NPARTS = 6  # (sweep file, chunk) tasks per sweep file: 12 tasks on the tiny sky's 2 sweep files


def _sets(sky: Path) -> list[str]:
    return [
        f"data.sky_dir={sky}",
        f"positives.lenscat={sky}/lenses.csv",
        "positives.ref_patterns=['Huang et al\\.', 'Storfer et al\\.', 'lensaudit synthetic sky']",
        f"catalog.exclusion_catalogs=[packaged, '{sky}/lenses.csv']",
        "catalog.nside=8192",
        "catalog.mag_r_range=[16, 23.5]",
        "catalog.split_tolerance=0.15",
        f"engine.partitions_per_file={NPARTS}",
    ]


def _run_catalog(run_dir: Path, sky: Path, engine: list[str]) -> Manifest:
    """positives then catalog on the tiny sky (the sky itself is external: marked built)."""
    ctx = RunContext(load_config(None, _sets(sky) + engine, run_dir=run_dir), quiet=True)
    (run_dir / "sky").mkdir(parents=True, exist_ok=True)
    (run_dir / "sky" / "_stage.json").write_text(
        json.dumps({"stage": "sky", "fingerprint": "external", "status": "complete"})
    )
    try:
        run_stage(get_stage("positives"), ctx)
        return run_stage(get_stage("catalog"), ctx)
    finally:
        ctx.close()


def _files(stage_dir: Path) -> dict[str, Path]:
    """Every artifact file of a stage (its manifest and hidden temporaries aside), by relative path."""
    return {
        str(p.relative_to(stage_dir)): p
        for p in sorted(stage_dir.rglob("*"))
        if p.is_file() and p.name != "_stage.json" and not p.name.startswith(".")
    }


def _differences(ref: Path, got: Path) -> list[str]:
    """What differs between two catalog stage directories (empty when identical)."""
    a, b = _files(ref), _files(got)
    out = [f"only in the reference: {k}" for k in sorted(set(a) - set(b))]
    out += [f"only in the distributed run: {k}" for k in sorted(set(b) - set(a))]
    for k in sorted(set(a) & set(b)):
        if a[k].read_bytes() == b[k].read_bytes():
            continue
        out.append(f"bytes differ: {k}")
    ma, mb = (json.loads((d / "_stage.json").read_text()) for d in (ref, got))
    for key in ("fingerprint", "counts", "gates", "extra", "status"):
        if ma[key] != mb[key]:
            out.append(f"manifest {key} differs")
    return out


# ------------------------------------------------------------------------------------------------------------
@dataclass
class DaskProcesses:
    """A scheduler and its workers, each its own OS process (no nanny: a killed worker stays dead)."""

    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)
    worker_addresses: dict[int, str] = field(default_factory=dict)  # pid → worker address


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "dask", *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not in the test's process group: pytest's signals do not reach them
        )


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process we started (by its pid), then SIGKILL whatever has not exited within 10 s."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


@pytest.fixture
def dask_processes(tmp_path: Path) -> Iterator[DaskProcesses]:
    """``dask scheduler`` + 2 × ``dask worker`` on 127.0.0.1 (1 thread, 1 GB each); always torn down."""
    from dask.distributed import Client

    d = tmp_path / "dask"
    d.mkdir()
    sched_file = d / "scheduler.json"
    started: list[subprocess.Popen] = []
    try:
        sched = _spawn(
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(sched_file),
            ],
            d / "scheduler.log",
        )
        started.append(sched)
        deadline = time.monotonic() + 60
        while not sched_file.is_file() or not sched_file.read_text().strip():
            if sched.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dask scheduler did not start: {(d / 'scheduler.log').read_text()[-2000:]}")
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written at once, but let the JSON be complete
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:"), address
        procs = DaskProcesses(address, sched)
        for i in range(2):
            w = _spawn(
                [
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--memory-limit",
                    "1GB",
                    "--no-nanny",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                    "--name",
                    f"w{i}",
                    "--local-directory",
                    str(d / f"w{i}"),
                ],
                d / f"worker{i}.log",
            )
            started.append(w)
            procs.workers.append(w)
        with Client(address, timeout=30) as c:
            c.wait_for_workers(2, timeout=90)
            info = c.scheduler_info(n_workers=-1)["workers"]
        by_name = {str(v["name"]): a for a, v in info.items()}  # the --name each worker was started with
        assert set(by_name) == {"w0", "w1"}, by_name
        procs.worker_addresses = {w.pid: by_name[f"w{i}"] for i, w in enumerate(procs.workers)}
        yield procs
    finally:
        _stop(started[1:] + started[:1])  # workers first, then the scheduler


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory, tiny_sky) -> Path:
    """The catalog stage under the default LocalCluster (2 worker processes): the reference."""
    run = tmp_path_factory.mktemp("local")
    man = _run_catalog(run, tiny_sky, ["engine.kind=local", "engine.n_workers=2"])
    assert man.status == "complete"
    return run


def test_catalog_on_a_separate_scheduler_and_workers_matches_local_cluster(
    tmp_path, tiny_sky, local_reference, dask_processes, reliability
):
    run = tmp_path / "run"
    man = _run_catalog(run, tiny_sky, ["engine.kind=address", f"engine.address={dask_processes.address}"])
    assert man.status == "complete"
    diffs = _differences(local_reference / "catalog", run / "catalog")
    assert not diffs, diffs
    assert all(w.poll() is None for w in dask_processes.workers)  # both workers stayed up
    reliability.record("distributed", "catalog: scheduler + 2 worker processes vs LocalCluster", not diffs)


def test_catalog_survives_a_worker_sigkilled_mid_run(
    tmp_path, tiny_sky, local_reference, dask_processes, reliability
):
    from dask.distributed import Client

    run = tmp_path / "run"
    parts = run / "catalog" / "_parts"  # the catalog's ShardLog: one .done.json per finished task
    outcome: dict[str, Any] = {}

    def catalog() -> None:
        try:
            outcome["manifest"] = _run_catalog(
                run, tiny_sky, ["engine.kind=address", f"engine.address={dask_processes.address}"]
            )
        except BaseException as exc:  # reported by the main thread
            outcome["error"] = exc

    thread = threading.Thread(target=catalog, daemon=True)
    thread.start()
    killed: tuple[int, list[str], int] | None = None
    with Client(dask_processes.address, timeout=30) as monitor:
        deadline = time.monotonic() + 180
        while thread.is_alive() and killed is None and time.monotonic() < deadline:
            done = len(list(parts.glob("*.done.json"))) if parts.is_dir() else 0
            if done >= 1:
                busy = {
                    a: ks for a, ks in monitor.processing().items() if any("catalog-" in str(k) for k in ks)
                }
                victim = next(
                    (w for w in dask_processes.workers if dask_processes.worker_addresses[w.pid] in busy),
                    None,
                )
                if victim is not None:
                    os.kill(victim.pid, signal.SIGKILL)  # this worker is running a catalog task right now
                    killed = (victim.pid, busy[dask_processes.worker_addresses[victim.pid]], done)
                    break
            time.sleep(0.02)
        thread.join(timeout=180)
    assert not thread.is_alive(), "the catalog stage did not finish after the worker was killed"
    assert killed is not None, "the catalog finished before a worker could be killed mid-run"
    pid, keys, done_at_kill = killed
    print(f"SIGKILLed worker pid {pid} while it ran {keys}, after {done_at_kill} finished tasks")
    assert done_at_kill < 2 * NPARTS, "killed too late: every task had finished"
    victim = next(w for w in dask_processes.workers if w.pid == pid)
    assert victim.wait(timeout=10) == -signal.SIGKILL
    assert "error" not in outcome, repr(outcome.get("error"))
    man = outcome["manifest"]
    assert man.status == "complete"
    diffs = _differences(local_reference / "catalog", run / "catalog")
    assert not diffs, diffs
    survivors = [w for w in dask_processes.workers if w.pid != pid]
    assert all(w.poll() is None for w in survivors)
    reliability.record("worker-loss", "catalog: 1 of 2 worker processes SIGKILLed mid-run", not diffs)
