"""Systematics of the selection function measured by paired re-rendering and a stress set (issue 21).

* **PSF-wing bracket** (``psf_beta_<β>``) and **inner-image ablation** (``no_inner``): each paired injection
  is a main injection re-rendered with one thing changed (same host, lens and source;
  :mod:`lensaudit.selection.injection`). The completeness shift of a cell is the mean paired difference
  ΔC = mean(d_variant − d_main) over its pairs (d = 1 if detected), with the standard error of that mean:
  pairs that agree add nothing, so the shift is free of the sampling noise that two independent sets of draws
  would add.
* **SLACS/BELLS-like stress set** (``stress``): recall k/n with its Beta (Jeffreys) interval, per θE bin and
  in total, beside what the conditional table C(θE, PSF, depth, m_src) predicts for the same systems
  (:func:`lensaudit.selection.closure.closure_of`: the same statistics as the sky's closure test).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lensaudit.config import SelectionConfig
from lensaudit.selection.binomial import beta_posterior
from lensaudit.selection.closure import closure_of
from lensaudit.selection.table import SelectionFunction

#: θE bin edges of the stress set's recall table (arcsec)
STRESS_THETA_EDGES = (0.6, 1.0, 1.4, 1.8)


def pairs(inj: pd.DataFrame, variant: str) -> pd.DataFrame:
    """The injections of paired ``variant`` joined to the main injections they repeat (on cell and index):
    columns cell, index, theta_e, d_main, d_variant (detections, 0/1)."""
    main = inj[inj.variant == "main"][["cell", "index", "theta_e", "detected"]]
    alt = inj[inj.variant == variant][["cell", "index", "detected"]]
    j = main.merge(alt, on=["cell", "index"], suffixes=("_main", "_variant"), validate="one_to_one")
    return j.assign(d_main=j.detected_main.astype(float), d_variant=j.detected_variant.astype(float)).drop(
        columns=["detected_main", "detected_variant"]
    )


def paired_shift(p: pd.DataFrame, by: str, level: float = 0.68) -> pd.DataFrame:
    """Per value of column ``by`` of the pairs ``p``: n pairs, ΔC (mean paired difference), its standard
    error and the central ``level`` interval ΔC ± z·SE (normal approximation of the mean of n differences;
    SE from the discordant pairs, 0 when every pair agrees).

    >>> p = pd.DataFrame({"cell": [0, 0, 0, 0], "d_main": [1.0, 1, 0, 0], "d_variant": [1.0, 0, 0, 0]})
    >>> paired_shift(p, "cell")[["n", "delta"]].values.tolist()
    [[4.0, -0.25]]
    """
    d = p.assign(diff=p.d_variant - p.d_main)
    g = d.groupby(by)["diff"].agg(["size", "mean", "var"])
    se = np.sqrt(g["var"].fillna(0.0) / g["size"])
    z = stats.norm.ppf(0.5 + level / 2)
    return pd.DataFrame(
        {
            by: g.index.to_numpy(),
            "n": g["size"].to_numpy(float),
            "delta": g["mean"].to_numpy(),
            "se": se.to_numpy(),
            "lo": (g["mean"] - z * se).to_numpy(),
            "hi": (g["mean"] + z * se).to_numpy(),
        }
    )


def cell_shifts(inj: pd.DataFrame, variants: list[str]) -> dict[str, pd.DataFrame]:
    """Per paired variant present in ``inj``, :func:`paired_shift` by cell."""
    return {v: paired_shift(pairs(inj, v), "cell") for v in variants if (inj.variant == v).any()}


def paired_summary(inj: pd.DataFrame, variants: list[str], level: float) -> list[dict[str, Any]]:
    """Per paired variant: ΔC per θE (over every PSF/depth cell) and in total, with ``level`` intervals."""
    out = []
    for v in variants:
        p = pairs(inj, v)
        if p.empty:
            continue
        by_te = paired_shift(p, "theta_e", level)
        total = paired_shift(p.assign(all=0), "all", level).iloc[0]
        out.append(
            {
                "variant": v,
                "n_pairs": int(len(p)),
                "delta": float(total.delta),
                "lo": float(total.lo),
                "hi": float(total.hi),
                "c_main": float(p.d_main.mean()),
                "by_theta_e": [
                    {k: float(r[k]) for k in ("theta_e", "n", "delta", "lo", "hi")}
                    for _, r in by_te.iterrows()
                ],
            }
        )
    return out


def stress_summary(
    inj: pd.DataFrame, sf: SelectionFunction, op: float, cfg: SelectionConfig
) -> dict[str, Any] | None:
    """The SLACS/BELLS-like stress set: recall (Beta posterior, ``cfg.interval``) per θE bin and in total,
    and the conditional table's prediction for the same systems (expected detections ± σ, the pull)."""
    s = inj[inj.variant == "stress"]
    if s.empty:
        return None
    tag = int(round(cfg.interval * 100))
    det = s.detected.to_numpy(bool)
    te = s.theta_e.to_numpy(float)
    edges = np.array(STRESS_THETA_EDGES)
    idx = np.clip(np.searchsorted(edges, te, side="right") - 1, 0, len(edges) - 2)

    def recall(sel: np.ndarray) -> dict[str, Any]:
        post = beta_posterior(det[sel].sum(), sel.sum(), cfg.prior, (cfg.interval,))
        return {
            "n": int(sel.sum()),
            "k": int(det[sel].sum()),
            "recall": float(post["mean"]),
            "lo": float(post[f"lo{tag}"]),
            "hi": float(post[f"hi{tag}"]),
        }

    rows = [
        {"lo_edge": float(edges[i]), "hi_edge": float(edges[i + 1]), **recall(idx == i)}
        for i in range(len(edges) - 1)
    ]
    lenses = pd.DataFrame(
        {
            "theta_e_arcsec": te,
            "psf_fwhm_r": s.psf_r.to_numpy(float),
            "psfdepth_mag_r": s.depth_cell.to_numpy(float),
            "src_mag_r": s.src_mag_r.to_numpy(float),
            "arc_mag_r": s.arc_mag_r.to_numpy(float),
            "score": s.score.to_numpy(float),
        }
    )
    pred = closure_of(sf, lenses, op, "src_mag_r")["total"]
    return {
        **recall(np.ones(len(det), bool)),
        "interval": cfg.interval,
        "by_theta_e": rows,
        "grid_observed": pred["observed"],
        "grid_expected": pred["expected"],
        "grid_sigma": pred["sigma"],
        "grid_pull": pred.get("pull"),
        "grid_n_predicted": pred["n"],
    }


def systematics_record(
    inj: pd.DataFrame, variants: list[str], sf: SelectionFunction, op: float, cfg: SelectionConfig
) -> dict[str, Any]:
    """``systematics.json``: the paired brackets (PSF β, inner image) and the stress set."""
    return {
        "interval": cfg.interval,
        "paired": paired_summary(inj, variants, cfg.interval),
        "stress": stress_summary(inj, sf, op, cfg),
    }
