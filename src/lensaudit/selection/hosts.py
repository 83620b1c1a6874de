"""Injection hosts: real stamps of the test split's N1 negatives, matched to each cell's PSF and depth; cells
without a native host borrow a better-seeing, deeper host and degrade it (``degrade.py``), or are left empty."""
from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.utils import hash_unit_interval


def host_pool(sample: pd.DataFrame, stamps: pd.DataFrame) -> pd.DataFrame:
    q = stamps[stamps.quality_ok][["row", "galaxy_id"]].merge(sample, on="galaxy_id")
    return q[(q.split == "test") & (q.pool == "N1")].sort_values("row").reset_index(drop=True)


def assign_hosts(cells: pd.DataFrame, hosts: pd.DataFrame, n: int, psf_tol: float, depth_tol: float,
                 allow_degradation: bool, seed: int, variant: str = "main") -> pd.DataFrame:
    """n injections per cell, each with a host row chosen by hash (deterministic per seed, cell, index)."""
    out = []
    for c in cells.itertuples():
        native = hosts[(hosts.psfsize_r.sub(c.psf_fwhm).abs() <= psf_tol) & (hosts.psfdepth_mag_r.sub(c.depth).abs() <= depth_tol)]
        degraded = False
        cand = native
        if cand.empty and allow_degradation:
            cand = hosts[(hosts.psfsize_r <= c.psf_fwhm) & (hosts.psfdepth_mag_r >= c.depth)]
            degraded = True
        if cand.empty:
            continue
        keys = [f"{variant}|{c.cell}|{j}" for j in range(n)]
        pick = (hash_unit_interval(keys, seed) * len(cand)).astype(int)
        h = cand.iloc[pick]
        out.append(pd.DataFrame({"variant": variant, "cell": c.cell, "index": np.arange(n), "theta_e": c.theta_e,
                                 "psf_cell": c.psf_fwhm, "depth_cell": c.depth, "host_row": h.row.to_numpy(),
                                 "host_galaxy_id": h.galaxy_id.to_numpy(), "host_psf_g": h.psfsize_g.to_numpy(),
                                 "host_psf_r": h.psfsize_r.to_numpy(), "host_psf_z": h.psfsize_z.to_numpy(),
                                 "host_depth_r": h.psfdepth_mag_r.to_numpy(), "degraded": degraded}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()
