"""Shortcut gates: can trivial features separate positives from negatives?

- core-only (the predecessor's "core brightness" shortcut): logistic regression on the mean r flux within
  r < 2 and r < 3 px (≤ 0.79″: inside the 0.8″ inner edge of the arc annulus, so the feature is the
  deflector's core and not the arcs — wider apertures such as r < 8/12 px contain the arcs of θE ≲ 2″ lenses
  and would flag the real signal as a shortcut), log-scaled, 5-fold cross-validated AUC with a bootstrap CI.
  Green if the lower 68% bound < 0.60, yellow 0.60–0.70, red above 0.70 (non-blocking; red marks the audit
  not trustworthy);
- core colour (the same apertures in g, r, z): lens deflectors are red massive galaxies, so some separation is
  physical; yellow above the red threshold, never red — reported so a colour prior is visible, not hidden;
- annulus-only (4 ≤ r < 16 px): should be strong if the finder can learn arcs; reported, not gated;
- core-brightness ratio (r < 3 px, r band) and noise (MAD) ratio, positives/negatives medians, within 0.9–1.1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lensaudit.audit.metrics import bootstrap_ci
from lensaudit.gates import Gate, Status

CORE = [f"core{r}_r" for r in (2, 3)]
CORE_COLOUR = [f"core{r}_{b}" for r in (2, 3) for b in "grz"]
ANNULUS = [f"annulus_{b}" for b in "grz"]


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


def shortcut_gates(
    q: pd.DataFrame, warn: float = 0.60, fail: float = 0.70, seed: int = 0
) -> tuple[list[Gate], dict]:
    """Gates from a table with label and the quality metrics of the stamps (one row per stamp)."""
    y = q.label.to_numpy(int)
    core = cv_auc(np.nan_to_num(q[CORE].to_numpy(float)), y, seed)
    col = cv_auc(np.nan_to_num(q[CORE_COLOUR].to_numpy(float)), y, seed)
    ann = cv_auc(np.nan_to_num(q[ANNULUS + [f"mad_{b}" for b in "grz"]].to_numpy(float)), y, seed)
    gates = [
        Gate(
            name="core_only_auc",
            value=core["value"],
            ci=core["ci68"],
            warn=warn,
            fail=fail,
            use_ci_bound=True,
            blocking=False,
            message="logistic regression on central r<2/3 px (≤0.79″) r fluxes; lower 68% bound gated",
        ),
        Gate(
            name="core_colour_auc",
            value=col["value"],
            ci=col["ci68"],
            warn=fail,
            use_ci_bound=True,
            blocking=False,
            message="same apertures in g, r, z: deflector colour prior "
            "(yellow above the red core threshold, never red)",
        ),
        Gate(
            name="annulus_only_auc",
            value=ann["value"],
            ci=ann["ci68"],
            forced="pass",
            blocking=False,
            message="4–16 px annulus: arcs live here; expected strong",
        ),
    ]
    out: dict[str, Any] = {"core_only": core, "core_colour": col, "annulus_only": ann}
    for name, column in (("core_brightness_ratio", "core3_r"), ("noise_mad_ratio", "mad_r")):
        pos, neg = q[q.label == 1][column].median(), q[q.label == 0][column].median()
        r = float(pos / neg) if neg and np.isfinite(neg) else float("nan")
        st: Status = "pass" if 0.9 <= r <= 1.1 else ("warn" if 0.75 <= r <= 1.33 else "fail")
        gates.append(
            Gate(
                name=name,
                value=r,
                forced=st,
                blocking=False,
                message=f"median {column} positives/negatives (green 0.9–1.1)",
            )
        )
        out[name] = r
    return gates, out
