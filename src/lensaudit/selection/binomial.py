"""Bayesian binomial completeness: Beta posterior with a Jeffreys (default) or uniform prior."""

from __future__ import annotations

import numpy as np
from scipy import stats

PRIORS = {"jeffreys": (0.5, 0.5), "uniform": (1.0, 1.0)}


def beta_posterior(k, n, prior: str = "jeffreys", levels=(0.68, 0.95)) -> dict[str, np.ndarray]:
    """Posterior mean and central intervals for k detections out of n (arrays broadcast)."""
    a0, b0 = PRIORS[prior]
    k, n = np.asarray(k, float), np.asarray(n, float)
    a, b = k + a0, n - k + b0
    out = {"mean": a / (a + b)}
    for lv in levels:
        tag = int(round(lv * 100))
        out[f"lo{tag}"] = stats.beta.ppf((1 - lv) / 2, a, b)
        out[f"hi{tag}"] = stats.beta.ppf((1 + lv) / 2, a, b)
    return out
