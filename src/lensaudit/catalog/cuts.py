"""Parent-sample cuts and stratification columns (pure, per partition)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.config import CatalogConfig


def parent_mask(df: pd.DataFrame, cfg: CatalogConfig) -> pd.Series:
    """Rows kept: TYPE in cfg.types, nobs_g,r ≥ min_nobs_gr, nobs_z ≥ min_nobs_z, no rejecting MASKBITS,
    r magnitude in the window, Dec < dec_max (DR10 south)."""
    bits = int(sum(1 << b for b in cfg.maskbits_reject))
    lo, hi = cfg.mag_r_range
    return (
        df["type"].isin(cfg.types)
        & (df["nobs_g"] >= cfg.min_nobs_gr)
        & (df["nobs_r"] >= cfg.min_nobs_gr)
        & (df["nobs_z"] >= cfg.min_nobs_z)
        & ((df["maskbits"].astype(np.int64) & bits) == 0)
        & df["mag_r"].between(lo, hi)
        & (df["dec"] < cfg.dec_max)
    )


def nobs_z_bin(nobs_z, edges: list[int]) -> np.ndarray:
    """Label of the nobs_z bin: edges [1,3,6,11] → '1-2', '3-5', '6-10', '11+' ('0' below the first edge).

    >>> nobs_z_bin([1, 2, 3, 7, 11, 40, 0], [1, 3, 6, 11]).tolist()
    ['1-2', '1-2', '3-5', '6-10', '11+', '11+', '0']
    """
    v = np.asarray(nobs_z)
    labels = [f"{a}-{b - 1}" for a, b in zip(edges[:-1], edges[1:])] + [f"{edges[-1]}+"]
    idx = np.searchsorted(np.asarray(edges), v, side="right") - 1
    return np.where(idx < 0, "0", np.array(labels, dtype=object)[np.clip(idx, 0, len(labels) - 1)]).astype(
        str
    )


def type_bin(types) -> np.ndarray:
    return np.asarray(types).astype(str)
