"""The audit of the frozen finder on the val and test splits: operating thresholds, AUC with bootstrap CIs,
Tier-A/B recall, calibration (ECE, temperature), FPR by N2 category, metrics stratified by observing
conditions, recall on the DESI strong-lens VAC and the shortcut measurements.

The evaluate gates are declared in :mod:`lensaudit.validation.gates.evaluate` and computed from the written
artifacts. Intervals are at ``EvaluateConfig.interval`` (Jeffreys for rates, percentile bootstrap for AUCs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lensaudit.audit import metrics as M
from lensaudit.audit.shortcuts import shortcut_metrics
from lensaudit.audit.stratified import add_bins, stratified
from lensaudit.config import EvaluateConfig

#: the conditions the stratified table is grouped by, in order
STRATA_BY = ("psf_bin", "depth_bin", "nobs_z_bin", "type")


@dataclass
class Evaluation:
    """What :func:`evaluate` found: ``metrics`` (metrics.json), ``strata`` (stratified.parquet), the scored
    ``test`` and ``val`` tables and the operating threshold ``op`` (score)."""

    metrics: dict[str, Any]
    strata: pd.DataFrame
    test: pd.DataFrame
    val: pd.DataFrame
    op: float
    counts: dict[str, int]

    def extra(self, trustworthy: bool) -> dict[str, Any]:
        """The evaluate manifest's extra keys (read downstream: ``operating_threshold`` by failures);
        ``trustworthy``: no shortcut gate failed."""
        return {
            "trustworthy": trustworthy,
            "operating_threshold": self.op,
            "model_sha256": self.metrics["model_sha256"],
            "auc_test": self.metrics["auc_test"]["value"],
        }


def thresholds(cfg: EvaluateConfig, neg_scores: np.ndarray) -> tuple[dict[str, float], float]:
    """The named score thresholds (``score=S`` fixed ones, ``fpr=F`` at fixed FPR on ``neg_scores``, and the
    operating point) and the operating threshold. With no negatives an FPR threshold is 1.0.

    >>> cfg = EvaluateConfig(thresholds=[0.5], fixed_fprs=[0.5], operating_point="score=0.3")
    >>> thresholds(cfg, np.array([0.1, 0.2, 0.3, 0.4]))
    ({'score=0.5': 0.5, 'fpr=0.5': 0.20000000000000004, 'score=0.3': 0.3}, 0.3)
    """
    neg = neg_scores
    at_fpr = lambda f: M.threshold_at_fpr(neg, f) if len(neg) else 1.0  # noqa: E731
    out = {f"score={t:g}": float(t) for t in cfg.thresholds}
    for f in cfg.fixed_fprs:
        out[f"fpr={f:g}"] = at_fpr(f)
    kind, _, num = cfg.operating_point.partition("=")  # validated by EvaluateConfig: 'score=S' or 'fpr=F'
    if cfg.operating_point not in out:
        out[cfg.operating_point] = float(num) if kind == "score" else at_fpr(float(num))
    return out, out[cfg.operating_point]


def auc_difference_ci(val: pd.DataFrame, test: pd.DataFrame, n: int, seed: int) -> list[float] | None:
    """68% percentile-bootstrap interval of AUC(val) − AUC(test), both splits resampled independently
    (None when no resample has both classes in both)."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        a = val.iloc[rng.integers(0, len(val), len(val))]
        b = test.iloc[rng.integers(0, len(test), len(test))]
        d = M.roc_auc(a.label, a.score) - M.roc_auc(b.label, b.score)
        if np.isfinite(d):
            diffs.append(d)
    return list(np.quantile(diffs, [0.16, 0.84])) if diffs else None


def desi_vac_recall(vac: pd.DataFrame | None, scored: pd.DataFrame, op: float, level: float) -> dict | None:
    """Recall at the operating threshold of the DESI strong-lens VAC candidates matched (≤ 1″, nearest) to a
    scored stamp; None without the VAC."""
    if vac is None:
        return None
    from lensaudit.catalog.spatial import nearest_matches

    m = nearest_matches(vac.ra.to_numpy(), vac.dec.to_numpy(), scored, 1.0)
    hits = scored.iloc[m.row.to_numpy()]
    return {
        "n_vac": len(vac),
        "n_matched_stamps": int(len(hits)),
        "recall_at_op": M.rate(hits.score >= op, level),
    }


def evaluate(
    df: pd.DataFrame, cfg: EvaluateConfig, seed: int, model_sha: str, vac: pd.DataFrame | None = None
) -> Evaluation:
    """The audit of a :func:`~lensaudit.audit.scoring.score_table` of the val and test splits (with the
    quality columns, for the shortcut measurements). ``vac``: the DESI strong-lens VAC table (ra, dec in
    degrees), if any."""
    test, val = df[df.split == "test"], df[df.split == "val"]
    lv = cfg.interval
    thr, op = thresholds(cfg, test[test.label == 0].score.to_numpy())
    auc = M.bootstrap_ci(test.label.to_numpy(), test.score.to_numpy(), n=cfg.n_bootstrap, seed=seed)
    auc_val = M.bootstrap_ci(val.label.to_numpy(), val.score.to_numpy(), n=cfg.n_bootstrap, seed=seed)
    diff_ci = auc_difference_ci(val, test, cfg.n_bootstrap, seed)
    recall = {}
    for tier in ("A", "B"):
        s = test[(test.label == 1) & (test.tier == tier)].score
        recall[tier] = {name: M.rate(s >= t, lv) for name, t in thr.items()}
    fit_t = cfg.temperature_scaling and val.label.nunique() == 2
    T = M.fit_temperature(val.logit.to_numpy(), val.label.to_numpy()) if fit_t else 1.0
    p_cal = 1 / (1 + np.exp(-test.logit.to_numpy() / T))
    tneg = test[test.label == 0]
    fpr_cat = {c: M.rate(g.score >= op, lv) for c, g in tneg.groupby(tneg.n2_category.replace("", "N1"))}
    tb = add_bins(test)
    strata = pd.concat([stratified(tb, op, by, cfg.min_bin_count, lv) for by in STRATA_BY], ignore_index=True)
    vac_recall = desi_vac_recall(vac, df, op, lv)
    quality = df[["label"] + [c for c in df.columns if c.startswith(("core", "annulus_", "mad_"))]]
    sc = shortcut_metrics(quality, seed)
    y, s = test.label.to_numpy(), test.score.to_numpy()
    metrics = {
        "model_sha256": model_sha,
        "n_test": len(test),
        "n_test_pos": int(test.label.sum()),
        "auc_test": auc,
        "auc_val": auc_val,
        "auc_val_minus_test": {"value": auc_val["value"] - auc["value"], "ci68": diff_ci},
        "thresholds": thr,
        "operating_point": cfg.operating_point,
        "operating_threshold": op,
        "recall_tier_A": recall["A"],
        "recall_tier_B": recall["B"],
        "tpr0": M.tpr_at_fp(test.label, test.score, 0),
        "tpr10": M.tpr_at_fp(test.label, test.score, 10),
        "ece": M.ece(s, y, cfg.ece_bins),
        "ece_calibrated": M.ece(p_cal, y, cfg.ece_bins),
        "temperature": T,
        "reliability": M.reliability(s, y, cfg.ece_bins),
        "fpr_by_category": fpr_cat,
        "shortcuts": sc,
        "desi_sl_vac": vac_recall,
    }
    counts = {"scored": len(df), "test": len(test), "test_pos": int(test.label.sum()), "val": len(val)}
    return Evaluation(
        metrics=metrics,
        strata=strata,
        test=test,
        val=val,
        op=op,
        counts=counts,
    )


def gallery_picks(test: pd.DataFrame, k: int) -> list[tuple[str, pd.DataFrame, str]]:
    """The evaluate galleries as (artifact name, stamps, title): the ``k`` highest-scoring test negatives
    (hard negatives or missed lenses) and the ``k`` lowest-scoring Tier-A test lenses."""
    return [
        (
            "gallery_top_negatives",
            test[test.label == 0].nlargest(k, "score"),
            "highest-scoring negatives (hard negatives or missed lenses)",
        ),
        (
            "gallery_lowest_tier_A",
            test[(test.label == 1) & (test.tier == "A")].nsmallest(k, "score"),
            "lowest-scoring Tier-A lenses",
        ),
    ]
