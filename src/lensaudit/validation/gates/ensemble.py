"""Gates of the ensemble stage (issue 20), recomputed from its artifacts: every member scored the same
val/test stamps (``ensemble/scores.parquet`` against the sample and the cutouts index), the meta-learner is
the one fitted on the val rows only (refitted from the members' logits in ``scores.parquet`` and compared
with the coefficients in ``metrics.json``), and no member or ensemble falls far below the train stage's single
finder in test AUC."""

from __future__ import annotations

from typing import Any

import numpy as np

from lensaudit.gates import Gate
from lensaudit.stamps.labelled import labelled_stamps
from lensaudit.train.ensemble import MetaLearner
from lensaudit.validation.registry import Threshold, register

STAGE = "ensemble"
#: the refitted meta-learner's coefficients may differ from the recorded ones by this much (lbfgs tolerance)
META_TOL = 1e-3
#: test-AUC drop of a member or ensemble below the single finder (ours)
AUC_DROP_WARN, AUC_DROP_FAIL = 0.03, 0.10


def _logit_columns(inp: Any) -> list[str]:
    return [f"logit[member:{a}]" for a in inp.json(STAGE, "metrics")["members"]]


@register(
    "members_scored_same_rows",
    STAGE,
    "val/test quality-ok stamps missing from or extra in ensemble/scores.parquet, plus rows where a member's "
    "or an ensemble's logit is not finite (every model must have scored the same rows)",
    reads=("ensemble.scores", "ensemble.metrics", "sample.sample", "cutouts.index"),
    threshold=Threshold(
        "fail when any",
        "ours",
        "the ensembles are combined row by row and compared with their members on the same rows; a member "
        "that skipped stamps would shrink every comparison silently",
    ),
)
def members_scored_same_rows(inp: Any) -> Gate:
    sc = inp.table(STAGE, "scores")
    want = set(
        labelled_stamps(
            inp.table("sample", "sample"), inp.table("cutouts", "index"), ("val", "test")
        ).galaxy_id
    )
    have = set(sc.galaxy_id)
    cols = [c for c in sc.columns if c.startswith("logit[")]
    absent = [c for c in _logit_columns(inp) if c not in sc.columns]
    bad = int((~np.isfinite(sc[cols].to_numpy(float))).any(axis=1).sum()) if cols else 0
    n = len(want - have) + len(have - want) + bad + int(sc.galaxy_id.duplicated().sum())
    msg = f"{len(want - have)} missing, {len(have - want)} extra, {bad} with a non-finite logit"
    if absent:
        msg += f"; members without a logit column: {absent}"
    return Gate.check("members_scored_same_rows", n == 0 and not absent, value=n + len(absent), message=msg)


@register(
    "meta_fitted_on_val",
    STAGE,
    "max |Δ| between the meta-learner's recorded coefficients (metrics.json) and those refitted on the val "
    "rows of ensemble/scores.parquet only, and between its recorded logits and the refitted ones",
    reads=("ensemble.scores", "ensemble.metrics"),
    threshold=Threshold(
        f"fail > {META_TOL} (no meta-learner: pass)",
        "ours",
        "the meta-learner may see only the validation split; one fitted on test rows would make the "
        "ensemble's test metrics optimistic",
    ),
)
def meta_fitted_on_val(inp: Any) -> Gate:
    rec = inp.json(STAGE, "metrics").get("meta_learner")
    if rec is None:
        return Gate.check("meta_fitted_on_val", True, value=0.0, message="no meta-learner configured")
    sc = inp.table(STAGE, "scores")
    z = sc[_logit_columns(inp)].to_numpy(float).T
    val = (sc.split == "val").to_numpy()
    refit = MetaLearner.fit(z[:, val], sc.label.to_numpy()[val])
    d_coef = float(
        np.max(np.abs(np.r_[refit.coef - np.asarray(rec["coef"]), refit.intercept - rec["intercept"]]))
    )
    d_logit = float(np.max(np.abs(refit.logit(z) - sc["logit[ensemble:meta]"].to_numpy(float)), initial=0.0))
    value = max(d_coef, d_logit / max(1.0, float(np.max(np.abs(z), initial=1.0))))
    return Gate(
        name="meta_fitted_on_val",
        value=value,
        fail=META_TOL,
        message=f"{int(val.sum())} val rows; max |Δcoef| {d_coef:.2g}, max |Δlogit| {d_logit:.2g}",
    )


@register(
    "auc_drop_vs_finder",
    STAGE,
    "largest drop in test AUC of a member or ensemble below the train stage's single finder (the member of "
    "its architecture at its crop, scored by the same code)",
    reads=("ensemble.metrics",),
    threshold=Threshold(
        f"warn > {AUC_DROP_WARN}, fail > {AUC_DROP_FAIL}; fail when the finder is not a member",
        "ours",
        "an ensemble is meant to cut false positives at a small loss in TPR (KiDS: ~2%); a member far below "
        "the finder on the same test rows points to a broken member; noisy on small runs: it does not block",
    ),
    blocking=False,
)
def auc_drop_vs_finder(inp: Any) -> Gate:
    m = inp.json(STAGE, "metrics")
    finder = f"member:{m['train_arch']}"
    summ = {k: v for k, v in m["summary"].items() if not k.startswith("crop:")}
    if finder not in summ:
        return Gate.check("auc_drop_vs_finder", False, value=None, message=f"{finder} is not a member")
    ref = summ[finder]["auc_test"]["value"]
    drops = {k: ref - v["auc_test"]["value"] for k, v in summ.items() if k != finder}
    worst = max(drops, key=lambda k: drops[k]) if drops else finder
    return Gate(
        name="auc_drop_vs_finder",
        value=float(drops.get(worst, 0.0)),
        warn=AUC_DROP_WARN,
        fail=AUC_DROP_FAIL,
        message=f"finder {finder} AUC {ref:.3f}; worst {worst}",
        detail={k: float(v) for k, v in drops.items()},
    )
