"""Completeness per grid cell: detections among the injections of each cell with Beta posteriors (3-D, and
4-D with a magnitude axis), and the provenance header of the lookup tables
(:class:`~lensaudit.selection.table.SelectionFunction`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.config import InjectConfig, SelectionConfig
from lensaudit.selection.binomial import beta_posterior
from lensaudit.selection.table import beta_variance


def _posterior_columns(t: pd.DataFrame, cfg: SelectionConfig, n_min: int) -> pd.DataFrame:
    """Add the Beta-posterior columns and ``insufficient`` to a table with integer ``n`` and ``k``."""
    t["n"], t["k"] = t.n.astype(int), t.k.astype(int)
    t = posterior_columns(t, cfg)
    t["insufficient"] = t.n < n_min
    return t


def posterior_columns(t: pd.DataFrame, cfg: SelectionConfig) -> pd.DataFrame:
    """Set the Beta-posterior columns (``c_mean``, the ``cfg.interval`` and 95% intervals, ``c_var``) of a
    table with ``n`` and ``k`` (``k`` may be fractional: a re-weighted table, :mod:`.sizes`)."""
    post = beta_posterior(t.k, t.n, cfg.prior, (cfg.interval, 0.95))
    tag = int(round(cfg.interval * 100))
    t["c_mean"], t["c_lo68"], t["c_hi68"] = post["mean"], post[f"lo{tag}"], post[f"hi{tag}"]
    t["c_lo95"], t["c_hi95"] = post["lo95"], post["hi95"]
    t["c_var"] = beta_variance(t.k, t.n, cfg.prior)
    return t


def completeness_table(grid: pd.DataFrame, inj: pd.DataFrame, cfg: SelectionConfig) -> pd.DataFrame:
    """One row per grid cell: injections ``n``, detections ``k``, posterior mean and central intervals
    (``cfg.interval`` as ``c_lo68``/``c_hi68``, and 95%), posterior variance ``c_var`` and ``insufficient``
    (n < ``cfg.n_min``).

    ``inj`` needs ``cell`` and a boolean ``detected`` column; cells without injections get n = k = 0.

    >>> from lensaudit.selection.grid import cells
    >>> import numpy as np
    >>> g = cells(np.array([1.0]), np.array([1.0]), np.array([24.0]))
    >>> inj = pd.DataFrame({"cell": [0, 0], "detected": [True, False]})
    >>> t = completeness_table(g, inj, SelectionConfig(n_min=2))
    >>> float(t.c_mean[0]), bool(t.insufficient[0])
    (0.5, False)
    """
    g = inj.groupby("cell").agg(n=("detected", "size"), k=("detected", "sum"))
    t = grid.join(g, on="cell").fillna({"n": 0, "k": 0})
    return _posterior_columns(t, cfg, cfg.n_min)


def completeness_table4(
    grid: pd.DataFrame,
    inj: pd.DataFrame,
    mag_col: str,
    edges: np.ndarray,
    cfg: SelectionConfig,
    n_min: int,
) -> pd.DataFrame:
    """One row per grid cell × magnitude bin [edges[j], edges[j+1]) (the last bin closed): the grid row's
    columns, ``i_mag``, the bin centre ``<mag_col>`` and edges ``<mag_col>_lo``/``_hi``, then ``n``, ``k``,
    the posterior columns of :func:`completeness_table` and ``insufficient`` (n < ``n_min``).

    ``inj`` needs ``cell``, a boolean ``detected`` and ``mag_col``; injections outside the edges (or with a
    non-finite magnitude) are dropped.

    >>> from lensaudit.selection.grid import cells
    >>> g = cells(np.array([1.0]), np.array([1.0]), np.array([24.0]))
    >>> det, mag = [True, True, False, False], [21.0, 22.5, 23.0, 30.0]
    >>> inj = pd.DataFrame({"cell": 0, "detected": det, "src_mag": mag})
    >>> t = completeness_table4(g, inj, "src_mag", np.array([20.0, 22.0, 23.0]), SelectionConfig(), 2)
    >>> t[["i_mag", "src_mag", "src_mag_lo", "src_mag_hi", "n", "k"]].to_dict("list")
    {'i_mag': [0, 1], 'src_mag': [21.0, 22.5], 'src_mag_lo': [20.0, 22.0], 'src_mag_hi': [22.0, 23.0], \
'n': [1, 2], 'k': [1, 1]}
    >>> t.insufficient.tolist(), bool(t.c_var[1] > 0)
    ([True, False], True)
    """
    edges = np.asarray(edges, float)
    if edges.ndim != 1 or len(edges) < 2 or not (np.diff(edges) > 0).all():
        raise ValueError(f"magnitude bin edges must increase: {edges.tolist()}")
    nb = len(edges) - 1
    m = inj[mag_col].to_numpy(float)
    keep = np.isfinite(m) & (m >= edges[0]) & (m <= edges[-1])
    j = np.clip(np.searchsorted(edges, m[keep], side="right") - 1, 0, nb - 1)
    d = pd.DataFrame(
        {"cell": inj["cell"].to_numpy()[keep], "i_mag": j, "detected": inj["detected"].to_numpy(bool)[keep]}
    )
    g = d.groupby(["cell", "i_mag"]).detected.agg(n="size", k="sum")
    bins = pd.DataFrame(
        {
            "i_mag": np.arange(nb),
            mag_col: (edges[:-1] + edges[1:]) / 2,
            f"{mag_col}_lo": edges[:-1],
            f"{mag_col}_hi": edges[1:],
        }
    )
    t = grid.merge(bins, how="cross").join(g, on=["cell", "i_mag"]).fillna({"n": 0, "k": 0})
    return _posterior_columns(t, cfg, n_min)


def provenance(
    icfg: InjectConfig,
    cfg: SelectionConfig,
    model_sha256: str,
    threshold: float,
    operating_point: str,
    verdict: str,
) -> dict[str, object]:
    """The provenance header every selection table carries (FITS keys): grid, source prior (``PRIOR``; the
    source half-light radius prior ``PRIORRE``), frozen-model hash, operating threshold and point, interval,
    n_min, Beta prior, smoothing (none) and the realism verdict."""
    return {
        "GRIDTE": f"{icfg.theta_e_grid}",
        "GRIDPSF": f"{icfg.psf_grid}",
        "GRIDDEP": f"{icfg.depth_grid}",
        "PRIOR": f"r {icfg.src_mag_r_range} mu {icfg.magnification_range} {icfg.source_model}"[:68],
        # the injected sources' half-light radius (arcsec), which the table averages over: the prior that
        # a re-weighting to another population's source sizes divides by (selection/sizes.py)
        "PRIORRE": "uniform({:g},{:g})".format(*icfg.src_reff_arcsec_range),
        "MODELSHA": model_sha256[:64],
        "THRESH": threshold,
        "OPPOINT": operating_point,
        "INTERVAL": cfg.interval,
        "NMIN": cfg.n_min,
        "BPRIOR": cfg.prior,
        "SMOOTH": cfg.smoothing,
        "REALISM": verdict,
    }


def selection_counts(inj: pd.DataFrame, table: pd.DataFrame) -> dict[str, int]:
    """The selection manifest's counts: injections scored, cells, sufficient cells, main-prior detections."""
    return {
        "injections_scored": len(inj),
        "cells": len(table),
        "cells_sufficient": int((~table.insufficient).sum()),
        "detected_main": int(inj[inj.variant == "main"].detected.sum()),
    }
