"""Gates of the selection stage (none blocks): cell sufficiency, the expected trends of completeness with θE
and seeing, prior and morphology sensitivity, the realism verdict and the closure test on the synthetic sky.

Every gate is recomputed from the stage's tables (``selection_function.parquet``, ``robustness.parquet``,
``injection_scores.parquet``, ``closure.json``), the FITS header and the inject stage's ``realism.json``; a
cell is sufficient where its injections n ≥ ``selection.n_min``, recomputed from n (the stored flag is not
trusted).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lensaudit.gates import Gate
from lensaudit.selection.robustness import max_sufficient
from lensaudit.validation.registry import Threshold, register

TABLE = ("selection.table",)
SHIFTS = ("selection.table", "selection.robustness", "selection.injection_scores")
CLOSURE = ("selection.closure",)


def corr(x: pd.Series, y: pd.Series) -> float:
    """Pearson correlation over sufficient cells; NaN when undefined (too few cells or a constant axis)."""
    return float(np.corrcoef(x, y)[0, 1]) if len(x) > 2 and x.std() > 0 and y.std() > 0 else float("nan")


def _table(inp: Any) -> pd.DataFrame:
    """The completeness table with ``insufficient`` recomputed from n and ``selection.n_min``."""
    t = inp.table("selection", "table")
    return t.assign(insufficient=t.n.to_numpy() < inp.config.selection.n_min)


def _sufficient(inp: Any) -> pd.DataFrame:
    t = _table(inp)
    return t[~t.insufficient]


# -- the table ----------------------------------------------------------------------------------------------
@register(
    "cells_sufficient",
    "selection",
    "fraction of grid cells with at least selection.n_min main-prior injections",
    reads=TABLE,
    threshold=Threshold(
        "warn < 0.9, fail < 0.3",
        "ours",
        "an insufficient cell is a hole (NaN) in the lookup table; below 30% the table is mostly holes",
    ),
    blocking=False,
)
def cells_sufficient(inp: Any) -> Gate:
    t = _table(inp)
    ok = int((~t.insufficient).sum())
    return Gate(
        name="cells_sufficient",
        value=float(ok / len(t)) if len(t) else float("nan"),
        warn=0.9,
        fail=0.3,
        higher_is_better=True,
        message=f"{ok}/{len(t)} cells with n ≥ {inp.config.selection.n_min}",
    )


@register(
    "completeness_rises_with_theta_e",
    "selection",
    "Pearson correlation of completeness with θE over the sufficient cells",
    reads=TABLE,
    threshold=Threshold(
        "warn < 0, fail < −0.5 (or undefined: fewer than 3 sufficient cells, or a constant axis)",
        "ours",
        "larger Einstein radii separate the arcs from the deflector: completeness must not fall with θE",
    ),
    blocking=False,
)
def completeness_rises_with_theta_e(inp: Any) -> Gate:
    ok = _sufficient(inp)
    return Gate(
        name="completeness_rises_with_theta_e",
        value=corr(ok.theta_e, ok.c_mean),
        warn=0.0,
        fail=-0.5,
        higher_is_better=True,
        message=f"correlation of completeness with θE over {len(ok)} sufficient cells",
    )


@register(
    "completeness_falls_with_psf",
    "selection",
    "Pearson correlation of completeness with the PSF FWHM over the sufficient cells",
    reads=TABLE,
    threshold=Threshold(
        "warn > 0, fail > 0.5 (or undefined: fewer than 3 sufficient cells, or a constant axis)",
        "ours",
        "worse seeing blurs arcs into the deflector: completeness must not rise with the PSF",
    ),
    blocking=False,
)
def completeness_falls_with_psf(inp: Any) -> Gate:
    ok = _sufficient(inp)
    return Gate(
        name="completeness_falls_with_psf",
        value=corr(ok.psf_fwhm, ok.c_mean),
        warn=0.0,
        fail=0.5,
        message=f"correlation of completeness with PSF FWHM over {len(ok)} sufficient cells "
        "(expected ≤ 0: worse seeing hides arcs)",
    )


# -- sensitivity --------------------------------------------------------------------------------------------
def _shift(inp: Any, name: str, col: str, variants: tuple[str, ...], what: str) -> Gate:
    scores = inp.table("selection", "injection_scores", ("variant", "cell"))
    robust = inp.table("selection", "robustness")
    value = max_sufficient(robust, col, _table(inp), scores, variants, inp.config.selection)
    n = int(scores.variant.isin(variants).sum())
    return Gate(
        name=name,
        value=value,
        warn=0.2,
        fail=0.5,
        message=f"max |ΔC| per sufficient cell, {what} ({n} injections)"
        + ("" if np.isfinite(value) else "; no cell has enough injections of the alternative"),
    )


@register(
    "prior_sensitivity_max_shift",
    "selection",
    "largest |ΔC| over the sufficient cells between the main source prior and the bright/faint priors "
    "(source r ∓ 0.75 mag); only when selection.prior_variants > 0",
    reads=SHIFTS,
    threshold=Threshold(
        "warn > 0.2, fail > 0.5 (or unmeasured: no cell with enough alternative injections)",
        "ours",
        "a completeness that moves by half its range under a plausible prior change is a property of the "
        "prior, not of the finder",
    ),
    blocking=False,
)
def prior_sensitivity_max_shift(inp: Any) -> list[Gate]:
    if inp.config.selection.prior_variants <= 0:
        return []
    return [
        _shift(inp, "prior_sensitivity_max_shift", "prior_shift", ("bright", "faint"), "source r ∓ 0.75 mag")
    ]


@register(
    "morphology_bracket_max_shift",
    "selection",
    "largest |ΔC| over the sufficient cells between Sersic and clumpy sources (the morphology bracket); only "
    "when inject.morphology_bracket",
    reads=SHIFTS,
    threshold=Threshold(
        "warn > 0.2, fail > 0.5 (or unmeasured: no cell with enough bracket injections)",
        "ours",
        "a completeness that moves by half its range with the source morphology depends on an unknown",
    ),
    blocking=False,
)
def morphology_bracket_max_shift(inp: Any) -> list[Gate]:
    if not inp.config.inject.morphology_bracket:
        return []
    return [
        _shift(
            inp,
            "morphology_bracket_max_shift",
            "morphology_shift",
            ("morphology",),
            "Sersic ↔ clumpy sources",
        )
    ]


# -- realism ------------------------------------------------------------------------------------------------
@register(
    "realism_verdict",
    "selection",
    "the realism verdict the table was computed under: recomputed from the inject stage's realism gates "
    "(realism.json, each status recomputed from its value and thresholds), and the same in realism.json and "
    "in the FITS header (REALISM)",
    reads=("inject.realism", "selection.table_fits"),
    threshold=Threshold(
        "fail unless every realism gate passes or warns (GO) and realism.json and the FITS header agree",
        "ours",
        "a selection function measured with unrealistic injections (NO-GO, computed only when forced) "
        "describes the injections, not the finder on real lenses",
    ),
    blocking=False,
)
def realism_verdict(inp: Any) -> Gate:
    from astropy.io import fits

    rj = inp.json("inject", "realism")
    gates = [Gate.from_dict(d) for d in rj.get("gates") or []]
    failed = [g.name for g in gates if g.status == "fail"]
    verdict = "NO-GO" if failed or not gates else "GO"
    header = str(fits.getheader(inp.path("selection", "table_fits"), "SELECTION").get("REALISM", "")).strip()
    consistent = rj.get("verdict") == verdict and header == verdict
    why = (
        f"failing realism gates: {', '.join(failed)}"
        if failed
        else "no realism gate recorded"
        if not gates
        else f"all {len(gates)} realism gates pass or warn"
    )
    if not consistent:
        why += f"; realism.json says {rj.get('verdict')!r}, the FITS header REALISM={header!r}"
    elif verdict != "GO":
        why += " (selection computed on a NO-GO verdict: forced)"
    return Gate.check("realism_verdict", verdict == "GO" and consistent, value=verdict, message=why)


# -- closure ------------------------------------------------------------------------------------------------
def _closure(inp: Any) -> dict[str, Any] | None:
    clo = inp.json("selection", "closure")
    return clo if clo.get("bins") else None


@register(
    "closure_fraction_within_1sigma",
    "selection",
    "fraction of θE bins where the synthetic sky's true lenses detected at the operating point agree with "
    "the selection function's expectation within 1σ (synthetic data only)",
    reads=CLOSURE,
    threshold=Threshold(
        "warn < 0.6, fail < 0.3",
        "ours",
        "68% of bins are expected within 1σ; fewer than 30% means the selection function does not predict "
        "detections",
    ),
    blocking=False,
)
def closure_fraction_within_1sigma(inp: Any) -> list[Gate]:
    clo = _closure(inp)
    if clo is None:
        return []
    return [
        Gate(
            name="closure_fraction_within_1sigma",
            value=clo["fraction_within_1sigma"],
            warn=0.6,
            fail=0.3,
            higher_is_better=True,
            message=f"{len(clo['bins'])} θE bins",
        )
    ]


@register(
    "closure_total_pull",
    "selection",
    "(observed − expected) / σ of the true lenses detected over all θE bins (synthetic data only)",
    reads=CLOSURE,
    threshold=Threshold("|pull| ≤ 2 passes, ≤ 3 warns, beyond fails", "ours", "a Gaussian pull beyond 3σ"),
    blocking=False,
)
def closure_total_pull(inp: Any) -> list[Gate]:
    clo = _closure(inp)
    if clo is None:
        return []
    tot = clo["total"]
    pull = tot["pull"]
    return [
        Gate(
            name="closure_total_pull",
            value=pull,
            lo=-2.0,
            hi=2.0,
            soft=pull is not None and bool(abs(pull) <= 3.0),
            message=f"all θE bins: observed {tot['observed']} vs expected {tot['expected']:.1f} ± "
            f"{tot['sigma']:.1f} (|pull| ≤ 2 pass, ≤ 3 warn)",
        )
    ]
