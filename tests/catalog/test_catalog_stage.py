"""The catalog and sample stages on a real tiny synthetic sky under a real 2-worker LocalCluster."""

from __future__ import annotations

import pandas as pd
import pytest

from lensaudit.config import load_config
from lensaudit.errors import GateFailed
from lensaudit.run import RunContext, run_stage
from lensaudit.stages import get_stage

pytestmark = pytest.mark.slow


def _ctx(tmp_path, sky, *extra):
    sets = [
        f"data.sky_dir={sky}",
        f"positives.lenscat={sky}/lenses.csv",
        "positives.ref_patterns=['Huang et al\\.', 'Storfer et al\\.', 'lensaudit synthetic sky']",
        f"catalog.exclusion_catalogs=[packaged, '{sky}/lenses.csv']",
        "catalog.nside=8192",  # 26″ cells: ~50 on the tiny sky
        "catalog.mag_r_range=[16, 23.5]",
        "catalog.split_tolerance=0.15",
        "sample.neg_per_pos=3",
        *extra,
    ]
    return RunContext(load_config(None, sets, run_dir=tmp_path), quiet=True)


def _run(ctx, *stages):
    import json

    (ctx.run_dir / "sky").mkdir(exist_ok=True)
    (ctx.run_dir / "sky" / "_stage.json").write_text(
        json.dumps({"stage": "sky", "fingerprint": "external", "status": "complete"})
    )
    try:
        return [run_stage(get_stage(s), ctx) for s in stages]
    finally:
        ctx.close()


def test_catalog_and_sample_gates_and_partition_independence(tmp_path, tiny_sky):
    ctx = _ctx(tmp_path / "a", tiny_sky)
    _, cat, samp = _run(ctx, "positives", "catalog", "sample")
    assert cat.status == "complete" and samp.status == "complete"
    for g in cat.gates:
        assert g.status in ("pass", "warn"), (g.name, g.value, g.message)
    assert cat.gate("positive_match_rate").value >= 0.85
    assert 0 < cat.extra["n2_fraction"] < 0.6
    s1 = pd.read_parquet(tmp_path / "a" / "sample" / "sample.parquet")
    assert s1.label.sum() > 0 and (s1.label == 0).sum() > 0
    assert (s1.groupby("healpix").split.nunique() == 1).all() and (s1.healpix_nside == 8192).all()
    ctx2 = _ctx(tmp_path / "b", tiny_sky, "engine.partitions_per_file=3")
    _run(ctx2, "positives", "catalog", "sample")
    s2 = pd.read_parquet(tmp_path / "b" / "sample" / "sample.parquet")
    pd.testing.assert_frame_equal(s1, s2)


def test_absurd_n2_thresholds_fail_the_fraction_gate(tmp_path, tiny_sky):
    none = (
        "{ring_proxy: {min_shape_r: 99}, edge_on_proxy: {max_axis_ratio: 0.0},"
        " spiral_proxy: {min_shape_r: 99},"
        " blue_clumpy: {min_shape_r: 99}, large_galaxy: {min_shape_r: 99}}"
    )
    ctx = _ctx(tmp_path, tiny_sky, f"catalog.n2_rules={none}")
    with pytest.raises(GateFailed, match="n2_fraction=0 per category: ring_proxy=0"):
        _run(ctx, "positives", "catalog")
