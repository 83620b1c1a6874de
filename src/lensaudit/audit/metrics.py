"""Detection metrics as pure functions (each unit-tested against a hand-computed case).

Intervals: binomial rates use the Jeffreys Beta(k+½, n−k+½) posterior central interval; AUCs use the
percentile bootstrap over objects.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann–Whitney AUC: P(score_pos > score_neg) + ½ P(tie)."""
    y, s = np.asarray(y).astype(bool), np.asarray(s, float)
    if y.all() or (~y).all():
        return float("nan")
    r = stats.rankdata(s)
    n1, n0 = y.sum(), (~y).sum()
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def bootstrap_ci(
    y: np.ndarray, s: np.ndarray, fn=roc_auc, n: int = 500, levels=(0.68, 0.95), seed: int = 0
) -> dict:
    """Percentile bootstrap of fn(y, s) resampling objects: {'value', 'ci68': (lo, hi), 'ci95': …}."""
    y, s = np.asarray(y), np.asarray(s)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        v = fn(y[i], s[i])
        if np.isfinite(v):
            vals.append(v)
    out = {"value": fn(y, s)}
    for lv in levels:
        a = (1 - lv) / 2
        out[f"ci{int(round(lv * 100))}"] = (
            (float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))) if vals else (float("nan"),) * 2
        )
    return out


def beta_interval(
    k: int, n: int, level: float = 0.68, prior: tuple[float, float] = (0.5, 0.5)
) -> tuple[float, float, float]:
    """(posterior mean, lo, hi) of a binomial rate with a Beta prior (Jeffreys by default)."""
    a, b = k + prior[0], n - k + prior[1]
    lo, hi = stats.beta.ppf([(1 - level) / 2, (1 + level) / 2], a, b)
    return float(a / (a + b)), float(lo), float(hi)


def threshold_at_fpr(neg_scores: np.ndarray, fpr: float) -> float:
    """Smallest threshold t (score ≥ t is positive) whose FPR on the negatives is ≤ fpr."""
    s = np.sort(np.asarray(neg_scores, float))[::-1]
    k = int(np.floor(fpr * len(s)))  # allowed false positives
    if k >= len(s):
        return float(s[-1])
    return float(np.nextafter(s[k], np.inf))


def rate(flags: np.ndarray, level: float = 0.68) -> dict:
    """A binomial rate with its Jeffreys interval: {'k', 'n', 'rate', 'lo', 'hi'}."""
    f = np.asarray(flags, bool)
    k, n = int(f.sum()), int(f.size)
    mean, lo, hi = beta_interval(k, n, level) if n else (float("nan"),) * 3
    return {"k": k, "n": n, "rate": k / n if n else float("nan"), "posterior_mean": mean, "lo": lo, "hi": hi}


def tpr_at_fp(y: np.ndarray, s: np.ndarray, max_fp: int) -> float:
    """Highest TPR reached before more than ``max_fp`` false positives (TPR0: max_fp=0; TPR10: 10)."""
    y, s = np.asarray(y).astype(bool), np.asarray(s, float)
    order = np.argsort(-s, kind="stable")
    ys, ss = y[order], s[order]
    fp = tp = 0
    best = 0.0
    i = 0
    while i < len(ss):
        j = i
        while j < len(ss) and ss[j] == ss[i]:
            j += 1
        tp += int(ys[i:j].sum())
        fp += int((~ys[i:j]).sum())
        if fp > max_fp:
            break
        best = tp / max(y.sum(), 1)
        i = j
    return float(best)


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE with equal-mass bins (sorted by p, split into ``bins`` groups of equal size):
    Σ_b (n_b/N)·|mean(y_b) − mean(p_b)|."""
    p, y = np.asarray(p, float), np.asarray(y, float)
    if len(p) == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    return float(
        sum(
            len(c) / len(p) * abs(y[c].mean() - p[c].mean())
            for c in np.array_split(order, min(bins, len(p)))
            if len(c)
        )
    )


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict]:
    order = np.argsort(p, kind="stable")
    return [
        {"p_mean": float(p[c].mean()), "y_mean": float(y[c].mean()), "n": int(len(c))}
        for c in np.array_split(order, min(bins, max(len(p), 1)))
        if len(c)
    ]


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature T minimising the val NLL of sigmoid(logit/T); ranking is unchanged."""
    from scipy.optimize import minimize_scalar

    z, yy = np.asarray(logits, float), np.asarray(y, float)

    def nll(logt):
        q = z / np.exp(logt)
        return float(np.mean(np.logaddexp(0, q) - yy * q))

    return float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))
