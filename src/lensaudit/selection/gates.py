"""The selection stage's gates (all non-blocking): cell sufficiency, the expected trends of completeness with
θE and seeing, prior and morphology sensitivity, the realism verdict and the closure test."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lensaudit.config import SelectionConfig
from lensaudit.gates import Gate
from lensaudit.selection.robustness import max_sufficient


def corr(x: pd.Series, y: pd.Series) -> float:
    """Pearson correlation over sufficient cells; NaN when undefined (too few cells or a constant axis)."""
    return float(np.corrcoef(x, y)[0, 1]) if len(x) > 2 and x.std() > 0 and y.std() > 0 else float("nan")


def selection_gates(
    table: pd.DataFrame,
    robust: pd.DataFrame,
    inj: pd.DataFrame,
    closure: dict[str, Any],
    cfg: SelectionConfig,
    verdict: str,
) -> list[Gate]:
    """Gates on the completeness ``table``, the ``robust``-ness table, the scored injections ``inj``, the
    ``closure`` result and the realism ``verdict`` (forced: anything but GO)."""
    forced = verdict != "GO"
    ok = table[~table.insufficient]
    trend, psf_trend = corr(ok.theta_e, ok.c_mean), corr(ok.psf_fwhm, ok.c_mean)
    gates = [
        Gate(
            name="cells_sufficient",
            value=float((~table.insufficient).mean()),
            warn=0.9,
            fail=0.3,
            higher_is_better=True,
            blocking=False,
            message=f"{int((~table.insufficient).sum())}/{len(table)} cells with n ≥ {cfg.n_min}",
        ),
        Gate(
            name="completeness_rises_with_theta_e",
            value=trend,
            warn=0.0,
            fail=-0.5,
            higher_is_better=True,
            blocking=False,
            message="correlation of completeness with θE over sufficient cells",
        ),
        Gate(
            name="completeness_falls_with_psf",
            value=psf_trend,
            warn=0.0,
            fail=0.5,
            blocking=False,
            message="correlation of completeness with PSF FWHM over sufficient cells "
            "(expected ≤ 0: worse seeing hides arcs)",
        ),
        Gate(
            name="prior_sensitivity_max_shift",
            value=max_sufficient(robust, "prior_shift", table, inj, ("bright", "faint"), cfg),
            warn=0.2,
            fail=0.5,
            blocking=False,
            message="max |ΔC| per sufficient cell across alternative source priors (r ∓ 0.75 mag)",
        ),
        Gate(
            name="morphology_bracket_max_shift",
            value=max_sufficient(robust, "morphology_shift", table, inj, ("morphology",), cfg),
            warn=0.2,
            fail=0.5,
            blocking=False,
            message="max |ΔC| per sufficient cell, Sersic ↔ clumpy sources (the morphology bracket)",
        ),
        Gate(
            name="realism_verdict",
            value=verdict,
            forced="pass" if not forced else "fail",
            blocking=False,
            message="selection computed on a NO-GO verdict (forced)" if forced else "GO",
        ),
    ]
    if closure.get("bins"):
        tot = closure["total"]
        gates += [
            Gate(
                name="closure_fraction_within_1sigma",
                value=closure["fraction_within_1sigma"],
                warn=0.6,
                fail=0.3,
                higher_is_better=True,
                blocking=False,
                message=f"{len(closure['bins'])} θE bins",
            ),
            Gate(
                name="closure_total_pull",
                value=tot["pull"],
                lo=-2.0,
                hi=2.0,
                soft=abs(tot["pull"]) <= 3.0,
                blocking=False,
                message=f"all θE bins: observed {tot['observed']} vs expected {tot['expected']:.1f} ± "
                f"{tot['sigma']:.1f} (|pull| ≤ 2 pass, ≤ 3 warn)",
            ),
        ]
    return gates
