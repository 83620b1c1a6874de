"""Calibration and score distributions per stratum (PSF, depth, nobs_z, TYPE), and the overfitting red flags.

ECE per stratum uses the equal-mass bins of :func:`lensaudit.audit.metrics.ece` with a percentile-bootstrap
interval over the stratum's objects; the reliability curve of each stratum keeps the bin counts, so a reader
can see how few objects a point rests on. Strata below ``min_count`` objects are marked insufficient, never
hidden.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lensaudit.audit import metrics as M

#: the score quantiles of the per-stratum score distributions
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: the train − val AUC gap above which the finder is flagged as overfitting (issue 20)
TRAIN_VAL_GAP_MAX = 0.05


def ece_ci(p: np.ndarray, y: np.ndarray, bins: int, n: int, level: float, seed: int) -> list[float] | None:
    """Percentile-bootstrap interval (``level``) of the ECE of scores ``p`` against labels ``y``; None with
    fewer than two objects.

    >>> lo, hi = ece_ci(np.array([0.1, 0.9, 0.2, 0.8]), np.array([0, 1, 1, 0]), 2, 50, 0.68, 0)
    >>> 0.0 <= lo <= hi <= 1.0
    True
    """
    if len(p) < 2:
        return None
    rng = np.random.default_rng(seed)
    vals = [M.ece(p[i], y[i], bins) for i in (rng.integers(0, len(p), len(p)) for _ in range(n))]
    a = (1 - level) / 2
    return [float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))]


def calibration_by_stratum(
    df: pd.DataFrame, by: tuple[str, ...], bins: int, n_boot: int, level: float, min_count: int, seed: int
) -> list[dict[str, Any]]:
    """One record per (condition, bin) of ``df`` (columns ``score``, ``label`` and each of ``by``): the ECE
    with its bootstrap interval, the reliability curve (equal-mass bins) and whether the stratum has fewer
    than ``min_count`` objects."""
    out = []
    for cond in by:
        for key, g in df.groupby(cond, observed=True, sort=True):
            p, y = g.score.to_numpy(float), g.label.to_numpy(float)
            out.append(
                {
                    "by": cond,
                    "bin": str(key),
                    "n": len(g),
                    "n_pos": int(y.sum()),
                    "ece": M.ece(p, y, bins),
                    "ece_ci": ece_ci(p, y, bins, n_boot, level, seed),
                    "reliability": M.reliability(p, y, bins),
                    "insufficient": len(g) < min_count,
                }
            )
    return out


def score_distributions(df: pd.DataFrame, by: tuple[str, ...]) -> pd.DataFrame:
    """Score quantiles (:data:`QUANTILES`) of the positives and of the negatives in every (condition, bin):
    a shift of the negatives' upper quantiles in one stratum is where its false positives come from.

    >>> d = pd.DataFrame({"score": [0.1, 0.2, 0.9, 0.8], "label": [0, 0, 1, 1], "type": ["DEV"] * 4})
    >>> score_distributions(d, ("type",))[["by", "bin", "class", "n", "q50"]].round(3).values.tolist()
    [['type', 'DEV', 'lens', 2, 0.85], ['type', 'DEV', 'non-lens', 2, 0.15]]
    """
    rows = []
    for cond in by:
        for key, g in df.groupby(cond, observed=True, sort=True):
            for cls, lab in (("lens", 1), ("non-lens", 0)):
                s = g.score[g.label == lab].to_numpy(float)
                q = np.quantile(s, QUANTILES) if len(s) else np.full(len(QUANTILES), np.nan)
                row = {"by": cond, "bin": str(key), "class": cls, "n": len(s)}
                row.update({f"q{int(round(100 * a)):02d}": float(v) for a, v in zip(QUANTILES, q)})
                rows.append(row)
    return pd.DataFrame(rows)


def red_flags(auc_train: dict | None, auc_val: dict, val_minus_test_ci: list[float] | None) -> dict[str, Any]:
    """The overfitting and split-shift red flags: ``train_val_gap`` (train − val AUC above
    :data:`TRAIN_VAL_GAP_MAX`) and ``val_test_shift`` (the 95% interval of val − test ΔAUC excludes 0: a
    68% interval would exclude 0 for about a third of unshifted splits).

    >>> f = red_flags({"value": 0.99}, {"value": 0.90}, [0.01, 0.05])
    >>> f["train_val_gap"]["flag"], f["val_test_shift"]["flag"]
    (True, True)
    >>> red_flags(None, {"value": 0.9}, [-0.02, 0.03])["val_test_shift"]["flag"]
    False
    """
    gap = None if auc_train is None else float(auc_train["value"] - auc_val["value"])
    ci = val_minus_test_ci
    return {
        "train_val_gap": {
            "value": gap,
            "limit": TRAIN_VAL_GAP_MAX,
            "flag": bool(gap is not None and np.isfinite(gap) and gap > TRAIN_VAL_GAP_MAX),
            "measured": gap is not None and bool(np.isfinite(gap)),
        },
        "val_test_shift": {
            "ci95": ci,
            "flag": bool(ci is not None and (ci[0] > 0 or ci[1] < 0)),
            "measured": ci is not None,
        },
    }
