"""The closure test on the synthetic sky: detections of its true lenses (test+val positives, their own source
prior, rendered by lenstronomy) expected from the selection function vs observed, per θE bin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lensaudit.selection.table import SelectionFunction


def closure(sf: SelectionFunction, op: float, truth: Path | None, scores: Path) -> dict[str, Any]:
    """Expected vs observed detections at threshold ``op`` of the true lenses in ``truth`` (the sky's
    ``truth.parquet``; None or absent for real data) scored in ``scores`` (the evaluate stage's table).

    Per θE bin (arcsec): n, expected Σp, observed, σ = √Σp(1−p) and the pull; the total and the fraction of
    bins within 1σ. ``{"available": False, ...}`` without a truth table."""
    if truth is None or not truth.is_file():
        return {"available": False, "reason": "no synthetic truth (real data)"}
    tr = pd.read_parquet(truth)
    sc = pd.read_parquet(scores)
    t = tr[tr.kind == "lens"][["galaxy_id", "theta_e_arcsec", "psf_fwhm_r", "psfdepth_mag_r", "arc_snr"]]
    lens = sc[sc.label == 1][["galaxy_id", "score"]].merge(t, on="galaxy_id")
    te, ps, dp = sf.axes
    x = (
        np.clip(lens.theta_e_arcsec, te[0], te[-1]),
        np.clip(lens.psf_fwhm_r, ps[0], ps[-1]),
        np.clip(lens.psfdepth_mag_r, dp[0], dp[-1]),
    )
    p = sf.completeness(*x)
    lens = lens.assign(p=p, detected=lens.score >= op)
    lens = lens[np.isfinite(lens.p)]
    bins = []
    edges = np.linspace(te[0] - 0.25, te[-1] + 0.25, min(6, len(te)) + 1)
    for a, b in zip(edges[:-1], edges[1:]):
        g = lens[(lens.theta_e_arcsec >= a) & (lens.theta_e_arcsec < b)]
        if len(g) == 0:
            continue
        exp, var = float(g.p.sum()), float((g.p * (1 - g.p)).sum())
        obs = int(g.detected.sum())
        pull = (obs - exp) / np.sqrt(var) if var > 0 else float("nan")
        bins.append(
            {
                "theta_lo": float(a),
                "theta_hi": float(b),
                "n": len(g),
                "expected": exp,
                "observed": obs,
                "sigma": float(np.sqrt(var)),
                "pull": float(pull),
            }
        )
    pulls = np.array([b["pull"] for b in bins])
    exp_tot, var_tot = sum(b["expected"] for b in bins), sum(b["sigma"] ** 2 for b in bins)
    obs_tot = sum(b["observed"] for b in bins)
    finite = np.isfinite(pulls)
    return {
        "available": True,
        "n_lenses": len(lens),
        "bins": bins,
        "total": {
            "expected": exp_tot,
            "observed": obs_tot,
            "sigma": float(np.sqrt(var_tot)),
            "pull": float((obs_tot - exp_tot) / np.sqrt(var_tot)) if var_tot > 0 else float("nan"),
        },
        "fraction_within_1sigma": float(np.mean(np.abs(pulls[finite]) <= 1))
        if finite.any()
        else float("nan"),
        "note": "true lenses use the sky's own source prior (independent renderer: lenstronomy), "
        "the selection function the injection prior",
    }
