"""Pass/fail cases of the ensemble gates: the stage's artifacts (``scores.parquet``, ``metrics.json``) of two
members with seeded logits on a small sample, combined by the real mean-logit rule and meta-learner. The
failing cases drop a stamp from the scores (a member that skipped it), fit the meta-learner on val AND test,
and record a member whose test AUC lies far below the finder's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from helpers import Run

from lensaudit.audit.metrics import bootstrap_ci
from lensaudit.train.ensemble import MetaLearner, ensemble_logit
from lensaudit.validation import Inputs

N = 60
MEMBERS = ("resnet18", "efficientnet_b0")


def make(root: Path, drop_row: bool = False, meta_rows: str = "val", weak_member: bool = False) -> Inputs:
    run = Run(root)
    rng = np.random.default_rng(11)
    ids = [f"g{i:03d}" for i in range(N)]
    label = (np.arange(N) % 3 == 0).astype(int)
    split = np.where(np.arange(N) < 25, "val", np.where(np.arange(N) < 50, "test", "train"))
    run.table("sample", "sample", pd.DataFrame({"galaxy_id": ids, "label": label, "split": split}))
    run.table("cutouts", "index", pd.DataFrame({"row": np.arange(N), "galaxy_id": ids, "quality_ok": True}))
    keep = split != "train"
    first = 2.0 * label + rng.normal(0, 1.0, N)  # the second member: the first with a little noise of its own
    z = np.stack([first, first + rng.normal(0, 0.2, N)]).astype(np.float32)[:, keep]
    if weak_member:  # the second member's logits carry no signal
        z[1] = rng.normal(0, 1, keep.sum()).astype(np.float32)
    y, sp = label[keep], split[keep]
    fit_on = sp == "val" if meta_rows == "val" else np.ones(len(sp), bool)
    meta = MetaLearner.fit(z[:, fit_on], y[fit_on])
    sc = pd.DataFrame({"galaxy_id": np.asarray(ids)[keep], "split": sp, "label": y})
    logits = {f"member:{a}": z[i] for i, a in enumerate(MEMBERS)}
    logits["ensemble:mean_logit"] = ensemble_logit(z, None, np.float32)
    logits["ensemble:meta"] = ensemble_logit(z, meta, np.float32)
    for k, v in logits.items():
        sc[f"logit[{k}]"] = v
    test = sp == "test"
    summary = {k: {"auc_test": bootstrap_ci(y[test], v[test], n=20, seed=0)} for k, v in logits.items()}
    run.table("ensemble", "scores", sc.drop(index=3) if drop_row else sc)
    metrics = {
        "members": list(MEMBERS),
        "train_arch": MEMBERS[0],
        "meta_learner": meta.to_dict(),
        "summary": summary,
    }
    run.json("ensemble", "metrics", metrics)
    return run.inputs()


CASES = {
    "members_scored_same_rows": (lambda p: make(p), lambda p: make(p, drop_row=True)),
    "meta_fitted_on_val": (lambda p: make(p), lambda p: make(p, meta_rows="all")),
    "auc_drop_vs_finder": (lambda p: make(p), lambda p: make(p, weak_member=True)),
}
