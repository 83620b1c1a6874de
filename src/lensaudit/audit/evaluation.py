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

from lensaudit.audit import calibration as C
from lensaudit.audit import metrics as M
from lensaudit.audit.galaxyzoo import galaxy_zoo_audit
from lensaudit.audit.independence import recall_by_method
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


def auc_difference_ci(
    val: pd.DataFrame, test: pd.DataFrame, n: int, seed: int, level: float = 0.68
) -> list[float] | None:
    """Percentile-bootstrap interval (``level``, default 68%) of AUC(val) − AUC(test), both splits resampled
    independently (None when no resample has both classes in both)."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        a = val.iloc[rng.integers(0, len(val), len(val))]
        b = test.iloc[rng.integers(0, len(test), len(test))]
        d = M.roc_auc(a.label, a.score) - M.roc_auc(b.label, b.score)
        if np.isfinite(d):
            diffs.append(d)
    a = (1 - level) / 2
    return [float(q) for q in np.quantile(diffs, [a, 1 - a])] if diffs else None


def vac_grades(vac: pd.DataFrame, positives: pd.DataFrame | None) -> np.ndarray:
    """The grade of each VAC system: the tier (A, B) of the positive within 1″ (the VAC carries no grade
    column), ``not in lenscat`` otherwise (a lens only DESI found).

    >>> v = pd.DataFrame({"ra": [10.0, 20.0], "dec": [0.0, 0.0]})
    >>> vac_grades(v, pd.DataFrame({"ra": [10.0], "dec": [0.0001], "tier": ["A"]})).tolist()
    ['A', 'not in lenscat']
    """
    from lensaudit.catalog.spatial import nearest_matches

    g = np.full(len(vac), VAC_UNGRADED, dtype=object)
    if positives is not None and len(positives):
        m = nearest_matches(vac.ra.to_numpy(), vac.dec.to_numpy(), positives, 1.0)
        g[m.pos_index.to_numpy(int)] = positives.tier.to_numpy()[m.row.to_numpy(int)]
    return g.astype(str)


VAC_UNGRADED = "not in lenscat"


def desi_vac_recall(
    vac: pd.DataFrame | None,
    scored: pd.DataFrame,
    op: float,
    level: float,
    positives: pd.DataFrame | None = None,
) -> dict | None:
    """Recall at the operating threshold of the DESI strong-lens VAC candidates matched (≤ 1″, nearest) to a
    scored stamp, overall and by grade (:func:`vac_grades`); None without the VAC."""
    if vac is None:
        return None
    from lensaudit.catalog.spatial import nearest_matches

    m = nearest_matches(vac.ra.to_numpy(), vac.dec.to_numpy(), scored, 1.0)
    hits = scored.iloc[m.row.to_numpy()]
    grade = vac_grades(vac, positives)
    hg = grade[m.pos_index.to_numpy(int)]
    by_grade = {}
    for gr in ("A", "B", VAC_UNGRADED):
        sel = hg == gr
        by_grade[gr] = {
            "n_vac": int((grade == gr).sum()),
            "n_scored": int(sel.sum()),
            "recall_at_op": M.rate(hits.score.to_numpy()[sel] >= op, level),
        }
    return {
        "n_vac": len(vac),
        "n_matched_stamps": int(len(hits)),
        "recall_at_op": M.rate(hits.score >= op, level),
        "by_grade": by_grade,
    }


@dataclass
class Independent:
    """The optional outside inputs of the audit (issue 20): ``train`` a scored subsample of the train split
    (the train − val AUC red flag), ``vac`` the DESI strong-lens VAC (ra, dec), ``gz`` a Galaxy Zoo table
    (:func:`lensaudit.survey.galaxyzoo.read_gz_decals`), ``positives`` positives.parquet (refs, tiers)."""

    train: pd.DataFrame | None = None
    vac: pd.DataFrame | None = None
    gz: pd.DataFrame | None = None
    positives: pd.DataFrame | None = None


def evaluate(
    df: pd.DataFrame,
    cfg: EvaluateConfig,
    seed: int,
    model_sha: str,
    vac: pd.DataFrame | None = None,
    extra: Independent | None = None,
) -> Evaluation:
    """The audit of a :func:`~lensaudit.audit.scoring.score_table` of the val and test splits (with the
    quality columns, for the shortcut measurements). ``vac``: the DESI strong-lens VAC table (ra, dec in
    degrees), if any; ``extra``: the independent inputs (:class:`Independent`; its ``vac`` wins)."""
    ind = extra or Independent(vac=vac)
    test, val = df[df.split == "test"], df[df.split == "val"]
    lv = cfg.interval
    thr, op = thresholds(cfg, test[test.label == 0].score.to_numpy())
    auc = M.bootstrap_ci(test.label.to_numpy(), test.score.to_numpy(), n=cfg.n_bootstrap, seed=seed)
    auc_val = M.bootstrap_ci(val.label.to_numpy(), val.score.to_numpy(), n=cfg.n_bootstrap, seed=seed)
    diff_ci = auc_difference_ci(val, test, cfg.n_bootstrap, seed)
    diff_ci95 = auc_difference_ci(val, test, cfg.n_bootstrap, seed, 0.95)
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
    vac_recall = desi_vac_recall(ind.vac, df, op, lv, ind.positives)
    quality = df[["label"] + [c for c in df.columns if c.startswith(("core", "annulus_", "mad_"))]]
    sc = shortcut_metrics(quality, seed)
    y, s = test.label.to_numpy(), test.score.to_numpy()
    metrics = {
        "model_sha256": model_sha,
        "n_test": len(test),
        "n_test_pos": int(test.label.sum()),
        "auc_test": auc,
        "auc_val": auc_val,
        "auc_val_minus_test": {"value": auc_val["value"] - auc["value"], "ci68": diff_ci, "ci95": diff_ci95},
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
        **independent_checks(df, tb, ind, cfg, seed, op, auc_val, diff_ci95),
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


def independent_checks(
    df: pd.DataFrame,
    tb: pd.DataFrame,
    ind: Independent,
    cfg: EvaluateConfig,
    seed: int,
    op: float,
    auc_val: dict,
    diff_ci: list[float] | None,
) -> dict[str, Any]:
    """The issue-20 blocks of metrics.json: calibration (ECE with intervals, reliability) and score
    distributions per stratum of the binned test split ``tb``, the red flags (train − val AUC gap, val −
    test shift), recall by discovery method and the Galaxy Zoo agreement and FPR (None where an input is
    absent)."""
    lv = cfg.interval
    tr = ind.train
    auc_train = (
        M.bootstrap_ci(tr.label.to_numpy(), tr.score.to_numpy(), n=cfg.n_bootstrap, seed=seed)
        if tr is not None and tr.label.nunique() == 2
        else None
    )
    by = STRATA_BY
    cal = C.calibration_by_stratum(tb, by, cfg.ece_bins, cfg.n_bootstrap, lv, cfg.min_bin_count, seed)
    dist = C.score_distributions(tb, by)
    indep = None
    if ind.positives is not None and "positive_id" in df:
        pos = df[(df.split == "test") & (df.label == 1)]
        refs = ind.positives.set_index("positive_id").ref
        pos = pos.assign(ref=pos.positive_id.map(refs).fillna(""))
        indep = recall_by_method(pos, op, cfg.discovery_methods, lv)
    gz = galaxy_zoo_audit(df, ind.gz, op, cfg.gz_vote_threshold, lv) if ind.gz is not None else None
    return {
        "auc_train": auc_train,
        "n_train_scored": 0 if tr is None else len(tr),
        "red_flags": C.red_flags(auc_train, auc_val, diff_ci),
        "calibration_by_stratum": cal,
        "score_distributions": dist.to_dict(orient="records"),
        "independence": indep,
        "galaxy_zoo": gz,
    }


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
