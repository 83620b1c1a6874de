"""Failure-mode taxonomy: explicit rules on measurable covariates only (first matching rule wins); the synthetic
sky's truth is used to *score* the rules, never inside them.

False positives (negatives scoring ≥ the operating threshold):
1. ``masked_or_edge``: bad_pixel_frac > 0.05 or any bright-star mask in the stamp;
2. ``confuser:<category>``: an N2 hard-confuser category from the catalogue rules;
3. ``psf_blended``: compact (shape_r < 0.6·PSF FWHM) — a blend the PSF cannot separate;
4. ``other``.
Missed Tier-A lenses (positives scoring below it):
1. ``masked_or_edge`` as above;
2. ``psf_blended``: compact deflector (shape_r < 0.6·PSF FWHM): small deflectors have small θE, so the arcs sit
   inside the PSF core and the host-subtracted annulus cannot see them;
3. ``faint_arc``: measured arc SNR < 2 — the host-subtracted annulus SNR (``selection.realism.measured_arc``,
   0.8–3″) shows no significant arc light;
4. ``other``.
Truth modes for missed lenses on the synthetic sky (to score rule 2–4): ``psf_blended`` if θE < 0.75·PSF FWHM,
else ``faint_arc`` if the true arc aperture SNR < 30 (on the demo sky the measured/true SNR ratio has median
≈ 0.064, so a measured 2σ corresponds to a true ≈ 30), else ``other``.
"""  # noqa: E501  (the rules text is written verbatim to failures.json)

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


def classify_missed_lens(df: pd.DataFrame, faint_snr: float = 2.0) -> pd.Series:
    mode = np.full(len(df), "other", dtype=object)
    snr = df.meas_arc_snr.to_numpy(float)
    faint = np.isfinite(snr) & (snr < faint_snr)
    blended = (df.shape_r < 0.6 * df.psfsize_r).to_numpy()
    masked = ((df.bad_pixel_frac > 0.05) | (df.star_mask_frac > 0)).to_numpy()
    mode[faint] = "faint_arc"
    mode[blended] = "psf_blended"
    mode[masked] = "masked_or_edge"
    return pd.Series(mode.astype(str), index=df.index)


def truth_missed_mode(df: pd.DataFrame, faint_true_snr: float = 30.0) -> pd.Series:
    """What the synthetic sky's truth says a missed lens's mode is (NaN truth → '')."""
    te, snr = df.theta_e_arcsec.to_numpy(float), df.arc_snr.to_numpy(float)
    mode = np.where(
        ~np.isfinite(te),
        "",
        np.where(
            te < 0.75 * df.psfsize_r.to_numpy(float),
            "psf_blended",
            np.where(snr < faint_true_snr, "faint_arc", "other"),
        ),
    )
    return pd.Series(mode, index=df.index)


def missed_accuracy(modes: pd.Series, truth_modes: pd.Series) -> dict:
    """Agreement of the rules with the truth over missed lenses that are not masked and have truth."""
    m = (truth_modes != "") & (modes != "masked_or_edge")
    if not m.any():
        return {"n": 0, "accuracy": float("nan")}
    conf = pd.crosstab(truth_modes[m].rename("truth"), modes[m].rename("rule"))
    return {
        "n": int(m.sum()),
        "accuracy": float((modes[m] == truth_modes[m]).mean()),
        "confusion": {t: {r: int(v) for r, v in row.items()} for t, row in conf.iterrows()},
    }


TRUTH_MAP = {
    "ring": "confuser:ring_proxy",
    "spiral": "confuser:spiral_proxy",
    "edge_on": "confuser:edge_on_proxy",
    "blue_clumpy": "confuser:blue_clumpy",
    "merger": "other",
}


def taxonomy_accuracy(modes: pd.Series, truth_kind: pd.Series) -> dict:
    """Agreement of assigned false-positive modes with the synthetic sky's truth (confuser kinds only)."""
    m = truth_kind.isin(list(TRUTH_MAP))
    if not m.any():
        return {"n": 0, "accuracy": float("nan")}
    expected = truth_kind[m].map(TRUTH_MAP)
    ok = (modes[m] == expected) | ((expected == "other") & modes[m].str.startswith("confuser"))
    return {
        "n": int(m.sum()),
        "accuracy": float(ok.mean()),
        "unknown_lenses_among_fp": int((truth_kind == "lens").sum()),
    }
