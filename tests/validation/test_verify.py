"""`lensaudit verify` recomputes every gate from the artifacts: 0 on an untouched run, and a named failure on
copies edited after the fact (it recomputes, it does not compare hashes)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lensaudit.cli import app
from lensaudit.run import RunContext
from lensaudit.utils import write_parquet_atomic
from lensaudit.validation.verify import exit_code, verify_run

pytestmark = pytest.mark.slow


@pytest.fixture
def copy_of_run(small_demo, tmp_path):
    run, _, _ = small_demo
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def _failing(run, stage):
    checks = verify_run(RunContext.from_run_dir(run), [stage])
    return {c.gate for c in checks if not c.agrees}, exit_code(checks)


def test_verify_agrees_on_an_untouched_run(small_demo):
    run, _, _ = small_demo
    r = CliRunner().invoke(app, ["verify", str(run)])
    assert r.exit_code == 0, r.output[-4000:]
    assert "0 disagree" in r.output


def test_verify_catches_a_test_galaxy_moved_into_a_train_cell(copy_of_run):
    p = copy_of_run / "sample" / "sample.parquet"
    s = pd.read_parquet(p)
    test_row = s.index[(s.split == "test") & (s.label == 0)][0]
    train_row = s.index[s.split == "train"][0]
    s.loc[test_row, ["ra", "dec"]] = s.loc[train_row, ["ra", "dec"]].to_numpy() + 1e-5
    write_parquet_atomic(s, p)
    bad, code = _failing(copy_of_run, "sample")
    assert "no_cell_in_two_splits" in bad and code != 0


def test_verify_catches_deleted_n2_rows(copy_of_run):
    p = copy_of_run / "sample" / "sample.parquet"
    s = pd.read_parquet(p)
    write_parquet_atomic(s[s.pool != "N2"].reset_index(drop=True), p)
    bad, code = _failing(copy_of_run, "sample")
    assert "n1_fraction" in bad and code != 0


def test_verify_catches_an_overlapping_split_it_was_never_told_about(copy_of_run):
    """An edit no test case names: one HEALPix cell of the catalogue pool now holds train and val galaxies."""
    part = sorted((copy_of_run / "catalog" / "pool" / "split=val").glob("*.parquet"))[0]
    val = pd.read_parquet(part)
    train = pd.read_parquet(sorted((copy_of_run / "catalog" / "pool" / "split=train").glob("*.parquet"))[0])
    val.loc[val.index[0], ["ra", "dec"]] = train[["ra", "dec"]].iloc[0].to_numpy() + np.array([1e-5, 0.0])
    write_parquet_atomic(val, part)
    bad, code = _failing(copy_of_run, "catalog")
    assert "one_split_per_cell" in bad and code != 0


def test_verify_catches_injected_noise_scaled_by_1_5(copy_of_run):
    """The injections' added light (arc + its noise) scaled by 1.5 over the untouched hosts: the noise effect
    size no longer matches what the invvar and the arc flux predict."""
    from lensaudit.stamps.store import StampStore

    inj = pd.read_parquet(copy_of_run / "inject" / "injections.parquet")
    hosts = StampStore.open(copy_of_run / "cutouts" / "stamps.zarr")
    store = StampStore.open(copy_of_run / "inject" / "stamps.zarr", mode="r+")
    for a in range(0, len(inj), 256):
        b = min(a + 256, len(inj))
        img, iv, mb = store.read(slice(a, b))
        host = hosts.read(inj.host_row.to_numpy()[a:b])[0]
        keep = ~inj.degraded.to_numpy()[a:b]
        img[keep] = host[keep] + 1.5 * (img[keep] - host[keep])
        store.write(a, img, iv, mb)
    bad, code = _failing(copy_of_run, "inject")
    assert any(g.startswith("noise_sigma_ratio_") for g in bad) and code != 0
