"""Recall and FPR per stratum (PSF FWHM, depth, nobs_z, TYPE, N2 category) with Jeffreys intervals;
strata with fewer than ``min_count`` members are marked insufficient, never hidden."""

from __future__ import annotations

import pandas as pd

from lensaudit.audit.metrics import rate

PSF_EDGES = [0.0, 1.1, 1.3, 1.5, 1.7, 9.9]
DEPTH_EDGES = [0.0, 23.5, 24.0, 24.5, 25.0, 99.0]


def add_bins(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(
        psf_bin=pd.cut(df.psfsize_r, PSF_EDGES).astype(str),
        depth_bin=pd.cut(df.psfdepth_mag_r, DEPTH_EDGES).astype(str),
    )


def stratified(
    df: pd.DataFrame, threshold: float, by: str, min_count: int, level: float = 0.68
) -> pd.DataFrame:
    rows = []
    for key, g in df.groupby(by, observed=True):
        pos, neg = g[g.label == 1], g[g.label == 0]
        rec, fpr = rate(pos.score >= threshold, level), rate(neg.score >= threshold, level)
        rows.append(
            {
                "by": by,
                "bin": str(key),
                "n_pos": rec["n"],
                "recall": rec["rate"],
                "recall_lo": rec["lo"],
                "recall_hi": rec["hi"],
                "n_neg": fpr["n"],
                "fpr": fpr["rate"],
                "fpr_lo": fpr["lo"],
                "fpr_hi": fpr["hi"],
                "recall_insufficient": rec["n"] < min_count,
                "fpr_insufficient": fpr["n"] < min_count,
            }
        )
    return pd.DataFrame(rows)
