"""Completeness per grid cell: detections among the injections of each cell with Beta posteriors, and the
lookup table (:class:`~lensaudit.selection.table.SelectionFunction`) with its FITS header."""

from __future__ import annotations

import pandas as pd

from lensaudit.config import InjectConfig, SelectionConfig
from lensaudit.selection.binomial import beta_posterior
from lensaudit.selection.table import SelectionFunction


def completeness_table(grid: pd.DataFrame, inj: pd.DataFrame, cfg: SelectionConfig) -> pd.DataFrame:
    """One row per grid cell: injections ``n``, detections ``k``, posterior mean and central intervals
    (``cfg.interval`` as ``c_lo68``/``c_hi68``, and 95%), and ``insufficient`` (n < ``cfg.n_min``).

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
    t["n"], t["k"] = t.n.astype(int), t.k.astype(int)
    post = beta_posterior(t.k, t.n, cfg.prior, (cfg.interval, 0.95))
    tag = int(round(cfg.interval * 100))
    t["c_mean"], t["c_lo68"], t["c_hi68"] = post["mean"], post[f"lo{tag}"], post[f"hi{tag}"]
    t["c_lo95"], t["c_hi95"] = post["lo95"], post["hi95"]
    t["insufficient"] = t.n < cfg.n_min
    return t


def lookup_table(
    table: pd.DataFrame,
    icfg: InjectConfig,
    cfg: SelectionConfig,
    model_sha256: str,
    threshold: float,
    operating_point: str,
    verdict: str,
) -> SelectionFunction:
    """The selection function with its provenance header: grid, source prior, frozen-model hash, operating
    threshold and point, interval, n_min, Beta prior and the realism verdict."""
    meta = {
        "GRIDTE": f"{icfg.theta_e_grid}",
        "GRIDPSF": f"{icfg.psf_grid}",
        "GRIDDEP": f"{icfg.depth_grid}",
        "PRIOR": f"r {icfg.src_mag_r_range} mu {icfg.magnification_range} {icfg.source_model}"[:68],
        "MODELSHA": model_sha256[:64],
        "THRESH": threshold,
        "OPPOINT": operating_point,
        "INTERVAL": cfg.interval,
        "NMIN": cfg.n_min,
        "BPRIOR": cfg.prior,
        "REALISM": verdict,
    }
    return SelectionFunction(table, meta)


def selection_counts(inj: pd.DataFrame, table: pd.DataFrame) -> dict[str, int]:
    """The selection manifest's counts: injections scored, cells, sufficient cells, main-prior detections."""
    return {
        "injections_scored": len(inj),
        "cells": len(table),
        "cells_sufficient": int((~table.insufficient).sum()),
        "detected_main": int(inj[inj.variant == "main"].detected.sum()),
    }
