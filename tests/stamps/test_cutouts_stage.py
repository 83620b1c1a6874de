"""The cutouts stage end to end on a tiny sky: killed mid-run (SIGKILL to the process group), restarted, and
compared with an uninterrupted run: identical stamps, no holes, no duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def _args(run, sky):
    sets = [
        f"data.sky_dir={sky}",
        f"positives.lenscat={sky}/lenses.csv",
        "positives.ref_patterns=['Huang et al\\.', 'Storfer et al\\.', 'lensaudit synthetic sky']",
        f"catalog.exclusion_catalogs=[packaged, '{sky}/lenses.csv']",
        "catalog.nside=4096",
        "catalog.mag_r_range=[16, 23.5]",
        "catalog.split_tolerance=0.3",
        "sample.neg_per_pos=8",
        "cutouts.shard_size=8",
        "engine.n_workers=1",
    ]
    out = [
        sys.executable,
        "-m",
        "lensaudit.cli",
        "run",
        "--run-dir",
        str(run),
        "--stages",
        "positives,catalog,sample,cutouts",
    ]
    for s in sets:
        out += ["--set", s]
    return out


def _fake_sky_manifest(run):
    (run / "sky").mkdir(parents=True, exist_ok=True)
    (run / "sky" / "_stage.json").write_text(
        '{"stage": "sky", "fingerprint": "external", "status": "complete"}'
    )


def _shards_done(run):
    """Store shards the cutouts stage has recorded as complete (its ShardLog)."""
    from lensaudit.run import ShardLog

    return len(ShardLog(run / "cutouts" / "_shards").keys())


def test_kill_and_resume_gives_identical_store(tmp_path, tiny_sky):
    from lensaudit.stamps.store import StampStore

    a, b = tmp_path / "a", tmp_path / "b"
    for r in (a, b):
        _fake_sky_manifest(r)
    subprocess.run(_args(a, tiny_sky), check=True, capture_output=True, timeout=600)
    p = subprocess.Popen(
        _args(b, tiny_sky), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and _shards_done(b) < 2:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    done_before = _shards_done(b)
    assert not (b / "cutouts" / "_stage.json").exists(), "the run finished before it could be killed"
    r = subprocess.run(_args(b, tiny_sky), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming" in (r.stdout + r.stderr) and done_before >= 2
    sa, sb = StampStore.open(a / "cutouts" / "stamps.zarr"), StampStore.open(b / "cutouts" / "stamps.zarr")
    assert sa.written_rows().all() and sb.written_rows().all()
    for x, y in zip(sa.read(slice(0, sa.n)), sb.read(slice(0, sb.n))):
        np.testing.assert_array_equal(x, y)
    ia, ib = (
        pd.read_parquet(a / "cutouts" / "stamps.parquet"),
        pd.read_parquet(b / "cutouts" / "stamps.parquet"),
    )
    assert ib.galaxy_id.is_unique and list(ia.galaxy_id) == list(ib.galaxy_id)
