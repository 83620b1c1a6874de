"""The closure test: detections of known-truth lenses expected from the selection function vs observed.

Each true lens contributes its completeness at its own (θE, PSF, depth, magnitude), interpolated from the
cells' detected fractions k/n (:func:`unbiased`) — the magnitude on the table's 4th axis: the unlensed source
r magnitude (``src_mag``) or the lensed arc's r magnitude (``arc_mag``). Expected detections in a bin are Σ p;
σ² has two parts, reported separately: the Bernoulli scatter of the lenses, Σ p(1 − p), and the table's own
uncertainty. The table's part is, by default, a **host bootstrap** (:func:`host_replicates`): the injections
share a few dozen hosts (each cell's ~100 draw from ~20), so they are not independent draws and each cell's
Beta posterior understates its uncertainty; resampling the hosts with replacement and re-tabulating gives
replicate tables, and the variance over replicates of Σ_lenses p is the table's part, cross-cell
correlations included. Without replicates (``selection.closure_host_bootstrap`` = 0) it is the Beta-posterior
sum Σ_cells (Σ_lenses W)² Var(C_cell) with W the interpolation weights
(:meth:`~lensaudit.selection.table.SelectionFunction.design_matrix`), which ignores both; both are reported
(``sigma_table_beta``, ``sigma_table_hosts``). Bins share the table's errors; the χ² uses the diagonal
(documented in docs/selection.md).

Reported: pulls per θE bin, per bin of the table's magnitude and per 1-mag bin of the true unlensed source
magnitude (``src_mag_bins``, whatever the table's axis), the fraction of those bins within 1σ and 2σ, χ² over
the θE × magnitude bins with ≥ 5 expected detections and its p-value, and the total pull. :func:`ladder` puts
the total pulls of several tables side by side (the closure ladder), so a reader sees which term closes the
gap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lensaudit.selection.population import LENS_COLUMNS as POPULATION_COLUMNS
from lensaudit.selection.population import arc_mag
from lensaudit.selection.table import SelectionFunction

#: the true-lens columns a closure needs (truth names of the synthetic sky)
LENS_COLUMNS = ("theta_e_arcsec", "psf_fwhm_r", "psfdepth_mag_r", "src_mag_r", "arc_mag_r", "score")
#: the true lenses' source half-light radius (arcsec), for the source-size re-weighting (:mod:`.sizes`)
SIZE_COLUMN = "src_rhalf_arcsec"
#: the lens magnitude column for each kind of 4th axis
MAG_OF_AXIS = {"src_mag": "src_mag_r", "arc_mag": "arc_mag_r"}
#: bins with fewer expected detections stay out of the χ²
CHI2_MIN_EXPECTED = 5.0
#: issue 15's closure criteria (the closure gates' pass/warn lines): fraction of θE and magnitude bins within
#: 1σ, χ² p-value, |total pull|
CRITERIA = {"fraction_within_1sigma": 0.6, "chi2_pvalue": 0.05, "abs_total_pull": 2.0}
#: draws of the predictive check (:func:`predictive`)
PREDICTIVE_DRAWS = 4000


def sky_lenses(truth: Path, scores: Path) -> pd.DataFrame:
    """The synthetic sky's true lenses that the finder scored in the evaluate stage (its held-out
    positives), with their truth columns (:data:`LENS_COLUMNS`)."""
    tr = pd.read_parquet(truth)
    sc = pd.read_parquet(scores)
    t = tr[tr.kind == "lens"].assign(arc_mag_r=lambda d: arc_mag(d.arc_flux_r))
    # a sky built before the truth table carried the source size has no size column: no size rung then
    cols = [c for c in POPULATION_COLUMNS if c not in ("brickname", "score", "detected") and c in t]
    return sc[sc.label == 1][["galaxy_id", "score"]].merge(t[cols], on="galaxy_id")


def predict(sf: SelectionFunction, lenses: pd.DataFrame, mag: str | None) -> tuple[np.ndarray, Any]:
    """(completeness per lens, interpolation weights onto the table's rows). θE, PSF and depth are clipped to
    the grid; ``mag`` names the lens column on the table's 4th axis (None: the marginal under the table's
    injection prior). Lenses whose magnitude lies outside the table, or whose cells are insufficient, get
    NaN."""
    axes = sf.axes
    x = [
        np.clip(lenses[c].to_numpy(float), ax[0], ax[-1])
        for c, ax in zip(("theta_e_arcsec", "psf_fwhm_r", "psfdepth_mag_r"), axes)
    ]
    m = None
    ok = np.ones(len(lenses), bool)
    if mag is not None:
        m = lenses[mag].to_numpy(float)
        lo, hi = sf.mag_range
        ok = np.isfinite(m) & (m >= lo) & (m <= hi)
        m = np.where(ok, m, 0.5 * (lo + hi))
    w = sf.design_matrix(x[0], x[1], x[2], src_mag=m)
    p = np.asarray(w @ unbiased(sf.table), dtype=np.float64)
    return np.where(ok, p, np.nan), w


def unbiased(table: pd.DataFrame) -> np.ndarray:
    """Per table row, the detected fraction k/n — unbiased, unlike the Beta posterior mean, which a cell of
    7 injections pulls from 1 to 0.94 and from 0 to 0.06 (summed over a population, a bias of many σ) — NaN
    where the cell is insufficient or empty, so that a lens using it is left out."""
    n, k = table.n.to_numpy(float), table.k.to_numpy(float)
    bad = table.insufficient.to_numpy(bool) | (n == 0)
    return np.where(bad, np.nan, k / np.where(n > 0, n, 1.0))


def table_rows(table: pd.DataFrame, inj: pd.DataFrame, axis: str | None) -> np.ndarray:
    """Per injection of ``inj``, the row of ``table`` it was tabulated in (−1: outside the table).

    ``table``: a 4-D table (``cell``, ``i_mag`` and the edges ``<axis>_lo``/``_hi``) with ``axis`` its 4th
    axis, or a 3-D table (``cell``) with ``axis`` None; ``inj``: its injections (``cell`` and the ``axis``
    column)."""
    cell = inj["cell"].to_numpy()
    if axis is None:
        return np.asarray(pd.Index(table["cell"].to_numpy()).get_indexer(cell))
    lo, hi = table[f"{axis}_lo"].to_numpy(float), table[f"{axis}_hi"].to_numpy(float)
    edges = np.r_[np.unique(lo), hi.max()]
    m = inj[axis].to_numpy(float)
    inside = np.isfinite(m) & (m >= edges[0]) & (m <= edges[-1])
    j = np.clip(np.searchsorted(edges, np.where(inside, m, edges[0]), side="right") - 1, 0, len(edges) - 2)
    keys = pd.MultiIndex.from_arrays([table["cell"].to_numpy(), table["i_mag"].to_numpy()])
    return np.where(inside, keys.get_indexer(pd.MultiIndex.from_arrays([cell, j])), -1)


def host_replicates(
    table: pd.DataFrame,
    inj: pd.DataFrame,
    axis: str | None,
    n_boot: int,
    seed: int,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """(``n_boot``, table rows) replicate detected fractions: the injections' hosts (``host_galaxy_id``)
    resampled with replacement, each injection weighted by its host's multiplicity (times its own
    ``weights``, when given: a re-weighted table, :mod:`lensaudit.selection.sizes`), every row
    re-tabulated. A row the resample leaves empty keeps its own k/n; a row :func:`unbiased` voids stays NaN.

    ``table``, ``axis`` and ``inj`` as :func:`table_rows` (``inj`` also with ``host_galaxy_id`` and
    ``detected``)."""
    base = unbiased(table)
    row = table_rows(table, inj, axis)
    ok = row >= 0
    row, det = row[ok], inj["detected"].to_numpy(float)[ok]
    own = np.ones(int(ok.sum())) if weights is None else np.asarray(weights, float)[ok]
    hosts, h = np.unique(inj["host_galaxy_id"].to_numpy()[ok], return_inverse=True)
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, len(table)))
    for b in range(n_boot):
        mult = np.bincount(rng.integers(0, len(hosts), len(hosts)), minlength=len(hosts))[h] * own
        n = np.bincount(row, weights=mult, minlength=len(table))
        k = np.bincount(row, weights=mult * det, minlength=len(table))
        out[b] = np.where(n > 0, k / np.where(n > 0, n, 1.0), base)
    out[:, ~np.isfinite(base)] = np.nan
    return out


def _bin_stats(
    p: np.ndarray,
    w: Any,
    det: np.ndarray,
    c_var: np.ndarray,
    sel: np.ndarray,
    reps: np.ndarray | None = None,
) -> dict[str, Any]:
    exp = float(p[sel].sum())
    var_bin = max(0.0, float((p[sel] * (1 - p[sel])).sum()))  # ≥ 0: interpolated p can be 1 + 1e-16
    col = np.asarray(w[np.flatnonzero(sel)].sum(axis=0)).ravel()
    var_beta = float((col**2 * np.nan_to_num(c_var)).sum())
    var_hosts = float(np.var(reps[sel].sum(axis=0), ddof=1)) if reps is not None else float("nan")
    var_tab = var_hosts if reps is not None else var_beta
    obs = int(det[sel].sum())
    sigma = float(np.sqrt(var_bin + var_tab))
    return {
        "n": int(sel.sum()),
        "expected": exp,
        "observed": obs,
        "sigma": sigma,
        "sigma_binomial": float(np.sqrt(var_bin)),
        "sigma_table": float(np.sqrt(var_tab)),
        "sigma_table_beta": float(np.sqrt(var_beta)),
        "sigma_table_hosts": float(np.sqrt(var_hosts)),
        "pull": float((obs - exp) / sigma) if sigma > 0 else float("nan"),
    }


def closure_of(
    sf: SelectionFunction,
    lenses: pd.DataFrame,
    op: float,
    mag: str | None,
    n_theta_bins: int = 6,
    replicates: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The closure statistics of true ``lenses`` (:data:`LENS_COLUMNS`) against ``sf`` at threshold ``op``.

    ``mag``: the lens column on the table's 4th axis (:data:`MAG_OF_AXIS`), or None for the marginal table.
    ``replicates``: the table's host-bootstrap replicates (:func:`host_replicates`), which then give σ's
    table part; None: the cells' Beta posterior variances.
    Magnitude bins are 1-mag bins of the lenses' magnitude on the table's axis (``src_mag_r`` for the
    marginal), θE bins ``n_theta_bins`` equal bins over the grid ± half a step. ``predictive``: how often a
    correct table would meet each criterion (:func:`predictive`, seeded by ``seed``)."""
    p, w = predict(sf, lenses, mag)
    use = np.isfinite(p)
    lz = lenses[use].reset_index(drop=True)
    p, w = p[use], w[np.flatnonzero(use)]
    reps = None if replicates is None else np.asarray(w @ np.nan_to_num(replicates).T)  # (lenses, replicates)
    det = lz.score.to_numpy() >= op
    c_var = sf.table.c_var.to_numpy(float) if "c_var" in sf.table else np.zeros(len(sf.table))
    te = sf.axes[0]
    step = te[1] - te[0] if len(te) > 1 else 0.5
    t_edges = np.linspace(te[0] - step / 2, te[-1] + step / 2, min(n_theta_bins, len(te)) + 1)
    mcol = mag or "src_mag_r"
    mv = lz[mcol].to_numpy(float)
    m_edges = _unit_edges(mv)  # 1-mag bins of the lenses' magnitudes (the table's own bins are finer)
    stats_of = lambda sel: _bin_stats(p, w, det, c_var, sel, reps)  # noqa: E731
    tb, theta_bins, tsel = _bins(lz.theta_e_arcsec.to_numpy(float), t_edges, stats_of)
    mb, mag_bins, msel = _bins(mv, m_edges, stats_of)
    src = lz.src_mag_r.to_numpy(float)
    _, src_bins, _ = _bins(src, _unit_edges(src), stats_of)
    cells = []
    for i in range(len(t_edges) - 1):
        for j in range(len(m_edges) - 1):
            sel = (tb == i) & (mb == j)
            if sel.any():
                cells.append({"theta_bin": i, "mag_bin": j, **stats_of(sel)})
    chi = [c for c in cells if c["expected"] >= CHI2_MIN_EXPECTED and np.isfinite(c["pull"])]
    chi2 = float(sum(c["pull"] ** 2 for c in chi))
    bins = [(s, b) for s, b in zip(tsel + msel, theta_bins + mag_bins) if np.isfinite(b["pull"])]
    pulls = np.array([b["pull"] for _, b in bins], float)
    chi_cells = [((tb == c["theta_bin"]) & (mb == c["mag_bin"]), c) for c in chi]
    total = stats_of(np.ones(len(lz), bool))
    return {
        "available": True,
        "axis": mag or "marginal",
        "n_lenses": int(len(lz)),
        "n_excluded": int((~use).sum()),
        "threshold": float(op),
        "theta_bins": theta_bins,
        "mag_bins": mag_bins,
        "mag_column": mcol,
        "src_mag_bins": src_bins,
        "cells": cells,
        "total": total,
        "predictive": predictive(p, reps, bins, chi_cells, total, seed=seed),
        "table_sigma": "host bootstrap" if replicates is not None else "Beta posterior, diagonal",
        "fraction_within_1sigma": float(np.mean(np.abs(pulls) <= 1)) if len(pulls) else float("nan"),
        "fraction_within_2sigma": float(np.mean(np.abs(pulls) <= 2)) if len(pulls) else float("nan"),
        "chi2": chi2,
        "chi2_dof": len(chi),
        "chi2_pvalue": float(stats.chi2.sf(chi2, len(chi))) if chi else float("nan"),
    }


def predictive(
    p: np.ndarray,
    reps: np.ndarray | None,
    bins: list[tuple[np.ndarray, dict[str, Any]]],
    cells: list[tuple[np.ndarray, dict[str, Any]]],
    total: dict[str, Any],
    n_draws: int = PREDICTIVE_DRAWS,
    seed: int = 0,
) -> dict[str, Any]:
    """How often a *correct* table would meet each closure criterion (:data:`CRITERIA`) with these lenses and
    bins: the test's own pass rate, so that a reader can tell a failed criterion from bad luck; and, per
    criterion, how often such a table does as badly as the observed statistic or worse (``p_as_bad``: a
    predictive p-value; small values say the miss is unlikely to be chance).

    Each draw takes one of the table's host-bootstrap replicates (``reps``, lenses × replicates: the table's
    own uncertainty; None: the table as it is, binomial scatter only) as the truth, detects each lens with its
    probability there, and computes the bins' pulls against the expectations and σ's actually used
    (``bins``: the θE and magnitude bins with a finite pull; ``cells``: the χ² cells; ``total``).

    >>> p = np.full(200, 0.5)
    >>> sel = [np.arange(200) % 4 == i for i in range(4)]
    >>> st = lambda s: {"expected": p[s].sum(), "sigma": np.sqrt((p[s] * (1 - p[s])).sum())}
    >>> out = predictive(p, None, [(s, st(s)) for s in sel], [], st(np.ones(200, bool)))
    >>> round(out["fraction_within_1sigma_mean"], 2), out["p_pass"]["abs_total_pull"] > 0.9
    (0.68, True)
    """
    rng = np.random.default_rng(seed)
    if reps is not None and reps.shape[1]:
        truth = np.clip(np.nan_to_num(reps[:, rng.integers(reps.shape[1], size=n_draws)]), 0.0, 1.0)
    else:
        truth = np.repeat(p[:, None], n_draws, axis=1)
    det = (rng.random(truth.shape) < truth).astype(np.float32)

    def pulls(sets: list[tuple[np.ndarray, dict[str, Any]]]) -> np.ndarray:
        if not sets:
            return np.zeros((0, n_draws))
        m = np.stack([s for s, _ in sets]).astype(np.float32)
        e = np.array([b["expected"] for _, b in sets])[:, None]
        sg = np.array([b["sigma"] for _, b in sets])[:, None]
        return (m @ det - e) / sg

    b, c = pulls(bins), pulls(cells)
    within = np.mean(np.abs(b) <= 1, axis=0) if len(b) else np.full(n_draws, np.nan)
    chi_p = stats.chi2.sf((c**2).sum(axis=0), len(c))
    sig = total["sigma"]
    dev = np.abs(det.sum(axis=0) - total["expected"])  # each draw's |observed − expected| in detections
    ok = {
        "fraction_within_1sigma": within >= CRITERIA["fraction_within_1sigma"] if len(b) else None,
        "chi2_pvalue": chi_p >= CRITERIA["chi2_pvalue"] if len(c) else None,
        # no σ (every lens certain): the total pull is undefined, as in the closure itself
        "abs_total_pull": dev <= CRITERIA["abs_total_pull"] * sig if sig > 0 else None,
    }
    judged = [v for v in ok.values() if v is not None]
    all_ok = np.logical_and.reduce(judged) if judged else None
    # the observed statistics, and how often a correct table does as badly or worse (a predictive p-value)
    bp, cp = [x.get("pull") for _, x in bins], [x.get("pull") for _, x in cells]  # None: not observed
    obs_within = float(np.mean(np.abs(np.array(bp, float)) <= 1)) if bins and None not in bp else None
    chi_obs = float(np.sum(np.square(np.array(cp, float)))) if cells and None not in cp else None
    obs_chi_p = None if chi_obs is None else float(stats.chi2.sf(chi_obs, len(cp)))
    obs_pull = abs(float(total["pull"])) if sig > 0 and np.isfinite(total.get("pull", np.nan)) else None
    as_bad = {
        "fraction_within_1sigma": None if obs_within is None else within <= obs_within,
        "chi2_pvalue": None if obs_chi_p is None else chi_p <= obs_chi_p,
        "abs_total_pull": None if obs_pull is None else dev >= obs_pull * sig,
    }
    return {
        "draws": n_draws,
        "truth": "host-bootstrap replicate tables" if reps is not None else "the table (binomial only)",
        "criteria": dict(CRITERIA),
        "fraction_within_1sigma_mean": float(np.mean(within)),
        # a criterion without bins to judge is None, and "all" is over the others
        "p_pass": {k: None if v is None else float(np.mean(v)) for k, v in ok.items()}
        | {"all": None if all_ok is None else float(np.mean(all_ok))},
        "p_as_bad": {k: None if v is None else float(np.mean(v)) for k, v in as_bad.items()},
    }


def _bins(
    values: np.ndarray, edges: np.ndarray, stats_of: Any
) -> tuple[np.ndarray, list[dict[str, Any]], list[np.ndarray]]:
    """(the bin index of each value, clipped to the edges; the statistics of every non-empty bin with its
    ``lo`` and ``hi`` edges; those bins' masks over the values)."""
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    masks = [idx == i for i in range(len(edges) - 1)]
    keep = [i for i in range(len(edges) - 1) if masks[i].any()]
    out = [{"lo": float(edges[i]), "hi": float(edges[i + 1]), **stats_of(masks[i])} for i in keep]
    return idx, out, [masks[i] for i in keep]


def _unit_edges(m: np.ndarray) -> np.ndarray:
    f = m[np.isfinite(m)]
    if not len(f):
        return np.array([0.0, 1.0])
    return np.arange(np.floor(f.min()), np.ceil(f.max()) + 1.0 + 1e-9, 1.0)


def ladder(rungs: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The closure ladder: one row per (key, description, closure) with the total and its σ parts."""
    out = []
    for key, what, c in rungs:
        t = c["total"]
        out.append(
            {
                "rung": key,
                "what": what,
                "expected": t["expected"],
                "observed": t["observed"],
                "sigma_binomial": t["sigma_binomial"],
                "sigma_table": t["sigma_table"],
                "sigma_table_beta": t["sigma_table_beta"],
                "sigma_table_hosts": t["sigma_table_hosts"],
                "pull": t["pull"],
                "chi2_pvalue": c["chi2_pvalue"],
                "fraction_within_1sigma": c["fraction_within_1sigma"],
            }
        )
    return out


def unavailable(reason: str) -> dict[str, Any]:
    """The closure record of a run without known-truth lenses."""
    return {"available": False, "reason": reason}
