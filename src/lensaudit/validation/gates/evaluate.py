"""Gates of the evaluate stage: the frozen finder's test AUC, Tier-A recall and calibration, contaminant FPR
per N2 category at the operating point, and the shortcut gates.

Every gate is recomputed from ``evaluate/scores.parquet`` (labels, tiers, N2 categories, scores) and, for the
shortcut gates, the cutouts index's per-stamp quality columns joined on ``galaxy_id``; the operating threshold
is recomputed from the test negatives' scores and ``evaluate.operating_point``. The shortcut AUCs are
cross-validated with the run seed, so ``lensaudit verify`` gets the same values. A failing shortcut gate does
not stop the pipeline: it marks the audit as not trustworthy (:func:`trustworthy`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from lensaudit.audit import metrics as M
from lensaudit.audit import shortcuts as S
from lensaudit.audit.evaluation import auc_difference_ci, thresholds
from lensaudit.catalog.n2_rules import RULE_ORDER
from lensaudit.gates import Gate, Status
from lensaudit.validation.registry import Threshold, register

#: documented floor of the Tier-A recall at the operating point (ours: the design names none)
RECALL_FLOOR = 0.5
#: the core-colour AUC fails when even its lower 68% bound is above this (ours)
COLOUR_FAIL = 0.90
#: the annulus-only AUC warns / fails when even its upper 68% bound is below these (ours)
ANNULUS_WARN, ANNULUS_FAIL = 0.65, 0.55
#: the positives/negatives median ratios pass inside PASS_RANGE, warn inside WARN_RANGE, else fail (ours)
RATIO_PASS, RATIO_WARN = (0.9, 1.1), (0.75, 1.33)
#: the gates whose failure marks the audit as not trustworthy (the annulus gate says whether the arcs carry
#: the signal; its failure is not a shortcut)
SHORTCUT_GATES = (
    "core_only_auc",
    "inner_core_only_auc",
    "core_colour_auc",
    "core_brightness_ratio",
    "noise_mad_ratio",
)
SCORES = ("evaluate.scores",)
QUALITY = ("evaluate.scores", "cutouts.index")


def trustworthy(gates: list[Gate]) -> bool:
    """Whether no shortcut gate failed (the evaluate manifest's ``trustworthy``)."""
    return not any(g.status == "fail" for g in gates if g.name in SHORTCUT_GATES)


# -- artifacts ------------------------------------------------------------------------------------------
def _cfg(inp: Any) -> Any:
    return inp.config.evaluate


def _test(inp: Any) -> pd.DataFrame:
    sc = inp.table("evaluate", "scores")
    return sc[sc.split == "test"]


def _op(inp: Any) -> float:
    """The operating threshold (score), as the stage computed it from the test negatives."""
    t = _test(inp)
    return thresholds(_cfg(inp), t[t.label == 0].score.to_numpy())[1]


def _quality(inp: Any) -> pd.DataFrame:
    """The scored val and test stamps (label) with the cutouts index's quality columns, in score order."""
    sc = inp.table("evaluate", "scores")
    idx = inp.table("cutouts", "index")
    cols = [c for c in idx.columns if c.startswith(("core", "annulus_", "mad_"))]
    return sc[["galaxy_id", "label"]].merge(
        idx[["galaxy_id", *cols]], on="galaxy_id", how="left", validate="many_to_one"
    )


def _graded(name: str, value: Any, status: Status, **kw: Any) -> Gate:
    """A gate whose status follows a rule that a single warn/fail pair cannot express (a point value and an
    interval bound, or a two-sided range with a warning band); the rule is the registry's."""
    return Gate(name=name, value=value, forced=status, **kw)


# -- the finder ------------------------------------------------------------------------------------------
@register(
    "test_auc",
    "evaluate",
    "AUC of the frozen finder on the spatial test split (68% percentile-bootstrap CI, run seed)",
    reads=SCORES,
    threshold=Threshold(
        "warn < {evaluate.auc_warn}, fail < 0.5",
        "design",
        "the design asks for a test AUC ≥ 0.90 (the warning level, evaluate.auc_warn); below 0.5 (ours) the "
        "finder ranks worse than chance",
    ),
    blocking=False,
)
def test_auc(inp: Any) -> Gate:
    cfg, t = _cfg(inp), _test(inp)
    seed = int(inp.config.run.seed)
    auc = M.bootstrap_ci(t.label.to_numpy(), t.score.to_numpy(), n=cfg.n_bootstrap, seed=seed)
    a68 = auc["ci68"]
    return Gate(
        name="test_auc",
        value=auc["value"],
        ci=a68,
        warn=cfg.auc_warn,
        fail=0.5,
        higher_is_better=True,
        message=f"68% CI [{a68[0]:.3f}, {a68[1]:.3f}] over {len(t)} test stamps",
    )


@register(
    "tier_A_recall_at_op",
    "evaluate",
    "recall of the Tier-A test lenses at the operating point, with its Jeffreys interval (evaluate.interval)",
    reads=SCORES,
    threshold=Threshold(
        f"fail where the Jeffreys upper bound < {RECALL_FLOOR} (or no Tier-A test lens); "
        f"warn where the recall < {RECALL_FLOOR}",
        "ours",
        "the design names no recall floor: a finder that misses most confirmed lenses at its operating "
        "point is not fit to audit; failing on the interval's upper bound keeps a small test split from "
        "failing on noise",
    ),
    blocking=False,
)
def tier_A_recall_at_op(inp: Any) -> Gate:
    cfg, t = _cfg(inp), _test(inp)
    s = t[(t.label == 1) & (t.tier == "A")].score
    r = M.rate(s >= _op(inp), cfg.interval)
    status: Status = (
        "fail" if r["n"] == 0 or r["hi"] < RECALL_FLOOR else "warn" if r["rate"] < RECALL_FLOOR else "pass"
    )
    return _graded(
        "tier_A_recall_at_op",
        r["rate"],
        status,
        ci=(r["lo"], r["hi"]) if r["n"] else None,
        message=f"{r['k']}/{r['n']} at {cfg.operating_point}; Jeffreys {cfg.interval:.0%} "
        f"[{r['lo']:.3f}, {r['hi']:.3f}]; fail when the upper bound < {RECALL_FLOOR}",
    )


@register(
    "ece",
    "evaluate",
    "expected calibration error of the test scores (equal-mass bins, evaluate.ece_bins)",
    reads=SCORES,
    threshold=Threshold(
        "warn > 0.1, fail > 0.25",
        "ours",
        "the design names no calibration limit; above 0.25 the scores cannot be read as probabilities",
    ),
    blocking=False,
)
def ece(inp: Any) -> Gate:
    t = _test(inp)
    value = M.ece(t.score.to_numpy(), t.label.to_numpy(), _cfg(inp).ece_bins)
    return Gate(name="ece", value=value, warn=0.1, fail=0.25, message="equal-mass bins")


@register(
    "fpr_*",
    "evaluate",
    "contaminant FPR at the operating point of the test negatives of each N2 category (catalog RULE_ORDER), "
    "with its Jeffreys interval",
    reads=SCORES,
    threshold=Threshold(
        "warn where the FPR > {evaluate.category_fpr_max}; fail where the Jeffreys lower bound > "
        "{evaluate.category_fpr_max} or the category has no test negative",
        "design",
        "the design asks for contaminant FPR ≤ 0.10 per confuser category; failing on the interval's lower "
        "bound (ours) keeps one false positive among a handful of objects from failing alone; a category "
        "absent from the test split cannot be audited",
    ),
    blocking=False,
)
def fpr_by_category(inp: Any) -> list[Gate]:
    cfg, t = _cfg(inp), _test(inp)
    neg, op, cap = t[t.label == 0], _op(inp), cfg.category_fpr_max
    cats = list(RULE_ORDER) + sorted(set(neg.n2_category.astype(str)) - set(RULE_ORDER) - {""})
    out = []
    for cat in cats:
        r = M.rate(neg[neg.n2_category == cat].score >= op, cfg.interval)
        if r["n"] == 0:
            out.append(
                Gate.check(
                    f"fpr_{cat}",
                    False,
                    value=float("nan"),
                    message=f"no {cat} negative in the test split: the category cannot be audited",
                )
            )
            continue
        status: Status = "fail" if r["lo"] > cap else "warn" if r["rate"] > cap else "pass"
        out.append(
            _graded(
                f"fpr_{cat}",
                r["rate"],
                status,
                ci=(r["lo"], r["hi"]),
                message=f"{r['k']}/{r['n']} at {cfg.operating_point}; Jeffreys {cfg.interval:.0%} "
                f"[{r['lo']:.3f}, {r['hi']:.3f}]; warn > {cap:g}, fail when the lower bound > {cap:g}",
            )
        )
    return out


# -- shortcuts ------------------------------------------------------------------------------------------
def _auc_gate(inp: Any, name: str, columns: list[str], what: str, **thr: Any) -> Gate:
    """A cross-validated AUC of ``columns`` of the quality join, gated on its 68% bound nearest to passing;
    a missing column or a single class fails (nothing can be measured)."""
    q = _quality(inp)
    missing = [c for c in columns if c not in q.columns]
    if missing or q.label.nunique() < 2:
        why = f"the cutouts index has no {', '.join(missing)}" if missing else "one class only"
        return Gate(name=name, value=None, message=f"cannot measure ({why}): {what}", **thr)
    r = S.feature_auc(q, columns, int(inp.config.run.seed))
    lo, hi = r["ci68"]
    return Gate(
        name=name,
        value=r["value"],
        ci=(lo, hi),
        use_ci_bound=True,
        message=f"{what}; 68% CI [{lo:.3f}, {hi:.3f}]",
        **thr,
    )


@register(
    "core_only_auc",
    "evaluate",
    "cross-validated AUC of a logistic regression on the mean r flux within r < 10 px (the design's core "
    "aperture): can the core brightness alone separate the classes?",
    reads=QUALITY,
    threshold=Threshold(
        "lower 68% bound: warn > {evaluate.shortcut_warn}, fail > {evaluate.shortcut_fail}",
        "design",
        "the design's core-only shortcut test uses r < 10 px apertures; the warn/fail levels are "
        "evaluate.shortcut_warn/shortcut_fail (ours); at 2.6″ the aperture also holds the arcs of θE ≲ 2″ "
        "lenses, so some separation is signal — inner_core_only_auc isolates the deflector core",
    ),
    blocking=False,
)
def core_only_auc(inp: Any) -> Gate:
    cfg = _cfg(inp)
    return _auc_gate(
        inp,
        "core_only_auc",
        S.CORE,
        "logistic regression on the r < 10 px r flux; lower 68% bound gated",
        warn=cfg.shortcut_warn,
        fail=cfg.shortcut_fail,
    )


@register(
    "inner_core_only_auc",
    "evaluate",
    "cross-validated AUC of a logistic regression on the mean r flux within r < 2 and r < 3 px (≤ 0.79″, "
    "inside the arc annulus): the deflector core alone",
    reads=QUALITY,
    threshold=Threshold(
        "lower 68% bound: warn > {evaluate.shortcut_warn}, fail > {evaluate.shortcut_fail}",
        "ours",
        "the inner apertures hold the deflector and not the arcs, so separation there is a shortcut; the "
        "levels are the core-only gate's",
    ),
    blocking=False,
)
def inner_core_only_auc(inp: Any) -> Gate:
    cfg = _cfg(inp)
    return _auc_gate(
        inp,
        "inner_core_only_auc",
        S.INNER_CORE,
        "logistic regression on central r<2/3 px (≤0.79″) r fluxes; lower 68% bound gated",
        warn=cfg.shortcut_warn,
        fail=cfg.shortcut_fail,
    )


@register(
    "core_colour_auc",
    "evaluate",
    "cross-validated AUC of a logistic regression on the r < 10 px fluxes in g, r, z (the deflector colour)",
    reads=QUALITY,
    threshold=Threshold(
        f"lower 68% bound: warn > {{evaluate.shortcut_fail}}, fail > {COLOUR_FAIL}",
        "ours",
        "lens deflectors are red massive galaxies, so some colour separation is physical and only warns; "
        f"above {COLOUR_FAIL} colour alone nearly separates the classes and the audit cannot tell arcs from "
        "a colour prior",
    ),
    blocking=False,
)
def core_colour_auc(inp: Any) -> Gate:
    return _auc_gate(
        inp,
        "core_colour_auc",
        S.CORE_COLOUR,
        "the r < 10 px aperture in g, r, z: deflector colour prior; lower 68% bound gated",
        warn=_cfg(inp).shortcut_fail,
        fail=COLOUR_FAIL,
    )


@register(
    "annulus_only_auc",
    "evaluate",
    "cross-validated AUC of a logistic regression on the 4–16 px annulus fluxes and MAD noise in g, r, z: "
    "do the arcs carry the signal?",
    reads=QUALITY,
    threshold=Threshold(
        f"upper 68% bound: warn < {ANNULUS_WARN}, fail < {ANNULUS_FAIL}",
        "ours",
        "the arcs live in the annulus: when even the upper bound of its AUC is near chance, the positives' "
        "arcs are too faint to see in aggregate and the finder's separation must come from elsewhere",
    ),
    blocking=False,
)
def annulus_only_auc(inp: Any) -> Gate:
    return _auc_gate(
        inp,
        "annulus_only_auc",
        S.ANNULUS,
        "4–16 px annulus: arcs live here, expected strong; upper 68% bound gated",
        warn=ANNULUS_WARN,
        fail=ANNULUS_FAIL,
        higher_is_better=True,
    )


def _ratio_gate(inp: Any, name: str, column: str) -> Gate:
    q = _quality(inp)
    if column not in q.columns:
        return Gate(name=name, value=None, message=f"cannot measure: the cutouts index has no {column}")
    r = S.median_ratio(q, column)
    (p0, p1), (w0, w1) = RATIO_PASS, RATIO_WARN
    status: Status = "pass" if p0 <= r <= p1 else "warn" if w0 <= r <= w1 else "fail"  # NaN fails
    return _graded(
        name,
        r,
        status,
        message=f"median {column} positives/negatives (pass {p0}–{p1}, warn {w0}–{w1}, else fail)",
    )


_RATIO_RULE = Threshold(
    f"pass in [{RATIO_PASS[0]}, {RATIO_PASS[1]}], warn in [{RATIO_WARN[0]}, {RATIO_WARN[1]}], else fail",
    "ours",
    "matched samples have equal medians; a 10% offset is visible, a 25% one is a shortcut",
)


@register(
    "core_brightness_ratio",
    "evaluate",
    "median r < 3 px r flux of the positives over that of the negatives",
    reads=QUALITY,
    threshold=_RATIO_RULE,
    blocking=False,
)
def core_brightness_ratio(inp: Any) -> Gate:
    return _ratio_gate(inp, "core_brightness_ratio", dict(S.RATIOS)["core_brightness_ratio"])


@register(
    "noise_mad_ratio",
    "evaluate",
    "median r-band MAD noise of the positives over that of the negatives",
    reads=QUALITY,
    threshold=_RATIO_RULE,
    blocking=False,
)
def noise_mad_ratio(inp: Any) -> Gate:
    return _ratio_gate(inp, "noise_mad_ratio", dict(S.RATIOS)["noise_mad_ratio"])


# -- red flags (issue 20) ----------------------------------------------------------------------------------
@register(
    "val_test_auc_shift",
    "evaluate",
    "AUC(val) − AUC(test) with its 95% percentile-bootstrap interval (both splits resampled independently, "
    "evaluate.n_bootstrap, run seed)",
    reads=SCORES,
    threshold=Threshold(
        "fail when the 95% interval excludes 0",
        "ours",
        "issue 20's red flag: val and test are disjoint sky regions drawn alike, so an AUC difference beyond "
        "its noise means the early-stopping split does not represent the test sky (or the finder was tuned "
        "on val); 95%, not the project's 68%, because a 68% interval excludes 0 for about a third of "
        "unshifted splits; it does not stop the pipeline",
    ),
    blocking=False,
)
def val_test_auc_shift(inp: Any) -> Gate:
    cfg, sc = _cfg(inp), inp.table("evaluate", "scores")
    val, test = sc[sc.split == "val"], sc[sc.split == "test"]
    value = M.roc_auc(val.label, val.score) - M.roc_auc(test.label, test.score)
    ci = auc_difference_ci(val, test, cfg.n_bootstrap, int(inp.config.run.seed), 0.95)
    shifted = ci is not None and (ci[0] > 0 or ci[1] < 0)
    text = f"95% CI [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "no resample has both classes in both splits"
    return _graded(
        "val_test_auc_shift",
        value,
        "fail" if shifted or ci is None else "pass",
        ci=tuple(ci) if ci else None,
        message=f"{text} over {len(val)} val and {len(test)} test stamps",
    )
