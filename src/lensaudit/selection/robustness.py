"""Robustness of the completeness table: coarser depth binning, alternative source priors (r ∓ 0.75 mag) and
the morphology bracket (Sersic ↔ clumpy), per cell and as C(θE) curves over all PSF/depth cells."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.config import SelectionConfig
from lensaudit.selection.binomial import beta_posterior
from lensaudit.selection.completeness import completeness_table


def robustness(
    grid: pd.DataFrame, inj: pd.DataFrame, cfg: SelectionConfig, table: pd.DataFrame
) -> pd.DataFrame:
    """Per cell: |ΔC| under coarser depth binning (adjacent depth cells merged) and under alternative
    priors."""
    out = table[["cell", "theta_e", "psf_fwhm", "depth", "c_mean"]].copy()
    main = inj[inj.variant == "main"].merge(grid[["cell", "i_theta_e", "i_psf", "i_depth"]], on="cell")
    main["i_depth_coarse"] = main.i_depth // 2
    coarse = main.groupby(["i_theta_e", "i_psf", "i_depth_coarse"]).detected.agg(["sum", "size"])
    g = grid.assign(i_depth_coarse=grid.i_depth // 2).join(
        coarse, on=["i_theta_e", "i_psf", "i_depth_coarse"]
    )
    post = beta_posterior(g["sum"].fillna(0), g["size"].fillna(0), cfg.prior)
    out["binning_shift"] = np.abs(post["mean"] - table.c_mean.to_numpy())
    shifts = []
    for v in ("bright", "faint"):
        sub = inj[inj.variant == v]
        if sub.empty:
            continue
        t = completeness_table(grid, sub, cfg)
        out[f"c_{v}"] = t.c_mean.to_numpy()
        shifts.append(np.abs(t.c_mean.to_numpy() - table.c_mean.to_numpy()))
    out["prior_shift"] = np.max(shifts, axis=0) if shifts else np.nan
    sub = inj[inj.variant == "morphology"]
    if len(sub):
        t = completeness_table(grid, sub, cfg)
        out["c_morphology"] = t.c_mean.to_numpy()
        out["morphology_shift"] = np.abs(t.c_mean.to_numpy() - table.c_mean.to_numpy())
    return out


def max_sufficient(
    robust: pd.DataFrame,
    col: str,
    table: pd.DataFrame,
    inj: pd.DataFrame,
    variants: tuple[str, ...],
    cfg: SelectionConfig,
) -> float:
    """Max of a per-cell shift over the cells where the main table is sufficient and each variant has
    ≥ n_min/2 injections."""
    if col not in robust or not robust[col].notna().any():
        return float("nan")
    counts = (
        inj[inj.variant.isin(variants)]
        .groupby(["variant", "cell"])
        .size()
        .unstack(0)
        .reindex(table.cell)
        .fillna(0)
    )
    n_alt = counts.min(axis=1).to_numpy() if counts.shape[1] == len(variants) else np.zeros(len(table))
    ok = (~table.insufficient.to_numpy()) & (n_alt >= max(1, cfg.n_min // 2))
    return float(robust[col].to_numpy()[ok].max()) if ok.any() else float("nan")


def variant_curves(
    inj: pd.DataFrame, theta_e: np.ndarray, cfg: SelectionConfig
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """C(θE) over all PSF/depth cells for the main prior and each variant, in order of appearance:
    (label, posterior mean, lower, upper bound of the ``cfg.interval`` credible interval) per variant."""
    out = []
    tag = int(round(cfg.interval * 100))
    for v, sub in inj.groupby("variant", sort=False):
        g = sub.groupby("theta_e").detected.agg(["sum", "size"]).reindex(theta_e).fillna(0)
        post = beta_posterior(g["sum"].to_numpy(), g["size"].to_numpy(), cfg.prior, (cfg.interval,))
        model = sub.source_model.iloc[0] if "source_model" in sub else ""
        label = {
            "main": f"main ({model})",
            "bright": "source r − 0.75",
            "faint": "source r + 0.75",
            "morphology": f"{model} sources",
        }.get(str(v), str(v))
        out.append((label, post["mean"], post[f"lo{tag}"], post[f"hi{tag}"]))
    return out
