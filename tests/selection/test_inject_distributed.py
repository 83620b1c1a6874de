"""inject.distributed: the batches rendered on a Dask LocalCluster give the bytes of an in-process run."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lensaudit.config import InjectConfig
from lensaudit.run.shards import ShardLog
from lensaudit.selection.injection import inject_all
from lensaudit.stamps.store import StampStore

pytestmark = pytest.mark.slow


def _hosts(root: Path, n: int = 6) -> StampStore:
    rng = np.random.default_rng(0)
    st = StampStore.create(root / "hosts.zarr", n, shard_size=4)
    img = rng.normal(0, 0.01, (n, 3, 101, 101)).astype(np.float32)
    st.write(0, img, np.full_like(img, 1e4), np.zeros((n, 101, 101), np.int32))
    return StampStore.open(root / "hosts.zarr")


def _plan(n: int = 14) -> pd.DataFrame:
    j = np.arange(n)
    variant = np.where(j < 10, "main", np.where(j < 12, "psf_beta_2.5", "no_inner"))
    return pd.DataFrame(
        {
            "variant": variant,
            "draw": "main",
            "cell": j % 2,
            "index": np.where(j < 10, j // 2, j % 2),
            "theta_e": 1.0 + (j % 2),
            "psf_cell": 1.3,
            "depth_cell": 24.5,
            "host_row": j % 6,
            "host_galaxy_id": [f"g{k % 6}" for k in j],
            "host_psf_g": 1.4,
            "host_psf_r": 1.3,
            "host_psf_z": 1.2,
            "host_depth_r": 24.5,
            "degraded": False,
            "host_type": "DEV",
            "host_nobs_z": 3,
            "psf_beta": np.where(variant == "psf_beta_2.5", 2.5, 3.5),
            "suppress_inner": variant == "no_inner",
        }
    )


def test_distributed_injection_matches_in_process(tmp_path):
    from dask.distributed import Client, LocalCluster

    cfg = InjectConfig(n_per_cell=5, batch_size=4, stress_n=0)
    hosts, pl = _hosts(tmp_path), _plan()
    local, st_local = inject_all(cfg, pl, hosts, tmp_path / "a.zarr", ShardLog(tmp_path / "a_log"), seed=3)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
        with Client(cl) as client:
            dist, st_dist = inject_all(
                cfg, pl, hosts, tmp_path / "b.zarr", ShardLog(tmp_path / "b_log"), 3, client=client
            )
    pd.testing.assert_frame_equal(local, dist)
    rows = np.arange(len(pl))
    for a, b in zip(st_local.read(rows), st_dist.read(rows)):
        np.testing.assert_array_equal(a, b)
    # the paired rows repeat their main injection's system exactly
    main = local[(local.variant == "main") & (local.cell == 0) & (local["index"] == 0)].iloc[0]
    beta = local[(local.variant == "psf_beta_2.5") & (local.cell == 0)].iloc[0]
    assert main.src_x == beta.src_x and main.src_mag_r == beta.src_mag_r and beta.psf_beta == 2.5
