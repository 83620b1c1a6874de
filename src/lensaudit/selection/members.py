"""The selection function of each ensemble member and of the ensembles (issue 20): the inject stage's
injection stamps scored by every member and combined by mean logit and by the meta-learner, each model at ITS
OWN operating threshold (its evaluate() audit's ``operating_threshold``), tabulated as the 3-D
C(θE, PSF, depth) of the main-prior injections with Beta posteriors by the selection stage's own code
(:func:`lensaudit.selection.conditional.build_tables`, its ``marginal``), and the pairwise differences.

``ensemble/selection_members.parquet`` has one row per cell × model; :func:`compare` summarises each pair of
models over the cells sufficient in both: median and max |ΔC| and the cells whose |ΔC| exceeds the combined
1σ, √(var_a + var_b) of the two Beta posteriors."""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from typing import Any, cast

import numpy as np
import pandas as pd

from lensaudit.config import InjectConfig, SelectionConfig
from lensaudit.selection import conditional
from lensaudit.selection.completeness import provenance
from lensaudit.selection.grid import grid_of
from lensaudit.selection.scoring import score_injections
from lensaudit.stamps.store import StampStore
from lensaudit.train.ensemble import MetaLearner, ensemble_logit
from lensaudit.train.infer import FrozenModel

#: the per-model columns of ``selection_members.parquet`` besides the grid's
TABLE_COLUMNS = ["n", "k", "c_mean", "c_lo68", "c_hi68", "c_lo95", "c_hi95", "c_var", "insufficient"]


class _Logits:
    """Precomputed logits of the injection stamps (row i = store row i) with a model's ``score_rows``, so
    that :func:`score_injections` applies its one rule (score = sigmoid(logit) ≥ threshold) to an ensemble."""

    def __init__(self, logit: np.ndarray):
        self.logit = logit

    def score_rows(self, store: Any, rows: np.ndarray, on_batch: Callable[[int], Any] | None = None) -> Any:
        return self.logit[np.asarray(rows, np.int64)]


def injection_logits(
    members: dict[str, FrozenModel],
    store: Any,
    n: int,
    meta: MetaLearner | None,
    on_batch: Callable[[int], Any] | None = None,
) -> dict[str, np.ndarray]:
    """Logits of the ``n`` injection stamps: ``member:<arch>`` for each member (each scored once), then
    ``ensemble:mean_logit`` and, with ``meta``, ``ensemble:meta`` (the val/test tables' combination rule,
    :func:`~lensaudit.train.ensemble.ensemble_logit`)."""
    rows = np.arange(n)
    out = {f"member:{a}": m.score_rows(store, rows, on_batch=on_batch) for a, m in members.items()}
    z = np.stack(list(out.values()))
    out["ensemble:mean_logit"] = ensemble_logit(z, None, z.dtype)
    if meta is not None:
        out["ensemble:meta"] = ensemble_logit(z, meta, z.dtype)
    return out


def member_tables(
    inj: pd.DataFrame,
    store: StampStore,
    logits: dict[str, np.ndarray],
    thresholds: dict[str, float],
    icfg: InjectConfig,
    scfg: SelectionConfig,
    operating_point: str,
) -> pd.DataFrame:
    """One row per grid cell × model: ``model``, ``threshold``, the grid's columns and :data:`TABLE_COLUMNS`
    (the selection stage's 3-D marginal of the main-prior injections, each model detected at its own
    threshold). ``store``: the injection stamps (only passed through: ``logits`` are already computed)."""
    grid, _ = grid_of(icfg)
    parts = []
    for name, logit in logits.items():
        thr = float(thresholds[name])
        scored = score_injections(inj, cast(FrozenModel, _Logits(logit)), store, thr)
        meta = provenance(icfg, scfg, name, thr, operating_point, "n/a")
        t = conditional.build_tables(grid, scored, icfg, scfg, meta).marginal
        t.insert(0, "threshold", thr)
        t.insert(0, "model", name)
        parts.append(t)
    return pd.concat(parts, ignore_index=True)


def selection(
    models: dict[str, FrozenModel],
    meta: MetaLearner | None,
    inj: pd.DataFrame,
    store: StampStore,
    thresholds: dict[str, float],
    icfg: InjectConfig,
    scfg: SelectionConfig,
    operating_point: str,
    on_batch: Callable[[int], Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The selection function of every member and ensemble (:func:`injection_logits`, then
    :func:`member_tables` at each model's operating threshold from ``thresholds``, keyed like the logits) and
    its summary (``models``: :func:`model_summary`, ``pairs``: :func:`compare`)."""
    logits = injection_logits(models, store, len(inj), meta, on_batch)
    thr = {k: float(thresholds[k]) for k in logits}
    t = member_tables(inj, store, logits, thr, icfg, scfg, operating_point)
    return t, {"models": model_summary(t), "pairs": compare(t)}


def model_summary(table: pd.DataFrame) -> dict[str, Any]:
    """Per model: its operating threshold, sufficient cells, and the mean C over them."""
    out = {}
    for name, g in table.groupby("model", sort=False):
        ok = g[~g.insufficient]
        out[str(name)] = {
            "threshold": float(g.threshold.iloc[0]),
            "cells_sufficient": len(ok),
            "mean_c_sufficient": float(ok.c_mean.mean()) if len(ok) else None,
        }
    return out


def compare(table: pd.DataFrame) -> dict[str, Any]:
    """Per pair of models (``"a | b"``): cells sufficient in both, median and max |ΔC| over them, and how
    many differ by more than their combined 1σ (√(var_a + var_b)).

    >>> t = pd.DataFrame({"model": ["a", "a", "b", "b"], "cell": [0, 1, 0, 1], "c_mean": [0.5, 0.2, 0.6, 0.2],
    ...                   "c_var": [0.001, 0.01, 0.001, 0.01], "insufficient": [False, False, False, True]})
    >>> r = compare(t)["a | b"]
    >>> r["n_cells"], round(r["median_abs_dc"], 3), r["n_beyond_1sigma"]
    (1, 0.1, 1)
    """
    wide = table.pivot(index="cell", columns="model", values=["c_mean", "c_var", "insufficient"])
    out: dict[str, Any] = {}
    for a, b in combinations(list(dict.fromkeys(table.model)), 2):
        ok = ~(wide["insufficient"][a].astype(bool) | wide["insufficient"][b].astype(bool))
        dc = (wide["c_mean"][a] - wide["c_mean"][b])[ok].abs().to_numpy(float)
        sig = np.sqrt((wide["c_var"][a] + wide["c_var"][b])[ok].to_numpy(float))
        out[f"{a} | {b}"] = {
            "n_cells": int(ok.sum()),
            "median_abs_dc": float(np.median(dc)) if len(dc) else None,
            "max_abs_dc": float(dc.max()) if len(dc) else None,
            "n_beyond_1sigma": int((dc > sig).sum()),
        }
    return out
