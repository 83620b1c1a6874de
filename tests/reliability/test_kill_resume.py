"""Kill and resume every stage with work (issue 22): catalog, sample, cutouts, train, inject and selection,
and the issue-20 stages ensemble (an EfficientNet-B0 member trained, every member and ensemble scoring the
injections) and mine (one round retrained).

One uninterrupted reference run (positives → selection, through the CLI in a subprocess) on a small synthetic
sky is shared by every case. A case copies the reference run directory, deletes the stage under test, reruns
that stage (``python -m lensaudit.cli run ... --stages X``) in its own process group and SIGKILLs the group
at a seeded random point: after the k-th unit of its resume log (k drawn in [1, n-1]) plus a random part of
a unit, or, for a stage without one, after a random part of its measured duration. The same command then
resumes it, and every artifact of the stage is compared with the reference's:

- files byte for byte, except ``_stage.json`` (equal but for the runner's timing fields ``started``,
  ``finished``, ``wall_s``) and ``history.jsonl`` (equal but for each epoch's ``epoch_s``);
- Parquet byte for byte (no artifact carries a wall-clock column: the pool's ``created`` and the cutouts
  index's ``fetched_at`` were dropped for this; the manifests hold the times);
- Zarr stores array by array (shape, dtype, values with NaN = NaN) with their attributes;
- PyTorch checkpoints (``best.pt``, ``last.pt``: model, optimizer and scheduler state) tensor by tensor,
  bit for bit.

Records of the resume log that existed at the kill must be untouched afterwards (reused, not redone).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow

#: two 1400-px bricks with 20 lenses each (tests/conftest.py's TINY_SKY is 800 px, 8 lenses): the smallest
#: sky found on which every stage through selection passes its blocking gates (~1,300 sweep rows, 51 stamps)
SKY = {
    "n_bricks": 2,
    "brick_pixels": 1400,
    "lenses_per_brick": 20,
    "unknown_lenses_per_brick": 1,
    "confusers_per_brick": 15,
    "workers": 1,
    "defect_frac": 0.5,
}
PIPELINE = "positives,catalog,sample,cutouts,train,evaluate,inject,selection,ensemble,mine"
#: the stages killed and resumed → their resume log, relative to the stage directory ("" = none: rerun whole)
KILLED = {
    "catalog": "_parts",
    "sample": "",
    "cutouts": "_shards",
    "train": "history.jsonl",
    "inject": "_batches",
    "selection": "",
    "ensemble": "members/efficientnet_b0/history.jsonl",
    "mine": "rounds/round1/history.jsonl",
}
#: manifest fields that time the run (filled by lensaudit.run.runner.run_stage)
TIMING = {"started", "finished", "wall_s"}
#: history.jsonl fields that time an epoch (lensaudit.train.loop.fit)
EPOCH_TIMING = {"epoch_s"}
TIMEOUT = 600


def _sets(sky: Path) -> list[str]:
    return [
        f"data.sky_dir={sky}",
        f"positives.lenscat={sky}/lenses.csv",
        "positives.ref_patterns=['Huang et al\\.', 'Storfer et al\\.', 'lensaudit synthetic sky']",
        f"catalog.exclusion_catalogs=[packaged, '{sky}/lenses.csv']",
        "catalog.nside=8192",  # 26″ cells: the val split holds both classes on this sky
        "catalog.mag_r_range=[16, 23.5]",
        "catalog.split_tolerance=0.3",
        "engine.n_workers=1",
        "engine.partitions_per_file=3",  # 6 catalog tasks to kill between
        "sample.neg_per_pos=8",
        "cutouts.shard_size=8",  # 7 store shards
        "train.stem=standard",
        "train.crop_pix=32",
        "train.epochs=3",
        "train.min_epochs=1",
        "train.batch_size=32",
        "train.threads=1",
        "evaluate.operating_point=fpr=0.05",
        "evaluate.n_bootstrap=20",
        "inject.theta_e_grid=[1.0, 2.0, 1.0]",
        "inject.psf_grid=[1.2, 1.5, 0.3]",
        "inject.depth_grid=[24.5, 25.0, 0.5]",
        "inject.n_per_cell=8",
        "inject.batch_size=16",
        "inject.stress_n=16",
        "inject.psf_match_tol_arcsec=0.15",
        "selection.force=true",
        "selection.n_min=2",
        "ensemble.enabled=true",
        "ensemble.members=[resnet18, efficientnet_b0]",
        "mine.rounds=1",
        "mine.top_k=5",
    ]


def _cmd(run: Path, sky: Path, stages: str) -> list[str]:
    out = [sys.executable, "-m", "lensaudit.cli", "run", "--run-dir", str(run), "--stages", stages]
    for s in _sets(sky):
        out += ["--set", s]
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """(the uninterrupted reference run directory, the sky)."""
    from lensaudit.config import SkyConfig
    from lensaudit.sky.build import build_sky

    root = tmp_path_factory.mktemp("kill_resume")
    sky, ref = root / "sky", root / "reference"
    build_sky(sky, SkyConfig(**SKY), seed=7, workers=1)
    (ref / "sky").mkdir(parents=True)
    (ref / "sky" / "_stage.json").write_text(
        json.dumps({"stage": "sky", "fingerprint": "external", "status": "complete"})
    )
    r = subprocess.run(_cmd(ref, sky, PIPELINE), capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    return ref, sky


# -- killing ---------------------------------------------------------------------------------------------
def _units(run: Path, stage: str) -> int:
    """Finished units of the stage's resume log (ShardLog records; epochs of a training history)."""
    from lensaudit.run import ShardLog

    log = run / stage / KILLED[stage]
    if log.suffix == ".jsonl":
        return len(log.read_text().splitlines()) if log.is_file() else 0
    return len(ShardLog(log).keys())


def _records(run: Path, stage: str) -> dict[str, int]:
    """The resume log's completion markers → their modification times (ns)."""
    if not KILLED[stage] or KILLED[stage].endswith(".jsonl"):
        return {}
    return {p.name: p.stat().st_mtime_ns for p in (run / stage / KILLED[stage]).glob("*.done.json")}


def _wait(cond, what: str, p: subprocess.Popen, deadline: float) -> None:
    while not cond():
        if p.poll() is not None:
            raise AssertionError(f"the run exited (code {p.returncode}) before {what}")
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _kill_at_random_point(run: Path, sky: Path, stage: str, ref: Path, rng: random.Random, scale: float):
    """Start the stage, SIGKILL its process group at a seeded random point; the description of the point."""
    from lensaudit.run import Manifest

    wall = Manifest.load(ref / stage / "_stage.json").wall_s
    n = _units(ref, stage) if KILLED[stage] else 0
    p = subprocess.Popen(
        _cmd(run, sky, stage),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + TIMEOUT
    try:
        log = run / "run.log"
        running = f"{stage}: running"
        _wait(lambda: log.is_file() and running in log.read_text(), f"'{running}'", p, deadline)
        if n >= 2:
            k = rng.randint(1, n - 1)
            _wait(lambda: _units(run, stage) >= k, f"{k} of {n} units", p, deadline)
            delay = rng.uniform(0.0, 0.5) * scale * wall / n
            point = f"after unit {k} of {n} + {delay:.2f} s"
        else:
            delay = rng.uniform(0.2, 0.8) * scale * wall
            point = f"{delay:.2f} s into a {wall:.1f} s stage"
        time.sleep(delay)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    return point


# -- comparing -------------------------------------------------------------------------------------------
def _files(d: Path) -> set[str]:
    """Relative paths of the files under ``d``, a Zarr store counting as one entry."""
    out: set[str] = set()
    for root, dirs, files in os.walk(d):
        r = Path(root)
        stores = [x for x in dirs if x.endswith(".zarr")]
        out |= {str((r / x).relative_to(d)) for x in stores + files}
        dirs[:] = [x for x in dirs if x not in stores]
    return out


def _same_zarr(a: Path, b: Path) -> str:
    import zarr

    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    if ga.attrs.asdict() != gb.attrs.asdict():
        return f"attributes differ: {ga.attrs.asdict()} vs {gb.attrs.asdict()}"
    ma: dict[str, Any] = dict(ga.members(max_depth=None))
    mb: dict[str, Any] = dict(gb.members(max_depth=None))
    if sorted(ma) != sorted(mb):
        return f"members differ: {sorted(ma)} vs {sorted(mb)}"
    for name, x in ma.items():
        y = mb[name]
        if not isinstance(x, zarr.Array):
            continue
        if (x.shape, x.dtype, x.chunks, x.shards) != (y.shape, y.dtype, y.chunks, y.shards):
            return f"array {name}: layout differs"
        u, v = np.asarray(x[...]), np.asarray(y[...])
        if not np.array_equal(u, v, equal_nan=u.dtype.kind == "f"):
            rows = np.flatnonzero((u != v).reshape(len(u), -1).any(1) & ~_both_nan(u, v))
            return f"array {name}: rows {rows[:10].tolist()} differ"
    return ""


def _both_nan(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if u.dtype.kind != "f":
        return np.zeros(len(u), bool)
    return (np.isnan(u) & np.isnan(v)).reshape(len(u), -1).all(1)


def _same_parquet(a: Path, b: Path) -> str:
    if a.read_bytes() == b.read_bytes():
        return ""
    ta, tb = pq.read_table(a), pq.read_table(b)
    if not ta.schema.equals(tb.schema, check_metadata=True):
        return "schemas (types or metadata) differ"
    diff = [c for c in ta.column_names if not ta[c].equals(tb[c])]
    return f"columns {diff} differ" if diff else "bytes differ, though every column is equal"


def _same_tree(x: Any, y: Any, where: str = "") -> str:
    """Checkpoints compared bit for bit: tensors by dtype, shape and every bit; the rest by ==."""
    import torch

    if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
        same = (
            isinstance(x, torch.Tensor)
            and isinstance(y, torch.Tensor)
            and x.dtype == y.dtype
            and x.shape == y.shape
            and torch.equal(_bits(x), _bits(y))
        )
        return "" if same else f"tensor {where or '.'} differs"
    if isinstance(x, dict) and isinstance(y, dict):
        if list(x) != list(y):
            return f"{where or '.'}: keys differ"
        return next((d for k in x if (d := _same_tree(x[k], y[k], f"{where}/{k}"))), "")
    if isinstance(x, list | tuple) and isinstance(y, list | tuple):
        if len(x) != len(y):
            return f"{where or '.'}: lengths differ"
        return next((d for i, (u, v) in enumerate(zip(x, y)) if (d := _same_tree(u, v, f"{where}/{i}"))), "")
    return "" if x == y else f"{where or '.'}: {x!r} vs {y!r}"


def _bits(t: Any) -> Any:
    """A tensor's bits (a float's raw bytes, so that -0.0 ≠ 0.0 and NaN payloads count)."""
    import torch

    flat = t.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8) if t.dtype.is_floating_point else flat


def _compare(a: Path, b: Path) -> str:
    """'' when ``b`` is identical to the reference's ``a`` (in the sense of the module docstring)."""
    if a.name.endswith(".zarr"):
        return _same_zarr(a, b)
    if a.suffix == ".parquet":
        return _same_parquet(a, b)
    if a.suffix == ".pt":
        import torch

        return _same_tree(torch.load(a, weights_only=True), torch.load(b, weights_only=True))
    if a.name == "_stage.json":
        ja, jb = (json.loads(p.read_text()) for p in (a, b))
        diff = sorted(k for k in ja.keys() | jb.keys() if k not in TIMING and ja.get(k) != jb.get(k))
        return f"manifest fields {diff} differ" if diff else ""
    if a.suffix == ".jsonl":
        la, lb = (
            [
                {k: v for k, v in json.loads(s).items() if k not in EPOCH_TIMING}
                for s in p.read_text().splitlines()
            ]
            for p in (a, b)
        )
        return "" if json.dumps(la) == json.dumps(lb) else f"records differ: {len(la)} vs {len(lb)} lines"
    return "" if a.read_bytes() == b.read_bytes() else "bytes differ"


def _differences(ref: Path, run: Path) -> list[str]:
    fa, fb = _files(ref), _files(run)
    out = [f"only in the reference: {p}" for p in sorted(fa - fb)]
    out += [f"only in the resumed run: {p}" for p in sorted(fb - fa)]
    out += [f"{p}: {why}" for p in sorted(fa & fb) if (why := _compare(ref / p, run / p))]
    return out


# -- the cases -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", list(KILLED))
def test_killed_stage_resumes_identical(stage, reference, tmp_path, reliability):
    ref, sky = reference
    rng = random.Random(f"kill-resume/{stage}")  # str seeds are hashed with SHA-512: the same every run
    ok = False
    try:
        # a stage can run faster than in the reference run: if it completes before the kill, try again
        # from a fresh copy with the random delay scaled down
        for attempt, scale in enumerate((1.0, 0.5, 0.25)):
            run = tmp_path / f"run{attempt}"
            shutil.copytree(ref, run, symlinks=True)
            shutil.rmtree(run / stage)
            (run / "run.log").unlink()
            point = _kill_at_random_point(run, sky, stage, ref, rng, scale)
            if not (run / stage / "_stage.json").exists():
                break
        else:
            pytest.fail(f"{stage} completed before every kill (last: {point})")
        print(f"kill-resume {stage}: killed {point} (attempt {attempt + 1})")
        assert (run / stage / "_inprogress.json").is_file(), (
            f"{stage} killed {point} left no _inprogress.json"
        )
        before = _records(run, stage)
        r = subprocess.run(_cmd(run, sky, stage), capture_output=True, text=True, timeout=TIMEOUT)
        assert r.returncode == 0, f"resume of {stage} (killed {point}) failed:\n{r.stderr[-3000:]}"
        log = (run / "run.log").read_text()
        assert f"{stage}: resuming an interrupted run" in log, log[-2000:]
        after = _records(run, stage)
        redone = sorted(k for k, t in before.items() if after.get(k) != t)
        assert not redone, f"{stage} killed {point}: finished units redone on resume: {redone}"
        assert not (run / stage / "_inprogress.json").exists()
        diffs = _differences(ref / stage, run / stage)
        detail = "\n".join(diffs)
        assert not diffs, f"{stage} killed {point} and resumed differs from the reference:\n{detail}"
        ok = True
    finally:
        reliability.record("kill-resume", stage, ok)
