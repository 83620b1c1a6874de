"""Pass/fail cases of the sample gates: a sample drawn by the sampling's own pure functions (quotas, the
hash-ordered candidate filter and selection) from a small pool and positives in two strata, the split from
the HEALPix cell; each failing case starves the pool or edits the written sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from helpers import Run

from lensaudit.catalog.sampling import STRATUM, candidate_filter, quotas, select
from lensaudit.catalog.spatial import assign_split, healpix_columns
from lensaudit.validation import Inputs

STRATA = [("3-5", "SER", "20-21"), ("6-10", "DEV", "19-20")]
N_POS = 10  # per stratum
SETS = ("catalog.nside=1024", "sample.neg_per_pos=4", "sample.n1_fraction=0.85")


def _galaxies(run: Run, n: int, prefix: str, rng: np.random.Generator) -> pd.DataFrame:
    cfg = run.config.catalog
    ra, dec = rng.uniform(150, 152, n), rng.uniform(1, 3, n)
    df = pd.DataFrame({"galaxy_id": [f"{prefix}_{i:05d}" for i in range(n)], "ra": ra, "dec": dec})
    for k, v in healpix_columns(ra, dec, cfg.nside, cfg.nside_analysis).items():
        df[k] = v
    df["split"] = assign_split(df.healpix, cfg.split_fractions, run.config.run.seed)
    return df


def make(root: Path, n1_avail: int = 100, n2_avail: int = 20, short_strata: int = 0, edit=None) -> Inputs:
    """``n1_avail``/``n2_avail`` pool rows per stratum, except in the first ``short_strata`` strata, which
    hold 5 N1 and 1 N2."""
    run = Run(root, *SETS)
    cfg = run.config.sample
    rng = np.random.default_rng(3)
    pools, pos = [], []
    for k, s in enumerate(STRATA):
        n1, n2 = (5, 1) if k < short_strata else (n1_avail, n2_avail)
        g = _galaxies(run, n1 + n2, f"1500p020_{k}", rng).assign(
            **dict(zip(STRATUM, s)),
            pool=["N1"] * n1 + ["N2"] * n2,
            n2_category=[""] * n1 + ["ring_proxy"] * n2,
        )
        pools.append(g)
        pos.append(_galaxies(run, N_POS, f"1501p020_{k}", rng).assign(**dict(zip(STRATUM, s))))
    pool, p = pd.concat(pools, ignore_index=True), pd.concat(pos, ignore_index=True)
    counts = pool[STRATUM + ["pool"]].value_counts().rename("n").reset_index()
    q = quotas(p.groupby(STRATUM).size(), counts, cfg.neg_per_pos, cfg.n1_fraction)
    neg = select(candidate_filter(pool, q, run.config.run.seed), q).assign(label=0)
    p = p.assign(label=1, pool="positive", n2_category="")
    sample = pd.concat([p, neg], ignore_index=True).sort_values("galaxy_id").reset_index(drop=True)
    run.table("sample", "sample", edit(sample) if edit else sample)
    return run.inputs()


def _move_into_other_split(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    t, tr = df.index[(df.split == "test") & (df.label == 0)][0], df.index[df.split == "train"][0]
    df.loc[t, ["ra", "dec"]] = df.loc[tr, ["ra", "dec"]].to_numpy() + 1e-5
    return df


def _positive_as_negative(df: pd.DataFrame) -> pd.DataFrame:
    neg = df[df.label == 0].index[0]
    df = df.copy()
    df.loc[neg, "galaxy_id"] = df.galaxy_id[df.label == 1].iloc[0]
    return df


CASES = {
    # one stratum with 6 of its 40 wanted negatives: 85% short there
    "ratio_per_stratum_max_rel_dev": (lambda p: make(p), lambda p: make(p, short_strata=1)),
    # both strata with 6 of 40: 85% of the wanted negatives missing
    "strata_shortfall": (lambda p: make(p), lambda p: make(p, short_strata=2)),
    # the N2 rows deleted: N1 share 1.0
    "n1_fraction": (lambda p: make(p), lambda p: make(p, edit=lambda d: d[d.pool != "N2"])),
    "no_positive_negative_overlap": (lambda p: make(p), lambda p: make(p, edit=_positive_as_negative)),
    "no_cell_in_two_splits": (lambda p: make(p), lambda p: make(p, edit=_move_into_other_split)),
    "unique_galaxy_id": (lambda p: make(p), lambda p: make(p, edit=lambda d: pd.concat([d, d.iloc[:1]]))),
    "positives_in_sample": (lambda p: make(p), lambda p: make(p, edit=lambda d: d[d.label == 0])),
}
