"""Failure-mode taxonomy: explicit rules on measurable covariates (first matching rule wins).

False positives (negatives scoring ≥ the operating threshold):
1. ``masked_or_edge``: bad_pixel_frac > 0.05 or any bright-star mask in the stamp;
2. ``confuser:<category>``: an N2 hard-confuser category from the catalogue rules;
3. ``psf_blended``: compact (shape_r < 0.6·PSF FWHM) — a blend the PSF cannot separate;
4. ``other``.
Missed Tier-A lenses (positives scoring below it):
1. ``masked_or_edge`` as above;
2. ``faint_arc``: arc SNR < 5 (truth on the synthetic sky; otherwise the host-subtracted annulus SNR);
3. ``psf_blended``: θE < 0.75·PSF FWHM (truth), or shape_r < 0.6·PSF otherwise;
4. ``other``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def classify_false_positive(df: pd.DataFrame) -> pd.Series:
    mode = np.full(len(df), "other", dtype=object)
    psf_bl = (df.shape_r < 0.6 * df.psfsize_r).to_numpy()
    conf = (df.n2_category.astype(str) != "").to_numpy()
    masked = ((df.bad_pixel_frac > 0.05) | (df.star_mask_frac > 0)).to_numpy()
    mode[psf_bl] = "psf_blended"
    mode[conf] = ("confuser:" + df.n2_category.astype(str)).to_numpy()[conf]
    mode[masked] = "masked_or_edge"
    return pd.Series(mode.astype(str), index=df.index)


def classify_missed_lens(df: pd.DataFrame) -> pd.Series:
    mode = np.full(len(df), "other", dtype=object)
    te = df.get("theta_e_arcsec", pd.Series(np.nan, index=df.index)).to_numpy(float)
    blended = np.where(np.isfinite(te), te < 0.75 * df.psfsize_r.to_numpy(), (df.shape_r < 0.6 * df.psfsize_r).to_numpy())
    snr = df.get("arc_snr", pd.Series(np.nan, index=df.index)).to_numpy(float)
    faint = np.isfinite(snr) & (snr < 5)
    masked = ((df.bad_pixel_frac > 0.05) | (df.star_mask_frac > 0)).to_numpy()
    mode[blended] = "psf_blended"
    mode[faint] = "faint_arc"
    mode[masked] = "masked_or_edge"
    return pd.Series(mode.astype(str), index=df.index)


TRUTH_MAP = {"ring": "confuser:ring_proxy", "spiral": "confuser:spiral_proxy", "edge_on": "confuser:edge_on_proxy",
             "blue_clumpy": "confuser:blue_clumpy", "merger": "other"}


def taxonomy_accuracy(modes: pd.Series, truth_kind: pd.Series) -> dict:
    """Agreement of assigned false-positive modes with the synthetic sky's truth (confuser kinds only)."""
    m = truth_kind.isin(list(TRUTH_MAP))
    if not m.any():
        return {"n": 0, "accuracy": float("nan")}
    expected = truth_kind[m].map(TRUTH_MAP)
    ok = (modes[m] == expected) | ((expected == "other") & modes[m].str.startswith("confuser"))
    return {"n": int(m.sum()), "accuracy": float(ok.mean()),
            "unknown_lenses_among_fp": int((truth_kind == "lens").sum())}
