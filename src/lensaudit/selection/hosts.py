"""Injection hosts: real stamps of the held-out splits' N1 negatives (``inject.host_splits``, never train),
matched to each cell's PSF and depth; cells
without a native host borrow a better-seeing, deeper host and degrade it (``degrade.py``), or are left empty.

Host population (``inject.host_match``): ``deflector`` (default) keeps the N1 negatives that look like
the known lenses' deflectors — Tractor TYPE among those of ≥ 5% of the positives, r magnitude and g−r colour
inside the positives' 5th–95th percentiles — so the selection function is that of lens-like hosts, and the
realism gates compare injections with real lenses on like galaxies; ``all`` keeps every N1 negative of those
splits
(the deployment population, where most hosts could never be a strong lens)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.stamps.labelled import labelled_stamps
from lensaudit.utils import hash_unit_interval


def deflector_window(
    positives: pd.DataFrame, min_type_frac: float = 0.05, pct: tuple[float, float] = (5, 95)
) -> dict:
    """The positives' deflector population: types and r-magnitude / g−r windows."""
    frac = positives.type.value_counts(normalize=True)
    return {
        "types": sorted(frac[frac >= min_type_frac].index.tolist()),
        "mag_r": [float(x) for x in np.nanpercentile(positives.mag_r, pct)],
        "g_r": [float(x) for x in np.nanpercentile(positives.g_r, pct)],
    }


def host_pool(
    sample: pd.DataFrame,
    stamps: pd.DataFrame,
    match: str = "deflector",
    splits: tuple[str, ...] = ("val", "test"),
) -> tuple[pd.DataFrame, dict]:
    """N1 hosts of ``splits`` (never train) with quality-ok stamps (and, for ``deflector``, inside the
    positives' window)."""
    if "train" in splits:
        raise ValueError("injection hosts never come from the training split")
    q = labelled_stamps(sample, stamps)  # sorted by store row
    h = q[q.split.isin(list(splits)) & (q.pool == "N1")].reset_index(drop=True)
    info = {"match": match, "splits": list(splits), "n1_candidates": len(h)}
    pos = q[q.label == 1]
    if match == "deflector" and len(pos):
        w = deflector_window(pos)
        keep = h.type.isin(w["types"]) & h.mag_r.between(*w["mag_r"]) & h.g_r.between(*w["g_r"])
        h = h[keep].reset_index(drop=True)
        info.update(window=w)
    info["hosts"] = len(h)
    return h, info


def assign_hosts(
    cells: pd.DataFrame,
    hosts: pd.DataFrame,
    n: int,
    psf_tol: float,
    depth_tol: float,
    allow_degradation: bool,
    seed: int,
    variant: str = "main",
) -> pd.DataFrame:
    """n injections per cell, each with a host row chosen by hash (deterministic per seed, cell, index)."""
    out = []
    for c in cells.itertuples():
        native = hosts[
            (hosts.psfsize_r.sub(c.psf_fwhm).abs() <= psf_tol)
            & (hosts.psfdepth_mag_r.sub(c.depth).abs() <= depth_tol)
        ]
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
        out.append(
            pd.DataFrame(
                {
                    "variant": variant,
                    "cell": c.cell,
                    "index": np.arange(n),
                    "theta_e": c.theta_e,
                    "psf_cell": c.psf_fwhm,
                    "depth_cell": c.depth,
                    "host_row": h.row.to_numpy(),
                    "host_galaxy_id": h.galaxy_id.to_numpy(),
                    "host_psf_g": h.psfsize_g.to_numpy(),
                    "host_psf_r": h.psfsize_r.to_numpy(),
                    "host_psf_z": h.psfsize_z.to_numpy(),
                    "host_depth_r": h.psfdepth_mag_r.to_numpy(),
                    "degraded": degraded,
                }
            )
        )
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()
