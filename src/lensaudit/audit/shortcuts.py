"""Shortcut measurements: can trivial features separate positives from negatives?

Each measurement is the 5-fold cross-validated AUC (seeded, so that ``lensaudit verify`` recomputes it
exactly) of a standardised logistic regression on sign-log features of the cutouts stage's per-stamp
quality columns, with a percentile-bootstrap CI:

- core-only (the design's "core brightness" shortcut): the mean r flux within r < 10 px
  (:data:`CORE`; the design's aperture: 2.6″, which also holds the arcs of θE ≲ 2″ lenses, so some
  separation is signal);
- inner core-only (r < 2 and r < 3 px, ≤ 0.79″: inside the 0.8″ inner edge of the arc annulus, so the feature
  is the deflector's core and not the arcs) — :data:`INNER_CORE`;
- core colour (the r < 10 px aperture in g, r, z): lens deflectors are red massive galaxies, so some
  separation is physical;
- annulus-only (4 ≤ r < 16 px fluxes and the MAD noise): the arcs live here, so it should separate;
- core-brightness ratio (r < 3 px, r band) and noise (MAD) ratio: positives/negatives medians.

The gates built on these numbers are declared in :mod:`lensaudit.validation.gates.evaluate`;
:func:`shortcut_metrics` is the ``shortcuts`` entry of ``evaluate/metrics.json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lensaudit.audit.metrics import bootstrap_ci

#: the design's core aperture (r < 10 px), r band
CORE = ["core10_r"]
#: the same aperture in g, r, z
CORE_COLOUR = [f"core10_{b}" for b in "grz"]
#: the inner core (r < 2 and r < 3 px), r band
INNER_CORE = [f"core{r}_r" for r in (2, 3)]
#: the inner core in g, r, z (``metrics.json`` only)
INNER_CORE_COLOUR = [f"core{r}_{b}" for r in (2, 3) for b in "grz"]
#: the arc annulus (4 ≤ r < 16 px) fluxes and the MAD noise, g, r, z
ANNULUS = [f"annulus_{b}" for b in "grz"] + [f"mad_{b}" for b in "grz"]
#: (name, column) of the positives/negatives median ratios
RATIOS = (("core_brightness_ratio", "core3_r"), ("noise_mad_ratio", "mad_r"))


def cv_auc(
    X: np.ndarray, y: np.ndarray, seed: int = 0, n_boot: int = 300, groups: np.ndarray | None = None
) -> dict:
    """Cross-validated AUC of a standardised logistic regression on sign-log features, with a bootstrap CI.
    ``groups`` (e.g. host galaxy ids) keeps every group inside one fold, so the classifier cannot score well
    by recognising objects it saw in training (StratifiedGroupKFold)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xs = np.sign(X) * np.log1p(np.abs(X) / 1e-3)
    folds = max(2, min(5, int(y.sum()), int((y == 0).sum())))
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    if groups is not None:
        folds = max(2, min(folds, len(np.unique(groups[y == 1])), len(np.unique(groups[y == 0]))))
        cv = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
        p = cross_val_predict(clf, Xs, y, groups=groups, cv=cv, method="predict_proba")[:, 1]
    else:
        p = cross_val_predict(
            clf, Xs, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed), method="predict_proba"
        )[:, 1]
    return bootstrap_ci(y, p, n=n_boot, seed=seed)


def feature_auc(q: pd.DataFrame, columns: list[str], seed: int = 0) -> dict:
    """:func:`cv_auc` of the ``columns`` of a table with ``label`` (NaN features read as 0)."""
    return cv_auc(np.nan_to_num(q[columns].to_numpy(float)), q.label.to_numpy(int), seed)


def median_ratio(q: pd.DataFrame, column: str) -> float:
    """Median of ``column`` over positives / over negatives (NaN when the negatives' median is 0 or NaN)."""
    pos, neg = q[q.label == 1][column].median(), q[q.label == 0][column].median()
    return float(pos / neg) if neg and np.isfinite(neg) else float("nan")


def shortcut_metrics(q: pd.DataFrame, seed: int = 0) -> dict[str, Any]:
    """The ``shortcuts`` entry of ``metrics.json`` from a table with label and the quality metrics of the
    stamps (one row per stamp): inner-core, inner-core colour and annulus AUCs, and the median ratios."""
    out: dict[str, Any] = {
        "core_only": feature_auc(q, INNER_CORE, seed),
        "core_colour": feature_auc(q, INNER_CORE_COLOUR, seed),
        "annulus_only": feature_auc(q, ANNULUS, seed),
    }
    for name, column in RATIOS:
        out[name] = median_ratio(q, column)
    return out
