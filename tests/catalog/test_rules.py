"""Pure per-partition functions of the catalog stage, each on a handful of rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lensaudit.catalog import n2_rules
from lensaudit.catalog.cuts import nobs_z_bin, parent_mask
from lensaudit.catalog.sampling import candidate_filter, quotas, select
from lensaudit.catalog.spatial import ExclusionIndex, assign_split, healpix_nest
from lensaudit.config import CatalogConfig
from lensaudit.errors import ConfigError


def _rows(**over):
    base = dict(sersic=4.0, shape_r=0.8, rchisq_r=1.0, g_r=1.5, axis_ratio=0.8)
    base.update(over)
    return pd.DataFrame([base])


@pytest.mark.parametrize(
    "row,expect",
    [
        (dict(sersic=0.6, shape_r=2.0, rchisq_r=1.6, g_r=0.8), "ring_proxy"),
        (dict(axis_ratio=0.2, shape_r=1.5), "edge_on_proxy"),
        (dict(sersic=1.4, shape_r=1.5, g_r=0.6, rchisq_r=1.5), "spiral_proxy"),
        (dict(sersic=1.0, shape_r=0.9, g_r=0.3, rchisq_r=1.5), "blue_clumpy"),
        (dict(shape_r=4.0), "large_galaxy"),
        (dict(), ""),
    ],
)
def test_each_n2_rule(row, expect):
    assert n2_rules.classify(_rows(**row)).iloc[0] == expect


def test_n2_overrides_and_unknown_names():
    df = _rows(axis_ratio=0.35, shape_r=1.5)
    assert n2_rules.classify(df).iloc[0] == ""
    assert n2_rules.classify(df, {"edge_on_proxy": {"max_axis_ratio": 0.4}}).iloc[0] == "edge_on_proxy"
    with pytest.raises(ConfigError, match="unknown category"):
        n2_rules.classify(df, {"rings": {"max_sersic": 1}})
    with pytest.raises(ConfigError, match="unknown threshold"):
        n2_rules.classify(df, {"ring_proxy": {"sersic": 1}})


def test_parent_cuts():
    df = pd.DataFrame(
        {
            "type": ["DEV", "PSF", "SER", "REX", "DEV", "DEV"],
            "nobs_g": [1, 1, 0, 1, 1, 1],
            "nobs_r": [1] * 6,
            "nobs_z": [3, 3, 3, 2, 3, 3],
            "maskbits": [0, 0, 0, 0, 2, 0],
            "mag_r": [19, 19, 19, 19, 19, 23.5],
            "dec": [0, 0, 0, 0, 0, 0],
        }
    )
    assert parent_mask(df, CatalogConfig()).tolist() == [True, False, False, False, False, False]


def test_nobs_bins_and_split_one_per_cell():
    assert nobs_z_bin([2, 5, 6, 10, 11], [1, 3, 6, 11]).tolist() == ["1-2", "3-5", "6-10", "6-10", "11+"]
    cells = np.repeat(np.arange(500), 3)
    s = assign_split(cells, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=5)
    assert (pd.DataFrame({"c": cells, "s": s}).groupby("c").s.nunique() == 1).all()
    assert not np.array_equal(s, assign_split(cells, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=6))


def test_exclusion_radius():
    ex = ExclusionIndex(np.array([10.0]), np.array([0.0]), 11.0)
    d = np.array([0.0, 10.9, 11.1, 30.0]) / 3600
    assert ex.near(10.0 + d, np.zeros(4)).tolist() == [True, True, False, False]
    assert healpix_nest([10.0], [0.0], 128).dtype == np.int64


def test_sampling_is_order_and_partition_free():
    rng = np.random.default_rng(0)
    pool = pd.DataFrame(
        {
            "galaxy_id": [f"b_{i}" for i in range(3000)],
            "nobs_z_bin": rng.choice(["3-5", "6-10"], 3000),
            "type_bin": rng.choice(["DEV", "SER"], 3000),
            "pool": rng.choice(["N1", "N2"], 3000, p=[0.8, 0.2]),
            "mag_bin": "all",
        }
    )
    pos = pd.Series({("3-5", "DEV", "all"): 10, ("6-10", "SER", "all"): 40})
    counts = pool.value_counts(["nobs_z_bin", "type_bin", "mag_bin", "pool"]).rename("n").reset_index()
    q = quotas(pos, counts, ratio=10, n1_fraction=0.85)
    whole = select(candidate_filter(pool, q, 1), q)
    shuffled = pool.sample(frac=1, random_state=3)
    bounds = np.linspace(0, len(shuffled), 8).astype(int)
    parts = [shuffled.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    pieces = select(pd.concat([candidate_filter(p, q, 1) for p in parts]), q)
    assert sorted(whole.galaxy_id) == sorted(pieces.galaxy_id)
    got = whole.value_counts(["nobs_z_bin", "type_bin", "mag_bin", "pool"])
    assert got[("3-5", "DEV", "all", "N1")] == 85 and got[("3-5", "DEV", "all", "N2")] == 15
    short = q.set_index(["nobs_z_bin", "type_bin", "mag_bin", "pool"])
    assert short.loc[("6-10", "SER", "all", "N2"), "wanted"] == 60
    assert short.loc[("6-10", "SER", "all", "N2"), "taken"] == min(
        60, short.loc[("6-10", "SER", "all", "N2"), "available"]
    )


def test_realised_strata_measure_the_sample_not_the_plan():
    """The sample gates' per-stratum table: from the realised rows it gives the quotas' own shortfall when
    the selection took what the plan said, and the real deficit when rows are missing."""
    from lensaudit.catalog.sampling import realised_strata

    rng = np.random.default_rng(0)
    pool = pd.DataFrame(
        {
            "galaxy_id": [f"b_{i}" for i in range(400)],
            "nobs_z_bin": rng.choice(["3-5", "6-10"], 400),
            "type_bin": "DEV",
            "pool": rng.choice(["N1", "N2"], 400, p=[0.9, 0.1]),
            "mag_bin": "all",
        }
    )
    pos_counts = pd.Series({("3-5", "DEV", "all"): 5, ("6-10", "DEV", "all"): 30})
    counts = pool.value_counts(["nobs_z_bin", "type_bin", "mag_bin", "pool"]).rename("n").reset_index()
    q = quotas(pos_counts, counts, ratio=10, n1_fraction=0.85)
    neg = select(candidate_filter(pool, q, 1), q)
    pos = pd.DataFrame(
        [
            {"nobs_z_bin": k[0], "type_bin": k[1], "mag_bin": k[2], "pool": "positive"}
            for k, n in pos_counts.items()
            for _ in range(n)
        ]
    )
    sample = pd.concat([pos, neg], ignore_index=True)
    by = realised_strata(sample, 10, 0.85)
    assert by.shortfall.sum() == q.shortfall.sum() > 0  # the 6-10 stratum wants 300 of ~200 rows
    assert by.loc[("3-5", "DEV", "all"), "neg_per_pos"] == 10
    fewer = realised_strata(sample.drop(sample.index[sample.pool == "N2"]), 10, 0.85)
    assert fewer.shortfall.sum() == q.shortfall.sum() + (sample.pool == "N2").sum()


def test_cells_in_several_splits_recomputes_cells_from_positions():
    from lensaudit.catalog.spatial import cells_in_several_splits, healpix_columns

    ra, dec = np.array([10.0, 10.00001, 40.0]), np.zeros(3)
    cols = healpix_columns(ra, dec, 1024, 64)
    assert cols["healpix"][0] == cols["healpix"][1] and (cols["healpix_nside"] == 1024).all()
    assert cells_in_several_splits(ra, dec, ["train", "train", "test"], 1024) == 0
    assert cells_in_several_splits(ra, dec, ["train", "val", "test"], 1024) == 1


def test_mag_bins():
    from lensaudit.catalog.sampling import add_mag_bin

    df = pd.DataFrame({"mag_r": [17.0, 19.5, 23.9, 30.0]})
    assert add_mag_bin(df, [14, 18, 20, 24]).mag_bin.tolist() == ["14-18", "18-20", "20-24", "20-24"]
    assert add_mag_bin(df, []).mag_bin.unique().tolist() == ["all"]
