"""Robustness of the completeness table: coarser depth binning, alternative source priors (r ∓ 0.75 mag,
by re-weighting the conditional table — no re-injection), the morphology bracket (Sersic ↔ clumpy), the
host bracket (all N1 hosts), the paired PSF-β bracket and inner-image ablation
(:mod:`lensaudit.selection.systematics`), and the hosts' nobs_z and Tractor TYPE (the main injections split
by the host's exposure count and type), per cell and as C(θE) and C(m_src) curves over all PSF/depth
cells."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.config import SelectionConfig
from lensaudit.selection.binomial import beta_posterior
from lensaudit.selection.completeness import completeness_table
from lensaudit.selection.systematics import cell_shifts
from lensaudit.selection.table import SelectionFunction

#: source-prior shifts (mag) of the prior-sensitivity check
PRIOR_SHIFTS = (-0.75, 0.75)


def shifted_weights(edges: np.ndarray, lo: float, hi: float, shift: float) -> np.ndarray:
    """Weights per magnitude bin of the uniform prior (lo, hi) shifted by ``shift`` mag and truncated to the
    table's range.

    >>> shifted_weights(np.array([20.0, 21.0, 22.0]), 20.0, 22.0, 0.5).round(3).tolist()
    [0.333, 0.667]
    """
    a, b = np.clip(lo + shift, edges[0], edges[-1]), np.clip(hi + shift, edges[0], edges[-1])
    mass = np.clip(np.minimum(edges[1:], b) - np.maximum(edges[:-1], a), 0, None)
    if mass.sum() <= 0:
        raise ValueError(f"the prior ({lo:g}, {hi:g}) shifted by {shift:+g} mag leaves the table's range")
    return mass / mass.sum()


def robustness(
    grid: pd.DataFrame,
    inj: pd.DataFrame,
    cfg: SelectionConfig,
    table: pd.DataFrame,
    sf: SelectionFunction,
    src_range: tuple[float, float],
    paired: list[str] = [],  # noqa: B006 (read only)
) -> pd.DataFrame:
    """Per cell of the 3-D ``table``: |ΔC| under coarser depth binning (adjacent depth cells merged), under
    the source prior shifted by ∓0.75 mag (the 4-D ``sf`` on ``src_mag`` re-weighted, against its marginal
    under the injection prior ``src_range``), under the morphology and host brackets, the paired variants
    ``paired`` (``delta_<v>``: signed paired ΔC, ``n_<v>`` pairs; ``psf_beta_shift``: the largest |ΔC| of the
    β bracket), and over the hosts' nobs_z and TYPE (:func:`host_splits`)."""
    out = table[["cell", "theta_e", "psf_fwhm", "depth", "c_mean"]].copy()
    main = inj[inj.variant == "main"].merge(grid[["cell", "i_theta_e", "i_psf", "i_depth"]], on="cell")
    main["i_depth_coarse"] = main.i_depth // 2
    coarse = main.groupby(["i_theta_e", "i_psf", "i_depth_coarse"]).detected.agg(["sum", "size"])
    g = grid.assign(i_depth_coarse=grid.i_depth // 2).join(
        coarse, on=["i_theta_e", "i_psf", "i_depth_coarse"]
    )
    post = beta_posterior(g["sum"].fillna(0), g["size"].fillna(0), cfg.prior)
    out["binning_shift"] = np.abs(post["mean"] - table.c_mean.to_numpy())
    base = sf.marginalise("injection").table.set_index("cell").c_mean.reindex(table.cell).to_numpy()
    out["c_marginal"] = base
    shifts = []
    for name, s in zip(("bright", "faint"), PRIOR_SHIFTS):
        alt = sf.marginalise(shifted_weights(sf.mag_edges, *src_range, s)).table.set_index("cell")
        out[f"c_{name}"] = alt.c_mean.reindex(table.cell).to_numpy()
        shifts.append(np.abs(out[f"c_{name}"].to_numpy() - base))
    out["prior_shift"] = np.max(shifts, axis=0)
    for v, col in (("morphology", "morphology_shift"), ("allhosts", "host_shift")):
        sub = inj[inj.variant == v]
        if len(sub):
            t = completeness_table(grid, sub, cfg)
            out[f"c_{v}"] = t.c_mean.to_numpy()
            out[col] = np.abs(t.c_mean.to_numpy() - table.c_mean.to_numpy())
    for v, sh in cell_shifts(inj, paired).items():
        sh = sh.set_index("cell").reindex(table.cell)
        out[f"delta_{v}"], out[f"n_{v}"] = sh.delta.to_numpy(), sh.n.fillna(0).to_numpy()
    beta = [f"delta_{v}" for v in paired if v.startswith("psf_beta_") and f"delta_{v}" in out]
    if beta:
        out["psf_beta_shift"] = out[beta].abs().max(axis=1, skipna=False)
    return host_splits(out, grid, main, table, cfg)


def host_splits(
    out: pd.DataFrame, grid: pd.DataFrame, main: pd.DataFrame, table: pd.DataFrame, cfg: SelectionConfig
) -> pd.DataFrame:
    """Completeness per cell of the main injections split by the host's nobs_z (at or below vs above the
    median of the hosts: ``c_nobs_low``/``c_nobs_high``, the bins the sample stratifies on merged in two) and
    by the host's Tractor TYPE (``c_type_<T>``); ``nobs_shift`` and ``type_shift`` are the largest |ΔC| of a
    split against the cell's C, over splits with ≥ n_min/2 injections (NaN where none has, or where the
    hosts have one nobs_z or one TYPE only)."""
    if "host_nobs_z" not in main or "host_type" not in main:
        return out
    cut = float(np.median(main.host_nobs_z))
    splits = {
        "nobs_low": main.host_nobs_z <= cut,
        "nobs_high": main.host_nobs_z > cut,
        **{f"type_{t}": main.host_type == t for t in sorted(main.host_type.astype(str).unique())},
    }
    shifts: dict[str, list[np.ndarray]] = {"nobs": [], "type": []}
    for name, sel in splits.items():
        if sel.all() or not sel.any():  # one population only (one nobs_z, one TYPE): nothing to compare
            continue
        sub = main[sel.to_numpy()]
        g = sub.groupby("cell").detected.agg(["sum", "size"]).reindex(grid.cell).fillna(0)
        post = beta_posterior(g["sum"], g["size"], cfg.prior)
        c = np.where(g["size"] >= max(1, cfg.n_min // 2), post["mean"], np.nan)
        out[f"c_{name}"] = c
        shifts[name.split("_")[0]].append(np.abs(c - table.c_mean.to_numpy()))
    out["nobs_z_cut"] = cut
    for k, v in shifts.items():
        if not v:
            out[f"{k}_shift"] = np.nan
            continue
        stacked = np.vstack(v)
        out[f"{k}_shift"] = np.where(
            np.isfinite(stacked).any(0), np.nanmax(np.nan_to_num(stacked, nan=-1), 0), np.nan
        )
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
    """C(θE) over all PSF/depth cells for the main injections and each bracket, in order of appearance:
    (label, posterior mean, lower, upper bound of the ``cfg.interval`` credible interval) per variant."""
    out = []
    tag = int(round(cfg.interval * 100))
    for v, sub in inj.groupby("variant", sort=False):
        if v == "stress":  # off the grid: its recall is a table (systematics.json)
            continue
        g = sub.groupby("theta_e").detected.agg(["sum", "size"]).reindex(theta_e).fillna(0)
        post = beta_posterior(g["sum"].to_numpy(), g["size"].to_numpy(), cfg.prior, (cfg.interval,))
        model = sub.source_model.iloc[0] if "source_model" in sub else ""
        label = {
            "main": f"main ({model}, deflector-like hosts)",
            "morphology": f"{model} sources",
            "allhosts": "all N1 hosts",
            "no_inner": "inner image suppressed (paired)",
        }.get(str(v), f"Moffat β {str(v)[9:]} (paired)" if str(v).startswith("psf_beta_") else str(v))
        out.append((label, post["mean"], post[f"lo{tag}"], post[f"hi{tag}"]))
    return out


def mag_curves(
    inj: pd.DataFrame, theta_e: np.ndarray, edges: np.ndarray, cfg: SelectionConfig
) -> tuple[np.ndarray, list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]]:
    """C(m_src) over all PSF/depth cells of the main injections, one curve per θE: (bin centres, [(label,
    mean, lower, upper)])."""
    main = inj[inj.variant == "main"]
    centres = (edges[:-1] + edges[1:]) / 2
    b = np.clip(np.searchsorted(edges, main.src_mag_r.to_numpy(), side="right") - 1, 0, len(centres) - 1)
    tag = int(round(cfg.interval * 100))
    out = []
    for te in theta_e:
        sel = main.theta_e.to_numpy() == te
        k = np.bincount(b[sel], weights=main.detected.to_numpy()[sel].astype(float), minlength=len(centres))
        n = np.bincount(b[sel], minlength=len(centres)).astype(float)
        post = beta_posterior(k, n, cfg.prior, (cfg.interval,))
        out.append((f"θE {te:g}″", post["mean"], post[f"lo{tag}"], post[f"hi{tag}"]))
    return centres, out
